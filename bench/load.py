"""Many orders at once on a devnet whose Prefect server keeps its database in PostgreSQL: how many
settle, whether any run is lost, and how long an order takes under load against one order alone.

Starts a devnet as an operator would (``bahen up --postgres`` with ``--workers`` worker and
``--validators`` validator parties, each with its own home and Prefect worker process) in a
temporary home, runs one order alone (the baseline; it also warms the pools), then submits
``--orders`` orders at once from the client's home through the SDK and follows each to its end. An
order *settled* when its run completed, the client's record says it was accepted and delivered, and
the chain holds its settlement; a run is *lost* when any flow run on the server (orders and their
stages) did not end Completed. Latency is from the order run's creation to its end, as the Prefect
server recorded them. The devnet is stopped at the end, whatever happened.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

from bench.pot import RESULTS
from bahen.client import Client, Order
from bahen.devnet_services import free_port, load_state
from bahen.network import connect
from bahen.parties import CLIENT
from bahen.spec import OrderSpec

SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1, batch_size=32, checkpoint_every=8, validators=2)
BAHEN = str(Path(sys.executable).with_name("bahen"))
ACCEPTED = "settled (accepted), model delivered"


def _seconds(run: dict) -> float:
    created, ended = (datetime.fromisoformat(run[k]) for k in ("created", "end_time"))
    return (ended - created).total_seconds()


def _api(url: str, method: str, path: str, **body):
    response = requests.request(method, f"{url}{path}", json=body or None, timeout=60)
    response.raise_for_status()
    return response.json()


def _all_runs(url: str) -> list[dict]:
    runs, page = [], 200
    while batch := _api(url, "POST", "/flow_runs/filter", limit=page, offset=len(runs)):
        runs += batch
        if len(batch) < page:
            break
    return runs


def _follow(orders: list[Order], timeout: float) -> None:
    """Wait for every order's run to end, printing each as it does."""
    deadline, left = time.monotonic() + timeout, list(orders)
    while left and time.monotonic() < deadline:
        for order in [o for o in left if o.done]:
            left.remove(order)
            print(f"  {len(orders) - len(left)}/{len(orders)} {order.order_id[:14]}: {order.status}", flush=True)
        time.sleep(2)


def _settled(client: Client, order: Order) -> bool:
    with client.acting() as settings:
        on_chain = connect(settings).market.settlement_of(bytes.fromhex(order.order_id[2:])) is not None
    return on_chain and order.status == ACCEPTED


def run(orders: int, workers: int, validators: int, timeout: float, out_dir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bahen-load-") as home:
        env = {**os.environ, "BAHEN_HOME": home, "BAHEN_SCRYPT_N": str(2**12), "PREFECT_WORKER_QUERY_SECONDS": "1"}
        started = time.perf_counter()
        subprocess.run([BAHEN, "up", "--postgres", "--workers", str(workers), "--validators", str(validators),
                        "--prefect-port", str(free_port()), "--anvil-port", str(free_port())], env=env, check=True)
        try:
            state = load_state(Path(home))
            print(f"devnet up in {time.perf_counter() - started:.0f} s (Prefect on PostgreSQL)", flush=True)
            client = Client(home=Path(home) / "parties" / CLIENT)
            alone = client.submit(SPEC)
            _follow([alone], timeout)
            batch_started = time.perf_counter()
            placed = [client.submit(SPEC) for _ in range(orders)]
            print(f"{orders} orders submitted in {time.perf_counter() - batch_started:.1f} s", flush=True)
            _follow(placed, timeout)
            batch_s = time.perf_counter() - batch_started
            url = state.prefect_api_url
            latencies = [_seconds(_api(url, "GET", f"/flow_runs/{o.flow_run_id}")) for o in placed if o.done]
            baseline = _seconds(_api(url, "GET", f"/flow_runs/{alone.flow_run_id}"))
            runs = _all_runs(url)
            settled = sum(_settled(client, o) for o in placed)
        finally:
            subprocess.run([BAHEN, "down"], env=env, check=False)
    if not latencies:
        raise SystemExit(f"none of the {orders} orders ended within {timeout:.0f} s (--timeout)")
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    result = {
        "database": "postgresql", "workers": workers, "validators": validators, "orders": orders,
        "settled": settled, "unfinished": orders - len(latencies),
        "flow_runs": len(runs), "lost_runs": sum(r["state_type"] != "COMPLETED" for r in runs),
        "lost": [f"{r['name']}: {r['state_type']}" for r in runs if r["state_type"] != "COMPLETED"],
        "alone_s": baseline, "median_s": statistics.median(latencies), "p95_s": q[18],
        "median_over_alone": statistics.median(latencies) / baseline, "p95_over_alone": q[18] / baseline,
        "batch_s": batch_s, "orders_per_minute": 60 * len(latencies) / batch_s,
        "throughput_over_alone": len(latencies) * baseline / batch_s,  # against orders run one after another
        "spec": SPEC.model_dump(mode="json", include={"dataset", "model", "epochs", "batch_size", "checkpoint_every", "validators"}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "load.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20, help="Orders submitted at once")
    parser.add_argument("--workers", type=int, default=4, help="Worker parties (each a Prefect worker process)")
    parser.add_argument("--validators", type=int, default=3, help="Validator parties (each a Prefect worker process)")
    parser.add_argument("--timeout", type=float, default=3600, help="Seconds to wait for the orders")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    r = run(args.orders, args.workers, args.validators, args.timeout, args.out)
    print(f"{r['settled']} of {r['orders']} orders settled, {r['lost_runs']} of {r['flow_runs']} runs lost; latency median "
          f"{r['median_s']:.0f} s ({r['median_over_alone']:.2f}x one order alone, {r['alone_s']:.0f} s), p95 {r['p95_s']:.0f} s "
          f"({r['p95_over_alone']:.2f}x); {r['orders_per_minute']:.2f} orders/min ({r['throughput_over_alone']:.2f}x one "
          f"after another); results in {args.out / 'load.json'}")


if __name__ == "__main__":
    main()
