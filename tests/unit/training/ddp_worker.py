"""One rank of a two-process data-parallel worker, run as a subprocess by the distributed test.

Usage: ``python ddp_worker.py MODEL RANK PORT OUT``. Both ranks join a gloo group on loopback and
train the same order (``grad_shards=2``); rank 0 records the Proof of Train as any worker does and
verifies it as a verifier would, on one process. Each rank writes what it reached to ``OUT/rank-N.json``.
"""

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from training.datasets import load_dataset, table_to_arrays
from training.models import build_model, weights_digest
from training.trainer import TrainSpec, train

SEED = b"\x03" * 32


def order(model: str) -> tuple[TrainSpec, object, object]:
    X, y, shape = table_to_arrays(load_dataset("digits"))
    spec = TrainSpec(model=model, input_shape=shape, num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                     epochs=1, seed=5, checkpoint_every=4, grad_shards=2)
    return spec, X[:320], y[:320]


def order_model(spec: TrainSpec):
    return build_model(spec.model, input_shape=spec.input_shape, num_classes=spec.num_classes, seed=spec.seed)


def main(model: str, rank: int, port: int, out: Path) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    group = dist.group.WORLD
    spec, X, y = order(model)
    report = {}
    if rank == 0:
        from bench.pot import MemoryStore
        from proof.attacks import run_worker
        from proof.verifier import VerifyConfig, verify_proof

        store = MemoryStore()
        run = run_worker(None, spec, X, y, store.put, group=group)
        final = run.result.final_state
        verdict = verify_proof(run.bundle, committed_root=run.committed_root, challenge_seed=SEED, X=X, y=y,
                               fetch=store.fetch, expected_spec=spec, response=run.answer(SEED, VerifyConfig()))
        run.spool.close()
        report = {"passed": verdict.passed, "failed": [c.name for c in verdict.failed_checks],
                  "losses": [r.loss for r in run.recorded.steps]}
    else:
        final = train(spec, X, y, group=group).final_state
    parameters = {n: final[n] for n in final if n in dict(order_model(spec).named_parameters())}
    report |= {"weights": weights_digest(final), "parameters": weights_digest(parameters)}
    (out / f"rank-{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
