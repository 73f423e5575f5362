"""Shared fixtures: the embedded defaults and the real servers the tests start
(S3 on loopback, anvil, a Prefect devnet), and how `pytest -n` shares the tests out."""

from xdist.scheduler import LoadScopeScheduling

pytest_plugins = ["tests.embedded", "tests.s3server", "tests.anvil"]

# Packages whose package-scoped fixture starts a service all their modules share: the devnet.
SHARED_PACKAGES = ("tests/integration/prefect",)


class ModuleScheduling(LoadScopeScheduling):
    """Hands each worker process whole modules, and a package that shares one service as a single unit,
    so module- and package-scoped fixtures start once per run."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return next((p for p in SHARED_PACKAGES if module.startswith(p + "/")), module)


def pytest_xdist_make_scheduler(config, log):
    """`pytest -n N` (`make test`) shares the tests out by :class:`ModuleScheduling`; an explicit `--dist`
    mode other than xdist's default keeps its own scheduler."""
    return ModuleScheduling(config, log) if config.getvalue("dist") == "load" else None
