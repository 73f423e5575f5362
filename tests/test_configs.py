"""Every committed config is loaded: each prefect.yaml deployment's entrypoint imports and its
parameters validate against the flow; each dvc.yaml stage's command exists and its parameters resolve."""

import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in PREFECT_YAML["deployments"]}
POOLS = {"order": "control", "train": "gpu", "grant-model": "gpu", "verify": "validators", "score": "validators", "deliver": "validators",
         "resolve": "validators", "resolve-pending": "validators", "wasp": "wasp", "void-verification": "wasp", "audit": "control"}


def load_entrypoint(entrypoint: str) -> Flow:
    module, _, name = entrypoint.partition(":")
    return getattr(importlib.import_module(module), name)


def test_each_deployment_goes_to_the_pool_of_the_party_that_signs_it():
    from bahen.parties import POOL_OF_ROLE

    assert {name: d["work_pool"]["name"] for name, d in DEPLOYMENTS.items()} == POOLS
    signer = {"order": "client", "audit": "client", "train": "worker", "grant-model": "worker", "verify": "validator", "score": "validator",
              "deliver": "validator", "resolve": "validator", "resolve-pending": "validator", "wasp": "wasp",
              "void-verification": "wasp"}
    assert {name: POOL_OF_ROLE[signer[name]] for name in DEPLOYMENTS} == POOLS  # the pools the devnet provisions


def test_a_partys_worker_runs_exactly_the_deployments_flows_of_its_pool():
    from bahen.host_worker import FLOWS_OF_POOL

    expected: dict[str, dict[str, str]] = {}
    for name, deployment in DEPLOYMENTS.items():
        expected.setdefault(deployment["work_pool"]["name"], {})[name] = deployment["entrypoint"]
    assert FLOWS_OF_POOL == expected


def test_pull_steps_are_explicit_and_resolved_on_the_worker():
    [step] = PREFECT_YAML["pull"]
    assert step == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $BAHEN_PROJECT_DIR }}"}}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_entrypoint_imports_a_flow_of_the_deployments_name(name):
    flow = load_entrypoint(DEPLOYMENTS[name]["entrypoint"])
    assert isinstance(flow, Flow)
    assert flow.name == name


@pytest.mark.parametrize("name", sorted(POOLS))
def test_deployment_parameters_validate_against_the_flow(name):
    deployment = DEPLOYMENTS[name]
    flow = load_entrypoint(deployment["entrypoint"])
    schema = parameter_schema(flow).model_dump_for_openapi()
    given = deployment.get("parameters") or {}
    assert set(given) <= set(schema["properties"])
    missing = set(schema.get("required", [])) - set(given)
    if not missing:
        flow.validate_parameters(given)
    for parameter in missing:  # each required parameter renders as a titled, typed form field
        field = schema["properties"][parameter]
        assert field.get("title") and {"type", "$ref", "allOf", "anyOf"} & set(field), (parameter, field)


def test_order_form_has_a_description_for_every_field_and_dropdowns_for_choices():
    schema = parameter_schema(load_entrypoint(DEPLOYMENTS["order"]["entrypoint"])).model_dump_for_openapi()
    spec = schema["definitions"]["OrderSpec"]["properties"]
    assert {"dataset", "model", "lr", "epochs", "workers", "validators", "budget_eth"} <= set(spec)
    assert all(field.get("description") for field in spec.values())
    assert spec["model"]["enum"] == ["mlp", "cnn", "resnet20", "gpt"]
    assert spec["budget_eth"]["exclusiveMinimum"] == 0
    # an optional path is a text field that may stay empty, not a choice between text and None
    for name in ("dataset_path", "initial_weights_path"):
        assert spec[name]["type"] == "string" and not {"anyOf", "default"} & set(spec[name]), spec[name]
    # every bound closes its field's description, in words
    assert spec["batch_size"]["description"] == "Samples per step — at least 1, at most 4,096"
    assert spec["momentum"]["description"].endswith(" — at least 0, under 1")
    assert spec["lr"]["description"].endswith(" — over 0, at most 10")
    assert spec["label_column"]["description"].endswith(" — at least 1, at most 200 characters")
    assert spec["auditors"]["description"].endswith(" — at most 8 entries")
    bounded = {name for name, field in spec.items()
               if {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minLength", "maxLength", "maxItems"} & set(field)}
    assert {name for name, field in spec.items() if " — " in field["description"]} == bounded


def test_order_dispatches_to_the_pools_and_children_beat():
    assert DEPLOYMENTS["order"]["work_pool"]["job_variables"]["env"]["BAHEN_DISPATCH_MODE"] == "pools"
    for child in ("train", "score"):
        assert int(DEPLOYMENTS[child]["work_pool"]["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) >= 30


DVC_YAML = ROOT / "dvc.yaml"
STAGES = yaml.safe_load(DVC_YAML.read_text())["stages"] if DVC_YAML.is_file() else {}
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text()) if (ROOT / "params.yaml").is_file() else {}


@pytest.mark.skipif(not STAGES, reason="no dvc.yaml")
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_stage_command_exists_and_its_parameters_resolve(stage):
    cmd = STAGES[stage]["cmd"]
    for ref in re.findall(r"\$\{([^}]+)\}", cmd):
        section, _, key = ref.partition(".")
        assert key in PARAMS[section], f"{stage}: params.yaml has no {ref}"
    argv = shlex.split(re.sub(r"\$\{[^}]+\}", "X", cmd))
    assert argv[0] == "python"
    if argv[1] == "-m":
        assert importlib.util.find_spec(argv[2]) is not None, f"{stage}: no module {argv[2]}"
    else:
        assert (ROOT / argv[1]).is_file(), f"{stage}: no script {argv[1]}"
    made = {next(iter(out)) if isinstance(out, dict) else out for s in STAGES.values() for out in s.get("outs", [])}
    for dep in STAGES[stage].get("deps", []):
        assert (ROOT / dep).exists() or dep in made, f"{stage}: dependency {dep} is missing and no stage makes it"
