"""The order spec: bounds, the field named in every refusal, exact wei."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bahen.spec import OrderSpec, SpecError, load_spec, parse_spec


def test_defaults_are_a_valid_order():
    spec = parse_spec({})
    assert spec.dataset == "digits" and spec.model == "mlp"
    assert spec.budget_wei == 10**18


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", 0), ("epochs", 0), ("batch_size", 5000), ("model", "transformer"), ("holdout_fraction", 0.9),
     ("validators", 0), ("budget_eth", -1), ("seed", -3)],
)
def test_out_of_bounds_field_is_named(field, value):
    with pytest.raises(SpecError) as refused:
        parse_spec({field: value})
    assert f"  {field}:" in str(refused.value)


def test_unknown_field_is_refused():
    with pytest.raises(SpecError, match="learning_rate"):
        parse_spec({"learning_rate": 0.1})


def test_missing_dataset_file_is_refused(tmp_path):
    with pytest.raises(SpecError, match="dataset_path"):
        parse_spec({"dataset_path": str(tmp_path / "absent.csv")})
    with pytest.raises(SpecError, match="initial_weights_path .* is not a readable file"):
        parse_spec({"initial_weights_path": str(tmp_path / "absent.safetensors")})
    with pytest.raises(SpecError, match="initial_weights_path .* is not a .safetensors file"):
        parse_spec({"initial_weights_path": str(tmp_path / "model.pt")})


def test_a_spec_naming_the_clients_files_is_valid_where_they_are_not():
    """A worker or validator receives the spec the client submitted; the client's files are not on its host."""
    received = {"dataset_path": "/home/client/data.csv", "initial_weights_path": "/home/client/start.safetensors"}
    assert OrderSpec.model_validate(received).dataset_path == "/home/client/data.csv"
    with pytest.raises(SpecError, match="dataset_path"):
        parse_spec(received)


@pytest.mark.parametrize("profile", ["cuda-fp32-deterministic", "cuda-bf16-tolerant"])
def test_a_cuda_profile_refuses_segments_longer_than_its_tolerance_was_measured_for(profile):
    assert parse_spec({"profile": profile, "checkpoint_every": 50}).checkpoint_every == 50
    with pytest.raises(SpecError, match="checkpoint_every .51. must be at most 50 under " + profile):
        parse_spec({"profile": profile, "checkpoint_every": 51})
    assert parse_spec({"checkpoint_every": 51}).checkpoint_every == 51


def test_a_gpt_order_and_text_go_together():
    assert parse_spec({"model": "gpt", "dataset": "shakespeare"}).text
    with pytest.raises(SpecError, match="a gpt order trains on text"):
        parse_spec({"model": "gpt"})
    with pytest.raises(SpecError, match="shakespeare is text, which only a gpt model learns from"):
        parse_spec({"dataset": "shakespeare"})
    with pytest.raises(SpecError, match="gpt_embed .66. must be a multiple of gpt_heads .4."):
        parse_spec({"model": "gpt", "dataset": "shakespeare", "gpt_embed": 66})


def test_budget_is_converted_to_wei_without_binary_rounding():
    assert parse_spec({"budget_eth": 0.1}).budget_wei == 10**17
    assert parse_spec({"budget_eth": 1.000000000000000001}).budget_wei == 10**18  # float has no more digits


@given(st.decimals(min_value="0.000001", max_value="10000", places=6))
def test_budget_wei_matches_the_decimal_written(amount):
    assert parse_spec({"budget_eth": float(amount)}).budget_wei == int(amount * 10**18)


def test_yaml_file_errors_say_which_file(tmp_path):
    path = tmp_path / "order.yaml"
    path.write_text("epochs: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(path)
    path.write_text("epochs: 3\nmodel: cnn\n")
    assert load_spec(path) == OrderSpec(epochs=3, model="cnn")


def test_an_order_names_its_data_as_the_client_knows_it(tmp_path):
    from bahen.spec import OrderSpec

    path = tmp_path / "sensor-readings.csv"
    path.write_text("x0,label\n0.5,1\n")
    assert OrderSpec(dataset="mnist").data_name == "mnist"
    assert OrderSpec(dataset_path=str(path)).data_name == "sensor-readings.csv"


def _bounds():
    """Every numeric bound of every order field, read from the model: (field, kind, bound)."""
    for name, info in OrderSpec.model_fields.items():
        for meta in info.metadata:
            for kind in ("ge", "gt", "le", "lt"):
                if hasattr(meta, kind):
                    yield name, kind, getattr(meta, kind)


# Values of other fields that let a field reach its bound: a one-hour deadline leaves a commit window
# of at most 59 minutes, and the longest commit window needs the longest deadline.
_ROOM = {("deadline_hours", "ge"): {"commit_minutes": 1}, ("commit_minutes", "lt"): {"deadline_hours": 24 * 30}}


def _step(field, value, towards):
    """The next value of ``field``'s type after ``value``, up (``towards`` 1) or down (-1)."""
    if OrderSpec.model_fields[field].annotation is int:
        return value + towards
    return math.nextafter(float(value), towards * math.inf)


@pytest.mark.parametrize(("field", "kind", "bound"), list(_bounds()), ids=lambda v: str(v))
def test_every_bound_of_every_field_is_reachable_and_enforced(field, kind, bound):
    inward = 1 if kind in ("ge", "gt") else -1
    last = bound if kind in ("ge", "le") else _step(field, bound, inward)
    room = _ROOM.get((field, kind), {})
    assert getattr(parse_spec({**room, field: last}), field) == last
    with pytest.raises(SpecError) as refused:
        parse_spec({**room, field: _step(field, last, -inward)})
    assert f"  {field}:" in str(refused.value)


def test_every_numeric_field_is_bounded_both_ways():
    sides = {}
    for field, kind, _ in _bounds():
        sides.setdefault(field, set()).add(kind[0])
    numeric = {n for n, i in OrderSpec.model_fields.items() if i.annotation in (int, float)}
    assert {f for f, s in sides.items() if s == {"g", "l"}} == numeric
