"""Config loading and validation: every key checked, errors name the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from release import config
from release.errors import ConfigError
from release.fleet.stages import resolve

from ..support import Cli, write_config

MIN: dict[str, Any] = {"name": "app", "source": {"repo": ".", "head": "HEAD"}, "target": {"root": "/srv"}}


def parse(data: dict[str, object], tmp_path: Path) -> config.Config:
    return config.parse(data, tmp_path / "release.toml")


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    cfg = parse(MIN, tmp_path)
    assert cfg.name == "app" and cfg.strategy == "side-by-side" and cfg.python == "python3"
    assert cfg.artifacts == ("sdist", "wheel") and cfg.dir == "{name}-v{version}"
    assert cfg.out == (tmp_path / ".release" / "bundles").resolve()
    assert cfg.state == (tmp_path / ".release").resolve()


@pytest.mark.parametrize(
    ("data", "key", "suggestion"),
    [
        ({**MIN, "nmae": "x"}, "nmae", "name"),
        ({**MIN, "source": {"repo": ".", "head": "HEAD", "subdri": "x"}}, "source.subdri", "subdir"),
        ({**MIN, "target": {"root": "/srv", "stratgy": "x"}}, "target.stratgy", "strategy"),
        ({**MIN, "smoke": {"check": [{"kind": "pytset"}]}}, "kind", "pytest"),
        ({**MIN, "bundle": {"artifacts": ["wheal"]}}, "wheal", "wheel"),
    ],
)
def test_typos_name_the_key_and_the_likely_one(tmp_path: Path, data: dict[str, object], key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(data, tmp_path)
    assert key in e.value.message
    assert suggestion in e.value.hint
    assert e.value.exit_code == 2


def test_missing_required_key_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse({"name": "app", "source": {"repo": "."}, "target": {"root": "/x"}}, tmp_path)
    assert "source.head" in e.value.message and "add" in e.value.hint


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse({**MIN, "target": {"root": "/srv", "create_root": "yes"}}, tmp_path)
    assert "target.create_root" in e.value.message


def test_attr_check_needs_exactly_one_assertion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        parse({**MIN, "smoke": {"check": [{"kind": "attr", "object": "a:b"}]}}, tmp_path)
    cfg = parse({**MIN, "smoke": {"check": [{"kind": "attr", "object": "a:b", "equals": False}]}}, tmp_path)
    assert cfg.checks[0].options["equals"] is False


@pytest.mark.parametrize(
    ("check", "why"),
    [
        ({"kind": "import", "modules": []}, "at least one entry"),
        ({"kind": "compileall", "paths": []}, "at least one entry"),
        ({"kind": "attr", "object": "app:__version__", "startswith": ""}, "every text starts with it"),
    ],
)
def test_a_check_that_could_not_fail_is_refused(tmp_path: Path, check: dict[str, object], why: str) -> None:
    """An import check of no module, compileall of no path, or an attr check against an
    empty prefix would always pass."""
    with pytest.raises(ConfigError) as e:
        parse({**MIN, "smoke": {"check": [check]}}, tmp_path)
    assert why in e.value.message and e.value.exit_code == 2


def test_unknown_dir_placeholder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse({**MIN, "target": {"root": "/srv", "dir": "{name}-{verison}"}}, tmp_path)
    assert "version" in e.value.hint


def test_ssh_target_needs_absolute_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        parse({**MIN, "target": {"root": "srv", "host": "box"}}, tmp_path)


def test_pyproject_tool_release_and_explicit_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname="x"\n[tool.release]\nname = "from-pyproject"\n[tool.release.source]\nrepo="."\nhead="HEAD"\n[tool.release.target]\nroot="/srv"\n'
    )
    assert config.load(cwd=tmp_path).name == "from-pyproject"
    write_config(tmp_path / "release.toml", tmp_path)
    assert config.load(cwd=tmp_path).name == "demo-app"  # release.toml wins
    assert config.load(str(tmp_path / "pyproject.toml")).name == "from-pyproject"


def test_no_config_is_usage_error(tmp_path: Path, cli: Cli) -> None:
    import os

    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = cli("bundle")
    finally:
        os.chdir(old)
    assert r.code == 2 and "no configuration found" in r.err


def test_bad_toml_is_usage_error(tmp_path: Path, cli: Cli) -> None:
    p = tmp_path / "release.toml"
    p.write_text("name = \n")
    r = cli("--config", p, "bundle")
    assert r.code == 2 and "not valid TOML" in r.err


def test_bad_cli_argument_is_exit_2(cli: Cli) -> None:
    r = cli("bundle", "--no-such-flag")
    assert r.code == 2 and "--no-such-flag" in r.err


def test_repository_default_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = config.load(str(root / "pyproject.toml"))
    kinds = {c.kind for c in cfg.checks}
    assert kinds == set(config.CHECK_KINDS), "the example config must use every check kind"


def test_yaml_inventory_anchors_cannot_loop_or_explode(tmp_path: Path) -> None:
    """YAML anchors make an inventory a graph: a group that is (through an alias) its own
    child is refused (exit 2) naming the loop, as Ansible refuses it; a diamond fan-out of
    9^9 paths to one host is read and selected in one pass (each group walked once), where
    walking every path would never end (run in a child with a generous limit, so a
    regression fails instead of hanging the suite)."""
    import subprocess
    import sys

    from release.fleet import inventory

    loop = tmp_path / "loop.yml"
    loop.write_text("all:\n  children:\n    edge: &edge\n      hosts:\n        web1: {}\n      children:\n        again: *edge\n")
    with pytest.raises(ConfigError, match="'again' is its own child") as err:
        inventory.load(loop)
    assert err.value.exit_code == 2
    lines = ["all:", "  children:", "    g0: &g0 {hosts: {web1: {ansible_port: 2222}}, vars: {ansible_user: deep}}"]
    for k in range(1, 10):
        kids = ", ".join(f"{c}{k}: *g{k - 1}" for c in "abcdefhij")
        lines.append(f"    g{k}: &g{k} {{children: {{{kids}}}}}")
    fan = tmp_path / "fan.yml"
    fan.write_text("\n".join(lines) + "\n")
    code = f"from pathlib import Path\nfrom release.fleet import inventory\ninv = inventory.load(Path({str(fan)!r}))\nprint(inventory.select(list(inv.hosts), inv, 'g9'), inv.host('web1'))\n"
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert "['web1']" in cp.stdout and "port=2222" in cp.stdout


@pytest.mark.parametrize("name", ["../escape", "/etc/cron.d", "a/b", ".hidden", "", "-oProxyCommand=x", "a b", "tab\there", "x" * 256])
def test_a_fleet_host_name_is_one_plain_path_component(tmp_path: Path, name: str) -> None:
    """A host's name is an ssh destination and the name of its state folder
    (``state/hosts/<name>``): a name that could climb out of it, be absolute, hide, or
    read as an option is exit 2, from target.hosts and from an inventory alike, and
    nothing is written."""
    with pytest.raises(ConfigError, match=r"target\.hosts") as err:  # a tab is caught first, as any control character in a key
        parse({**MIN, "target": {"root": "/srv", "hosts": ["web1", name]}}, tmp_path)
    assert err.value.exit_code == 2
    if name and "\t" not in name and " " not in name:  # one INI token
        (tmp_path / "hosts.ini").write_text(f"[web]\nweb1\n{name} ansible_host=10.0.0.9\n")
        with pytest.raises(ConfigError, match="cannot be a fleet host"):
            resolve(parse({**MIN, "target": {"root": "/srv", "inventory": "hosts.ini", "group": "web"}}, tmp_path), None)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["hosts.ini"]), "nothing but the test's inventory"


def test_an_inventory_line_with_an_unclosed_quote_is_exit_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text('[web]\nweb1 ansible_host="10.0.0.1\n')
    with pytest.raises(ConfigError, match=r"hosts.ini:2: No closing quotation"):
        resolve(parse({**MIN, "target": {"root": "/srv", "inventory": "hosts.ini", "group": "web"}}, tmp_path), None)


def test_the_config_names_an_inventory_and_the_fleet_reads_it(tmp_path: Path) -> None:
    """``config.parse`` does not read inventories (#21): a config naming one parses without
    touching it; the fleet reads it once, where its hosts are needed, and a missing one is
    exit 2 naming it there."""
    cfg = parse({**MIN, "target": {"root": "/srv", "inventory": "missing.ini", "group": "web"}}, tmp_path)
    assert cfg.is_fleet and cfg.hosts == () and cfg.inventory_path.endswith("missing.ini")
    with pytest.raises(ConfigError, match=r"missing\.ini") as err:
        resolve(cfg, None)
    assert err.value.exit_code == 2
    (tmp_path / "missing.ini").write_text("[web]\nweb1 ansible_host=10.0.0.1\nweb2\n[db]\ndb1\n")
    assert [h.name for h in resolve(cfg, None).hosts] == ["web1", "web2"]
    assert [h.name for h in resolve(cfg, "web2").hosts] == ["web2"]
