"""Loading a proof's evidence: one bad artifact is named with its reason and never stops the others
from loading; a size at the bound is fetched, one byte over is not."""

import hashlib

from proof.response import revealed_steps
from training.trainer import state_form


def _fetch_failing(store, victims, exc=LookupError("gone")):
    def fetch(ref):
        if ref.name in victims:
            raise exc
        return store.fetch(ref)

    return fetch


def test_a_missing_checkpoint_is_named_and_the_rest_load(context, store, honest):
    victim_step, victim = honest.bundle.checkpoints[1]
    ctx = context(fetch=_fetch_failing(store, {victim.name}))
    assert ctx.problems == {victim.name: "missing or tampered (LookupError: gone)"}
    assert sorted(ctx.checkpoints) == [s for s, _ in honest.bundle.checkpoints if s != victim_step]


def test_unreadable_and_misplaced_checkpoints_are_named_and_the_rest_load(context, store, honest):
    (s1, first), (s2, second) = honest.bundle.checkpoints[1], honest.bundle.checkpoints[2]
    garbage, other = b"not a checkpoint", store.fetch(honest.bundle.checkpoints[3][1])
    served = {first.name: garbage, second.name: other}
    digests = list(honest.bundle.checkpoint_sha256)
    digests[1], digests[2] = hashlib.sha256(garbage).hexdigest(), hashlib.sha256(other).hexdigest()
    bundle = honest.bundle.model_copy(update={"checkpoint_sha256": digests})
    ctx = context(bundle=bundle, fetch=lambda ref: served.get(ref.name) or store.fetch(ref))
    assert ctx.problems[first.name].startswith(f"unreadable ({first.name} is corrupted or not a bahen checkpoint")
    assert ctx.problems[second.name] == f"holds step {honest.bundle.checkpoints[3][0]}, committed as step {s2}"
    assert sorted(ctx.checkpoints) == [s for s, _ in honest.bundle.checkpoints if s not in (s1, s2)]


def test_a_checkpoint_of_exactly_the_bound_is_fetched_and_one_byte_more_is_not(context, honest, data):
    bound = state_form(honest.job.spec, len(data[0])).max_bytes
    step, ref = honest.bundle.checkpoints[-1]
    for size, loaded in ((bound, True), (bound + 1, False)):
        checkpoints = [*honest.bundle.checkpoints[:-1], (step, ref.model_copy(update={"size": size}))]
        ctx = context(bundle=honest.bundle.model_copy(update={"checkpoints": checkpoints}))
        assert (step in ctx.checkpoints) is loaded and (ref.name in ctx.problems) is not loaded


def test_a_missing_revealed_state_is_named_and_the_rest_load(context, store, honest):
    ctx = context()
    steps = revealed_steps(ctx.challenge)
    victim = ctx.response.state_ref(steps[0])
    ctx = context(fetch=_fetch_failing(store, {victim.name}))
    assert ctx.state_problems == {steps[0]: f"{victim.name} missing or tampered (LookupError: gone)"}
    assert sorted(ctx.revealed) == steps[1:]


def test_withheld_and_oversized_states_are_named_and_the_rest_load(context, honest, data):
    ctx = context()
    steps = revealed_steps(ctx.challenge)
    bound = state_form(honest.job.spec, len(data[0])).max_bytes
    states = dict(ctx.response.states)
    del states[steps[0]]
    oversized = states[steps[1]].model_copy(update={"size": bound + 1})
    states[steps[1]] = oversized
    states[steps[2]] = states[steps[2]].model_copy(update={"size": bound})
    ctx = context(response=ctx.response.model_copy(update={"states": sorted(states.items())}))
    assert ctx.state_problems == {
        steps[0]: "withheld",
        steps[1]: f"{oversized.name} is {bound + 1:,} bytes, over the {bound:,} a state of this order takes",
    }
    assert sorted(ctx.revealed) == steps[2:]


def test_a_checkpoint_not_matching_its_listed_digest_is_named_and_the_rest_load(context, honest):
    step, ref = honest.bundle.checkpoints[1]
    digests = list(honest.bundle.checkpoint_sha256)
    digests[1] = "00" * 32
    ctx = context(bundle=honest.bundle.model_copy(update={"checkpoint_sha256": digests}))
    assert ctx.problems == {ref.name: "its plaintext is not the SHA-256 the proof lists for it"}
    assert sorted(ctx.checkpoints) == [s for s, _ in honest.bundle.checkpoints if s != step]


def test_a_missing_or_unreadable_log_is_named(context, store, honest):
    ctx = context(fetch=_fetch_failing(store, {honest.bundle.step_log.name, honest.bundle.telemetry.name}))
    assert ctx.problems == {honest.bundle.step_log.name: "missing or tampered (LookupError: gone)",
                            honest.bundle.telemetry.name: "missing or tampered (LookupError: gone)"}
    assert ctx.steps is None and ctx.telemetry is None
    ctx = context(fetch=lambda ref: b"not parquet" if ref.name == honest.bundle.step_log.name else store.fetch(ref))
    assert ctx.problems[honest.bundle.step_log.name].startswith("unreadable (the step log is not a Parquet file")
