"""The architecture, pinned: domain packages import nothing above them and no orchestration, and
the import graph between them has no cycle (training never imports proof)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ("privacy", "storage", "training", "proof", "contracts")
ABOVE = ("bahen", "tasks", "flows", "prefect", "bench")
# What each domain package may import of the others: training and proof form one direction only.
ALLOWED = {
    "privacy": set(),
    "storage": {"privacy"},
    "contracts": set(),
    "training": set(),
    "proof": {"privacy", "storage", "training"},
}


def _imports(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` with the top-level packages it imports (in functions too)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package", DOMAIN)
def test_a_domain_package_imports_nothing_above_it(package):
    wrong = {module: sorted(names & set(ABOVE)) for module, names in _imports(package).items() if names & set(ABOVE)}
    assert not wrong, f"{package} imports orchestration or the layers above it: {wrong}"


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_import_each_other_in_one_direction(package):
    others = set(DOMAIN) - {package}
    wrong = {module: sorted((names & others) - ALLOWED[package])
             for module, names in _imports(package).items() if (names & others) - ALLOWED[package]}
    assert not wrong, f"{package} imports {wrong}; allowed: {sorted(ALLOWED[package]) or 'none'}"


def test_flows_only_compose_tasks():
    wrong = {module: sorted(names & set(DOMAIN)) for module, names in _imports("flows").items() if names & set(DOMAIN)}
    assert not wrong, f"flows reach past tasks into domain packages: {wrong}"
