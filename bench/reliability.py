"""Flipped bytes in every artifact an order pins, against the auditor's re-check: how many are caught and named.

Runs one small order through every stage on a fresh embedded network (in-process chain, local
store in a temporary home), then for each artifact the order pins (splits, manifest, grants, the
signed proof manifest, checkpoints, step log, telemetry, challenge response, revealed states,
reports, verdict) flips one bit at ``--flips`` positions spread over it, one at a time, and runs
``bahen.audit.recheck``: a flip is *detected* when the re-check reports a problem and *named*
when that problem names the artifact. The stored bytes are restored after each flip.
"""

import argparse
import json
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.pot import RESULTS
from storage.store import object_key

from bahen.audit import pinned_artifacts, recheck
from bahen.network import connect
from bahen.records import OrderRecord
from bahen.settings import Settings
from bahen.spec import OrderSpec
from tasks.audit import audit
from tasks.encrypt_upload import encrypt_upload
from tasks.score import score
from tasks.settle import settle
from tasks.shard import shard
from tasks.train import train
from tasks.verify import verify

SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


def settled_order(net) -> OrderRecord:
    """One order through every stage, recorded as the client's run records it."""
    upload = encrypt_upload(SPEC, net, salt="0x" + "be" * 32)
    plan = shard(SPEC, upload, net)
    [assignment] = plan.assignments
    training = train(SPEC, upload, assignment, net)
    verification = verify(SPEC, upload, plan, assignment, training, net)
    scores = score(SPEC, upload, plan, training, net)
    verdict = audit(upload, plan, assignment, training, net)
    settled = settle(upload, net)
    return OrderRecord(order_id=upload.order_id, spec=SPEC, status="settled", upload=upload, shard=plan,
                       training=training, verification=verification, scores=scores, verdict=verdict, settled=settled)


def kind_of(path: str) -> str:
    """The artifact kind of a workspace path: its name without task numbers, steps and party names."""
    folder, name = path.split("/")[0], path.split("/")[-1].removesuffix(".enc").removesuffix(".json")
    if folder == "grants":
        return "grants/key grant"
    name = re.sub(r"^task\d+-", "", re.sub(r"-\d+$", "", name))
    return f"{folder}/{'score' if name.startswith('score-') else name}"


def run(flips: int, out_dir: Path) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        net = connect(Settings(home=Path(home), scrypt_n=2**12))
        record = settled_order(net)
        assert recheck(record, net.store, net.market) == [], "the untouched order must re-check clean"
        kinds: dict[str, dict[str, int]] = defaultdict(lambda: {"artifacts": 0, "tried": 0, "detected": 0, "named": 0})
        for path, ref in pinned_artifacts(record, net.store).items():
            stored = net.store.root / object_key(ref)
            original = stored.read_bytes()
            stored.chmod(0o644)
            counts = kinds[kind_of(path)]
            counts["artifacts"] += 1
            try:
                for i in range(flips):
                    at = i * len(original) // flips
                    stored.write_bytes(original[:at] + bytes([original[at] ^ (1 << i % 8)]) + original[at + 1:])
                    problems = recheck(record, net.store, net.market)
                    counts["tried"] += 1
                    counts["detected"] += bool(problems)
                    counts["named"] += any(path in p or ref.name in p for p in problems)
            finally:
                stored.write_bytes(original)
                stored.chmod(0o444)
    tried = sum(k["tried"] for k in kinds.values())
    result = {
        "store": "local", "flips_per_artifact": flips, "kinds": dict(kinds), "tried": tried,
        "detected": sum(k["detected"] for k in kinds.values()), "named": sum(k["named"] for k in kinds.values()),
        "seconds": time.perf_counter() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "reliability.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flips", type=int, default=20, help="Flipped positions per artifact")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    r = run(args.flips, args.out)
    for kind, k in sorted(r["kinds"].items()):
        print(f"{kind}: {k['artifacts']} artifacts, {k['detected']}/{k['tried']} flips detected, {k['named']} named")
    print(f"re-audit detected {r['detected']} of {r['tried']} flipped bytes and named the artifact in {r['named']} "
          f"({r['seconds']:.0f} s); results in {args.out / 'reliability.json'}")


if __name__ == "__main__":
    main()
