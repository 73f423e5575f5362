"""What the client sees of an order in Prefect: a markdown summary with the loss and telemetry plots.

The plots are rendered to PNG and embedded in the summary as data URLs, so the Prefect UI shows
them without serving files.
"""

import base64
import io
import math
from collections.abc import Callable

from matplotlib.figure import Figure
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from proof.telemetry import TelemetrySample
from proof.wasp import ModelReport

from bahen.records import OrderRecord
from tasks.audit import explain
from tasks.runtime import order_book

ETH = 10**18
PLOTTED_DEVICES = 16  # the worker's telemetry may name any number of devices: a line and a legend entry each


def loss_plot_png(losses: list[float], *, title: str, holdout: ModelReport | None = None) -> bytes:
    """A PNG of the per-step training loss, with the validators' median holdout loss beside it."""
    fig, ax = _figure()
    ax.plot(range(len(losses)), losses, linewidth=1, label="training loss (the worker's log)")
    if holdout is not None and math.isfinite(holdout.median_loss):
        ax.axhline(holdout.median_loss, color="tab:orange", linestyle="--", linewidth=1,
                   label=f"holdout loss {holdout.median_loss:.3f}, perplexity {holdout.perplexity:.3g} (validators)")
        ax.legend(loc="upper right", fontsize="small")
    ax.set(xlabel="step", ylabel="loss", title=title)
    return _png(fig)


def telemetry_plot_png(samples: list[TelemetrySample], *, title: str) -> bytes:
    """A PNG of utilisation (left axis) and memory in use (right axis) per device over the training, of the first
    :data:`PLOTTED_DEVICES` devices (3,200 took a minute to draw)."""
    fig, ax = _figure()
    memory_ax = ax.twinx()
    start = min(s.time for s in samples)
    unit = "GPU" if samples[0].source == "nvml" else "host CPU"
    for device in sorted({s.device for s in samples})[:PLOTTED_DEVICES]:
        series = [s for s in samples if s.device == device]
        seconds = [s.time - start for s in series]
        name = f"GPU {device}" if unit == "GPU" else "host"
        ax.plot(seconds, [s.utilization_pct for s in series], linewidth=1, label=f"{name} utilisation")
        memory_ax.plot(seconds, [s.memory_used_bytes / 2**30 for s in series], linewidth=1, linestyle="--",
                       label=f"{name} memory")
    ax.set(xlabel="seconds", ylabel=f"{unit} utilisation (%)", ylim=(0, 105), title=title)
    memory_ax.set(ylabel="memory in use (GiB)")
    ax.legend(loc="lower left", fontsize="small")
    memory_ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def _figure():
    # The object API draws without pyplot's global state or a GUI backend, safe in task threads.
    fig = Figure(figsize=(6, 3), dpi=100, layout="tight")
    ax = fig.add_subplot()
    ax.grid(alpha=0.3)
    return fig, ax


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def eth(wei: int) -> str:
    return f"{wei / ETH:.6f} ETH"


def summary_markdown(record: OrderRecord) -> str:
    """The order's summary: stages and durations, verdict and reasons, payments, artifact hashes."""
    lines = [f"# Order `{record.order_id}`", "", f"**Status:** {record.status}", "", "## Stages", "",
             "| stage | seconds |", "|---|---:|"]
    lines += [f"| {t.stage} | {t.seconds:.2f} |" for t in record.timings]
    if record.verdict:
        lines += ["", f"## Work verdict: {record.work_verdict}", "",
                  "Decided by the Proof of Train, the signatures and the commitments alone; it alone pays or slashes.", ""]
        lines += [f"- {reason}" for reason in record.verdict.reasons]
        report = record.verdict.model_report
        lines += ["", "## Model report", "", "Evidence for the client: it never slashes.", "",
                  f"- median holdout accuracy {report.median_accuracy:.4f} (chance {report.chance_accuracy:.4f}), "
                  f"loss {report.median_loss:.4f}, perplexity {report.perplexity:.3f}{report.input_blind_note()}"]
        lines += [f"- {line}" for line in explain(report.findings)]
    if record.settled:
        lines += ["", "## Credits and debits", "", "| account | kind | ETH |", "|---|---|---:|"]
        lines += [f"| {c.account} | {c.kind} | {eth(c.amount)} |" for c in record.settled.credits]
        lines += [f"| {x.member} | slashed | -{eth(x.amount)} |" for x in record.settled.slashes]
    if record.delivery:
        lines += ["", "## Model delivered", "",
                  f"The model key was released to the client by validator `{record.delivery.validator}` once the "
                  f"accepted verdict was final: `bahen model get {record.order_id} --out model.pt`."]
    elif any(t.stage == "deliver" for t in record.timings):
        lines += ["", "## No model delivered", "", "The work was rejected and its payment refunded."]
    lines += ["", "## Artifacts (sha256 of stored bytes)", ""]
    for label, ref in record.artifacts():
        lines.append(f"- {label}: `{ref.sha256}` ({ref.size:,} bytes)")
    if record.training and record.training.losses:
        lines += ["", "## Loss", "", _embedded("loss curve", lambda: loss_plot_png(
            record.training.losses, title="training and holdout loss",
            holdout=record.verdict.model_report if record.verdict else None))]
    if record.training and record.training.telemetry:
        samples = record.training.telemetry
        source = "NVML, per GPU" if samples[0].source == "nvml" else "the OS: the whole host's CPU and memory, no GPU seen"
        lines += ["", "## Telemetry", "", f"Sampled by the worker through {source}; the proof holds every sample.", "",
                  _embedded("telemetry plot", lambda: telemetry_plot_png(samples, title="hardware during training"))]
    return "\n".join(lines)


def _embedded(alt: str, draw: Callable[[], bytes]) -> str:
    """The plot ``draw`` makes, as a Markdown image; the worker reported the figures drawn, and figures no axis
    can hold (a loss of 1e308 beside -1e308) leave the plot out, never the summary."""
    try:
        png = draw()
    except (ValueError, ArithmeticError) as exc:
        return f"(no {alt}: the worker's figures cannot be drawn: {exc})"
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def checks_markdown(checks: list[dict], *, order_id: str, task: int) -> str:
    """The verifier's checks as a table narrow enough to read in the Prefect UI, with what each measures and
    found listed below it."""
    lines = [f"## Proof-of-Train checks of task {task}", "", f"Order `{order_id[:18]}…`", "",
             "| check | verdict | observed | threshold |", "|---|---|---:|---:|"]
    for c in checks:
        verdict = ("✓ passed" if c["passed"] else "✗ failed") + ("" if c["decisive"] else " (weak evidence)")
        lines.append(f"| {c['name']} | {verdict} | {c['observed']:.4g} | {c['threshold']:.4g} |")
    lines += ["", "A check passes when what it observed is at most its threshold; weak evidence never rejects alone.", ""]
    lines += [f"- **{c['name']}** ({c['metric']}): {c['detail']}" for c in checks]
    return "\n".join(lines)


@task(name="report", cache_policy=NO_CACHE)
def report_task(order_id: str) -> OrderRecord:
    """Prefect task: publish the order's summary artifact and return its record."""
    record = order_book().load(order_id)
    create_markdown_artifact(
        key=f"order-{order_id[2:14]}", markdown=summary_markdown(record), description=f"Summary of order {order_id}"
    )
    return record
