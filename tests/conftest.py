"""Shared fixtures: real git repositories in temp folders, configs, the CLI in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from release.cli import main

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


@pytest.fixture
def project(tmp_path: Path) -> Repo:
    return make_project(tmp_path / "app")


def toml_value(v: object) -> str:
    return json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")


def write_config(path: Path, repo: Path | str, **sections: dict[str, object]) -> Path:
    """Write a release.toml; ``sections`` override/add keys per table."""
    base: dict[str, dict[str, object]] = {
        "": {"name": "demo-app"},
        "source": {"repo": str(repo), "head": "HEAD"},
        "bundle": {"out": "bundles", "artifacts": []},
        "target": {"root": str(path.parent / "target"), "create_root": True},
    }
    checks = sections.pop("checks", None)
    for k, v in sections.items():
        base.setdefault("" if k == "top" else k, {}).update(v)
    lines = [f"{k} = {toml_value(v)}" for k, v in base.pop("").items()]
    for table, values in base.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for check in checks or []:  # type: ignore[attr-defined]
        lines.append("[[smoke.check]]")
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


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def run(*args: str | Path) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_release(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a child process (for end-to-end and secrecy tests)."""
    return subprocess.run(
        [sys.executable, "-m", "release", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
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


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from .servers import start_sshd

    server, why = start_sshd(tmp_path_factory.mktemp("sshd"))
    need(server is not None, why)
    assert server is not None
    yield server
    server.proc.terminate()
    server.proc.wait(timeout=10)


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> dict[str, object]:
    """Config overrides for the target: this machine, or the test sshd on 127.0.0.1."""
    if request.param == "local":
        return {}
    server = request.getfixturevalue("sshd")
    return {"host": server.host, "ssh_config": str(server.config)}


@pytest.fixture(scope="session")
def pg_admin():  # type: ignore[no-untyped-def]
    """An admin DSN: $RELEASE_TEST_DSN, else an embedded throwaway server."""
    dsn = os.environ.get("RELEASE_TEST_DSN")
    if dsn:
        yield dsn
        return
    from release import pgdemo

    need(pgdemo.bindir() is not None, "PostgreSQL server binaries not installed (apt-get install postgresql)")
    with pgdemo.server() as srv:
        yield srv.dsn()


@pytest.fixture
def app_db(pg_admin: str):  # type: ignore[no-untyped-def]
    """A fresh database seeded from the example's schema, with a unique read-only role."""
    import secrets as _secrets

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    suffix = _secrets.token_hex(4)
    db, role, password = f"app_{suffix}", f"ro_{suffix}", "pw-" + _secrets.token_hex(8)
    schema = (EXAMPLE / "db" / "schema.sql").read_text().replace("context_pack_readonly", role)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    admin_db = make_conninfo(pg_admin, dbname=db)
    with psycopg.connect(admin_db, autocommit=True) as conn:
        conn.execute(schema.encode())
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    params = conninfo_to_dict(pg_admin)
    params.update(user=role, dbname=db, password=password)
    yield {"admin": admin_db, "dsn": make_conninfo(**params), "role": role, "password": password, "db": db}
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
