"""[environment]: a project with dependencies (one of them binary) released with its own locked
environment onto a target whose interpreter has no network (`unshare -n`), over both
transports; commit locks used exactly; every bad input refused with nothing written."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ..support import Repo, git, listing, need, run_release, tree_state, write_config

pytestmark = pytest.mark.slow

PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
[project]
name = "webapp"
version = "1.0.0"
requires-python = "{requires}"
dependencies = [{deps}]
[project.scripts]
webapp = "webapp:main"
[dependency-groups]
tests = ["pytest>=7"]
[tool.hatch.build.targets.wheel]
packages = ["webapp"]
"""
APP = """import markupsafe
__version__ = "1.0.0"
def main():
    print("webapp", __version__, markupsafe.escape("<x>"))
"""
CHECKS: list[dict[str, Any]] = [
    {"kind": "import", "modules": ["webapp", "markupsafe", "packaging.version"]},
    {"kind": "pytest", "args": ["tests", "-q"], "expect_passed": 1},
    {"kind": "command", "name": "script", "argv": ["{target}/.venv/bin/webapp"], "expect_output": "&lt;x&gt;"},
    {
        "kind": "command",
        "name": "metadata",
        "argv": ["{python}", "-c", "import importlib.metadata as m; print(m.version('webapp'), m.version('packaging'))"],
        "expect_output": "1.0.0 ",
    },
    {
        "kind": "command",
        "name": "offline",
        "argv": ["{python}", "-c", "import socket; s = socket.socket(); s.settimeout(3); print('connect', s.connect_ex(('1.1.1.1', 443)))"],
        "expect_output": "connect 101",  # ENETUNREACH: the target has no network at all
    },
]


def webapp(path: Path, deps: str = '"packaging>=23", "markupsafe>=2"', requires: str = ">=3.9") -> Repo:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    repo = Repo(path)
    repo.write("pyproject.toml", PYPROJECT.format(deps=deps, requires=requires))
    repo.write("webapp/__init__.py", APP)
    repo.write("tests/test_app.py", "import webapp\n\ndef test_version():\n    assert webapp.__version__ == '1.0.0'\n")
    repo.commit("webapp 1.0.0")
    return repo


def offline_python(tmp_path: Path) -> str:
    """An interpreter that runs without any network (its own empty network namespace)."""
    unshare = shutil.which("unshare")
    need(unshare is not None and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0, "unshare -n needs root and util-linux")
    wrapper = tmp_path / "python-offline"
    wrapper.write_text(f'#!/bin/sh\nexec {unshare} -n {shutil.which("python3") or "/usr/bin/python3"} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def cfg_for(tmp_path: Path, repo: Repo, transport: dict[str, object], interpreter: str, **env: object) -> Path:
    root = tmp_path / "target"
    return write_config(
        tmp_path / "release.toml",
        repo.path,
        top={"name": "webapp"},
        bundle={"artifacts": ["wheel"]},
        target={"root": str(root), "python": interpreter, "create_root": True, **transport},
        environment={"groups": ["tests"], **env},
        checks=CHECKS,
    )


def test_release_with_dependencies_onto_an_offline_target(tmp_path: Path, transport: dict[str, object]) -> None:
    repo = webapp(tmp_path / "app")
    cfg = cfg_for(tmp_path, repo, transport, offline_python(tmp_path))
    cp = run_release("--config", cfg, "--json", "bundle")
    assert cp.returncode == 0, cp.stderr
    bundle = Path(json.loads(cp.stdout)["bundle"])
    with tarfile.open(bundle) as tf:
        names = tf.getnames()
    assert any("/release-env/wheels/markupsafe-" in n and "manylinux" in n for n in names), "the binary dependency is a wheel for the target"
    assert any(n.endswith("/release-env/pylock.toml") for n in names)
    cp = run_release("--config", cfg, "--json", "deploy", "--no-plan")
    assert cp.returncode == 0, cp.stderr
    target = Path(json.loads(cp.stdout)["target"])
    assert (target / ".venv" / "bin" / "webapp").read_text().startswith(f"#!{target}/.venv/bin/python")
    for p in target.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert b".release-tmp-" not in p.read_bytes(), f"a staging path remains in {p}"
    cp = run_release("--config", cfg, "--json", "smoke")
    res = json.loads(cp.stdout)
    assert cp.returncode == 0, [(c["name"], c["status"], c["detail"][:300]) for c in res["checks"] if c["status"] != "passed"]
    assert run_release("--config", cfg, "verify").returncode == 0
    site = next((target / ".venv" / "lib").glob("python3.*/site-packages"))
    (site / "markupsafe" / "__init__.py").write_text("tampered = True\n")
    v = run_release("--config", cfg, "--json", "verify")
    assert v.returncode == 1 and any("markupsafe/__init__.py" in c for c in json.loads(v.stdout)["changed"]), "verify covers the environment"
    rb = run_release("--config", cfg, "--json", "rollback")
    assert rb.returncode == 0 and json.loads(rb.stdout)["added_check"] == "names", "the environment's names are recorded too"
    assert not target.exists()


def test_a_commits_uv_lock_is_used_exactly(tmp_path: Path) -> None:
    repo = webapp(tmp_path / "app", deps='"packaging>=20", "markupsafe>=2"')
    from uv import find_uv_bin

    lock = subprocess.run([find_uv_bin(), "lock", "--upgrade-package", "packaging==23.2"], cwd=repo.path, capture_output=True, text=True)
    need(lock.returncode == 0, f"uv lock needs the package index: {lock.stderr[-300:]}")
    repo.commit("lock packaging 23.2")
    cfg = cfg_for(tmp_path, repo, {}, "python3")
    cp = run_release("--config", cfg, "--json", "bundle")
    assert cp.returncode == 0, cp.stderr
    manifest = _bundle_manifest(Path(json.loads(cp.stdout)["bundle"]))
    versions = {p["name"]: p["version"] for p in manifest["environment"]["packages"]}
    assert versions["packaging"] == "23.2", "the locked version wins over the newest"
    assert manifest["environment"]["locked_from"] == "uv.lock"
    assert "pytest" in versions, "the dependency group comes from the lock too"
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    cp = run_release("--config", cfg, "--json", "smoke")
    metadata = next(c for c in json.loads(cp.stdout)["checks"] if c["name"] == "metadata")
    assert "1.0.0 23.2" in metadata["detail"]
    # a lock that no longer agrees with the project's dependencies is refused
    repo.write("pyproject.toml", (repo.path / "pyproject.toml").read_text().replace('"packaging>=20"', '"packaging>=20", "iniconfig"'))
    repo.commit("a new dependency, lock not updated")
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 3 and "uv.lock" in cp.stderr


def _bundle_manifest(bundle: Path) -> dict[str, Any]:
    with tarfile.open(bundle) as tf:
        member = next(m for m in tf if m.name.endswith("/BUNDLE-MANIFEST.json") and m.name.count("/") == 1)
        f = tf.extractfile(member)
        assert f is not None
        data: dict[str, Any] = json.loads(f.read())
        return data


def test_no_wheel_for_the_target_platform_is_blocked_naming_the_package(tmp_path: Path) -> None:
    repo = webapp(tmp_path / "app")
    cfg = cfg_for(tmp_path, repo, {}, "python3", python="3.11", platforms=["linux_riscv64"])
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 3 and "markupsafe" in cp.stderr.lower(), cp.stderr
    assert not list((tmp_path / "bundles").glob("*.tar.gz"))


def test_a_hash_mismatch_in_the_commits_lock_is_refused(tmp_path: Path) -> None:
    repo = webapp(tmp_path / "app", deps='"packaging==24.1"')
    repo.write("webapp/__init__.py", '__version__ = "1.0.0"\n')
    wrong = "0" * 64
    repo.write(
        "pylock.toml",
        'lock-version = "1.0"\ncreated-by = "hand"\n[[packages]]\nname = "packaging"\nversion = "24.1"\n'
        f'[[packages.wheels]]\nname = "packaging-24.1-py3-none-any.whl"\nhashes = {{sha256 = "{wrong}"}}\n'
        '[[packages]]\nname = "pytest"\nversion = "8.3.3"\n'
        f'[[packages.wheels]]\nname = "pytest-8.3.3-py3-none-any.whl"\nhashes = {{sha256 = "{wrong}"}}\n',
    )
    repo.commit("a lock with a wrong hash")
    cfg = cfg_for(tmp_path, repo, {}, "python3")
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 4 and "hash" in cp.stderr.lower(), cp.stderr
    assert not list((tmp_path / "bundles").glob("*.tar.gz"))


def test_requires_python_newer_than_the_target_is_blocked(tmp_path: Path) -> None:
    repo = webapp(tmp_path / "app", requires=">=3.99")
    cfg = cfg_for(tmp_path, repo, {}, "python3")
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 3 and "requires-python" in cp.stderr


def _retar(bundle: Path, change: Any) -> None:
    """Rewrite a bundle as an attacker who can write the bundle and its .sha256 would."""
    with tarfile.open(bundle) as tf:
        members = [(m, tf.extractfile(m).read() if m.isreg() else None) for m in tf]  # type: ignore[union-attr]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m, data in members:
            data = change(m.name, data)
            if data is not None:
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    raw = gzip.compress(out.getvalue(), mtime=0)
    bundle.write_bytes(raw)
    bundle.with_name(bundle.name + ".sha256").write_text(f"{hashlib.sha256(raw).hexdigest()}  {bundle.name}\n")


def _swap_packaging_wheel(tmp_path: Path, swap: Any, *, environment_too: bool) -> Path:
    """Bundle the webapp, then replace its packaging wheel by ``swap(wheel bytes)`` and make
    the bundle manifest's file list agree (and, with ``environment_too``, the environment's
    record of the wheel's sha256): the config."""
    repo = webapp(tmp_path / "app")
    cfg = cfg_for(tmp_path, repo, {}, "python3")
    cp = run_release("--config", cfg, "--json", "bundle")
    assert cp.returncode == 0, cp.stderr
    new: dict[str, bytes] = {}

    def change(name: str, data: bytes | None) -> bytes | None:
        if "/release-env/wheels/packaging-" in name and data is not None:
            new["wheel"] = swap(data)
            return new["wheel"]
        if name.endswith("/BUNDLE-MANIFEST.json") and data is not None:
            doc = json.loads(data)
            sha = hashlib.sha256(new["wheel"]).hexdigest()
            for f in doc["files"]:
                if "/wheels/packaging-" in "/" + f["path"]:
                    f["sha256"] = sha
            for pkg in doc["environment"]["packages"] if environment_too else []:
                if pkg["name"] == "packaging":
                    pkg["sha256"] = sha
            return json.dumps(doc).encode()
        return data

    _retar(Path(json.loads(cp.stdout)["bundle"]), change)
    return cfg


def test_a_tampered_wheel_inside_the_bundle_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    # the file list agrees with the new bytes; the lock does not
    cfg = _swap_packaging_wheel(tmp_path, lambda _: b"PK-not-the-wheel-that-was-locked", environment_too=False)
    root = tmp_path / "target"
    root.mkdir(exist_ok=True)
    before = tree_state(root)
    cp = run_release("--config", cfg, "deploy", "--no-plan")
    assert cp.returncode == 4 and "packaging" in cp.stderr and "lock" in cp.stderr, cp.stderr
    assert tree_state(root) == before


def test_a_deploy_killed_while_building_the_environment_leaves_nothing(tmp_path: Path) -> None:
    repo = webapp(tmp_path / "app")
    cfg = cfg_for(tmp_path, repo, {}, "python3")
    assert run_release("--config", cfg, "bundle").returncode == 0
    root = tmp_path / "target"
    root.mkdir(exist_ok=True)
    before = tree_state(root)
    cp = run_release("--config", cfg, "deploy", "--no-plan", env={"RELEASE_TEST_KILL_AT": "deploy:installing"})
    assert cp.returncode == 1 and "outcome unknown" in cp.stderr
    assert not [n for n in listing(root) if not n.startswith(".release-")], "no release folder appears"
    cp = run_release("--config", cfg, "deploy", "--no-plan", "--break-lock")
    assert cp.returncode == 0, cp.stderr
    assert run_release("--config", cfg, "rollback").returncode == 0
    assert tree_state(root) == before
    os.sync()


def test_the_smoke_imports_the_installed_wheel_not_the_sources_beside_it(tmp_path: Path) -> None:
    """A src-layout application with no dependency, whose wheel carries a module its sources
    do not (as a compiled extension or a generated file would be): with an environment, the
    checks import the application as its wheel installed it, never shadowed by src/ or the
    tree; the bundle has no empty wheels folder, and the tree check passes."""
    repo_path = tmp_path / "app"
    repo_path.mkdir()
    git(repo_path, "init", "-q", "-b", "main")
    repo = Repo(repo_path)
    repo.write(
        "pyproject.toml",
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n[project]\nname = "srcapp"\nversion = "2.0.0"\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["src/srcapp"]\n[tool.hatch.build.targets.wheel.force-include]\n"gen/built.py" = "srcapp/built.py"\n',
    )
    repo.write("src/srcapp/__init__.py", "__version__ = '2.0.0'\n")
    repo.write("gen/built.py", "MADE_BY_THE_BUILD = True\n")
    repo.commit("srcapp 2.0.0")
    checks = [
        {"kind": "import", "modules": ["srcapp", "srcapp.built"]},
        {"kind": "command", "argv": ["{python}", "-c", "import srcapp; print(srcapp.__file__)"], "expect_output": "site-packages"},
    ]
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        top={"name": "srcapp"},
        bundle={"artifacts": ["wheel"]},
        target={"root": str(tmp_path / "target"), "create_root": True},
        environment={},
        checks=checks,
    )
    cp = run_release("--config", cfg, "--json", "bundle")
    assert cp.returncode == 0, cp.stderr
    with tarfile.open(json.loads(cp.stdout)["bundle"]) as tf:
        assert not any(n.endswith("/release-env/wheels") for n in tf.getnames()), "no empty folder: a manifest cannot list it"
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    cp = run_release("--config", cfg, "--json", "smoke")
    res = json.loads(cp.stdout)
    assert cp.returncode == 0, [(c["name"], c["status"], c["detail"][-300:]) for c in res["checks"] if c["status"] != "passed"]
    assert run_release("--config", cfg, "rollback").returncode == 0


@pytest.mark.parametrize("entry", ["../../../../escaped.txt", "{data}/scripts/python"], ids=["climbs-out", "replaces-the-venvs-python"])
def test_a_crafted_wheel_cannot_write_outside_the_release(tmp_path: Path, entry: str) -> None:
    """An attacker who rewrites the bundle whole (its manifest, the environment's record of
    the wheel's sha256, and the .sha256) ships a wheel holding a ``../`` path, or a script
    named like the venv's own bin/python link. pypa installer refuses to write outside its
    scheme folders or over a file: the deploy is refused (exit 4, not a traceback), nothing
    is written outside the release, and the staging folder is removed."""
    import zipfile

    def crafted(data: bytes) -> bytes:
        src = zipfile.ZipFile(io.BytesIO(data))
        out = io.BytesIO()
        dist_info = next(n.split("/")[0] for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        path = entry.format(data=dist_info.replace(".dist-info", ".data"))
        with zipfile.ZipFile(out, "w") as z:
            for item in src.infolist():
                body = src.read(item)
                if item.filename.endswith(".dist-info/RECORD"):
                    body += path.encode() + b",,\n"
                z.writestr(item, body)
            z.writestr(path, b"#!/bin/sh\necho written outside\n")
        return out.getvalue()

    cfg = _swap_packaging_wheel(tmp_path, crafted, environment_too=True)
    root = tmp_path / "target"
    root.mkdir(exist_ok=True)
    before = tree_state(tmp_path)
    cp = run_release("--config", cfg, "deploy", "--no-plan")
    assert cp.returncode != 0, "the crafted wheel is not installed"
    assert "Traceback" not in cp.stderr and "cannot be installed" in cp.stderr, cp.stderr
    assert not list(tmp_path.rglob("escaped.txt")), "nothing written outside the release"
    after = {k: v for k, v in tree_state(tmp_path).items() if not k.startswith((".release", "state"))}
    assert after == {k: v for k, v in before.items() if not k.startswith((".release", "state"))}
    assert cp.returncode == 4, cp.stderr


def test_a_release_with_its_environment_onto_the_oldest_target_python(tmp_path: Path) -> None:
    """Python 3.8, the oldest target: its environment is built there by the installer the
    agent carries (installer 1.x, which needs 3.10, crashed there on import), offline, and
    the release passes its smoke and its own tests."""
    oldest = sorted(Path.home().glob(".pyenv/versions/3.8.*/bin/python3.8")) + [
        Path(p) for p in filter(None, [shutil.which("python3.8")]) if "/shims/" not in p
    ]
    need(bool(oldest), "python3.8 (the oldest target) is not installed")
    unshare = shutil.which("unshare")
    need(unshare is not None and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0, "unshare -n needs root and util-linux")
    wrapper = tmp_path / "python3.8-offline"
    wrapper.write_text(f'#!/bin/sh\nexec {unshare} -n {oldest[0]} "$@"\n')
    wrapper.chmod(0o755)
    repo = webapp(tmp_path / "app", deps='"packaging>=23", "markupsafe>=2"', requires=">=3.8")
    cfg = cfg_for(tmp_path, repo, {}, str(wrapper))
    for stage in (("bundle",), ("deploy", "--no-plan"), ("smoke",), ("verify",), ("rollback",)):
        cp = run_release("--config", cfg, "--json", *stage)
        assert cp.returncode == 0, (stage, cp.stdout[-1500:], cp.stderr[-1500:])
        if stage == ("smoke",):
            assert {c["name"]: c["status"] for c in json.loads(cp.stdout)["checks"]}.get("pytest") == "passed"


def test_a_direct_url_dependency_of_the_project_is_refused_before_anything_fetches_it(tmp_path: Path) -> None:
    """The project's own metadata names a VCS dependency: refused (exit 4) from the wheel's
    metadata, before the resolver would clone it and run its build backend here."""
    marker = tmp_path / "fetched"
    repo = webapp(tmp_path / "app", deps=f'"packaging>=23", "helper @ git+file://{marker}"')
    text = (repo.path / "pyproject.toml").read_text() + "[tool.hatch.metadata]\nallow-direct-references = true\n"
    repo.write("pyproject.toml", text)
    repo.commit("a VCS dependency")
    cfg = cfg_for(tmp_path, repo, {}, "python3")
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 4 and "direct URL / VCS dependency refused" in cp.stderr and "helper" in cp.stderr, cp.stderr
    assert not marker.exists()
    out = tmp_path / "bundles"
    assert not out.exists() or not list(out.glob("*.tar.gz")), "no bundle"


def test_a_disk_that_fills_while_the_environment_is_built_leaves_nothing(tmp_path: Path) -> None:
    """The release's files fit the target's disk, its environment does not: the wheels'
    declared sizes are refused before any is installed (the installer would hit ENOSPC).
    Exit 3 (blocked: free space), the staging folder removed, the target root as it was; a
    rerun on a bigger disk then deploys."""
    repo = webapp(tmp_path / "app")
    cfg = cfg_for(tmp_path, repo, {}, "python3")
    assert run_release("--config", cfg, "bundle").returncode == 0
    root = tmp_path / "target"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], capture_output=True, text=True)
    need(mounted.returncode == 0, f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        (root / "keep.txt").write_text("the operator's\n")
        before = tree_state(root)
        cp = run_release("--config", cfg, "deploy", "--no-plan")
        assert cp.returncode == 3, (cp.returncode, cp.stderr[-2000:])
        assert "Traceback" not in cp.stderr and "not enough free space" in cp.stderr and "building the release's environment" in cp.stderr, cp.stderr[-2000:]
        assert tree_state(root) == before, listing(root)
    finally:
        subprocess.run(["umount", str(root)], check=True)
    cp = run_release("--config", cfg, "deploy", "--no-plan")
    assert cp.returncode == 0, cp.stderr


def _rezip(data: bytes, add: dict[str, bytes], *, stored: bool = False) -> bytes:
    """The wheel ``data`` with the members ``add`` written (or replaced) and listed in RECORD."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    record = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
    dist_info = record.split("/")[0]
    add = {k.format(dist_info=dist_info): v for k, v in add.items()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        for item in src.infolist():
            if item.filename in add:
                continue
            body = src.read(item)
            if item.filename == record:
                body += b"".join(name.encode() + b",,\n" for name in add)
            z.writestr(item, body)
        for name, body in add.items():
            z.writestr(name, body)
    return out.getvalue()


@pytest.mark.parametrize("script", ["../../../../escaped-script", "/tmp/escaped-abs-script", "sub/dir-script"], ids=["climbs-out", "absolute", "a-path"])
def test_a_console_script_named_like_a_path_is_refused_before_any_wheel_is_installed(tmp_path: Path, script: str) -> None:
    """The critical one: installer joins an entry point's name onto .venv/bin as it stands.
    Every script name must be one plain file name, checked before anything is installed:
    exit 4 naming the entry, nothing written anywhere, the staging folder gone."""
    if script.startswith("/"):
        script = str(tmp_path / "escaped-abs-script")
    entry_points = f"[console_scripts]\n{script} = packaging.version:parse\n".encode()
    cfg = _swap_packaging_wheel(tmp_path, lambda d: _rezip(d, {"{dist_info}/entry_points.txt": entry_points}), environment_too=True)
    root = tmp_path / "target"
    root.mkdir(exist_ok=True)
    before = tree_state(tmp_path)
    cp = run_release("--config", cfg, "deploy", "--no-plan")
    assert cp.returncode == 4, (cp.returncode, cp.stderr[-2000:])
    assert "Traceback" not in cp.stderr and "entry_points.txt" in cp.stderr and repr(script) in cp.stderr, cp.stderr[-2000:]
    assert not list(tmp_path.rglob("escaped-*")) and not Path("/tmp/escaped-abs-script").exists()
    after = {k: v for k, v in tree_state(tmp_path).items() if not k.startswith((".release", "state"))}
    assert after == {k: v for k, v in before.items() if not k.startswith((".release", "state"))}


def test_a_zip_bomb_member_and_an_oversized_record_are_refused_before_installing(tmp_path: Path) -> None:
    """A 200 MiB zero-filled member (about 200 KB compressed) in a wheel of a small bundle:
    refused from its declared sizes (exit 4), before a byte of it is written, with the
    target's disk as it was."""
    cfg = _swap_packaging_wheel(tmp_path, lambda d: _rezip(d, {"packaging/zeros.bin": bytes(200 << 20)}), environment_too=True)
    root = tmp_path / "target"
    root.mkdir(exist_ok=True)
    before = tree_state(root)
    cp = run_release("--config", cfg, "deploy", "--no-plan")
    assert cp.returncode == 4 and "zip bomb" in cp.stderr and "zeros.bin" in cp.stderr, cp.stderr[-2000:]
    assert tree_state(root) == before


def test_an_environment_larger_than_the_free_space_is_refused_before_installing(tmp_path: Path) -> None:
    """A wheel whose declared (incompressible) contents fit the bundle's space check but not
    the disk once installed beside it: exit 3 before installing, the disk as it was."""
    blob = os.urandom(24 << 20)
    cfg = _swap_packaging_wheel(tmp_path, lambda d: _rezip(d, {"packaging/blob.bin": blob}, stored=True), environment_too=True)
    root = tmp_path / "target"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(root)], capture_output=True, text=True)
    need(mounted.returncode == 0, f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        before = tree_state(root)
        cp = run_release("--config", cfg, "deploy", "--no-plan")
        assert cp.returncode == 3, (cp.returncode, cp.stderr[-2000:])
        assert "Traceback" not in cp.stderr and "free space" in cp.stderr and "packaging" in cp.stderr, cp.stderr[-2000:]
        assert tree_state(root) == before, listing(root)
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_a_regular_file_where_the_release_folder_would_be_is_a_clear_refusal_not_a_traceback(tmp_path: Path) -> None:
    """The target root holds a file named like the release: `bundle` (which reads the target
    for the release in service) works, `deploy` is exit 4 naming the path, no traceback."""
    repo = webapp(tmp_path / "app")
    cfg = cfg_for(tmp_path, repo, {}, "python3")
    root = tmp_path / "target"
    root.mkdir()
    (root / "webapp-v1.0.0").write_text("the operator's file\n")
    before = tree_state(root)
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 0 and "Traceback" not in cp.stderr, cp.stderr[-2000:]
    cp = run_release("--config", cfg, "deploy", "--no-plan")
    assert cp.returncode == 4 and "Traceback" not in cp.stderr and "webapp-v1.0.0" in cp.stderr, cp.stderr[-2000:]
    assert tree_state(root) == before


def test_a_requirements_file_that_installs_the_project_itself_with_an_extra(tmp_path: Path) -> None:
    """requirements-dev.txt as projects write it for `pip install -r requirements-dev.txt`:
    `-e .[web]` (the project itself, with its `web` extra) and pytest. The project's own wheel
    is the release's, and the extra's dependency (markupsafe) is resolved with it; `-e` was
    refused (exit 4) as an editable install. A path to anything else is still refused."""
    repo = webapp(tmp_path / "app", deps='"packaging>=23"')
    text = (repo.path / "pyproject.toml").read_text()
    repo.write("pyproject.toml", text.replace("[project.scripts]", '[project.optional-dependencies]\nweb = ["markupsafe>=2"]\n\n[project.scripts]'))
    repo.write("requirements-dev.txt", "-e .[web]\npytest>=7\n")
    repo.commit("requirements-dev.txt installs the project with its web extra")
    root = tmp_path / "target"
    checks = [{"kind": "import", "modules": ["webapp", "markupsafe"]}, {"kind": "pytest", "args": ["tests", "-q"], "expect_passed": 1}]
    cfg = write_config(
        tmp_path / "release.toml",
        repo.path,
        top={"name": "webapp"},
        bundle={"artifacts": ["wheel"]},
        target={"root": str(root), "create_root": True},
        environment={"requirements": ["requirements-dev.txt"]},
        checks=checks,
    )
    cp = run_release("--config", cfg, "--json", "bundle")
    assert cp.returncode == 0, cp.stderr[-3000:]
    with tarfile.open(json.loads(cp.stdout)["bundle"]) as tf:
        names = tf.getnames()
    assert any("/release-env/wheels/markupsafe-" in n for n in names) and any("/release-env/wheels/pytest-" in n for n in names)
    assert run_release("--config", cfg, "deploy", "--no-plan").returncode == 0
    smoke = run_release("--config", cfg, "--json", "smoke")
    assert smoke.returncode == 0, smoke.stdout[-3000:]
    repo.write("requirements-dev.txt", "-e ../elsewhere\npytest>=7\n")
    repo.commit("a path outside the project")
    cp = run_release("--config", cfg, "bundle")
    assert cp.returncode == 4 and "requirements-dev.txt:1" in cp.stderr and "path dependency outside the project" in cp.stderr, cp.stderr[-2000:]
