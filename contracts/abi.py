"""The committed ABI + bytecode artifacts, and the table of every custom error they declare."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from eth_utils import function_signature_to_4byte_selector

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract as written by `contracts/build.mjs`."""

    name: str
    abi: list[dict]
    bytecode: str


@dataclass(frozen=True)
class ErrorSpec:
    """A custom error: its name and the ABI of its parameters."""

    name: str
    inputs: tuple[dict, ...]

    @property
    def types(self) -> list[str]:
        return [_abi_type(i) for i in self.inputs]


@cache
def load_artifact(name: str) -> Artifact:
    """Loads `contracts/artifacts/<name>.json`; raises FileNotFoundError naming the build command."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"contract artifact {path} is missing: run `npm ci && npm run build:contracts`")
    data = json.loads(path.read_text())
    return Artifact(name=data["contractName"], abi=data["abi"], bytecode=data["bytecode"])


@cache
def error_table() -> dict[bytes, ErrorSpec]:
    """Maps 4-byte selectors to the custom errors of every artifact (reverts bubble across contracts)."""
    table: dict[bytes, ErrorSpec] = {}
    for path in sorted(ARTIFACTS_DIR.glob("*.json")):
        for entry in load_artifact(path.stem).abi:
            if entry["type"] != "error":
                continue
            signature = f"{entry['name']}({','.join(_abi_type(i) for i in entry['inputs'])})"
            table[function_signature_to_4byte_selector(signature)] = ErrorSpec(entry["name"], tuple(entry["inputs"]))
    return table


def _abi_type(param: dict) -> str:
    """Canonical ABI type of a parameter; tuples are spelt out from their components."""
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind
