"""How S3 failures are told apart: transient ones are retried, permanent ones become clear errors.

botocore already retries each request (standard mode: 5xx, throttling, dropped connections).
A multipart upload is many requests over a long time, so on top of that each part and the final
commit retry with exponential backoff until a deadline: an endpoint that goes away for a few
seconds mid-upload costs a pause, not the upload.
"""

import random
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from storage.errors import StoreUnavailableError

T = TypeVar("T")

# ConditionalRequestConflict: a concurrent conditional write to the same key; AWS asks to retry.
_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "Throttling",
                    "ThrottlingException", "RequestTimeout", "ConditionalRequestConflict"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden",
                 "403", "AllAccessDisabled", "AccountProblem"}
_CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError,
                      ReadTimeoutError, ResponseStreamingError)


def error_code(exc: ClientError) -> str:
    """The S3 error code of a ClientError ('NoSuchKey', '412', ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: Exception) -> bool:
    """Whether retrying later may succeed."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in _TRANSIENT_CODES or status >= 500
    return False


def unavailable(exc: Exception, *, url: str, endpoint: str) -> StoreUnavailableError:
    """A user-facing error for a failure that retrying did not or will not fix."""
    where = f"{url} (endpoint {endpoint})"
    if isinstance(exc, NoCredentialsError):
        return StoreUnavailableError(
            f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "or pass access_key/secret_key")
    if isinstance(exc, _CONNECTION_ERRORS):
        return StoreUnavailableError(
            f"cannot reach the S3 endpoint for {where}: {exc}; check that the server is up "
            "and the endpoint URL is right")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code == "NoSuchBucket":
            return StoreUnavailableError(
                f"the bucket of {where} does not exist: create it, or fix the store URL")
        if code in _DENIED_CODES:
            return StoreUnavailableError(
                f"access to {where} was denied ({code}): check the credentials, that their policy "
                "allows this (`bahen store policy`: a party writes only its own keys) and that the "
                "host's store_party is the party they belong to")
        return StoreUnavailableError(f"S3 request to {where} failed ({code}): {exc}")
    if isinstance(exc, BotoCoreError):
        return StoreUnavailableError(f"S3 request to {where} failed: {exc}")
    raise TypeError(f"not an S3 failure: {exc!r}") from exc


def with_retries(call: Callable[[], T], *, deadline_s: float, base_s: float = 0.2,
                 cap_s: float = 5.0) -> T:
    """Run ``call``, retrying transient failures with jittered exponential backoff.

    The last failure propagates once the deadline is past or a failure is permanent.
    """
    give_up_at = time.monotonic() + deadline_s
    attempt = 0
    while True:
        try:
            return call()
        except (BotoCoreError, ClientError) as exc:
            delay = min(cap_s, base_s * 2 ** attempt) * (0.5 + random.random() / 2)
            if not is_transient(exc) or time.monotonic() + delay > give_up_at:
                raise
            time.sleep(delay)
            attempt += 1
