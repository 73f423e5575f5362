"""A readable summary of an order in the terminal."""

from contracts.models import Ledger, OrderView
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bahen.records import OrderRecord

ETH = 10**18


def print_summary(record: OrderRecord, console: Console) -> None:
    """Stages and durations, the verdict and its reasons, the payments, the artifact hashes."""
    console.print(Text.assemble("\n", ("order", "bold"), f" {record.order_id}  ", ("status", "bold"), f" {record.status}"))
    stages = Table("stage", "seconds", title="stages")
    for t in record.timings:
        stages.add_row(t.stage, f"{t.seconds:.2f}")
    console.print(stages)
    if record.training:
        tr = record.training
        on = f" on {tr.processes} processes" if tr.processes > 1 else ""
        console.print(f"trained {tr.steps} steps{on} in {tr.seconds:.1f} s, final loss {tr.final_loss:.4f}, "
                      f"root {tr.merkle_root[:16]}… committed in block {tr.commit_block}", markup=False)
    if record.scores:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in record.scores.accuracy.items())
        console.print(f"holdout accuracy: {scores} (median {record.scores.median_accuracy:.4f})", markup=False)
    if record.verdict:
        colour = "green" if record.verdict.accepted != record.overturned else "red"
        console.print(Text.assemble((f"work verdict: {record.work_verdict}", f"bold {colour}"),
                                    " (the Proof of Train alone; it pays or slashes)"))
        for reason in record.verdict.reasons:
            console.print(f"  {reason}", highlight=False, markup=False)
        report = record.verdict.model_report
        console.print(Text.assemble(
            ("model report", "bold"), " (evidence for the client, never a slash): median holdout accuracy "
            f"{report.median_accuracy:.4f} (chance {report.chance_accuracy:.4f}), loss {report.median_loss:.4f}, "
            f"perplexity {report.perplexity:.3f}{report.input_blind_note()}"), highlight=False)
        for finding in report.findings:
            console.print(f"  {'✓' if finding.passed else '!'} {finding.rule}: {finding.detail}", highlight=False,
                          markup=False)
    if record.settled:
        ledger = Table("account", "kind", "ETH", title="credits and debits (chain events)")
        for c in record.settled.credits:
            ledger.add_row(c.account, c.kind, f"{c.amount / ETH:.6f}")
        for x in record.settled.slashes:
            ledger.add_row(x.member, "slashed", f"-{x.amount / ETH:.6f}")
        console.print(ledger)
    if record.delivery:
        console.print(f"model delivered: key released to the client by validator {record.delivery.validator} "
                      f"(`bahen model get {record.order_id} --out model.pt`)", markup=False)
    elif any(t.stage == "deliver" for t in record.timings):
        console.print(Text.assemble(("no model delivered", "bold"), ": the work was rejected and its payment refunded"))
    artifacts = Table("artifact", "sha256", "bytes", title="artifacts")
    for label, ref in record.artifacts():
        artifacts.add_row(label, ref.sha256, f"{ref.size:,}")
    console.print(artifacts)


def print_chain_order(view: OrderView, ledger: Ledger, console: Console) -> None:
    """What anyone can read of an order from the chain alone: its client, escrow and deadline, each
    task's drawn worker, commitment, verdict and disputes, each validator slot, and every credit and slash
    (`bahen dispute show` has each dispute's panel and votes)."""
    console.print(Text.assemble("\n", ("order", "bold"), f" {view.order_id}  ", ("status", "bold"), f" {view.status} (on chain)"))
    console.print(f"client {view.client}, spec hash {view.spec_hash}, escrow {view.escrow / ETH:.6f} ETH "
                  f"({view.allocated / ETH:.6f} allocated), deadline {view.deadline} (unix time), "
                  f"commit window {view.commit_window} s", highlight=False)
    tasks = Table("task", "worker", "payment ETH", "committed root", "verdict", "disputes",
                  title="tasks (drawn by the chain)")
    for t in view.tasks:
        verdict = t.verdict
        if t.verdict != t.wasp_verdict:
            verdict += f", overturned by a dispute (Wasp's: {t.wasp_verdict})"
        tasks.add_row(str(t.task), t.worker, f"{t.payment / ETH:.6f}", t.root if t.commit_block else "—", verdict,
                      str(t.disputes))
    console.print(tasks)
    slots = Table("validator", "fee ETH", "reported", "overturned", title="validators (drawn by the chain)")
    for v in view.validators:
        slots.add_row(v.validator, f"{v.fee / ETH:.6f}", "yes" if v.reported else "no", "yes" if v.overturned else "no")
    console.print(slots)
    if ledger.credits or ledger.slashes:
        moved = Table("account", "kind", "ETH", title="credits and debits (chain events)")
        for c in ledger.credits:
            moved.add_row(c.account, c.kind, f"{c.amount / ETH:.6f}")
        for x in ledger.slashes:
            moved.add_row(x.member, "slashed", f"-{x.amount / ETH:.6f}")
        console.print(moved)
