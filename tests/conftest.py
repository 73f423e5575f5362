"""Shared fixtures: the embedded defaults and the real servers the tests start
(S3 on loopback, anvil, a Prefect devnet), and how `pytest -n` shares the tests out."""

from pathlib import Path

import pytest

pytest_plugins = ["tests.embedded", "tests.s3server", "tests.anvil"]

ROOT = Path(__file__).resolve().parent.parent

# Packages whose package-scoped fixture starts a service all their modules share: the devnet, whose
# orders spend most of their time waiting on its parties' processes.
SHARED_PACKAGES = ("tests/integration/prefect",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n N --dist loadgroup` (`make test`) a worker process takes a whole module, or a whole
    package that shares one service, so module- and package-scoped fixtures start once per run. The shared
    packages come first: the longest group starts at once, while the other workers share out the rest."""
    def group(item: pytest.Item) -> str:
        module = item.path.resolve().relative_to(ROOT).as_posix()
        return next((p for p in SHARED_PACKAGES if module.startswith(p + "/")), module)

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: group(item) not in SHARED_PACKAGES)
