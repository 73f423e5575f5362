"""A readable summary of an order in the terminal."""

from rich.console import Console
from rich.table import Table

from bahen.records import OrderRecord

ETH = 10**18


def print_summary(record: OrderRecord, console: Console) -> None:
    """Stages and durations, the verdict and its reasons, the payments, the artifact hashes."""
    console.print(f"\n[bold]order[/] {record.order_id}  [bold]status[/] {record.status}")
    stages = Table("stage", "seconds", title="stages")
    for t in record.timings:
        stages.add_row(t.stage, f"{t.seconds:.2f}")
    console.print(stages)
    if record.training:
        tr = record.training
        console.print(f"trained {tr.steps} steps in {tr.seconds:.1f} s, final loss {tr.final_loss:.4f}, "
                      f"root {tr.merkle_root[:16]}… committed in block {tr.commit_block}")
    if record.scores:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in record.scores.accuracy.items())
        console.print(f"holdout accuracy: {scores} (median {record.scores.median_accuracy:.4f})")
    if record.verdict:
        colour = "green" if record.verdict.accepted else "red"
        console.print(f"[bold {colour}]verdict: {'accepted' if record.verdict.accepted else 'rejected'}[/]")
        for reason in record.verdict.reasons:
            console.print(f"  {reason}", highlight=False)
    if record.settled:
        pay = Table("party", "ETH", title="settlement")
        for address, wei in record.settled.payouts_wei.items():
            pay.add_row(f"paid {address}", f"{wei / ETH:.6f}")
        for address, wei in record.settled.slashed_wei.items():
            pay.add_row(f"slashed {address}", f"-{wei / ETH:.6f}")
        pay.add_row("refunded to the client", f"{record.settled.refund_wei / ETH:.6f}")
        console.print(pay)
    artifacts = Table("artifact", "sha256", "bytes", title="artifacts")
    for label, ref in record.artifacts():
        artifacts.add_row(label, ref.sha256, f"{ref.size:,}")
    console.print(artifacts)
