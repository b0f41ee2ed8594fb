"""``[service]`` and ``[[health.check]]``: what makes a promoted release run, parsed once with
bounds, sent to the agent as a :class:`ServiceSpec`, and its answer rendered.

The restart (an argv, no shell) runs on the target in the release folder after ``current``
switches, bounded by ``[service] timeout``; the health checks run after it, from the target
itself. When either fails, the host's ``current`` goes back to the release it replaced, the
restart and the checks run again there, the journal records all of it, and the promote
exits 1 (``release/agent/service_ops.py`` and ``pointer_ops.py`` on the target).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import ConfigError
from .redact import redact
from .schema import Spec, kinded_table

if TYPE_CHECKING:
    from .agent.messages import HealthSpec, RestartResult, ServiceResult, ServiceSpec

HEALTH_COMMON: Spec = {
    "kind": (str, ...),
    "name": (str, None),
    "retries": (int, 5),
    "interval": (object, 1),
    "timeout": (object, 5),
}
HEALTH_KEYS: dict[str, Spec] = {
    "http": {"url": (str, ...), "status": (int, 200), "contains": (str, None)},
    "tcp": {"address": (str, ...)},
    "command": {"argv": (list, ...)},
}
MAX_CHECKS = 50
MAX_WAIT = 3600.0  # seconds one check may take at worst ((1 + retries) x (timeout + interval))
MAX_RESTART = 3600.0


class Service(NamedTuple):
    """``[service]`` plus the health checks: empty (``restart == ()`` and no checks) does nothing."""

    restart: tuple[str, ...] = ()
    timeout: float = 60.0
    checks: tuple[Mapping[str, Any], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.restart or self.checks)

    def spec(self) -> ServiceSpec:
        return {"restart": list(self.restart), "timeout": self.timeout, "checks": [_health_spec(c) for c in self.checks]}

    def worst_seconds(self) -> float:
        """The longest a restart plus its checks can take on one host (a revert runs them twice)."""
        return self.timeout + sum(float((1 + c["retries"]) * (c["timeout"] + c["interval"])) for c in self.checks)


def _health_spec(c: Mapping[str, Any]) -> HealthSpec:
    out: HealthSpec = {"name": c["name"], "kind": c["kind"], "retries": c["retries"], "interval": c["interval"], "timeout": c["timeout"]}
    out.update({k: v for k, v in c.items() if k in ("url", "status", "contains", "address", "argv") and v is not None})  # type: ignore[typeddict-item]
    return out


def _seconds(value: object, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{key} must be a number of seconds from {low:g} to {high:g}, got {value!r}", hint=f"e.g. {key.rsplit('.', 1)[-1]} = 5")
    return float(value)


def _argv(value: Sequence[Any], key: str) -> tuple[str, ...]:
    if not value or not all(isinstance(a, str) for a in value) or not value[0]:
        example = '["systemctl", "reload", "myapp"]'
        raise ConfigError(f"{key} must be a non-empty list of strings (an argv, no shell)", hint=f"e.g. {key.rsplit('.', 1)[-1]} = {example}")
    if any(any(ord(ch) < 32 or ord(ch) == 0x7F for ch in a) for a in value):
        raise ConfigError(f"{key} holds a control character (NUL, newline, ...)", hint=f"fix {key}")
    return tuple(value)


def _url(value: str, where: str) -> str:
    from urllib.parse import urlsplit  # only when a config has an http check

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 2048 or re.search(r"[\s\x00-\x1f\x7f]", value):
        raise ConfigError(f"{where}url must be an http:// or https:// URL with a host, got {value!r}", hint='e.g. url = "http://127.0.0.1:8000/version"')
    try:
        parts.port  # noqa: B018  (a port out of range raises here)
    except ValueError:
        raise ConfigError(f"{where}url has a port out of range: {value!r}", hint="ports are 1 to 65535") from None
    if parts.password is not None:
        raise ConfigError(f"{where}url carries a password: it would be stored and shown", hint="a health endpoint needs no credentials")
    return value


def _address(value: str, where: str) -> str:
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise ConfigError(f"{where}address must be host:port (a port from 1 to 65535), got {value!r}", hint='e.g. address = "127.0.0.1:8000"')
    return value


def _check(index: int, raw: object) -> dict[str, Any]:
    where = f"health.check[{index}]."
    kind, v = kinded_table(raw, where, "health.check", "health check", HEALTH_COMMON, HEALTH_KEYS)
    if not 0 <= v["retries"] <= 1000:
        raise ConfigError(f"{where}retries must be from 0 to 1000, got {v['retries']}", hint="retries = 10")
    v["interval"] = _seconds(v["interval"], where + "interval", 0, 600)
    v["timeout"] = _seconds(v["timeout"], where + "timeout", 0.1, 600)
    worst = (1 + v["retries"]) * (v["timeout"] + v["interval"])
    if worst > MAX_WAIT:
        raise ConfigError(
            f"{where[:-1]} may take {worst:g}s ((1 + retries) x (timeout + interval)): more than {MAX_WAIT:g}s", hint="fewer retries or shorter waits"
        )
    if kind == "http":
        v["url"] = _url(v["url"], where)
        if not 100 <= v["status"] <= 599:
            raise ConfigError(f"{where}status must be an HTTP status (100 to 599), got {v['status']}", hint="status = 200")
        if v["contains"] is not None and not 0 < len(v["contains"]) <= 4096:
            raise ConfigError(f"{where}contains must be 1 to 4096 characters (empty: every answer contains it)", hint='e.g. contains = "2.4.0"')
    elif kind == "tcp":
        v["address"] = _address(v["address"], where)
    else:
        v["argv"] = list(_argv(v["argv"], where + "argv"))
    v["name"] = v["name"] or f"{kind}-{index}"
    if len(v["name"]) > 100:
        raise ConfigError(f"{where}name is longer than 100 characters", hint="a short name for reports")
    return v


def parse(service: Mapping[str, Any], health: Mapping[str, Any], strategy: str, op_timeout: float) -> Service:
    """``[service]`` and ``[health]`` as the config has them (their keys already checked)."""
    restart = _argv(service["restart"], "service.restart") if service["restart"] else ()
    timeout = _seconds(service["timeout"], "service.timeout", 1, MAX_RESTART)
    raw = health["check"]
    if len(raw) > MAX_CHECKS:
        raise ConfigError(f"health.check: {len(raw)} checks, at most {MAX_CHECKS}", hint="check what tells the release serves")
    checks = tuple(_check(i, c) for i, c in enumerate(raw))
    names = [c["name"] for c in checks]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"health.check: the name {dup!r} is used twice", hint="name each check once")
    out = Service(restart, timeout, checks)
    if out and strategy != "timestamped":
        raise ConfigError(
            "[service] restart and [[health.check]] run after `current` switches: the side-by-side strategy has no `current`",
            hint='set target.strategy = "timestamped"',
        )
    if out and 2 * out.worst_seconds() > op_timeout:
        raise ConfigError(
            f"a promote may run the restart and health checks twice (a revert): {2 * out.worst_seconds():g}s, more than target.op_timeout ({op_timeout:g}s)",
            hint="raise target.op_timeout, or shorten service.timeout and the checks' waits",
        )
    return out


# ----------------------------------------------------------------------------- reports


def _restart_line(r: RestartResult | None) -> str:
    if r is None:
        return ""
    said = {"ok": "ok", "failed": f"FAILED (exit {r['exit']})", "timeout": "TIMED OUT (killed)", "error": "could not run"}.get(r["status"], r["status"])
    tail = redact(r["output"].strip())[-800:]
    return f"  restart {' '.join(r['argv'])}: {said} in {r['seconds']:.1f}s" + ("\n    " + tail.replace("\n", "\n    ") if tail and r["status"] != "ok" else "")


def render(result: ServiceResult | None, title: str) -> list[str]:
    """The lines of a restart and its health checks, for the text report."""
    if not result:
        return []
    lines = [f"{title} {result['release']}: {'healthy' if result['ok'] else 'NOT healthy'}"]
    if result["restart"] is not None:
        lines.append(_restart_line(result["restart"]))
    for h in result["health"]:
        lines.append(f"  health {h['name']} ({h['kind']}): {h['status']} after {h['attempts']} attempt(s), {h['seconds']:.1f}s: {redact(h['detail'])[:300]}")
    return lines


def why_failed(result: ServiceResult) -> str:
    """One line: what made a release not healthy."""
    r = result["restart"]
    if r is not None and r["status"] != "ok":
        return f"the restart {'timed out' if r['status'] == 'timeout' else 'failed'} ({' '.join(r['argv'])})"
    bad = next((h for h in result["health"] if h["status"] != "passed"), None)
    return f"health check {bad['name']} failed: {redact(bad['detail'])[:200]}" if bad else "not healthy"
