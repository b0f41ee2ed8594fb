"""The gates as pure functions: decided from config and facts, without git or sshd."""

from __future__ import annotations

from pathlib import Path

from release import config, gates

BASE = {
    "name": "app",
    "source": {"repo": ".", "head": "v1"},
    "target": {"root": "/srv/apps"},
    "smoke": {"check": [{"kind": "compileall"}, {"kind": "db-readonly", "dsn_env": "APP_DSN", "queries": ["select 1"]}]},
}
TARGET_OK = {"root_exists": True, "target_kind": "absent", "lock": None, "parent_listing_sha256": "abc"}


def cfg(**over: object) -> config.Config:
    data = {**BASE, **over}
    return config.parse(data, Path("/x/release.toml"))


def facts(**over: object) -> gates.Facts:
    base: dict[str, object] = {
        "head": "a" * 40,
        "location": "/repo",
        "target_dir": "app-v1",
        "target_path": "/srv/apps/app-v1",
        "target": dict(TARGET_OK),
        "dsn_set": {"APP_DSN": True},
    }
    base.update(over)
    return gates.Facts(**base)  # type: ignore[arg-type]


def verdicts(g: dict[str, gates.Gate]) -> dict[str, str]:
    return {k: v.verdict for k, v in g.items()}


def test_all_pass_locks_the_plan() -> None:
    g = gates.evaluate(cfg(), facts())
    assert set(verdicts(g).values()) == {"PASS"} and gates.worst(g) == 0
    assert set(g) == {"G1 source", "G2 plan", "G3 deploy target", "G4 runtime skeleton", "G5/G6 smoke"}


def test_missing_source_stops_at_g1() -> None:
    g = gates.evaluate(cfg(), gates.Facts(source_error="not a commit"))
    assert verdicts(g) == {"G1 source": "BLOCKED"} and gates.worst(g) == 3


def test_existing_target_is_unsafe_unless_the_name_is_stamped() -> None:
    g = gates.evaluate(cfg(), facts(target={**TARGET_OK, "target_kind": "directory"}))
    assert g["G3 deploy target"].verdict == "UNSAFE" and gates.worst(g) == 4
    g = gates.evaluate(cfg(), facts(target={**TARGET_OK, "target_kind": "directory"}, target_dir="app-<stamp>"))
    assert g["G3 deploy target"].verdict == "PASS"


def test_unreachable_target_lock_and_missing_root_block() -> None:
    assert gates.evaluate(cfg(), facts(target=None, target_error="ssh failed"))["G3 deploy target"].verdict == "BLOCKED"
    assert gates.evaluate(cfg(), facts(target={**TARGET_OK, "lock": {"pid": 1}}))["G3 deploy target"].verdict == "BLOCKED"
    assert gates.evaluate(cfg(), facts(target={**TARGET_OK, "root_exists": False}))["G3 deploy target"].verdict == "BLOCKED"
    with_create = cfg(target={"root": "/srv/apps", "create_root": True})
    assert gates.evaluate(with_create, facts(target={**TARGET_OK, "root_exists": False}))["G3 deploy target"].verdict == "PASS"


def test_dsn_not_set_blocks_g6_and_the_lock() -> None:
    g = gates.evaluate(cfg(), facts(dsn_set={"APP_DSN": False}))
    assert g["G5/G6 smoke"].verdict == "BLOCKED" and "APP_DSN" in g["G5/G6 smoke"].reason
    assert g["G2 plan"].verdict == "BLOCKED"


def test_no_checks_block() -> None:
    g = gates.evaluate(cfg(smoke={"check": []}), facts())
    assert g["G5/G6 smoke"].verdict == "BLOCKED"
