"""A training worker run as a subprocess by the resume test: checkpoints go to files in a directory.

Usage: ``python resume_worker.py DIR``. Each step sleeps a little (an honest no-op hook) so the
test can kill the process part way through; files are written to a temporary name and renamed,
as a real store's put is atomic.
"""

import hashlib
import os
import sys
import time
from pathlib import Path

from storage.refs import ArtifactRef
from training.datasets import load_dataset, table_to_arrays
from training.hooks import TrainHooks
from training.trainer import TrainSpec

SPEC = TrainSpec(
    model="mlp", input_shape=(1, 8, 8), num_classes=10, optimizer="sgd", lr=0.05, lr_schedule="cosine",
    batch_size=32, epochs=3, seed=11, checkpoint_every=7,
)


def file_store(directory: Path):
    """put/get over files named after the artifact."""

    def put(name: str, data: bytes) -> ArtifactRef:
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, directory / name)
        return ref_of(name, data)

    def get(ref: ArtifactRef) -> bytes:
        return (directory / ref.name).read_bytes()

    return put, get


def ref_of(name: str, data: bytes) -> ArtifactRef:
    return ArtifactRef(name=name, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def dataset():
    X, y, _ = table_to_arrays(load_dataset("digits"))
    return X, y


class Slow(TrainHooks):
    def on_update(self, step, model, optimizer):
        time.sleep(0.03)


if __name__ == "__main__":
    from proof.recorder import Recorder
    from training.trainer import train

    put, _ = file_store(Path(sys.argv[1]))
    X, y = dataset()
    recorder = Recorder(put=put)
    train(SPEC, X, y, recorder=recorder, hooks=Slow())
    recorder.close()
