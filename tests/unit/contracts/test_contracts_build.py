"""The committed artifacts are exactly what the pinned toolchain compiles from the sources."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from contracts.abi import ARTIFACTS_DIR

ROOT = Path(__file__).resolve().parents[3]


def test_toolchain_versions_are_pinned_exactly():
    deps = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    assert all(version[0].isdigit() for version in deps.values()), deps
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    assert lock["node_modules/solc"]["version"] == deps["solc"]
    assert lock["node_modules/@openzeppelin/contracts"]["version"] == deps["@openzeppelin/contracts"]
    for path in ARTIFACTS_DIR.glob("*.json"):
        compiler = json.loads(path.read_text())["compiler"]
        assert compiler["version"].startswith(deps["solc"] + "+"), path.name
        assert compiler["settings"]["evmVersion"] == "prague", path.name


@pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "solc").exists(),
    reason="needs node and `npm ci`",
)
def test_recompiling_reproduces_the_committed_artifacts():
    result = subprocess.run(
        ["node", "contracts/build.mjs", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "match a fresh compile" in result.stdout
