"""A real HTTP application for the restart and health-check tests: the demo project gains a
WSGI endpoint that reports its version (``/version``; 500 when the commit marks it broken),
a server script (the standard library's WSGI server, or gunicorn from the release's own
environment) and a restart command that signals the running server through its pidfile
(``run/app.pid``, a shared folder, so every release finds the one before it) and starts the
new release's server, waiting until it accepts connections."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .support import Repo

WEB = """import os

from demo_app import __version__

BROKEN = {broken}


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/version" and not BROKEN:
        body = ("demo-app " + __version__ + " pid " + str(os.getpid())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    body = b"broken" if BROKEN else b"not found"
    start_response("500 Internal Server Error" if BROKEN else "404 Not Found", [("Content-Type", "text/plain")])
    return [body]
"""

SERVE = '''"""Serve demo_app.web with the standard library's WSGI server; the pidfile names it."""
import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_app.web import application  # noqa: E402


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


host, port, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
httpd = make_server(host, port, application, handler_class=Quiet)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(pidfile + ".tmp", pidfile)
httpd.serve_forever()
'''

RESTART = '''"""restart.py HOST PORT [gunicorn]: stop the server named by run/app.pid (a signal to it,
then wait until it is gone), start this release's, wait until it accepts connections."""
import os
import signal
import socket
import subprocess
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
server = sys.argv[3] if len(sys.argv) > 3 else "wsgiref"
here = os.path.dirname(os.path.abspath(__file__))
pidfile = os.path.join(here, "run", "app.pid")
try:
    old = int(open(pidfile).read())
except (OSError, ValueError):
    old = 0
def gone(pid):
    """Ended: no such process, or a zombie its new parent has not reaped yet."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


if old:
    try:
        os.kill(old, signal.SIGTERM)
    except ProcessLookupError:
        pass
    end = time.time() + 10
    while time.time() < end and not gone(old):
        time.sleep(0.01)
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass
if server == "gunicorn":
    # from <root>/current (the agent says where): a HUP to the master loads whatever release
    # `current` points at then, in new workers
    chdir = os.environ.get("RELEASE_CURRENT", here)
    argv = [sys.executable, "-m", "gunicorn", "--daemon", "--pid", pidfile, "--workers", "1",
            "--bind", host + ":" + str(port), "--chdir", chdir, "demo_app.web:application"]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
else:
    subprocess.Popen([sys.executable, os.path.join(here, "serve.py"), host, str(port), pidfile],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=here)
end = time.time() + 20
while time.time() < end:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        break
    except OSError:
        time.sleep(0.01)
print("restarted", server, "on", port)
'''


def add_web(repo: Repo, *, broken: bool = False, version: str | None = None, message: str = "web") -> str:
    """Write (or rewrite) the web endpoint, server and restart script; commit; return the sha."""
    if version is not None:
        repo.write("demo_app/__init__.py", f'__version__ = "{version}"\n')
        text = (repo.path / "pyproject.toml").read_text()
        import re

        repo.write("pyproject.toml", re.sub(r'version = "[^"]+"', f'version = "{version}"', text, count=1))
    repo.write("demo_app/web.py", WEB.format(broken=broken))
    repo.write("serve.py", SERVE)
    repo.write("restart.py", RESTART)
    return repo.commit(message)


def stop(pidfile: Path) -> None:
    """Stop the server a test started (through the pidfile its restart wrote)."""
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
