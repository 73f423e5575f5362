"""Gas benchmark: every user-facing call of the bahen contracts and a whole order's lifecycle.

Gas is deterministic, so one run suffices; the baseline measured in the same run is a plain ether
transfer (21,000 gas), and every figure is also given as a multiple of it. The lifecycle opens an
order with ``tasks`` tasks and ``validators`` validator slots, has the chain draw them, commits every proof, has the order's verifier
(its first validator) submit a verification report per task and every validator a performance
report per task, accepts all tasks but the last
(which is rejected and slashed), waits out the dispute window, settles, and lets every payee
withdraw. A dispute (open, draw the resolvers, record the case, two votes that close it) is measured on its own, and
so is how a draw's gas grows with the members that registered and left: a draw of one worker and
one validator after ``abandoned`` workers and as many validators registered with the least stake and
unbonded it, as a multiple of the same draw before any did.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from eth_account import Account
from eth_utils import keccak

from contracts.chain import Chain
from contracts.client import Bahen
from contracts.economics import chain_params

RESULTS = Path(__file__).with_name("results") / "gas.json"
ETHER = 10**18
PARAMS = chain_params().model_copy(
    update={"stake_wei_per_gflop": 10**14, "min_validator_stake": 10**16, "unbonding_delay": 3_600,
            "dispute_window": 60, "resolution_period": 60}
)
RESOLVERS = 3
GFLOPS = 1_000


def _account(name: str):
    return Account.from_key(keccak(text=f"bahen gas bench {name}"))


def _gas_used(chain: Chain, call: Callable[[], object]) -> int:
    """Gas of every transaction mined while `call` runs (one or more blocks)."""
    start = chain.block_number()
    call()
    total = 0
    for number in range(start + 1, chain.block_number() + 1):
        for tx in chain.w3.eth.get_block(number)["transactions"]:
            total += chain.w3.eth.get_transaction_receipt(tx)["gasUsed"]
    return total


class _Recorder:
    """Measures calls, keeps the first figure per name and the lifecycle total."""

    def __init__(self, chain: Chain):
        self.chain = chain
        self.calls: dict[str, int] = {}
        self.lifecycle = 0

    def __call__(self, name: str, fn: Callable, *args, lifecycle: bool = True, **kwargs):
        result = None

        def call() -> None:
            nonlocal result
            result = fn(*args, **kwargs)

        gas = _gas_used(self.chain, call)
        self.calls.setdefault(name, gas)
        if lifecycle:
            self.lifecycle += gas
        return result


def _lifecycle(chain: Chain, rec: _Recorder, tasks: int, validators: int) -> tuple[Bahen, object]:
    deployer, wasp, treasury, client = (_account(n) for n in ("deployer", "wasp", "treasury", "client"))
    workers = [_account(f"worker {i}") for i in range(tasks)]
    checkers = [_account(f"validator {i}") for i in range(validators + RESOLVERS)]
    for acct in [deployer, wasp, treasury, client, *workers, *checkers]:
        chain.fund(acct.address, 10 * ETHER)
    b = rec(
        "deploy (registry + market + bind)",
        Bahen.deploy,
        chain,
        deployer,
        wasp=wasp.address,
        treasury=treasury.address,
        params=PARAMS,
        lifecycle=False,
    )
    for i, w in enumerate(workers):
        rec(
            "register_worker",
            b.register_worker,
            w,
            x25519_public=keccak(text=f"w{i}"),
            declared_gflops=GFLOPS,
            stake=b.required_stake(GFLOPS),
            lifecycle=False,
        )
    for i, v in enumerate(checkers):
        rec(
            "register_validator",
            b.register_validator,
            v,
            x25519_public=keccak(text=f"v{i}"),
            stake=PARAMS.min_validator_stake,
            lifecycle=False,
        )
    by_address = {a.address: a for a in [*workers, *checkers]}
    salt = keccak(text="gas bench order")
    oid = rec(
        "open_order",
        b.open_order,
        client,
        salt=salt,
        spec_hash=keccak(text="spec"),
        escrow=ETHER,
        deadline=chain.now() + 3_600,
        commit_window=1_800,
    )
    for _ in range(tasks):
        rec("add_task", b.add_task, client, order_id=oid, payment=ETHER // (2 * tasks))
    for _ in range(validators):
        rec("add_validator", b.add_validator, client, order_id=oid, fee=ETHER // (4 * validators))
    chain.mine(1)  # the seed block of the last slot
    drawn = rec(f"draw ({tasks} workers of {tasks}, {validators} validators of {len(checkers)})", b.draw, client,
                order_id=oid)
    assigned = [by_address[drawn.workers[t]] for t in range(tasks)]
    drawn_validators = [by_address[v] for v in drawn.validators]
    for t, w in enumerate(assigned):
        rec("commit_proof", b.commit_proof, w, order_id=oid, task=t, root=keccak(text=f"root {t}"))
    reports = [(drawn_validators[0], t, 0) for t in range(tasks)]
    reports += [(v, t, 1) for v in drawn_validators for t in range(tasks)]
    for v, t, kind in reports:
        digest = keccak(text=f"report {t} {kind} {v.address}")
        rec(
            "submit_report",
            b.submit_report,
            v,
            order_id=oid,
            task=t,
            kind=kind,
            digest=digest,
            signature=b.sign_report(v, order_id=oid, task=t, kind=kind, digest=digest),
        )
    for t in range(tasks):
        accepted = t < tasks - 1
        rec(
            f"record_verdict ({'accept' if accepted else 'reject'})",
            b.record_verdict,
            wasp,
            order_id=oid,
            task=t,
            accepted=accepted,
            reasons_digest=keccak(text="reasons"),
        )
    chain.increase_time(PARAMS.dispute_window + 1)
    rec(f"settle ({tasks} tasks, {validators} validators)", b.settle, client, order_id=oid)
    for acct in [client, treasury, *assigned[:-1], *drawn_validators]:
        rec("withdraw", b.withdraw, acct)
    _side_calls(chain, rec, b, client, workers[0])
    _dispute(chain, rec, b, client, wasp, by_address, checkers)
    _replacements(chain, rec, b, client, wasp, by_address)
    return b, client


def _draw_with_abandoned(chain: Chain, b: Bahen, client, counts: list[int]) -> list[dict]:
    """The gas of a one-worker, one-validator draw after each count of abandoned registrations per role."""
    rows, registered = [], 0
    for count in counts:
        for i in range(registered, count):
            for role in ("worker", "validator"):
                sybil = _account(f"abandoned {role} {i}")
                chain.fund(sybil.address, ETHER)
                if role == "worker":
                    b.register_worker(sybil, x25519_public=keccak(text=f"a{i}"), declared_gflops=1,
                                      stake=b.required_stake(1))
                else:
                    b.register_validator(sybil, x25519_public=keccak(text=f"a{i}"), stake=PARAMS.min_validator_stake)
                b.request_unbond(sybil, amount=b.stake_of(sybil.address))
        registered = count
        oid = b.open_order(client, salt=keccak(text=f"gas bench draw after {count}"), spec_hash=keccak(text="spec"),
                           escrow=ETHER, deadline=chain.now() + 3_600, commit_window=1_800)
        b.add_task(client, order_id=oid, payment=ETHER // 8)
        b.add_validator(client, order_id=oid, fee=ETHER // 16)
        chain.mine(1)
        gas = _gas_used(chain, lambda: b.draw(client, order_id=oid))
        rows.append({"abandoned": count, "gas": gas, "x_none": round(gas / rows[0]["gas"], 2) if rows else 1.0})
    return rows


def _dispute(chain: Chain, rec: _Recorder, b: Bahen, client, wasp, by_address, validators) -> None:
    """A dispute of an accepted task (no validator slot), drawn and worked as the lifecycle's, upheld by the
    first two resolvers' votes; every other validator may be drawn to resolve it."""
    oid = b.open_order(client, salt=keccak(text="gas bench disputed order"), spec_hash=keccak(text="spec"),
                       escrow=ETHER, deadline=chain.now() + 3_600, commit_window=1_800)
    b.add_task(client, order_id=oid, payment=ETHER // 8)
    worker = by_address[b.draw(client, order_id=oid).workers[0]]
    b.commit_proof(worker, order_id=oid, task=0, root=keccak(text="root"))
    b.record_verdict(wasp, order_id=oid, task=0, accepted=True, reasons_digest=keccak(text="reasons"))
    disputer = validators[0]
    rec("open_dispute", b.open_dispute, disputer, order_id=oid, task=0, counter_digest=keccak(text="counter"),
        bond=PARAMS.dispute_bond, lifecycle=False)
    chain.mine(1)
    drawn = rec(f"draw_resolvers ({PARAMS.resolver_count} of {len(validators) - 1})", b.draw_resolvers, client,
                order_id=oid, task=0, lifecycle=False)
    rec("hand_over", b.hand_over, disputer, order_id=oid, task=0, case_digest=keccak(text="case"), lifecycle=False)
    for name, address in zip(("vote_dispute", "vote_dispute (closes it)"), drawn):
        rec(name, b.vote_dispute, by_address[address], order_id=oid, task=0, uphold=True,
            report_digest=keccak(text=address), lifecycle=False)


def _replacements(chain: Chain, rec: _Recorder, b: Bahen, client, wasp, by_address) -> None:
    """A worker that never commits and then a verifier that never verifies, each replaced by anyone; the next
    verifier's verification voided by Wasp past its scoring window."""
    oid = b.open_order(client, salt=keccak(text="gas bench stalled order"), spec_hash=keccak(text="spec"),
                       escrow=ETHER, deadline=chain.now() + 3_600, commit_window=600)
    b.add_task(client, order_id=oid, payment=ETHER // 8)
    b.add_validator(client, order_id=oid, fee=ETHER // 40)
    chain.mine(1)
    b.draw(client, order_id=oid)
    chain.increase_time(601)
    rec("replace_stalled (a worker)", b.replace_stalled, client, order_id=oid, task=0, lifecycle=False)
    chain.mine(1)
    worker = by_address[b.draw(client, order_id=oid).workers[0]]
    b.commit_proof(worker, order_id=oid, task=0, root=keccak(text="root"))
    chain.increase_time(601)
    rec("replace_stalled (the verifier)", b.replace_stalled, client, order_id=oid, task=0, lifecycle=False)
    chain.mine(1)
    verifier = by_address[b.draw(client, order_id=oid).validators[0]]
    digest = keccak(text="withheld report")
    b.submit_report(verifier, order_id=oid, task=0, kind=0, digest=digest,
                    signature=b.sign_report(verifier, order_id=oid, task=0, kind=0, digest=digest))
    chain.increase_time(601)
    rec("void_verification", b.void_verification, wasp, order_id=oid, task=0, lifecycle=False)


def _side_calls(chain: Chain, rec: _Recorder, b: Bahen, client, worker) -> None:
    """Calls outside the happy lifecycle: cancellation, top-up and unbonding."""
    oid = b.open_order(client, salt=keccak(text="gas bench cancelled order"), spec_hash=keccak(text="spec"),
                       escrow=ETHER, deadline=chain.now() + 3_600, commit_window=1_800)
    rec("cancel_order", b.cancel_order, client, order_id=oid, lifecycle=False)
    rec("add_stake", b.add_stake, worker, amount=1, lifecycle=False)
    rec("request_unbond", b.request_unbond, worker, amount=1, lifecycle=False)
    chain.increase_time(PARAMS.unbonding_delay + 1)
    rec("withdraw_unbonded", b.withdraw_unbonded, worker, lifecycle=False)


def run(rpc_url: str | None = None, tasks: int = 4, validators: int = 2, abandoned: tuple[int, ...] = (0, 64, 512)) -> dict:
    """Measure gas on a fresh in-process EVM (or `rpc_url`); write and return the results."""
    chain = Chain.connect(rpc_url) if rpc_url else Chain.in_process()
    payer, payee = _account("baseline payer"), _account("baseline payee")
    chain.fund(payer.address, ETHER)
    tx = {
        "to": payee.address,
        "value": 1,
        "gas": 21_000,
        "nonce": 0,
        "chainId": chain.chain_id,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
    }
    baseline = _gas_used(chain, lambda: chain.send_signed(payer, tx, "baseline transfer"))
    rec = _Recorder(chain)
    b, client = _lifecycle(chain, rec, tasks, validators)
    scaling = _draw_with_abandoned(chain, b, client, sorted({0, *abandoned}))
    results = {
        "backend": chain.label,
        "tasks": tasks,
        "validators": validators,
        "baseline": {"name": "ether transfer", "gas": baseline},
        "calls": {name: {"gas": gas, "x_transfer": round(gas / baseline, 2)} for name, gas in rec.calls.items()},
        "lifecycle": {
            "gas": rec.lifecycle,
            "x_transfer": round(rec.lifecycle / baseline, 2),
            "per_task": rec.lifecycle // tasks,
        },
        "draw_after_abandoned_registrations": scaling,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    return results


def _print_table(results: dict) -> None:
    print(f"gas on {results['backend']} (baseline: ether transfer = {results['baseline']['gas']:,} gas)")
    print(f"{'call':<40} {'gas':>10} {'x transfer':>11}")
    for name, row in results["calls"].items():
        print(f"{name:<40} {row['gas']:>10,} {row['x_transfer']:>11.2f}")
    life = results["lifecycle"]
    label = f"whole order ({results['tasks']} tasks, {results['validators']} validators)"
    print(f"{label:<40} {life['gas']:>10,} {life['x_transfer']:>11.2f}")
    print(f"{'  per task':<40} {life['per_task']:>10,}")
    for row in results["draw_after_abandoned_registrations"]:
        label = f"draw after {row['abandoned']:,} abandoned per role"
        print(f"{label:<40} {row['gas']:>10,} {row['x_none']:>10.2f}x the draw after none")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-url", help="JSON-RPC endpoint (default: a fresh in-process EVM)")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--validators", type=int, default=2)
    parser.add_argument("--abandoned", type=int, nargs="+", default=[64, 512],
                        help="counts of abandoned registrations per role to measure a draw after (and 0)")
    args = parser.parse_args()
    _print_table(run(args.rpc_url, args.tasks, args.validators, tuple(args.abandoned)))
