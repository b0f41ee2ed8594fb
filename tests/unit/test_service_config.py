"""``[service]`` and ``[[health.check]]`` (#23 items 2-3): parsed once with bounds; every bad
value is exit 2 naming the key, before anything reaches a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from release import config
from release.agent.service_ops import for_version, split_address
from release.errors import ConfigError

pytestmark = pytest.mark.unit

TS: dict[str, Any] = {"name": "app", "source": {"repo": ".", "head": "HEAD"}, "target": {"root": "/srv", "strategy": "timestamped"}}
HTTP = {"kind": "http", "url": "http://127.0.0.1:8000/version"}


def parse(tmp_path: Path, service: dict[str, Any] | None = None, checks: list[Any] | None = None, **target: Any) -> config.Config:
    data: dict[str, Any] = {**TS, "target": {**TS["target"], **target}}
    if service is not None:
        data["service"] = service
    if checks is not None:
        data["health"] = {"check": checks}
    return config.parse(data, tmp_path / "release.toml")


def test_a_service_and_its_checks_become_the_agents_spec(tmp_path: Path) -> None:
    cfg = parse(
        tmp_path,
        {"restart": ["systemctl", "reload", "app"], "timeout": 30},
        [{**HTTP, "contains": "{version}", "retries": 2, "interval": 0.5}, {"kind": "tcp", "address": "[::1]:8000"}, {"kind": "command", "argv": ["true"]}],
    )
    spec = cfg.service.spec()
    assert spec["restart"] == ["systemctl", "reload", "app"] and spec["timeout"] == 30.0
    assert [c["name"] for c in spec["checks"]] == ["http-0", "tcp-1", "command-2"]
    assert spec["checks"][0] == {
        "name": "http-0",
        "kind": "http",
        "url": HTTP["url"],
        "status": 200,
        "contains": "{version}",
        "retries": 2,
        "interval": 0.5,
        "timeout": 5.0,
    }
    assert "contains" not in spec["checks"][1] and spec["checks"][1]["address"] == "[::1]:8000"
    assert cfg.service.worst_seconds() == 30 + 3 * 5.5 + 6 * 6 + 6 * 6
    assert not parse(tmp_path).service, "no [service], no checks: a promote runs nothing"


@pytest.mark.parametrize(
    ("service", "checks", "says"),
    [
        ({"restart": "systemctl reload app"}, None, "'service.restart' must be a list"),
        ({"restart": ["", "x"]}, None, "service.restart must be a non-empty list of strings"),
        ({"restart": ["systemctl", 3]}, None, "service.restart must be a non-empty list of strings"),
        ({"restart": ["sh\n-c"]}, None, "control character"),
        ({"restart": ["true"], "timeout": 0}, None, "service.timeout must be a number of seconds from 1 to 3600"),
        ({"restart": ["true"], "timeout": True}, None, "service.timeout must be a number"),
        ({"restart": ["true"], "timout": 5}, None, "did you mean 'timeout'"),
        (None, [{"kind": "htp", "url": "x"}], "unknown health check kind 'htp'"),
        (None, [{"url": "http://x/"}], "add kind = one of http, tcp, command"),
        (None, [{"kind": "http"}], "missing required config key 'health.check[0].url'"),
        (None, [{"kind": "http", "url": "file:///etc/passwd"}], "must be an http:// or https:// URL"),
        (None, [{"kind": "http", "url": "http:///nohost"}], "must be an http:// or https:// URL"),
        (None, [{"kind": "http", "url": "http://x:99999/"}], "port out of range"),
        (None, [{"kind": "http", "url": "http://u:pw@x/"}], "carries a password"),
        (None, [{**HTTP, "status": 99}], "status must be an HTTP status"),
        (None, [{**HTTP, "contains": ""}], "contains must be 1 to 4096 characters"),
        (None, [{**HTTP, "retries": -1}], "retries must be from 0 to 1000"),
        (None, [{**HTTP, "interval": -1}], "interval must be a number of seconds from 0 to 600"),
        (None, [{**HTTP, "timeout": 0}], "timeout must be a number of seconds from 0.1 to 600"),
        (None, [{**HTTP, "retries": 1000, "timeout": 600}], "more than 3600s"),
        (None, [{**HTTP, "address": "x:1"}], "unknown config key 'health.check[0].address'"),
        (None, [{"kind": "tcp", "address": "localhost"}], "address must be host:port"),
        (None, [{"kind": "tcp", "address": "localhost:0"}], "address must be host:port"),
        (None, [{"kind": "tcp", "address": "a b:80"}], "address must be host:port"),
        (None, [{"kind": "command", "argv": []}], "argv must be a non-empty list"),
        (None, [{**HTTP, "name": "a"}, {**HTTP, "name": "a"}], "the name 'a' is used twice"),
        (None, [HTTP] * 51, "at most 50"),
        (None, ["http"], "health.check[0] must be a table"),
    ],
)
def test_bad_service_and_health_values_are_exit_2_naming_the_key(tmp_path: Path, service: Any, checks: Any, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, service, checks)
    assert says in err.value.message + " " + err.value.hint
    assert err.value.exit_code == 2


def test_a_restart_needs_the_timestamped_strategy_and_room_in_the_op_timeout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="side-by-side strategy has no `current`"):
        parse(tmp_path, {"restart": ["true"]}, strategy="side-by-side")
    with pytest.raises(ConfigError, match=r"more than target\.op_timeout"):
        parse(tmp_path, {"restart": ["true"], "timeout": 600}, [{**HTTP, "retries": 100, "timeout": 10}], op_timeout=1200)


def test_the_release_version_fills_the_checks_and_addresses_split() -> None:
    check = for_version({"kind": "http", "url": "http://h/v/{version}", "contains": "app {version}", "argv": ["x", "{version}"]}, "2.4.0")
    assert check == {"kind": "http", "url": "http://h/v/2.4.0", "contains": "app 2.4.0", "argv": ["x", "2.4.0"]}
    assert split_address("[::1]:80") == ("::1", 80) and split_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
