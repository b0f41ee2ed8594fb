"""Nox sessions: thin wrappers over the `release` CLI, plus tests and lint.

The pipeline sessions (plan, bundle, deploy, smoke, rollback, ...) share one
environment, `.nox/release-env`, installed once and reinstalled only when
pyproject.toml changes, so `nox -s bundle deploy smoke` spends its time on the work.
Sessions that change the world are not run by default.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
HERE = Path(__file__).resolve().parent
ENV = HERE / ".nox" / "release-env"


def _release_bin() -> str:
    """Create (or reuse) the shared pipeline environment and return its `release` script."""
    stamp = ENV / ".installed"
    want = hashlib.sha256((HERE / "pyproject.toml").read_bytes()).hexdigest()
    exe = ENV / "bin" / "release"
    if not (stamp.is_file() and stamp.read_text() == want and exe.exists()):
        uv = shutil.which("uv")
        if uv:
            subprocess.run([uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(ENV)], check=True)
            subprocess.run([uv, "pip", "install", "--quiet", "--python", str(ENV / "bin" / "python"), "-e", str(HERE)], check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
            subprocess.run([str(ENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", str(HERE)], check=True)
        stamp.write_text(want)
    return str(exe)


def _install_once(session: nox.Session, *args: str) -> None:
    """``session.install(*args)`` unless this environment already has it for this
    pyproject.toml (an editable install: code changes need no reinstall)."""
    stamp = Path(session.virtualenv.location) / ".installed"
    want = hashlib.sha256((HERE / "pyproject.toml").read_bytes() + repr(args).encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == want:
        return
    session.install(*args)
    stamp.write_text(want)


def _stage(session: nox.Session, stage: str) -> None:
    env = {"PATH": f"{ENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    session.run(_release_bin(), stage, *session.posargs, env=env, external=True)


@nox.session(venv_backend="none", default=False)
def plan(session: nox.Session) -> None:
    """Compute and lock the deploy plan (G1, G2); changes nothing."""
    _stage(session, "plan")


@nox.session(venv_backend="none", default=False)
def bundle(session: nox.Session) -> None:
    """Build the checksummed, reproducible release bundle from the recorded HEAD."""
    _stage(session, "bundle")


@nox.session(venv_backend="none", default=False)
def deploy(session: nox.Session) -> None:
    """Ship the bundle and unpack it side-by-side with a DEPLOY-MANIFEST (G3)."""
    _stage(session, "deploy")


@nox.session(venv_backend="none", default=False)
def smoke(session: nox.Session) -> None:
    """Run the G5 static/unit and G6 read-only database smoke checks."""
    _stage(session, "smoke")


@nox.session(venv_backend="none", default=False)
def rollback(session: nox.Session) -> None:
    """Remove exactly what the last deploy created and prove the parent is unchanged."""
    _stage(session, "rollback")


@nox.session(venv_backend="none", default=False)
def status(session: nox.Session) -> None:
    """List the releases on the target root."""
    _stage(session, "status")


@nox.session(venv_backend="none", default=False)
def verify(session: nox.Session) -> None:
    """Re-hash the deployed release against its manifest."""
    _stage(session, "verify")


@nox.session(venv_backend="none", default=False)
def promote(session: nox.Session) -> None:
    """Switch the `current` pointer to the deployed release (timestamped strategy)."""
    _stage(session, "promote")


@nox.session(venv_backend="none", default=False)
def provision(session: nox.Session) -> None:
    """Create the runtime skeleton on the target (G4); `-- --undo` removes it."""
    _stage(session, "provision")


AGENT_OLDEST = "3.8"  # the oldest Python the target side (release/agent) supports
AGENT_UNIT_TESTS = [
    "tests/unit/agent/test_agent_tar.py",
    "tests/unit/agent/test_lock_and_rename.py",
    "tests/unit/agent/test_parallel_tree.py",
    "tests/unit/agent/test_deep_trees.py",
    "tests/unit/agent/test_agent_jsonio.py",
    "tests/unit/agent/test_agent_names.py",
    "tests/unit/agent/test_wheelsafe.py",
    "tests/unit/agent/test_smoke_args.py",
    "tests/unit/agent/test_health_probe.py",
    "tests/unit/agent/test_trust_parsers.py",
]


def _oldest_python() -> str | None:
    pyenv = sorted(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob(f"versions/{AGENT_OLDEST}.*/bin/python"))
    if pyenv:
        return str(pyenv[-1])
    found = shutil.which(f"python{AGENT_OLDEST}")
    return found if found and "/shims/" not in found else None


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The whole test suite (real git, tar, sshd and PostgreSQL), then the agent's unit tests
    on the oldest Python the target side supports."""
    session.install("-e", ".[test,docs]")
    # two workers, a test file each at a time (a file's servers and hosts stay in one worker):
    # the whole suite in about 7 minutes on 2 cores instead of 13
    session.run("pytest", *(session.posargs or ["-n", "2", "--dist", "loadfile"]))
    if not session.posargs:
        agent_oldest(session)
        session.run("mkdocs", "build", "--strict", "--quiet", env={"NO_MKDOCS_2_WARNING": "1"})  # the docs site, as CI builds it


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """The documentation site (MkDocs Material) into site/, strictly: a broken link or a stale
    generated page (configuration reference, troubleshooting) fails it."""
    session.install("-e", ".[docs]")
    session.run("python", "scripts/gen_docs.py", "--check")
    session.run("mkdocs", "build", "--strict", "--quiet", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(default=False, reuse_venv=True)
def collection(session: nox.Session) -> None:
    """The Ansible collection release.pipeline into dist/collection/: its tree (usable as
    ANSIBLE_COLLECTIONS_PATH) and its versioned tarball, the agent carried as module_utils."""
    session.install("ansible-core>=2.15")
    session.run("python", "scripts/build_collection.py", *(session.posargs or ["dist/collection"]))


@nox.session(default=False, venv_backend="uv|virtualenv", reuse_venv=True)  # uv installs in a blink: the loop stays fast
def unit(session: nox.Session) -> None:
    """The fast unit tests (no servers, no worst-case timings or memory bounds: those run in
    `tests`), on every core: the inner loop while editing, under 10 s."""
    _install_once(session, "-e", ".[test]")
    session.run("pytest", "tests/unit", "-q", "-m", "not slow", "-p", "no:cacheprovider", "-n", "auto", *session.posargs)


@nox.session(name="agent-oldest", venv_backend="none")
def agent_oldest(session: nox.Session) -> None:
    """The agent's unit tests (tar reader, lock, rename, JSON, names) on Python 3.8, the oldest target."""
    python = _oldest_python()
    if python is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            session.error(f"python{AGENT_OLDEST} is needed to test the agent on the oldest target Python")
        session.skip(f"python{AGENT_OLDEST} not found")
    env_dir = HERE / ".nox" / f"agent-py{AGENT_OLDEST}"
    if not (env_dir / "bin" / "pytest").exists() or not list(env_dir.glob("lib/python*/site-packages/installer")):
        session.run(python, "-m", "venv", str(env_dir), external=True)
        session.run(str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "pytest", "hypothesis", "installer==0.7.0", external=True)
    pytest = [str(env_dir / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *AGENT_UNIT_TESTS]
    session.run(*pytest, env={"PYTHONPATH": str(HERE)}, external=True)


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "release", "tests", "scripts", "noxfile.py")
    session.run("mypy")
