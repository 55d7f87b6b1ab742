"""Helpers of the boto3 tests: environments written to a scratch folder, boto3 pointed at the
moto server, and clients under botocore's Stubber for the few calls moto does not implement."""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
import yaml

from fermion.stacks.aws_lookups import Aws


@pytest.fixture
def aws(moto: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """boto3 pointed at the moto server, and no Pulumi backend chosen by the user."""
    for key, value in moto.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    return moto


def write_env(
    folder: Path, name: str, region: str, environment: dict[str, Any] | None = None
) -> Path:
    """A Pulumi.<name>.yaml in `folder`; the environment object is small unless given."""
    if environment is None:
        environment = {
            "network": {"availability_zones": 2, "nat": "single", "interface_endpoints": []},
            "node_pools": [{"name": "gpu", "shape": "gpu.l4", "size": {"min": 0, "max": 2}}],
        }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"Pulumi.{name}.yaml"
    document = {"config": {"aws:region": region, "fermion:environment": environment}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def unique(prefix: str) -> str:
    """A bucket name no other test uses: the moto server lives for the whole session."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Stubbed:
    """A real boto3 client whose every call is answered by botocore's Stubber, in order."""

    def __init__(self, service: str, region: str) -> None:
        import boto3
        from botocore.stub import Stubber

        self.client = boto3.session.Session().client(service, region_name=region)
        self.stubber = Stubber(self.client)

    def answer(self, method: str, response: dict[str, Any], **params: Any) -> Stubbed:
        self.stubber.add_response(method, response, params or None)
        return self

    def fail(self, method: str, code: str, status: int = 400, message: str = "") -> Stubbed:
        self.stubber.add_client_error(
            method, service_error_code=code, service_message=message, http_status_code=status
        )
        return self


def with_stubs(region: str, **stubs: Stubbed) -> Aws:
    """An Aws on moto, except for the services given, whose clients answer from their stubs."""
    for stub in stubs.values():
        stub.stubber.activate()
    return Aws(region, clients={name.replace("_", "-"): s.client for name, s in stubs.items()})


@contextmanager
def stubbed_aws(region: str, **stubs: Stubbed) -> Iterator[Aws]:
    """`with_stubs`, checking at the end that every stubbed answer was asked for."""
    try:
        yield with_stubs(region, **stubs)
        for stub in stubs.values():
            stub.stubber.assert_no_pending_responses()
    finally:
        for stub in stubs.values():
            stub.stubber.deactivate()


class MotoProxy(BaseHTTPRequestHandler):
    """Forwards every request to the moto server at `upstream` and records its method and path
    in `requests`. A subclass injects faults by answering `fault()`: "500" answers an S3 error,
    "drop" closes the connection unanswered, "truncate" sends half the body and closes."""

    upstream: ClassVar[str] = ""
    requests: ClassVar[list[tuple[str, str]]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def fault(self) -> str | None:
        return None

    def _forward(self) -> None:
        with self.lock:
            self.requests.append((self.command, urlsplit(self.path).path))
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length) if length else None
        fault = self.fault()
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "500":
            self.send_response(500)
            payload = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(str(target.hostname), target.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = target.netloc
        connection.request(self.command, self.path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault == "truncate" and len(data) > 2:
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


@contextmanager
def proxy(handler: type[MotoProxy], upstream: str) -> Iterator[str]:
    """`handler` serving on loopback in front of `upstream`, with a fresh request log; its URL."""
    handler.upstream = upstream
    handler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
