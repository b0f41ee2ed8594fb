"""Every parser of untrusted input, fed generated and worst-case inputs (deep, long, many,
huge declared sizes): each answers with its own refusal (a ReleaseError, a WheelProblem, a
ValueError) or a value, never another exception, in time linear in its input and with
bounded memory. The bundle's tar reader has its own fuzz (test_agent_tar), the target's
answers theirs (test_agent_jsonio). docs/security.md lists them all."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.agent import release_tree, wheelsafe
from release.bundlefile import parse_checksum
from release.errors import ReleaseError
from release.fleet import inventory
from release.source import environment

pytestmark = pytest.mark.unit
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def linear(make: object, run: object, small: int, big: int, slack: float = 6.0) -> None:
    """``run(make(n))`` for n = small and big: the big one takes at most ``slack`` times its
    share of the small one's time (plus scheduling noise)."""
    assert callable(make) and callable(run)
    times = []
    for n in (small, big):
        data = make(n)
        start = time.process_time()
        try:
            run(data)
        except (ReleaseError, ValueError, wheelsafe.WheelProblem):
            pass
        times.append(time.process_time() - start)
    assert times[1] <= slack * times[0] * big / small + 0.3, f"{times[0]:.3f} s for {small}, {times[1]:.3f} s for {big}"


# ----------------------------------------------------------------------------- inventories


def _parses_or_refuses(path: Path) -> None:
    """Read an inventory and every host of it: values, or exit 2; nothing else."""
    try:
        inv = inventory.load(path)
        for h in inv.hosts:
            try:
                inv.host(h)
            except ReleaseError as exc:
                assert exc.exit_code == 2
    except ReleaseError as exc:
        assert exc.exit_code == 2


INI_TOKENS = [
    "web",
    "[web]",
    "[web:children]",
    "[web:vars]",
    "db",
    "a=1",
    "ansible_host=10.0.0.1",
    "h[1:3]",
    "h[a:c]",
    "x[",
    "]",
    ":",
    "'",
    '"',
    "$(id)",
    "=",
    "#",
    "\t",
    "[0:9:0]",
]


@FAST
@given(lines=st.lists(st.lists(st.sampled_from(INI_TOKENS), max_size=4).map(" ".join), max_size=12))
def test_ini_inventories_only_parse_or_refuse(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    _parses_or_refuses(path)


@FAST
@given(
    doc=st.recursive(
        st.none() | st.text(max_size=5) | st.integers(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["all", "hosts", "children", "vars", "web", "h1"]), c, max_size=3),
        max_leaves=20,
    )
)
def test_yaml_inventories_only_parse_or_refuse(tmp_path: Path, doc: object) -> None:
    import yaml

    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(doc))
    _parses_or_refuses(path)


@pytest.mark.slow  # a worst-case timing: the whole suite runs it, the inner loop does not
def test_inventory_worst_cases(tmp_path: Path) -> None:
    import yaml

    deep = tmp_path / "deep.yml"
    doc: dict[str, object] = {"hosts": {"h1": None}}
    for i in range(100):
        doc = {"children": {f"g{i}": doc}}
    deep.write_text(yaml.safe_dump({"all": doc}))
    with pytest.raises(ReleaseError, match="64 deep"):
        inventory.load(deep).members("all")
    nested = tmp_path / "nested.yml"
    nested.write_text("all: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ReleaseError):
        inventory.load(nested)
    huge = tmp_path / "huge.ini"
    with huge.open("wb") as f:
        f.truncate(inventory.MAX_INVENTORY + 1)
    with pytest.raises(ReleaseError, match="larger than"):
        inventory.load(huge)
    bomb = tmp_path / "bomb.yml"  # anchors: a billion-laughs fan-out of the same group body
    lines = ["all:", "  children:", "    g0: &a0 {hosts: {h1: {}}}"]
    lines += [f"    g{i}: &a{i} {{children: {{x{i}a: *a{i - 1}, x{i}b: *a{i - 1}}}}}" for i in range(1, 30)]
    bomb.write_text("\n".join(lines) + "\n")
    start = time.process_time()
    try:
        inventory.load(bomb).members("all")
    except ReleaseError:
        pass
    assert time.process_time() - start < 5


def test_inventory_reading_is_linear(tmp_path: Path) -> None:
    def make(n: int) -> Path:
        path = tmp_path / f"inv{n}.ini"
        groups = max(1, n // 100)
        path.write_text("".join(f"[g{g}]\n" + "".join(f"h{i}\n" for i in range(g, n, groups)) + f"[g{g}:vars]\nansible_user=u{g}\n" for g in range(groups)))
        return path

    def run(path: Path) -> None:
        inv = inventory.load(path)
        for h in inv.hosts:
            inv.host(h)

    linear(make, run, 1000, 8000, slack=3.0 * 8)  # hosts x groups: 8x the hosts and 8x the groups


# ----------------------------------------------------------------------------- lock files


@FAST
@given(
    text=st.lists(
        st.sampled_from([*list('[]{}=" \n.,abcdefhsw0123456789'), "packages", "wheels", "hashes", "sha256", "name", "version", "marker", "sdist"]), max_size=120
    ).map("".join)
)
def test_pylock_files_only_parse_or_refuse(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pylock.toml"
    path.write_text(text)
    try:
        lines = environment._from_pylock(path)
    except ReleaseError as exc:
        assert exc.exit_code == 4
    else:
        assert all("--hash=sha256:" in line for line in lines)


def test_pylock_worst_cases(tmp_path: Path) -> None:
    path = tmp_path / "pylock.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ReleaseError, match="nests arrays or tables deeper"):
        environment._from_pylock(path)
    path.write_text('[[packages]]\nname = "a"\nversion = "1"\nwheels = [{hashes = {sha256 = "not-hex"}}]\n')
    with pytest.raises(ReleaseError, match="64 hex"):
        environment._from_pylock(path)
    path.write_text('[[packages]]\nname = "a; import os"\nversion = "1"\nwheels = [{hashes = {sha256 = "' + "a" * 64 + '"}}]\n')
    with pytest.raises(ReleaseError, match="not a valid name"):
        environment._from_pylock(path)
    with path.open("wb") as f:
        f.truncate(environment.MAX_LOCK + 1)
    with pytest.raises(ReleaseError, match="larger than"):
        environment._from_pylock(path)


def test_toml_a_tool_did_not_write_is_read_or_refused_with_a_reason() -> None:
    """Every TOML text from a project (pyproject.toml, lock files) goes through one reader:
    too large, not UTF-8, not TOML, or nested past the standard parser's recursion, each a
    TomlInputError with its reason, never a traceback."""
    from release import tomlinput

    limit = tomlinput.MAX_PYPROJECT
    assert tomlinput.parse(b'[project]\nname = "a"\n', limit) == {"project": {"name": "a"}}
    for raw, why in [
        (b"x = " + b"[" * 100_000 + b"]" * 100_000, "nests arrays or tables deeper"),
        (b"x = " + b"{a = " * 5_000 + b"1" + b"}" * 5_000, "nests arrays or tables deeper"),
        (b'x = "\xff"', "is not UTF-8"),
        (b"x = ", "is not valid TOML"),
        (b"#" * (limit + 1), "is larger than 4 MiB"),
    ]:
        with pytest.raises(tomlinput.TomlInputError, match=why):
            tomlinput.parse(raw, limit)


# ----------------------------------------------------------------------------- wheels


def _wheel_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("demo/__init__.py", "x = 1\n" * 50)
        z.writestr("demo-1.0.dist-info/METADATA", "Name: demo\nVersion: 1.0\n")
        z.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("demo-1.0.dist-info/entry_points.txt", "[console_scripts]\ndemo = demo:main\n")
        z.writestr("demo-1.0.dist-info/RECORD", "demo/__init__.py,,\ndemo-1.0.dist-info/RECORD,,\n")
    return out.getvalue()


@FAST
@given(data=st.data())
def test_mutated_wheels_only_pass_or_refuse(tmp_path: Path, data: st.DataObject) -> None:
    raw = bytearray(_wheel_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    path = tmp_path / "w.whl"
    path.write_bytes(bytes(raw))
    try:
        wheelsafe.check(str(path))
    except wheelsafe.WheelProblem:
        pass


@pytest.mark.slow  # a worst-case timing: the whole suite runs it, the inner loop does not
def test_wheel_checking_is_linear_in_members(tmp_path: Path) -> None:
    def make(n: int) -> Path:
        path = tmp_path / f"w{n}.whl"
        with zipfile.ZipFile(path, "w") as z:
            for i in range(n):
                z.writestr(f"demo/m{i}.py", "")
            z.writestr("demo-1.0.dist-info/RECORD", "".join(f"demo/m{i}.py,,\n" for i in range(n)))
        return path

    linear(make, lambda p: wheelsafe.check(str(p)), 2000, 20000)


# ----------------------------------------------------------------------------- checksum files, deploy manifests


@FAST
@given(data=st.binary(max_size=300))
def test_checksum_files_only_parse_or_refuse(data: bytes) -> None:
    bundle = Path("app-1.0-abcdef0-20260101T000000Z.tar.gz")
    try:
        sha = parse_checksum(bundle, data)
    except ReleaseError as exc:
        assert exc.exit_code == 4
    else:
        assert len(sha) == 64


@FAST
@given(data=st.binary(max_size=500))
def test_deploy_manifests_parse_to_text_pairs(data: bytes) -> None:
    out = release_tree.parse_deploy_manifest(data)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())


def test_deploy_manifest_parsing_is_linear_and_bounded() -> None:
    linear(lambda n: b"key: value\n" * n, release_tree.parse_deploy_manifest, 10_000, 100_000)
    tracemalloc.start()
    release_tree.parse_deploy_manifest(b"k: " + b"v" * (1 << 20))
    assert tracemalloc.get_traced_memory()[1] < 16 << 20
    tracemalloc.stop()


# ----------------------------------------------------------------------------- SQL


@FAST
@given(
    sql=st.lists(
        st.sampled_from(
            [*list("() ,;*'\"=<>+-1xy."), "select ", " from ", "t", "with ", "insert ", "into ", "case ", "when ", "then ", "end", " any ", " in ", "values"]
        ),
        max_size=40,
    ).map("".join)
)
def test_sql_only_passes_or_refuses(sql: str) -> None:
    from release.db import sqlguard

    try:
        sqlguard.check(sql)
    except ReleaseError as exc:
        assert exc.exit_code == 4


@pytest.mark.slow  # a worst-case timing: the whole suite runs it, the inner loop does not
def test_sql_worst_cases_are_refusals_not_crashes() -> None:
    from release.db import sqlguard

    for sql in ("select " + "(" * 50_000 + "1" + ")" * 50_000, "select " + "+".join(["1"] * 100_000), "select " + "-" * 100_000 + "1"):
        start = time.process_time()
        try:
            sqlguard.check(sql)
        except ReleaseError as exc:
            assert exc.exit_code == 4
        assert time.process_time() - start < 10
