"""An embedded, throwaway PostgreSQL server for the example's smoke and for the tests.

Started from the server binaries (initdb, pg_ctl) in a private temp folder, listening
only on a Unix socket in that folder; the superuser authenticates by peer/trust on that
socket, every other role by SCRAM password. Stopped and deleted on exit.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import proc
from ..errors import BlockedError
from ..redact import register_secret


def bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@dataclass(frozen=True)
class Server:
    socket_dir: str
    port: int
    folder: str

    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        dsn = f"host={self.socket_dir} port={self.port} user={user} dbname={dbname}"
        return dsn + (f" password={password}" if password else "")


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if not runuser:
        raise BlockedError("running as root and `runuser` is missing: cannot start PostgreSQL as the postgres user")
    return [runuser, "-u", "postgres", "--", *argv]


@contextmanager
def server(netns: str = "") -> Iterator[Server]:
    """A throwaway PostgreSQL; with ``netns`` (tests) it runs inside that network namespace and
    also listens on its 127.0.0.1:5432, with password authentication."""
    bins = bindir()
    if not bins:
        raise BlockedError("PostgreSQL server binaries not found (initdb)", hint="apt-get install postgresql, or set the DSN variable")
    from ..remote.connection import socket_folder

    folder = socket_folder("release-pg-", len("sock/.s.PGSQL.5432"))  # its socket's path must fit, whatever TMPDIR
    os.chmod(folder, 0o755)
    data = os.path.join(folder, "data")
    sock = os.path.join(folder, "sock")
    os.mkdir(sock)
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(sock, pw.pw_uid, pw.pw_gid)
        os.mkdir(data, 0o700)
        os.chown(data, pw.pw_uid, pw.pw_gid)
    port = 5432
    proc.run(
        _as_postgres([f"{bins}/initdb", "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--no-sync"]),
        what="initdb",
    )
    with open(os.path.join(data, "pg_hba.conf"), "w") as f:
        f.write("local all postgres trust\nlocal all all scram-sha-256\n" + ("host all all 127.0.0.1/32 scram-sha-256\n" if netns else ""))
    log = os.path.join(folder, "server.log")
    if os.geteuid() == 0:
        Path(log).touch()
        os.chown(log, pw.pw_uid, pw.pw_gid)
    listen = "127.0.0.1" if netns else "''"
    opts = f"-k {sock} -c listen_addresses={listen} -p {port} -c fsync=off -c full_page_writes=off"
    start = _as_postgres([f"{bins}/pg_ctl", "-D", data, "-l", log, "-o", opts, "-w", "-t", "60", "start"])
    proc.run(["ip", "netns", "exec", netns, *start] if netns else start, what="pg_ctl start")
    try:
        yield Server(sock, port, folder)
    finally:
        proc.run(_as_postgres([f"{bins}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]), check=False)
        shutil.rmtree(folder, ignore_errors=True)


def seed(srv: Server, schema_sql: str, role: str, dbname: str = "app") -> str:
    """Create ``dbname`` from ``schema_sql``; give ``role`` a fresh password; return its DSN."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(srv.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with psycopg.connect(srv.dsn(dbname=dbname), autocommit=True) as conn:
        conn.execute(schema_sql.encode())
        password = secrets.token_urlsafe(18)
        register_secret(password)
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    return srv.dsn(user=role, dbname=dbname, password=password)
