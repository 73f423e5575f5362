"""Mutation scores per module from ``mutmut results --all true`` on stdin (``make mutation`` pipes it).

A mutant counts as killed when the tests failed or timed out on it; the score is killed over all
mutants run. Mutants not run (filtered out by ``make mutation MUTANTS=...``) are left out.
"""

import re
import sys
from collections import Counter, defaultdict

_LINE = re.compile(r"^\s*(?P<module>[\w.]+?)\.x(?:ǁ\w+ǁ|_)\w+__mutmut_\d+: (?P<status>.+)$")
KILLED = {"killed", "timeout"}
NOT_RUN = {"not checked", "skipped"}


def scores(lines) -> dict[str, Counter]:
    """Per module, how many mutants ended in each status."""
    by_module: dict[str, Counter] = defaultdict(Counter)
    for line in lines:
        match = _LINE.match(line)
        if match and match["status"] not in NOT_RUN:
            by_module[match["module"]][match["status"]] += 1
    return by_module


def main() -> None:
    table = scores(sys.stdin)
    print(f"{'module':34} {'mutants':>8} {'killed':>7} {'survived':>9} {'other':>6} {'score':>7}")
    for module, counts in sorted(table.items()):
        total = sum(counts.values())
        killed = sum(counts[s] for s in KILLED)
        other = total - killed - counts["survived"]
        print(f"{module:34} {total:8} {killed:7} {counts['survived']:9} {other:6} {killed / total:7.1%}")


if __name__ == "__main__":
    main()
