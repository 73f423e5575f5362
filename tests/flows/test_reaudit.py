"""Re-audit re-hashes every pinned artifact and recomputes every commitment: one flipped byte anywhere disagrees."""

import pytest
from proof.wasp import Decision
from storage.store import object_key

from bahen.artifacts import get_signed, put_signed
from bahen.audit import pinned_artifacts, recheck
from bahen.network import connect
from bahen.parties import CLIENT, WASP
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from flows.audit import audit
from flows.order import order
from tasks.reaudit import ReauditDisagreesError

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)
# One artifact of every kind an order pins, by the start of its workspace path.
KINDS = ["data/train.enc", "data/manifest.json", "grants/client-train.json", "proof/task0/manifest.json",
         "proof/task0/checkpoint-", "proof/task0/step-log.enc", "proof/task0/telemetry.enc",
         "proof/task0/response.json", "proof/task0/state-", "reports/task0-verification.json", "reports/score-",
         "reports/task0-verdict.json"]


@pytest.fixture(scope="module")
def settled(prefect):
    record = order(SMALL)
    assert record.verdict.accepted
    return record


def test_an_untouched_order_re_audits_in_agreement(settled):
    checks = audit(settled.order_id)
    assert [(c.agrees, c.problems) for c in checks] == [(True, [])]
    assert checks[0].accepted and checks[0].recorded_accepted


def test_the_export_pins_the_response_and_every_revealed_state(settled):
    pins = pinned_artifacts(settled, connect(load_settings()).store)
    assert all(any(path.startswith(kind) for path in pins) for kind in KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_one_flipped_byte_in_any_pinned_artifact_disagrees_naming_it(settled, kind):
    store = connect(load_settings()).store
    path, ref = next((p, r) for p, r in pinned_artifacts(settled, store).items() if p.startswith(kind))
    stored = store.root / object_key(ref)
    original = stored.read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(original[:len(original) // 2] + bytes([original[len(original) // 2] ^ 0x10])
                       + original[len(original) // 2 + 1:])
    try:
        with pytest.raises(ReauditDisagreesError, match="disagrees") as disagreement:
            audit(settled.order_id)
    finally:
        stored.write_bytes(original)
        stored.chmod(0o444)
    named = str(disagreement.value)
    assert path in named or f"artifact {ref.name} is tampered" in named


def test_a_verdict_not_signed_by_wasp_or_not_the_chains_is_named(settled):
    net = connect(load_settings())
    decision, _ = get_signed(net.store, settled.verdict.verdict, Decision)
    forged, _ = put_signed(net.store, net.party(CLIENT), decision, name="a verdict the client signed")
    record = settled.model_copy(update={"verdict": settled.verdict.model_copy(update={"verdict": forged})})
    assert recheck(record, net.store, net.market) == [
        f"verdict: signed by {net.party(CLIENT).address}, which does not hold Wasp's role"]
    flipped = decision.model_copy(update={"accepted": False})
    forged, _ = put_signed(net.store, net.party(WASP), flipped, name="a verdict the chain did not record")
    record = settled.model_copy(update={"verdict": settled.verdict.model_copy(update={"verdict": forged})})
    problems = recheck(record, net.store, net.market)
    assert any("its digest is not the" in p for p in problems)
    assert "verdict: it says rejected, the chain accepted" in problems
    assert "verdict: it says rejected, the order's record accepted" in problems


def test_a_record_pointing_at_another_final_model_is_named(settled):
    net = connect(load_settings())
    first = pinned_artifacts(settled, net.store)["proof/task0/checkpoint-0000000.enc"]
    record = settled.model_copy(update={"training": settled.training.model_copy(update={"final_model": first})})
    assert recheck(record, net.store, net.market) == ["the order's final model is not the proof's last checkpoint"]


def test_the_cli_reports_agreement(settled):
    from typer.testing import CliRunner

    from bahen.cli import app

    result = CliRunner().invoke(app, ["audit", "check", settled.order_id])
    assert result.exit_code == 0, result.output
    assert "task 0: agrees with the recorded verdict (accepted)" in result.output


def test_an_order_the_chain_does_not_know_is_named_not_raised(settled):
    net = connect(load_settings())
    unknown = settled.model_copy(update={"order_id": "0x" + "77" * 32})
    [problem] = recheck(unknown, net.store, net.market)
    assert problem.startswith(f"chain: order {unknown.order_id} does not exist on market")
