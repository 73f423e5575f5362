"""pytest fixtures: a real S3-protocol server (moto's standalone server) on loopback.

Load with ``pytest_plugins = ["tests.s3server"]``. moto checks credentials and IAM users' policies
only inside ``moto.core.authorization.enable_iam_authentication()``, evaluates no policy conditions
or bucket policies, and fakes object-lock retention loosely: those need AWS or MinIO to be tested.
"""

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from moto.server import ThreadedMotoServer

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class _Listener:
    """One moto server on a fixed loopback port, whose stop also drops live connections.

    ``ThreadedMotoServer.stop`` leaves keep-alive connections served and the port bound; an
    outage must refuse new connections and reset the open ones, as a crashed server would.
    """

    def __init__(self, port: int) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        self._connections: set[socket.socket] = set()
        server = self._moto._server
        serve = server.process_request

        def track(request: socket.socket, client_address: tuple) -> None:
            self._connections.add(request)
            serve(request, client_address)

        server.process_request = track
        self.port = self._moto.get_host_and_port()[1]

    def stop(self) -> None:
        server = self._moto._server
        self._moto.stop()
        server.server_close()
        for connection in list(self._connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        self._connections.clear()


@dataclass
class S3Server:
    """A running S3 endpoint with one bucket; ``env`` holds what boto3 and dvc need."""

    endpoint_url: str
    bucket: str
    url: str
    env: dict[str, str]
    _listener: _Listener | None = field(repr=False)
    _port: int = field(repr=False)
    _switch: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fresh_url(self) -> str:
        """A new, empty prefix in the bucket: ``s3://bucket/<random>``."""
        return f"s3://{self.bucket}/{uuid.uuid4().hex[:12]}"

    def client(self):
        """A boto3 client for direct access to the server (bypassing the store)."""
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        """Take the endpoint down: new connections are refused, open ones reset."""
        with self._switch:
            if self._listener is not None:
                self._listener.stop()
                self._listener = None

    def start(self) -> None:
        """Bring the endpoint back on the same port; stored objects survive the outage."""
        with self._switch:
            if self._listener is None:
                self._listener = _Listener(self._port)

    def restart_after(self, delay_s: float) -> threading.Timer:
        """Start the endpoint again ``delay_s`` seconds from now, in the background."""
        timer = threading.Timer(delay_s, self.start)
        timer.start()
        return timer


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto S3 server on 127.0.0.1 for the whole test session, with a bucket ready."""
    # Empty AWS config files, so a developer's real profile never leaks into the tests.
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    env = {**CREDENTIALS, "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        listener = _Listener(0)
        endpoint = f"http://127.0.0.1:{listener.port}"
        server = S3Server(endpoint_url=endpoint, bucket="bahen-test",
                          url="s3://bahen-test/artifacts", env=env,
                          _listener=listener, _port=listener.port)
        server.client().create_bucket(Bucket=server.bucket)
        try:
            yield server
        finally:
            server.stop()
