"""``bahen store cleanup-rules`` against the S3 server, and on a local store."""

import pytest
from typer.testing import CliRunner

from bahen.cli import app
from bahen.errors import BahenError

pytestmark = pytest.mark.integration


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BAHEN_HOME", str(tmp_path))
    for name in ("BAHEN_CONFIG", "BAHEN_STORE_URL", "BAHEN_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_rules_are_written_for_the_configured_s3_store(home, s3_server, monkeypatch):
    url = s3_server.fresh_url()
    monkeypatch.setenv("BAHEN_STORE_URL", url)
    monkeypatch.setenv("BAHEN_S3_ENDPOINT_URL", s3_server.endpoint_url)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    client = s3_server.client()
    try:
        result = CliRunner().invoke(app, ["store", "cleanup-rules", "--days", "2"])
        assert result.exit_code == 0, result.output
        prefix = url.rsplit("/", 1)[1]
        assert f"{s3_server.bucket}/{prefix}/staging/" in result.output
        rules = client.get_bucket_lifecycle_configuration(Bucket=s3_server.bucket)["Rules"]
        assert {r["Filter"]["Prefix"] for r in rules} == {f"{prefix}/staging/", f"{prefix}/"}
    finally:
        client.delete_bucket_lifecycle(Bucket=s3_server.bucket)


def test_a_local_store_is_told_the_rules_are_for_s3(home):
    result = CliRunner().invoke(app, ["store", "cleanup-rules"])
    assert isinstance(result.exception, BahenError)
    assert "local directory" in str(result.exception) and "BAHEN_STORE_URL" in str(result.exception)
