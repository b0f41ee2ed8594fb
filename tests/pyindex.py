"""A real package index for the tests: PEP 503 simple pages over HTTP (http.server in a
thread), optionally behind basic auth, logging every request path; and wheels and sdists
made by hand."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def wheel(folder: Path, name: str, version: str, body: str = "", requires_python: str = "") -> Path:
    """A pure-Python wheel of ``name`` holding ``<name>/__init__.py`` with ``body``."""
    dist = f"{name}-{version}"
    requires = f"Requires-Python: {requires_python}\n" if requires_python else ""
    files = {
        f"{name}/__init__.py": (body or f"WHO = {name!r}\n").encode(),
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},{len(b)}\n" for n, b in files.items())
    record += f"{dist}.dist-info/RECORD,,\n"
    path = folder / f"{dist}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
        z.writestr(f"{dist}.dist-info/RECORD", record)
    return path


def sdist(folder: Path, name: str, version: str, setup_py: str, files: dict[str, str] | None = None) -> Path:
    """An sdist whose setup.py is ``setup_py`` (it runs when anything builds it), or that
    holds ``files`` (a pyproject.toml and its modules) instead."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}.tar.gz"
    members = dict(files) if files is not None else {"setup.py": setup_py}
    with tarfile.open(path, "w:gz") as tf:
        for rel, text in {**members, "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Index:
    def __init__(self, files: Path, url: str, requests: list[str]) -> None:
        self.files = files
        self.url = url
        self.requests = requests


def build_requirements(cache: Path) -> list[Path]:
    """Wheels of hatchling and what it needs (a project's build requirements), downloaded
    once into ``cache``: a private index in a test serves them as a real one mirrors them."""
    import subprocess
    import sys

    wheels = sorted(cache.glob("*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--dest", str(cache), "hatchling"], check=True)
        wheels = sorted(cache.glob("*.whl"))
    return wheels


@contextmanager
def serve(files: Path, auth: tuple[str, str] | None = None, protect: str = "", misstate: dict[str, str] | None = None) -> Iterator[Index]:
    """Serve ``files`` (distribution files) as a PEP 503 index at ``<url>`` (the simple root);
    with ``auth``, the paths that hold ``protect`` (all, when it is empty) need basic auth;
    ``misstate`` lists a file with another sha256 than its own (a file swapped after listing)."""
    import secrets

    requests: list[str] = []
    prefix = "idx-" + secrets.token_hex(4)  # every server's URLs are its own (a port is reused; a cache keyed by URL must not mix them)
    token = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else ""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET(head=True)

        def do_GET(self, head: bool = False) -> None:
            requests.append(self.path)
            guarded = not protect or protect in self.path.replace("-", "_").lower()
            if token and guarded and self.headers.get("Authorization") != token:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="index"')
                self.end_headers()
                return
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts[:1] != [prefix]:
                self.send_response(404)
                self.end_headers()
                return
            parts = parts[1:]
            body: bytes | None = None
            ctype = "text/html"
            if parts[:1] == ["simple"] and len(parts) == 2:
                project = parts[1].lower().replace("_", "-")
                links = [
                    f'<a href="/{prefix}/files/{f.name}#sha256={(misstate or {}).get(f.name) or sha256(f)}">{f.name}</a>'
                    for f in sorted(files.iterdir())
                    if f.name.lower().replace("_", "-").startswith(project + "-")
                ]
                body = ("<html><body>" + "".join(links) + "</body></html>").encode() if links else None
            elif parts[:1] == ["files"] and len(parts) == 2 and (files / parts[1]).is_file():
                body, ctype = (files / parts[1]).read_bytes(), "application/octet-stream"
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Cache-Control", "no-store")  # a test index's answers change between tests; a resolver's cache must not keep them
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Index(files, f"http://127.0.0.1:{server.server_address[1]}/{prefix}/simple", requests)
    finally:
        server.shutdown()
        server.server_close()
