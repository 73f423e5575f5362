"""The overhead benchmark at a toy size: both loops run, and the figures it writes hang together."""

import json

import pytest
import torch

from bench import pot_overhead


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
