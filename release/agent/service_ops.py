"""What runs on the target after ``current`` switches: the restart (``[service] restart``, an
argv run in the release folder, bounded by ``[service] timeout``) and the health checks
(``[[health.check]]``: http fetched from the target itself, tcp, command), each attempt
bounded, journalled as ``restart ok`` / ``restart failed`` and ``health passed`` / ``health
failed``. A promote whose restart or health checks fail goes back (``pointer_ops``)."""

from __future__ import annotations

import os
import sys
import threading
import time

from . import journal
from .children import clean_env, expand, run_bounded, with_default_signals
from .names import checked_id, version_ok
from .protocol import say
from .release_tree import read_deploy_manifest

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from .messages import HealthResult, HealthSpec, RestartResult, ServiceResult, ServiceSpec

MAX_BODY = 1 << 20  # bytes of an http answer read to look for ``contains``
OUTPUT_TAIL = 16 << 10  # bytes of a restart's output kept
DETAIL = 2000  # characters of a check's answer reported


def service_env(root: str, release: str) -> dict[str, str]:
    """The restart's and the command checks' environment: the agent's allowlist, the release's
    own environment first on PATH (when it carries one), and where it all is."""
    env = clean_env()
    venv = os.path.join(release, ".venv")
    if os.path.isdir(os.path.join(venv, "bin")):
        env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env["PATH"]
        env["VIRTUAL_ENV"] = venv
    env.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",
            "RELEASE_ROOT": root,
            "RELEASE_DIR": release,
            "RELEASE_CURRENT": os.path.join(root, "current"),
        }
    )
    return env


def release_python(release: str) -> str:
    venv_python = os.path.join(release, ".venv", "bin", "python")
    return venv_python if os.path.exists(venv_python) else sys.executable


def restart(argv: list[str], release: str, env: dict[str, str], timeout: float) -> RestartResult:
    """Run the restart in the release folder; a restart that outlives ``timeout`` is killed
    with its process group (what it started in a session of its own, the application, stays)."""
    python = release_python(release)
    full = [expand(a, python, release) for a in argv]
    try:
        code, out, ran = run_bounded(with_default_signals(full), release, env, timeout, sweep=False, tail=OUTPUT_TAIL)
    except OSError as exc:
        return {"argv": full, "status": "error", "exit": None, "seconds": 0.0, "output": f"cannot run {full[0]}: {exc.strerror or exc}"}
    status = "timeout" if code is None else ("ok" if code == 0 else "failed")
    return {"argv": full, "status": status, "exit": code, "seconds": round(ran, 3), "output": out[-OUTPUT_TAIL:]}


def _within(fn: Callable[[], tuple[bool, str]], timeout: float) -> tuple[bool, str]:
    """``fn()`` with a hard bound on its whole duration (a socket timeout bounds each read,
    not a server that drips one byte at a time): past it, the attempt failed."""
    box: list[tuple[bool, str]] = []

    def run() -> None:
        try:
            box.append(fn())
        except Exception as exc:  # an attempt that failed in a way not foreseen is a failed attempt
            box.append((False, f"{type(exc).__name__}: {exc}"))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else (False, f"no complete answer within {timeout:g}s")


def _http(check: HealthSpec, timeout: float) -> tuple[bool, str]:
    """One GET with the standard library's HTTP client: no proxy, no redirect followed (the
    answer itself is checked), the body read to its first MiB."""
    import http.client
    from urllib.parse import urlsplit

    url = check["url"]
    want = int(check.get("status", 200))
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    try:
        conn = conn_cls(parts.hostname or "", parts.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "release-health-check", "Connection": "close"})
            resp = conn.getresponse()
            code, body = resp.status, resp.read(MAX_BODY)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, f"{url}: no answer ({type(exc).__name__}: {exc})"
    text = body.decode("utf-8", "replace")
    if code != want:
        return False, f"{url}: status {code}, expected {want}: {text[:200]!r}"
    contains = check.get("contains")
    if contains is not None and contains not in text:
        return False, f"{url}: status {code}, but the answer lacks {contains!r}: {text[:200]!r}"
    return True, f"{url}: status {code}" + (f", shows {contains!r}" if contains is not None else "")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    host, _sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _tcp(check: HealthSpec, timeout: float) -> tuple[bool, str]:
    import socket

    address = check["address"]
    try:
        with socket.create_connection(split_address(address), timeout=timeout):
            return True, f"{address} accepts connections"
    except OSError as exc:
        return False, f"{address}: {exc.strerror or exc}"


def _command(check: HealthSpec, release: str, env: dict[str, str], timeout: float) -> tuple[bool, str]:
    python = release_python(release)
    argv = [expand(a, python, release) for a in check["argv"]]
    try:
        code, out, _ran = run_bounded(argv, release, env, timeout, tail=DETAIL)
    except OSError as exc:
        return False, f"cannot run {argv[0]}: {exc.strerror or exc}"
    if code is None:
        return False, f"timed out after {timeout:g}s\n{out.strip()}"
    return code == 0, f"exit code {code}\n{out.strip()}"


def probe(check: HealthSpec, release: str, env: dict[str, str]) -> HealthResult:
    """One health check: attempts until one passes, at most ``1 + retries``, ``interval``
    seconds apart, each bounded by ``timeout``."""
    kind = check["kind"]
    timeout = float(check.get("timeout", 5))
    attempts = 1 + int(check.get("retries", 0))
    t0 = time.monotonic()
    ok, detail, n = False, "", 0
    for n in range(1, attempts + 1):
        if kind == "http":
            ok, detail = _within(lambda: _http(check, timeout), timeout)
        elif kind == "tcp":
            ok, detail = _within(lambda: _tcp(check, timeout), timeout)
        elif kind == "command":
            ok, detail = _command(check, release, env, timeout)
        else:
            ok, detail = False, f"unknown health check kind {kind!r}"
            break
        if ok or n == attempts:
            break
        time.sleep(float(check.get("interval", 1)))
    name = check.get("name") or kind
    seconds = round(time.monotonic() - t0, 3)
    return {"name": name, "kind": kind, "status": "passed" if ok else "failed", "attempts": n, "seconds": seconds, "detail": detail[-DETAIL:]}


def _identity(release: str, fallback: str) -> tuple[str, str]:
    """The release's deploy id and version, from its DEPLOY-MANIFEST."""
    try:
        manifest = read_deploy_manifest(release)
        version = str(manifest.get("version", ""))
        return checked_id(str(manifest.get("deploy_id", ""))), version if version_ok(version) else ""
    except Exception:  # the journal names the release by its path too: an unreadable manifest does not stop the restart
        return fallback, ""


def _uses_version(check: HealthSpec) -> bool:
    return any("{version}" in str(v) for v in (check.get("url"), check.get("contains"), *check.get("argv", ())))


def for_version(check: HealthSpec, version: str) -> HealthSpec:
    """The check with ``{version}`` filled in with the release's own version (in ``url``,
    ``contains`` and ``argv``): the same checks prove the old release after a revert."""
    out: HealthSpec = {**check}
    if "url" in out:
        out["url"] = out["url"].replace("{version}", version)
    if "contains" in out:
        out["contains"] = out["contains"].replace("{version}", version)
    if "argv" in out:
        out["argv"] = [a.replace("{version}", version) for a in out["argv"]]
    return out


def _import_http_client() -> None:
    try:
        import http.client  # noqa: F401  # imported ahead: see bring_up
    except ImportError:  # then the check's own import says why
        pass


def bring_up(root: str, rel: str, spec: ServiceSpec, req: Mapping[str, Any], fallback_id: str, phase: str = "") -> ServiceResult:
    """Restart (if configured), then the health checks (if the restart passed), for the release
    ``rel`` (relative to ``root``) that ``current`` now points at; each journalled."""
    if spec.get("restart") and any(c.get("kind") == "http" for c in spec.get("checks", [])) and "http.client" not in sys.modules:
        # http.client (with the ssl and email modules it imports: 20 ms of CPU) is imported
        # while the restart runs, not after it: the first attempt follows the restart at once
        threading.Thread(target=_import_http_client, daemon=True).start()
    release = os.path.join(root, rel)
    deploy_id, version = _identity(release, fallback_id)
    env = service_env(root, release)
    facts: dict[str, Any] = {"release": rel, **({"phase": phase} if phase else {})}
    started: RestartResult | None = None
    if spec.get("restart"):
        say(f"restart: {' '.join(spec['restart'])}" + (f" ({phase})" if phase else ""))
        started = restart(list(spec["restart"]), release, env, float(spec.get("timeout", 60)))
        event = "restart ok" if started["status"] == "ok" else "restart failed"
        journal.append(root, event, deploy_id, req, exit=started["exit"], status=started["status"], seconds=started["seconds"], **facts)
        if started["status"] != "ok":
            return {"release": rel, "restart": started, "health": [], "ok": False}
    results: list[HealthResult] = []
    for check in spec.get("checks", []):
        say(f"health: {check.get('name') or check['kind']}" + (f" ({phase})" if phase else ""))
        if not version and _uses_version(check):  # never judged with the version left out: any release would pass
            why = "the release's DEPLOY-MANIFEST names no version (unreadable, or not a version): a check with {version} cannot be judged"
            name = check.get("name") or check["kind"]
            results.append({"name": name, "kind": check["kind"], "status": "failed", "attempts": 0, "seconds": 0.0, "detail": why})
        else:
            results.append(probe(for_version(check, version), release, env))
        if results[-1]["status"] != "passed":
            break  # the release is not healthy: the checks after it would not change that
    if results:
        passed = all(r["status"] == "passed" for r in results)
        summary = [{"name": r["name"], "status": r["status"], "attempts": r["attempts"]} for r in results]
        journal.append(root, "health passed" if passed else "health failed", deploy_id, req, checks=summary, **facts)
    return {"release": rel, "restart": started, "health": results, "ok": all(r["status"] == "passed" for r in results)}
