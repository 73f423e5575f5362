"""The contracts' economic parameters from ``contracts/economics.yaml``, and the stake the
Proof-of-Train benchmark says they must demand.

A worker that skips a share ``i`` of its work keeps ``i × payment`` and is caught with probability
``p``; it then loses ``slash_bps`` of its stake. Cheating does not pay when
``p × slash × stake ≥ i × payment``, so the market demands ``stake ≥ coverage × payment`` with
``coverage = i / (p × slash)`` for the weakest decisive attack measured at ``i = 1%``.
"""

import math
from pathlib import Path
from typing import Literal

import yaml

from contracts.models import ChainParams

ECONOMICS = Path(__file__).with_name("economics.yaml")
INTENSITY = 0.01


def chain_params(profile: Literal["deployment", "devnet"] = "deployment") -> ChainParams:
    """The parameters of ``profile``: the deployment's values with the profile's overrides."""
    table = yaml.safe_load(ECONOMICS.read_text())
    values = {name: entry["value"] for name, entry in table["deployment"].items()}
    if profile != "deployment":
        values |= {name: entry["value"] for name, entry in table[profile].items()}
    return ChainParams(**values)


def required_coverage_bps(pot: dict, slash_bps: int) -> tuple[int, str]:
    """Least ``stake_coverage_bps`` that makes every decisive attack of a ``bench.pot`` result
    unprofitable at 1% intensity, and the attack that sets it.

    ``p_detect`` is the larger of the measured detection rate and the exact spot-check probability,
    as the benchmark reports it. An attack never detected at 1% makes every stake insufficient.
    """
    worst, name = 0.0, ""
    for row in pot["attacks"]:
        if row["evidence"] != "decisive" or row["intensity"] != INTENSITY or row["rate"] is None:
            continue
        p = max(row["rate"], row.get("spot_check_probability") or 0.0)
        if p == 0:
            raise ValueError(f"{row['attack']} was never detected at 1% intensity: no stake makes it unprofitable")
        coverage = INTENSITY / (p * slash_bps / 10_000)
        if coverage > worst:
            worst, name = coverage, row["attack"]
    return math.ceil(worst * 10_000), name
