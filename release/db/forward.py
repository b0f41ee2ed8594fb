"""G6 through the target: reach the database as the target sees it, over the host's SSH connection.

``via = "target"`` on a ``db-readonly`` check: the controller opens an OpenSSH forward on
the existing shared connection (``ssh -O forward``) from a unix socket in a private 0700
folder of its own (so no other local user can use it) to the database's host:port, or
unix socket, as the target resolves them; the DSN is rewritten to that socket; the same
three layers and proof run; the forward is cancelled and the folder removed at the end.
The DSN still comes from the controller's environment only.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from .. import proc
from ..config import Config
from ..errors import ConfigError, ReleaseError
from ..remote.connection import socket_folder
from ..remote.transport import SshTransport, for_config


def _ssh(t: SshTransport, *options: str) -> subprocess.CompletedProcess[bytes]:
    argv = [*t.ssh_argv(forward=True), *options, "--", t.host]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=proc.clean_env(), timeout=60, check=False)


@contextmanager
def through(cfg: Config, dsn: str) -> Iterator[str]:
    """Yield ``dsn`` rewritten to reach its database through ``cfg``'s host."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    t = for_config(cfg)
    if not isinstance(t, SshTransport):
        yield dsn  # this machine is the target: it sees the database as it is
        return
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        raise ConfigError("the DSN is malformed (psycopg could not parse it); its text is withheld", hint="fix the DSN variable") from None
    host = str(params.get("hostaddr") or params.get("host") or "/var/run/postgresql")
    port = str(params.get("port") or "5432")
    if "," in host or "," in port:
        raise ConfigError('via = "target" needs a DSN with one host', hint="name one host (and port) in the DSN")
    remote = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else f"{host}:{port}"
    folder = socket_folder("release-pgfwd-", len(f".s.PGSQL.{port}"))  # mode 0700: the forward is ours alone
    local = f"{folder}/.s.PGSQL.{port}"
    spec = f"{local}:{remote}"
    try:
        t.ready()  # the shared connection (ControlMaster) the forward rides on
        fwd = _ssh(t, "-O", "forward", "-L", spec)
        if fwd.returncode != 0:
            raise ReleaseError(
                f"cannot forward the database through {t.host}", detail=fwd.stderr.decode("utf-8", "replace"), hint="check that sshd allows TCP forwarding"
            )
        params.pop("hostaddr", None)
        params.update(host=folder, port=port)
        yield make_conninfo("", **params)
    finally:
        _ssh(t, "-O", "cancel", "-L", spec)
        shutil.rmtree(folder, ignore_errors=True)
