"""The order summary's telemetry: thinned per device for the record, plotted in the summary."""

import io
import math

from proof.telemetry import TelemetrySample
from storage.refs import ArtifactRef

from bahen.orders import OrderBook
from bahen.records import OrderRecord, Training
from bahen.spec import OrderSpec
from tasks.report import summary_markdown
from tasks.train import thinned


def _samples(count: int, devices: int = 1, source: str = "nvml") -> list[TelemetrySample]:
    return [TelemetrySample(time=1000.0 + i, source=source, device=d, utilization_pct=50.0 + d,
                            memory_used_bytes=(1 + d) << 30, memory_total_bytes=8 << 30)
            for i in range(count) for d in range(devices)]


def test_thinning_keeps_every_device_evenly_and_in_order():
    kept = thinned(_samples(1000, devices=2), per_device=240)
    for device in (0, 1):
        times = [s.time for s in kept if s.device == device]
        assert 200 <= len(times) <= 240 and times == sorted(times) and times[0] == 1000.0
    assert thinned(_samples(10), per_device=240) == _samples(10)


def _record(telemetry: list[TelemetrySample]) -> OrderRecord:
    ref = ArtifactRef(name="x", md5="0" * 32, sha256="0" * 64, size=1)
    training = Training(order_id="0x" + "ab" * 32, task=0, worker="0x" + "11" * 20, bundle=ref, merkle_root="00",
                        commit_block=1, final_model=ref, steps=3, final_loss=0.5, losses=[1.0, 0.7, 0.5],
                        seconds=2.0, telemetry=telemetry)
    return OrderRecord(order_id=training.order_id, spec=OrderSpec(), status="settled", training=training)


def test_summary_plots_gpu_and_host_telemetry():
    gpu = summary_markdown(_record(_samples(5, devices=2)))
    assert "## Telemetry" in gpu and "NVML, per GPU" in gpu and "![telemetry plot](data:image/png;base64," in gpu
    host = summary_markdown(_record(_samples(5, source="os")))
    assert "the whole host's CPU and memory" in host


def test_summary_of_a_training_without_telemetry_has_no_telemetry_section():
    assert "## Telemetry" not in summary_markdown(_record([]))


def test_a_training_that_logged_no_step_keeps_its_nan_loss_in_the_order_record(tmp_path):
    """A final loss of NaN (no step logged) and infinite losses are written as strings a reader takes back,
    not as the null it would refuse (tests/flows/test_run_parameters.py: the same through a run's parameters)."""
    record = _record([])
    record = record.model_copy(update={"training": record.training.model_copy(
        update={"final_loss": math.nan, "losses": [math.inf, -math.inf, math.nan]})})
    book = OrderBook(tmp_path)
    book.save(record)
    assert '"final_loss":"NaN"' in (tmp_path / f"{record.order_id}.json").read_text().replace(" ", "")
    loaded = book.load(record.order_id).training
    assert math.isnan(loaded.final_loss) and loaded.losses[:2] == [math.inf, -math.inf] and math.isnan(loaded.losses[2])


def test_figures_no_axis_can_hold_leave_out_their_plot_not_the_summary():
    record = _record(_samples(5))
    wild = record.model_copy(update={"training": record.training.model_copy(update={"losses": [1e308, -1e308]})})
    summary = summary_markdown(wild)
    assert "(no loss curve: the worker's figures cannot be drawn: " in summary
    assert "![telemetry plot](data:image/png;base64," in summary  # the other plot stands


def test_a_summary_prints_other_parties_words_as_they_are_never_as_markup():
    from rich.console import Console

    from bahen.records import Scores
    from bahen.summary import print_summary

    record = _record([]).model_copy(update={"status": "settled [/] [bold]", "scores": Scores(
        order_id="0x" + "ab" * 32, reports={}, accuracy={"[/]": 0.9}, loss={"[/]": 0.3}, median_accuracy=0.9,
        outliers=[])})
    out = Console(file=io.StringIO(), width=200, record=True)  # a console that reads markup
    print_summary(record, out)
    text = out.export_text()
    assert "status settled [/] [bold]" in text and "holdout accuracy: [/] 0.9000" in text
