"""Wasp's learned model pipeline: labels that are exact, a model that never makes the uniform check weaker."""

import json

import pyarrow.parquet as pq
import pytest

from bench.wasp import _auroc, main
from proof.localiser import read_model


def test_auroc_counts_pairs_and_halves_ties():
    assert _auroc([3.0, 2.0], [1.0, 0.0]) == 1.0
    assert _auroc([0.0], [1.0]) == 0.0
    assert _auroc([1.0, 0.0], [1.0]) == 0.25


@pytest.mark.slow
def test_a_reduced_pipeline_labels_honest_steps_honest_and_never_lowers_detection(tmp_path):
    main(["all", "--jobs", "digits-mlp", "--honest-seeds", "2", "--attack-seeds", "1", "--intensities", "0.1",
          "--attacks", "skipped-steps", "wrong-lr", "--out-dir", str(tmp_path), "--trees", "10"])
    steps = pq.read_table(tmp_path / "wasp_traces.parquet").to_pandas()
    # every step of an honest run re-executes to its commitment; a 10% block cheat fails about 10% of them
    assert not steps[steps.attack == "honest"].dishonest.any()
    share = steps[steps.attack != "honest"].groupby("attack").dishonest.mean()
    assert ((share > 0.05) & (share < 0.15)).all(), share
    model = read_model((tmp_path / "wasp_model.json").read_bytes())
    assert model.trained_on["runs"] == 4 and len(model.trees) == 10
    result = json.loads((tmp_path / "wasp_evaluate.json").read_text())
    assert {r["family"] for r in result["attacks"]} == {"skipping", "hyperparameters"}
    for row in result["attacks"]:
        # the model's steps are added to the uniform ones: a challenge never catches less
        assert row["learned"] >= row["uniform"] and row["added_steps"] <= 8
