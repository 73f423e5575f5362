"""Fuzzing every parser of bytes another party wrote: a mutated input is refused with bahen's error.

Each target reads one kind of artifact exactly as the party that receives it does (a validator a
signed proof manifest, a worker its resume journal, a client its order spec, ...). The campaign
starts from a valid sample of each kind, built here from a real training, applies random
mutations (bit flips, byte edits, cuts, splices, and structural ones: nesting tens of thousands
deep, YAML aliases, bytes that are not UTF-8, out-of-range numbers) and sorts every outcome:
accepted, refused with one of the target's errors, or a *crash*: any other exception, or the
process dying. Targets run in child processes, so a segmentation fault is counted, not fatal.
The mutated input of every crash is kept under ``--out``/fuzz-crashes for the corpus.
"""

import argparse
import hashlib
import io
import json
import multiprocessing
import queue
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow.parquet as pq
from pydantic_core import from_json
from safetensors.torch import save

from bahen.artifacts import parse_signed
from bahen.spec import SpecError, load_spec
from bench.pot import RESULTS
from privacy.errors import DocumentError, PrivacyError
from privacy.grants import KeyGrant, grant_key, open_grant
from privacy.identity import Identity
from privacy.signing import canonical_json, parse_document, sign_document
from proof.bundle import ProofBundle, build_bundle, read_step_log, read_telemetry
from proof.errors import ProofError
from proof.recorder import Recorder, journal_name
from storage.dirs import decode_listing, encode_dvc, encode_listing
from storage.errors import StorageError
from storage.manifest import ArtifactEntry, Manifest
from storage.refs import ArtifactRef
from training.checkpoint import Checkpoint
from training.datasets import arrays_to_table, load_dataset, read_split, table_to_arrays
from training.errors import TrainingError
from training.models import load_weights
from training.state import checkpoint_state, decode_state
from training.trainer import TrainSpec, train

ORDER = "0x" + "ab" * 32
SPEC_YAML = b"""dataset: digits
model: mlp
epochs: 1
checkpoint_every: 6
validators: 2
budget_eth: 2
"""
TARGETS = ("signed-document", "signed-payload", "key-grant", "manifest", "directory-listing", "step-log",
           "telemetry", "journal", "state", "checkpoint", "order-spec", "dataset-split", "starting-weights")


@dataclass(frozen=True)
class Target:
    """One parser: a valid sample, how its reader parses bytes, and the errors it may refuse with."""

    name: str
    sample: bytes
    parse: Callable[[bytes], object]
    errors: tuple[type[Exception], ...]
    text: bool = False  # JSON or YAML: structural mutations apply


def _ref(name: str, data: bytes) -> ArtifactRef:
    return ArtifactRef(name=name, md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
                       sha256=hashlib.sha256(data).hexdigest(), size=len(data))


class _Objects:
    """A plaintext store keyed by name, as a worker's recorder sees its own artifacts."""

    def __init__(self) -> None:
        self.by_name: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> ArtifactRef:
        self.by_name[name] = data
        return _ref(name, data)


@cache
def targets() -> dict[str, Target]:
    """Every target with its sample, built from a 14-step training of an MLP on 200 digits."""
    X, y, shape = table_to_arrays(load_dataset("digits"))
    buffer = io.BytesIO()
    pq.write_table(arrays_to_table(X[:20], y[:20]), buffer)
    split = buffer.getvalue()
    spec = TrainSpec(model="mlp", input_shape=shape, num_classes=10, optimizer="adamw", lr=0.01,
                     batch_size=32, epochs=2, seed=1, checkpoint_every=6)
    objects = _Objects()
    recorder = Recorder(put=objects.put)
    train(spec, X[:200], y[:200], recorder=recorder)
    recorded = recorder.close()
    bundle = build_bundle(recorded, order_id=ORDER, task=0, spec=spec, put=objects.put)
    checkpoint_bytes = objects.by_name[recorded.checkpoints[-1][1].name]
    state_bytes = checkpoint_state(Checkpoint.from_bytes(checkpoint_bytes)).to_bytes()
    worker, validator = Identity.generate("worker"), Identity.generate("validator")
    signed = canonical_json(sign_document(worker, bundle))
    grant = canonical_json(grant_key(bytes(32), validator.public(), order_id=ORDER))
    entries = {f"part-{i}": _ref(f"part-{i}", bytes([i])) for i in range(3)}
    listing = encode_listing(entries)
    directory = ArtifactRef(name="dir", md5=hashlib.md5(encode_dvc(entries), usedforsecurity=False).hexdigest(),
                            sha256=hashlib.sha256(listing).hexdigest(), size=len(listing), is_dir=True)
    manifest = Manifest(kind="dataset", order_id=ORDER, entries=[ArtifactEntry(role=r, ref=ref) for r, ref in entries.items()])
    last_journal = journal_name(recorded.checkpoints[-1][0])

    def resume(data: bytes) -> object:
        journals = {**objects.by_name, last_journal: data}
        return Recorder.resume(_ref(last_journal, data), get=lambda ref: journals[ref.name], put=objects.put)

    def grant_for_validator(data: bytes) -> bytes:
        return open_grant(parse_document(KeyGrant, data, what="grant"), validator, order_id=ORDER)

    def resigned(data: bytes) -> object:
        """A payload the worker signed as it is: what a validator reads past the signature check."""
        try:
            payload = from_json(data)
        except ValueError:
            raise DocumentError("not JSON, so no worker could sign it") from None
        return parse_signed(canonical_json(sign_document(worker, payload)), ProofBundle, what="manifest")

    def spec_file(data: bytes) -> object:
        with tempfile.NamedTemporaryFile(suffix=".yaml") as file:
            file.write(data)
            file.flush()
            return load_spec(Path(file.name))

    proof_errors = (ProofError, TrainingError)
    found = [
        Target("signed-document", signed, lambda d: parse_signed(d, ProofBundle, what="manifest"), (PrivacyError,), True),
        Target("signed-payload", canonical_json(bundle), resigned, (PrivacyError,), True),
        Target("key-grant", grant, grant_for_validator, (PrivacyError,), True),
        Target("manifest", manifest.to_bytes(), Manifest.from_bytes, (StorageError,), True),
        Target("directory-listing", listing, lambda d: decode_listing(d, directory), (StorageError,), True),
        Target("step-log", objects.by_name["step-log.parquet"], read_step_log, proof_errors),
        Target("telemetry", objects.by_name["telemetry.parquet"], read_telemetry, proof_errors),
        Target("journal", objects.by_name[last_journal], resume, proof_errors, True),
        Target("state", state_bytes, decode_state, proof_errors),
        Target("checkpoint", checkpoint_bytes, Checkpoint.from_bytes, proof_errors),
        Target("order-spec", SPEC_YAML, spec_file, (SpecError,), True),
        Target("dataset-split", split, lambda d: read_split(d, name="split"), (TrainingError,)),
        Target("starting-weights", save(Checkpoint.from_bytes(checkpoint_bytes).model_state), load_weights, (TrainingError,)),
    ]
    assert tuple(t.name for t in found) == TARGETS
    return {t.name: t for t in found}


def _deep(rng: random.Random) -> bytes:
    depth = rng.choice((300, 5_000, 70_000))
    opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
    return opener * depth + b"1" + closer * depth


def mutate(data: bytes, rng: random.Random, *, text: bool) -> bytes:
    """``data`` with one to four random mutations; structural ones only for text formats."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kinds = ["flip", "byte", "delete", "insert", "duplicate", "truncate"]
        if text:
            kinds += ["deep", "not-utf8", "number", "alias", "swap"]
        kind = rng.choice(kinds)
        at = rng.randrange(len(out) + 1)
        if kind == "flip" and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == "byte" and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == "delete":
            del out[at:at + rng.randint(1, 64)]
        elif kind == "insert":
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == "duplicate":
            out[at:at] = out[at:at + rng.randint(1, 256)]
        elif kind == "truncate":
            del out[at:]
        elif kind == "deep":
            out[at:at] = _deep(rng)
        elif kind == "not-utf8":
            out[at:at] = rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"))
        elif kind == "number":
            out[at:at] = rng.choice((b"1e999", b"-1", b"99999999999999999999999999", b"NaN", b"0.5", b"true"))
        elif kind == "alias":
            out[:0] = b"a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        elif kind == "swap" and len(out) > 2:
            i, j = sorted((rng.randrange(len(out)), rng.randrange(len(out))))
            out[i:j] = out[i:j][::-1]
    return bytes(out)


def outcome(target: Target, data: bytes) -> str:
    """``accepted``, ``refused``, or the name of the foreign exception that escaped."""
    try:
        target.parse(data)
    except target.errors:
        return "refused"
    except Exception as exc:  # the finding: anything else escaping is what the campaign counts
        return type(exc).__name__
    return "accepted"


def _campaign(name: str, inputs: int, seed: int, progress, crashes: Path) -> None:
    """Child process: mutate and parse; report counts through ``progress`` (a queue)."""
    target = targets()[name]
    counts: Counter = Counter()
    for i in range(inputs):
        progress.put(("at", i))
        data = mutate(target.sample, random.Random(f"{seed}/{name}/{i}"), text=target.text)
        result = outcome(target, data)
        counts[result] += 1
        if result not in ("accepted", "refused"):
            crashes.mkdir(parents=True, exist_ok=True)
            (crashes / f"{name}-{i}-{result}").write_bytes(data)
    progress.put(("done", dict(counts)))


def run(inputs: int, seed: int, names: list[str], out_dir: Path) -> dict:
    started = time.perf_counter()
    crashes = out_dir / "fuzz-crashes"
    results = {}
    context = multiprocessing.get_context("fork")
    targets()  # built once, in the parent: each child starts with the samples in memory
    for name in names:
        began, done, tried, died = time.perf_counter(), Counter(), 0, 0
        while tried < inputs:
            reports = context.Queue()
            child = context.Process(target=_campaign, args=(name, inputs - tried, seed + tried, reports, crashes))
            child.start()
            last, finished = -1, None
            while finished is None:
                try:
                    kind, value = reports.get(timeout=5)
                except queue.Empty:  # look whether the child still lives
                    if not child.is_alive():
                        break
                    continue
                if kind == "at":
                    last = value
                else:
                    finished = value
            child.join()
            if finished is not None:
                done.update(finished)
                tried = inputs
            else:  # the child died on input `last` of this batch: a crash no except could catch
                died += 1
                done[f"died ({child.exitcode})"] += 1
                tried += last + 1
        results[name] = {"inputs": inputs, "outcomes": dict(done), "process_deaths": died,
                         "crashes": sum(n for k, n in done.items() if k not in ("accepted", "refused")),
                         "seconds": time.perf_counter() - began}
        print(f"{name}: {inputs} inputs, {results[name]['crashes']} crashes, {dict(done)}", flush=True)
    summary = {"seed": seed, "inputs_per_target": inputs, "targets": results,
               "crashes": sum(r["crashes"] for r in results.values()), "seconds": time.perf_counter() - started}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fuzz.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="Mutated inputs per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", action="append", choices=TARGETS,
                        help="Fuzz only this target (repeatable); all by default")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    r = run(args.inputs, args.seed, args.target or list(TARGETS), args.out)
    print(f"{r['crashes']} crashes in {r['inputs_per_target']:,} inputs for each of {len(r['targets'])} targets "
          f"({r['seconds']:.0f} s); results in {args.out / 'fuzz.json'}")


if __name__ == "__main__":
    main()
