"""A data-parallel worker on one host: this process is rank 0, the others are started here.

:func:`data_parallel` starts ``grad_shards - 1`` processes (``spawn``, so none inherits this one's
threads or CUDA context) that train the same order on ranks 1, 2, … with no recorder, and makes this
process rank 0 of their group: the caller trains and records rank 0 with the group it yields
(``training.trainer.train`` or ``proof.attacks.run_worker``). The training data reach the other
ranks through the pipe that starts them, never through a file. They meet at a rendezvous file in a
private temporary folder; rank ``r`` trains on ``cuda:r`` under a CUDA profile (NCCL), on the CPU
otherwise (gloo).
"""

import multiprocessing
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch.distributed as dist

from training.errors import TrainingError
from training.trainer import TrainSpec, train

JOIN_TIMEOUT_S = 60.0
FAILED_JOIN_S = 5.0  # how long a rank that failed rank 0's collectives has to be seen exiting


def rank_device(spec: TrainSpec, rank: int) -> str:
    """The device rank ``rank`` trains on: its own GPU under a CUDA profile, else the CPU."""
    return "cpu" if spec.profile.startswith("cpu") else f"cuda:{rank}"


def _join(spec: TrainSpec, rendezvous: str, rank: int, timeout: timedelta) -> None:
    dist.init_process_group("gloo" if spec.profile.startswith("cpu") else "nccl", init_method=rendezvous, rank=rank,
                            world_size=spec.grad_shards, timeout=timeout)


def _rank(spec: TrainSpec, X: np.ndarray, y: np.ndarray, rendezvous: str, rank: int, timeout: timedelta) -> None:
    """Ranks 1, 2, …: train the order in the group; rank 0 sends them its starting state."""
    _join(spec, rendezvous, rank, timeout)
    try:
        train(spec, X, y, device=rank_device(spec, rank), group=dist.group.WORLD)
    finally:
        dist.destroy_process_group()


@contextmanager
def data_parallel(spec: TrainSpec, X: np.ndarray, y: np.ndarray, *,
                  timeout: timedelta = timedelta(minutes=10)) -> Iterator[dist.ProcessGroup]:
    """This process as rank 0 of ``spec.grad_shards`` processes training ``spec`` on ``X``/``y``.

    Yields the group to train rank 0 with; on leaving, waits for the other ranks and raises
    :class:`TrainingError` naming any that failed. A rank that dies leaves the others' collectives
    waiting until ``timeout``, then they fail too. If the block raises, the other ranks are stopped.
    """
    if dist.is_initialized():
        raise TrainingError("this process already belongs to a torch.distributed group: a data-parallel worker "
                            "trains one order at a time")
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bahen-rendezvous-") as folder:
        rendezvous = (Path(folder) / "rendezvous").as_uri()
        ranks = [context.Process(target=_rank, args=(spec, X, y, rendezvous, rank, timeout), name=f"rank {rank}",
                                 daemon=True) for rank in range(1, spec.grad_shards)]
        for process in ranks:
            process.start()
        error = None
        try:
            _join(spec, rendezvous, 0, timeout)
            try:
                yield dist.group.WORLD
            finally:
                dist.destroy_process_group()
        except BaseException as exc:  # re-raised below, or the failure of the rank that caused it
            error = exc
        for process in ranks:
            process.join(JOIN_TIMEOUT_S if error is None else FAILED_JOIN_S)
        failed = [f"{p.name} exited with code {p.exitcode}" for p in ranks if p.exitcode not in (0, None)]
        for process in ranks:
            if process.is_alive():
                process.kill()
                process.join()
        if failed:
            raise TrainingError(f"the data-parallel worker's {', '.join(failed)}; its training cannot be trusted") from error
        if error is not None:
            raise error
        if any(p.exitcode != 0 for p in ranks):
            raise TrainingError(f"the data-parallel worker's other ranks did not finish within {JOIN_TIMEOUT_S:.0f} s "
                                "of rank 0 and were stopped")
