"""The health probe against real HTTP servers that misbehave (#23 item 3, bad input): a
redirect is judged as it is (never followed), a server that drips its answer fails within
the attempt's timeout, a flood is read to its first MiB only, a proxy in the environment
is never used; tcp and command checks; retries and interval."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from release.agent.service_ops import probe, service_env

pytestmark = pytest.mark.unit


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/ok")
            self.end_headers()
        elif self.path == "/drip":
            self.send_response(200)
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/flood":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"a" * (2 << 20) + b"NEEDLE")
        else:
            body = b"app 2.4.0"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@contextmanager
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def http_check(port: int, path: str, **more: object) -> dict[str, object]:
    return {"name": "web", "kind": "http", "url": f"http://127.0.0.1:{port}{path}", "retries": 0, "interval": 0, "timeout": 1, **more}


def test_http_answers_are_judged_as_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9/")  # a proxy that is not there: never used
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9/")
    env = service_env(str(tmp_path), str(tmp_path))
    with server() as port:
        ok = probe(http_check(port, "/version", contains="2.4.0"), str(tmp_path), env)  # type: ignore[arg-type]
        assert ok["status"] == "passed" and ok["attempts"] == 1, ok
        moved = probe(http_check(port, "/moved"), str(tmp_path), env)  # type: ignore[arg-type]
        assert moved["status"] == "failed" and "status 301, expected 200" in moved["detail"], "a redirect is not followed"
        assert probe(http_check(port, "/moved", status=301), str(tmp_path), env)["status"] == "passed"  # type: ignore[arg-type]
        t0 = time.monotonic()
        drip = probe(http_check(port, "/drip"), str(tmp_path), env)  # type: ignore[arg-type]
        assert drip["status"] == "failed" and "no complete answer within 1s" in drip["detail"] and time.monotonic() - t0 < 3
        flood = probe(http_check(port, "/flood", contains="NEEDLE"), str(tmp_path), env)  # type: ignore[arg-type]
        assert flood["status"] == "failed" and "lacks 'NEEDLE'" in flood["detail"], "only the first MiB is read"


def test_retries_tcp_and_command(tmp_path: Path) -> None:
    env = service_env(str(tmp_path), str(tmp_path))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    t0 = time.monotonic()
    closed = probe({"name": "t", "kind": "tcp", "address": f"127.0.0.1:{port}", "retries": 2, "interval": 0.2, "timeout": 1}, str(tmp_path), env)
    assert closed["status"] == "failed" and closed["attempts"] == 3 and 0.4 <= time.monotonic() - t0 < 3
    with server() as up:
        assert probe({"name": "t", "kind": "tcp", "address": f"127.0.0.1:{up}", "timeout": 1}, str(tmp_path), env)["status"] == "passed"
    (tmp_path / "probe.sh").write_text("#!/bin/sh\necho checked in $PWD\nexit 3\n")
    (tmp_path / "probe.sh").chmod(0o755)
    bad = probe({"name": "c", "kind": "command", "argv": ["./probe.sh"], "timeout": 5}, str(tmp_path), env)
    assert bad["status"] == "failed" and "exit code 3" in bad["detail"] and f"checked in {tmp_path}" in bad["detail"]
    hang = probe({"name": "c", "kind": "command", "argv": ["sleep", "30"], "timeout": 0.3}, str(tmp_path), env)
    assert hang["status"] == "failed" and "timed out after 0.3s" in hang["detail"]
