"""The command line: every command's --help, the version, and refusals that lose nothing."""

from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner

from bahen.cli import app
from bahen.errors import BahenError


def _commands(group, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    found = {}
    for name, command in group.commands.items():
        found[(*path, name)] = command
        if hasattr(command, "commands"):  # a group of subcommands
            found.update(_commands(command, (*path, name)))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def test_the_command_tree_is_what_the_readme_describes():
    assert {c[0] for c in COMMANDS} >= {"demo", "order", "model", "keys", "chain", "audit", "store", "bench"}
    assert ("audit", "check") in COMMANDS and ("model", "get") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself(command):
    help_text = COMMANDS[command].help
    assert help_text and help_text.strip(), f"{' '.join(command)} has no help"
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="bahen", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.replace("│", " ").split())
    assert f"Usage: bahen {' '.join(command)}" in shown
    assert " ".join(help_text.split("\n\n")[0].replace("`", "").split())[:60] in shown  # code spans shown bare


def test_the_version_is_the_installed_packages():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"bahen {version('bahen')}"


def test_model_get_refuses_to_overwrite_a_file_without_force(tmp_path):
    from bahen.delivery import fetch_model

    out = tmp_path / "model.pt"
    out.write_bytes(b"the client's own file")
    with pytest.raises(BahenError, match="exists; pass --force to overwrite it"):
        fetch_model("0x" + "ab" * 32, out)
    assert out.read_bytes() == b"the client's own file"


def test_a_failed_runs_log_drops_the_traceback_of_a_user_error_only():
    import logging

    from bahen.runner import _NoTracebackForUserErrors
    from training.errors import DatasetError

    def logged(error: Exception) -> logging.LogRecord:
        try:
            raise error
        except Exception as exc:
            record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed: %r", (exc,),
                                       exc_info=(type(exc), exc, exc.__traceback__))
        assert _NoTracebackForUserErrors().filter(record)
        return record

    assert logged(DatasetError("dataset x failed 2 of 8 expectations")).exc_info is None
    assert logged(ZeroDivisionError("a bug")).exc_info is not None


def test_a_quiet_terminal_leaves_the_runs_errors_to_their_caller():
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    from bahen.runner import _QuietConsole, quiet_prefect

    quiet_prefect(verbose=False)
    console = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    assert console and all(any(isinstance(f, _QuietConsole) for f in h.filters) for h in console)
    quiet_prefect(verbose=False)  # once per handler, however often an order starts
    assert all(sum(isinstance(f, _QuietConsole) for f in h.filters) == 1 for h in console)

    def shown(name: str, level: int) -> bool:
        return _QuietConsole().filter(logging.LogRecord(name, level, __file__, 1, "m", (), None))

    assert not shown("prefect.task_runs", logging.ERROR) and not shown("prefect.flow_runs", logging.CRITICAL)
    assert shown("prefect.task_runs", logging.WARNING) and shown("prefect", logging.ERROR) and shown("bahen", logging.ERROR)
    assert not shown("great_expectations.data_context", logging.INFO) and shown("great_expectations", logging.WARNING)


def test_store_policy_prints_a_partys_or_the_buckets_policy_for_the_configured_store(tmp_path, monkeypatch):
    import json

    from storage.policy import bucket_policy, party_policy

    party = "0x" + "ab" * 20
    monkeypatch.setenv("BAHEN_HOME", str(tmp_path))
    monkeypatch.setenv("BAHEN_STORE_URL", "s3://bucket/bahen")
    result = CliRunner().invoke(app, ["store", "policy", party])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == party_policy("s3://bucket/bahen", party)
    result = CliRunner().invoke(app, ["store", "policy", "--bucket"])
    assert json.loads(result.output) == bucket_policy("s3://bucket/bahen")
    for args, refusal in ((["store", "policy"], "either a PARTY address or --bucket"),
                          (["store", "policy", party, "--bucket"], "either a PARTY address or --bucket"),
                          (["store", "policy", "0xab"], "no account address")):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 2 and refusal in result.output
    monkeypatch.setenv("BAHEN_STORE_URL", str(tmp_path / "store"))
    result = CliRunner().invoke(app, ["store", "policy", party])
    assert isinstance(result.exception, BahenError) and "local directory" in str(result.exception)


def test_a_store_party_that_is_no_address_is_refused_by_name(tmp_path, monkeypatch):
    from bahen.settings import SettingsError, load_settings

    monkeypatch.setenv("BAHEN_HOME", str(tmp_path))
    monkeypatch.setenv("BAHEN_STORE_PARTY", "wasp")
    with pytest.raises(SettingsError, match="store_party"):
        load_settings()


def test_chain_status_refuses_an_order_id_of_no_form_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("BAHEN_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["chain", "status", "0x" + "zz" * 32])
    assert isinstance(result.exception, BahenError) and "is not an order id" in str(result.exception)
