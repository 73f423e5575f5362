"""A real browser on the Prefect UI: the order deployment's run form and a finished order's artifacts.

Debian's headless Chromium (`apt-get install -y chromium`) loads each page, dumps the rendered DOM and
takes a screenshot under the test's tmp dir; the form fields and the artifacts must be on the page.
``BAHEN_SCREENSHOT_DIR=docs`` also copies the form's screenshot there (the README shows it).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.prefect.devnet import api

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--window-size=1400,2000",
    "--virtual-time-budget=20000",  # let the single-page app fetch and render before the dump
]
FORM_FIELDS = ("Dataset", "Model", "Learning rate", "Epochs", "Workers", "Validators scoring the final model", "Most the client pays")


def render(url: str, shot: Path, tmp_path: Path) -> str:
    """The DOM of ``url`` after rendering, with a screenshot saved to ``shot``."""
    profile = tmp_path / f"profile-{shot.stem}"
    for action in (f"--screenshot={shot}", "--dump-dom"):
        done = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", action, url], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot of {url}"
    return done.stdout


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    return CHROMIUM


def test_order_run_form_shows_every_order_field(browser, devnet, tmp_path):
    deployment = api(devnet, "GET", "/deployments/name/order/order")
    shot = tmp_path / "ui-order-form.png"
    dom = render(f"{devnet.ui_url}/deployments/deployment/{deployment['id']}/run", shot, tmp_path)
    missing = [field for field in FORM_FIELDS if field not in dom]
    assert not missing, f"the order form lacks {missing}; screenshot {shot}"
    assert "Samples per step — at least 1, at most 4,096" in dom, f"the form shows no bounds; screenshot {shot}"
    assert 'Property is type "None"' not in dom, f"an optional field offers None as a type; screenshot {shot}"
    if target := os.environ.get("BAHEN_SCREENSHOT_DIR"):  # e.g. docs, to refresh the README's picture
        shutil.copyfile(shot, Path(target) / "ui-order-form.png")


def test_finished_order_shows_its_summary_and_checks(browser, devnet, finished_order, tmp_path):
    artifacts = api(devnet, "POST", "/artifacts/filter", artifacts={"flow_run_id": {"any_": [finished_order]}})
    keyed = {(a["key"] or "").split("-")[0]: a for a in artifacts}
    assert {"order", "checks"} <= set(keyed), f"artifacts of the order: {sorted(keyed)}"
    summary = render(f"{devnet.ui_url}/artifacts/artifact/{keyed['order']['id']}", tmp_path / "summary.png", tmp_path)
    for text in ("Work verdict: accepted", "Model report", "it never slashes", "Credits and debits", "task payment",
                 "Artifacts (sha256 of stored bytes)", "loss curve", "telemetry plot"):
        assert text in summary, f"the order summary lacks {text!r}; screenshot {tmp_path / 'summary.png'}"
    checks = render(f"{devnet.ui_url}/artifacts/artifact/{keyed['checks']['id']}", tmp_path / "checks.png", tmp_path)
    for text in ("integrity", "initialization", "threshold", "observed", "✓ passed", "weak evidence never rejects alone",
                 "max relative error of logged against recomputed loss"):
        assert text in checks, f"the checks table lacks {text!r}; screenshot {tmp_path / 'checks.png'}"
