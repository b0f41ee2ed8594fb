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
# The sandbox target of the built-in example runs `python3` from this environment (it is
# first on PATH in the pipeline sessions), so the example's own pytest suite can run there.
TARGET_TOOLS = ["pytest"]


def _release_bin() -> str:
    """Create (or reuse) the shared pipeline environment and return its `release` script."""
    stamp = ENV / ".installed"
    want = hashlib.sha256((HERE / "pyproject.toml").read_bytes() + repr(TARGET_TOOLS).encode()).hexdigest()
    exe = ENV / "bin" / "release"
    if not (stamp.is_file() and stamp.read_text() == want and exe.exists()):
        uv = shutil.which("uv")
        if uv:
            subprocess.run([uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(ENV)], check=True)
            subprocess.run([uv, "pip", "install", "--quiet", "--python", str(ENV / "bin" / "python"), "-e", str(HERE), *TARGET_TOOLS], check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
            subprocess.run([str(ENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", str(HERE), *TARGET_TOOLS], check=True)
        stamp.write_text(want)
    return str(exe)


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


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The whole test suite (real git, tar, sshd and PostgreSQL)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "release", "tests", "scripts", "noxfile.py")
    session.run("mypy")
