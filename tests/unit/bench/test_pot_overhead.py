"""The overhead benchmark at a toy size: both loops run, and the figures it writes hang together."""

import json

import pytest
import torch

from bench import pot_overhead
from proof.recorder import Recorder
from storage.refs import ArtifactRef
from training.trainer import TrainSpec, train


def test_median_interval_brackets_the_median_and_is_reproducible():
    values = [1.00, 1.01, 1.02, 1.03, 1.10, 0.99, 1.02, 1.04]
    low, high = pot_overhead._median_interval(values)
    assert min(values) <= low <= 1.02 <= high <= max(values)
    assert pot_overhead._median_interval(values) == (low, high)
    assert pot_overhead._median_interval([1.05] * 5) == (1.05, 1.05)


@pytest.mark.slow
def test_a_small_run_writes_consistent_results(tmp_path):
    results = pot_overhead.run(steps=40, k=10, repeats=2, cases=("mlp-digits",), out_dir=tmp_path)
    assert json.loads((tmp_path / "pot_overhead.json").read_text()) == results
    case = results["cases"][0]
    assert case["steps"] == 40 and case["repeats"] == 2
    low, high = case["overhead_wall_ci95"]
    q1, q3 = case["overhead_wall_quartiles"]
    assert low <= case["overhead_wall"] <= high and q1 <= case["overhead_wall"] <= q3
    assert case["interleaved_blocks"] == 2 * (40 // 10)  # two runs (the default) of four blocks of k steps
    for kind in ("interleaved", "interleaved_drained"):
        low, high = case[f"overhead_wall_{kind}_ci95"]
        assert low <= case[f"overhead_wall_{kind}"] <= high
    assert case["recorder_cpu_us_per_step"] > 0  # the recorder's hashing, spooling and storing cost CPU time
    assert case["proof_bytes"] > case["model_bytes"] > 0  # 5 checkpoints, journals and the bundle


def test_the_copy_probe_copies_the_state_into_new_memory_or_one_block():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    momentum = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    state = torch.cat([t.detach().reshape(-1) for t in (*model.parameters(), *momentum)])
    fresh, same = pot_overhead._StateCopies(fresh=True), pot_overhead._StateCopies(fresh=False)
    for _ in range(pot_overhead.PROBE_KEPT + 5):
        fresh(model, optimizer)
        same(model, optimizer)
    assert len(fresh.kept) == pot_overhead.PROBE_KEPT
    assert len({copy.data_ptr() for copy in fresh.kept}) == pot_overhead.PROBE_KEPT  # each copy in its own memory
    block = same.block.data_ptr()
    same(model, optimizer)
    assert same.block.data_ptr() == block
    assert torch.equal(fresh.kept[-1].view(torch.float32), state) and torch.equal(same.block.view(torch.float32), state)


@pytest.mark.parametrize("drained", [False, True])
def test_interleaved_bare_blocks_run_every_step_once_and_leave_the_recorded_training_alone(drained):
    X, y, shape = pot_overhead.table_to_arrays(pot_overhead.load_dataset("digits", split="all"))
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                     epochs=1, seed=3, checkpoint_every=7)
    made = []

    def interleaved_hooks(recorder):
        made.append(pot_overhead._Interleaved(pot_overhead._BareLoop(spec, X, y), block=7,
                                              drain=recorder.wait_idle if drained else None))
        return made[-1]

    interleaved = _recorded_training(spec, X, y, interleaved_hooks)
    alone = _recorded_training(spec, X, y, None)
    hooks, blocks = made[0], interleaved.steps // 7
    assert len(hooks.recorded) == len(hooks.bare_times) == blocks and hooks.bare.done == 7 * blocks
    assert hooks.bare.done == len(hooks.bare.batches) == interleaved.steps  # 56 steps: eight whole blocks
    assert all(t > 0 for t in hooks.recorded + hooks.bare_times)
    assert all(torch.equal(interleaved.final_state[k], alone.final_state[k]) for k in alone.final_state)


def _recorded_training(spec, X, y, hooks):
    recorder = Recorder(put=_discard)
    result = train(spec, X, y, recorder=recorder, hooks=hooks(recorder) if hooks is not None else None)
    recorder.close()
    recorder.spool.close()
    return result


def _discard(name, data):
    return ArtifactRef(name=name, md5="0" * 32, sha256="0" * 64, size=len(data))
