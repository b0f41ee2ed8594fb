"""Fixtures: real git repositories, the CLI in-process, a real sshd, a real PostgreSQL.

Helpers live in ``tests/support.py``. Tests that use the sshd or PostgreSQL fixtures are
marked ``ssh`` / ``pg`` automatically; tests under ``tests/unit`` are marked ``unit``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .support import EXAMPLE, CliResult, Repo, make_project, need


@pytest.fixture
def project(tmp_path: Path) -> Repo:
    return make_project(tmp_path / "app")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        if "sshd" in names or (callspec is not None and callspec.params.get("transport") == "ssh"):
            item.add_marker(pytest.mark.ssh)
        if names & {"pg_admin", "app_db"}:
            item.add_marker(pytest.mark.pg)
        item.add_marker(pytest.mark.unit if "/unit/" in str(item.fspath) else pytest.mark.integration)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    from release.cli import main  # imported here: the agent's unit tests run on older Pythons too

    def run(*args: str | Path) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


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
    from release.db import pgdemo

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
    yield {"admin": admin_db, "dsn": make_conninfo("", **params), "role": role, "password": password, "db": db}
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
