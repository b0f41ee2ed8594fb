"""Shared test helpers, in one place: real git repositories in temp folders, configs, the CLI
as a child process, tree snapshots, keys, and the rule that a missing server fails in CI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLE = ROOT / "examples" / "iu-cutter"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    cp = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


@dataclass
class Repo:
    path: Path

    def write(self, rel: str, text: str | bytes, mode: int | None = None) -> Path:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)
        if mode is not None:
            p.chmod(mode)
        return p

    def commit(self, message: str = "change", date: str = "2026-05-21T10:00:00Z") -> str:
        git(self.path, "add", "-A")
        env_date = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        cp = subprocess.run(
            ["git", "-C", str(self.path), "commit", "-q", "--allow-empty", "-m", message],
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV, **env_date},
        )
        assert cp.returncode == 0, cp.stderr
        return git(self.path, "rev-parse", "HEAD")

    def git(self, *args: str) -> str:
        return git(self.path, *args)


def make_project(path: Path, version: str = "0.6.0") -> Repo:
    """A real git repository holding a small hatchling project, one commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    repo = Repo(path)
    repo.write(
        "pyproject.toml",
        f'[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        f'[project]\nname = "demo-app"\nversion = "{version}"\nrequires-python = ">=3.9"\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["demo_app"]\n',
    )
    repo.write("demo_app/__init__.py", f'__version__ = "{version}"\n')
    repo.write("demo_app/core.py", "def answer():\n    return 42\n")
    repo.write("bin/run.sh", "#!/bin/sh\necho run\n", mode=0o755)
    repo.write("tests/test_core.py", "from demo_app.core import answer\n\ndef test_answer():\n    assert answer() == 42\n")
    repo.commit("initial")
    return repo


def toml_value(v: object) -> str:
    return json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")


def write_config(path: Path, repo: Path | str, **sections: Any) -> Path:
    """Write a release.toml; ``sections`` override/add keys per table."""
    base: dict[str, dict[str, object]] = {
        "": {"name": "demo-app"},
        "source": {"repo": str(repo), "head": "HEAD"},
        "bundle": {"out": "bundles", "artifacts": []},
        "target": {"root": str(path.parent / "target"), "create_root": True},
    }
    checks = sections.pop("checks", None)
    health = sections.pop("health", None)
    for k, v in sections.items():
        base.setdefault("" if k == "top" else k, {}).update(v)
    lines = [f"{k} = {toml_value(v)}" for k, v in base.pop("").items()]
    for table, values in base.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for check in checks or []:
        lines.append("[[smoke.check]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in check.items()]
    for check in health or []:
        lines.append("[[health.check]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in check.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.out.strip().splitlines()[-1])
        return data


def run_release(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a child process (for end-to-end and secrecy tests)."""
    return subprocess.run(
        [sys.executable, "-m", "release", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def popen_release(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The CLI started in the background (for tests that act while it runs)."""
    return subprocess.Popen(
        [sys.executable, "-m", "release", *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, why: str) -> None:
    """Skip locally when a server cannot be had; in CI a missing server is a failure."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required test server unavailable in CI: {why}")
    pytest.skip(why)


JOURNAL = ".release-journal"  # a root's own history, kept on purpose: the tool's parent listing leaves it out too


def tree_state(path: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``path`` with its type, mode, mtime and content hash (a target
    root's journal aside: it is the host's own history, kept on purpose)."""
    out: dict[str, tuple[object, ...]] = {}
    for p in sorted([path, *path.rglob("*")]):
        if p.name == JOURNAL:
            continue
        st = p.lstat()
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = ("l", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("d", st.st_mode)
        else:
            out[rel] = ("f", st.st_mode, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def listing(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n != JOURNAL)


def deploy(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_release("--config", cfg, "--json", "deploy", "--no-plan", *extra)


def bundle(cfg: Path) -> Path:
    cp = run_release("--config", cfg, "--json", "bundle")
    assert cp.returncode == 0, cp.stderr
    return Path(json.loads(cp.stdout)["bundle"])


def copy_bundle(result: dict[str, Any], dest: Path) -> Path:
    """A built bundle (``bundle --json``'s answer) and everything beside it (checksums,
    signature, SBOM, provenance), copied into a folder of the test's own."""
    import shutil

    bundle = Path(str(result["bundle"]))
    dest.mkdir(parents=True, exist_ok=True)
    for p in bundle.parent.iterdir():
        if p.name.startswith(bundle.name):
            shutil.copy2(p, dest / p.name)
    return dest / bundle.name


def keypair(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


# typing.Callable, not collections.abc's: subscriptable at runtime on the oldest target Python too
Cli = typing.Callable[..., CliResult]


def separate_python(folder: Path) -> str:
    """An interpreter path that is not the tests' own binary (a script that execs it), so the
    agent runs as its own process, never in a forked child of the CLI (release/remote/inprocess.py)."""
    import shlex

    shim = folder / "python-shim"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(os.path.realpath(sys.executable))} "$@"\n')
    shim.chmod(0o755)
    return str(shim)
