import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from storage.errors import StoreUnavailableError
from storage.s3 import split_url
from storage.s3faults import is_transient, unavailable, with_retries


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def test_split_url():
    assert split_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="names no bucket"):
        split_url("s3:///prefix")


@pytest.mark.parametrize(("exc", "transient"), [
    (EndpointConnectionError(endpoint_url="http://x"), True),
    (_client_error("SlowDown", 503), True),
    (_client_error("InternalError", 500), True),
    (_client_error("ConditionalRequestConflict", 409), True),
    (_client_error("NoSuchBucket", 404), False),
    (_client_error("AccessDenied", 403), False),
    (_client_error("PreconditionFailed", 412), False),
])
def test_transient_failures_are_told_apart(exc, transient):
    assert is_transient(exc) is transient


@pytest.mark.parametrize(("exc", "says"), [
    (_client_error("NoSuchBucket", 404), "does not exist: create it"),
    (_client_error("AccessDenied", 403), "denied (AccessDenied): check the credentials"),
    (_client_error("InvalidAccessKeyId", 403), "check the credentials"),
    (EndpointConnectionError(endpoint_url="http://x"), "check that the server is up"),
    (NoCredentialsError(), "set AWS_ACCESS_KEY_ID"),
])
def test_permanent_failures_say_what_to_check(exc, says):
    error = unavailable(exc, url="s3://b/p", endpoint="http://127.0.0.1:9000")
    assert isinstance(error, StoreUnavailableError)
    assert says in str(error) and "s3://b/p" in str(error)


def test_transient_failures_are_retried_until_success():
    failures = [_client_error("SlowDown", 503), EndpointConnectionError(endpoint_url="http://x")]

    def call() -> str:
        if failures:
            raise failures.pop()
        return "done"

    assert with_retries(call, deadline_s=5, base_s=0.001) == "done"
    assert failures == []


def test_permanent_failures_are_not_retried():
    calls = []

    def call() -> None:
        calls.append(1)
        raise _client_error("AccessDenied", 403)

    with pytest.raises(ClientError):
        with_retries(call, deadline_s=5, base_s=0.001)
    assert len(calls) == 1


def test_retries_stop_at_the_deadline():
    calls = []

    def call() -> None:
        calls.append(1)
        raise EndpointConnectionError(endpoint_url="http://x")

    with pytest.raises(EndpointConnectionError):
        with_retries(call, deadline_s=0.05, base_s=0.01, cap_s=0.02)
    assert 2 <= len(calls) <= 10
