"""Secrets from the environment live only in this process's memory, never in its environment.

At start the CLI takes every DSN variable its config names (and ``PGPASSWORD``): the value
is kept here, its password registered with the redactor, and the variable removed from
``os.environ`` *and* overwritten in the process's original environment block, which is
what ``/proc/<pid>/environ`` shows: a smoke check on this machine that reads its
ancestors' environments finds nothing. Children get a clean environment anyway
(``proc.clean_env``). Once it holds a secret the process is non-dumpable, so a check
running as the same user cannot read the value from its memory either.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .redact import redact

_taken: dict[str, str] = {}


def _scrub_initial(name: str) -> None:
    """Overwrite ``NAME=value`` in the C environment block with NUL bytes (Linux/glibc)."""
    import ctypes  # only when there is a secret to scrub

    try:
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError):
        return
    prefix = name.encode() + b"="
    i = 0
    while environ[i]:
        addr = environ[i]
        entry = ctypes.string_at(addr)
        if entry.startswith(prefix):
            ctypes.memset(addr + len(prefix), 0, len(entry) - len(prefix))
        i += 1


PR_SET_DUMPABLE = 4


def no_dump() -> bool:
    """Make this process non-dumpable (prctl PR_SET_DUMPABLE 0): no core file, and no process
    of the same user that lacks CAP_SYS_PTRACE (a smoke check, a command of the app) may
    read its memory or environment through /proc/<pid>/mem, ptrace or process_vm_readv,
    whatever kernel.yama.ptrace_scope says. True when it took effect (Linux)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def take(names: Iterable[str]) -> None:
    """Move each named variable from the environment into this process's memory, which no
    other process of this user may then read (``no_dump``)."""
    for name in names:
        value = os.environ.get(name)
        if value is None:
            continue
        if not _taken:
            no_dump()  # before the value is copied anywhere in this process
        _taken[name] = value
        redact(value)  # remembers the password it holds, so it is masked everywhere
        _scrub_initial(name)
        os.environ.pop(name, None)


def get(name: str) -> str | None:
    return _taken.get(name) or os.environ.get(name)
