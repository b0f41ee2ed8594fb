"""One package index configuration for the resolver (uv) and the downloader (pip).

The operator configures a private index once, the way uv reads it: ``UV_DEFAULT_INDEX``
(the index that replaces PyPI) and ``UV_INDEX`` (more indexes, space-separated, each
``url`` or ``name=url``; uv's own rule, first-index, keeps a name from being taken from a
later index), with credentials in the URL, in ``UV_INDEX_<NAME>_USERNAME`` /
``UV_INDEX_<NAME>_PASSWORD`` for a named index, in ``~/.netrc``, or through a keyring
(``UV_KEYRING_PROVIDER``). pip's ``PIP_INDEX_URL`` / ``PIP_EXTRA_INDEX_URL`` are read
when no uv variable is set. From that one configuration:

- ``uv pip compile`` resolves with it and records the sha256 of every file it saw
  (``--generate-hashes``);
- ``pip download`` is given the same indexes (as ``PIP_INDEX_URL`` /
  ``PIP_EXTRA_INDEX_URL``, credentials filled in, in its environment, never on a command
  line) and ``--require-hashes``: a file that is not one the resolver saw (an impostor of
  the same name and version on another index) is refused.

Credentials reach these two processes only: ``proc.clean_env`` removes every ``UV_*`` /
``PIP_*`` variable that holds a secret, so a build backend, the agent or a smoke check
never sees one, and nothing falls back silently to the public index.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import ConfigError
from ..redact import register_secret

# the variables that configure an index or its credentials, for uv and for pip
UV_INDEX_VARS = ("UV_DEFAULT_INDEX", "UV_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL")
PIP_INDEX_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
_NAMED_CREDENTIAL = re.compile(r"UV_INDEX_([A-Z0-9_]+)_(USERNAME|PASSWORD)")
_CREDENTIAL_NAMES = ("UV_KEYRING_PROVIDER", "PIP_KEYRING_PROVIDER", "NETRC")


# NamedTuples, not dataclasses: ``proc.clean_env`` imports this module for every child
# process, and ``dataclasses`` (with its ``inspect``) would cost every command ~7 ms
class Index(NamedTuple):
    url: str  # credentials filled in, when the configuration gives them
    name: str = ""
    source: str = ""  # the variable it came from, for messages


class Indexes(NamedTuple):
    default: Index | None
    extra: tuple[Index, ...]
    uv_env: Mapping[str, str]  # what the resolver gets: the operator's own uv variables, as given

    @property
    def configured(self) -> bool:
        return self.default is not None or bool(self.extra)

    def pip_env(self) -> dict[str, str]:
        """The same indexes for pip download (credentials in the URLs: pip's environment only).
        With an index configured, pip reads no configuration file and no other index: what
        it may fetch from is what the resolver resolved from."""
        env: dict[str, str] = {}
        if self.configured:
            env["PIP_CONFIG_FILE"] = os.devnull
            env["PIP_INDEX_URL"] = self.default.url if self.default is not None else "https://pypi.org/simple"
            env["PIP_EXTRA_INDEX_URL"] = " ".join(i.url for i in self.extra)
        for name in ("PIP_KEYRING_PROVIDER", "NETRC"):
            if name in os.environ:
                env[name] = os.environ[name]
        if "PIP_KEYRING_PROVIDER" not in env and os.environ.get("UV_KEYRING_PROVIDER"):
            env["PIP_KEYRING_PROVIDER"] = os.environ["UV_KEYRING_PROVIDER"]
        return env

    def describe(self) -> str:
        shown = [i for i in (self.default, *self.extra) if i is not None]
        return ", ".join(f"{i.name or i.source}" for i in shown) or "PyPI (no index configured)"


def _entries(text: str, source: str) -> list[Index]:
    out = []
    for word in text.split():
        name, eq, url = word.partition("=")
        if not eq or "://" in name:
            name, url = "", word
        out.append(Index(url, name, source))
    return out


def _with_credentials(index: Index, environ: Mapping[str, str]) -> Index:
    """``UV_INDEX_<NAME>_USERNAME`` / ``_PASSWORD`` of a named index, into its URL."""
    if not index.name:
        return index
    key = re.sub(r"[^A-Z0-9]", "_", index.name.upper())
    user = environ.get(f"UV_INDEX_{key}_USERNAME", "")
    password = environ.get(f"UV_INDEX_{key}_PASSWORD", "")
    if not (user or password):
        return index
    register_secret(password)
    parts = urlsplit(index.url)
    if parts.username or parts.password:
        return index
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return Index(urlunsplit(parts._replace(netloc=netloc)), index.name, index.source)


def read(environ: Mapping[str, str] | None = None) -> Indexes:
    """The operator's index configuration, from uv's variables (else pip's). Exit 2 for a
    value that is no index URL, naming the variable."""
    env = os.environ if environ is None else environ
    default: Index | None = None
    extra: list[Index] = []
    if any(env.get(v) for v in UV_INDEX_VARS):
        for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
            if env.get(var) and default is None:
                found = _entries(env[var], var)
                if len(found) != 1:
                    raise ConfigError(f"{var} must name one index URL", hint="more indexes go in UV_INDEX")
                default = found[0]
        for var in ("UV_INDEX", "UV_EXTRA_INDEX_URL"):
            extra += _entries(env.get(var, ""), var)
    else:
        if env.get("PIP_INDEX_URL"):
            default = Index(env["PIP_INDEX_URL"].strip(), "", "PIP_INDEX_URL")
        extra += _entries(env.get("PIP_EXTRA_INDEX_URL", ""), "PIP_EXTRA_INDEX_URL")
    checked = []
    for index in [i for i in (default, *extra) if i is not None]:
        parts = urlsplit(index.url)
        if parts.scheme not in ("https", "http", "file") or (parts.scheme != "file" and not parts.hostname):
            raise ConfigError(
                f"{index.source}: {index.name or 'an entry'} is not an index URL (http, https or file)", hint="set it to the index's simple API URL"
            )
        if parts.password:
            register_secret(parts.password)
        checked.append(_with_credentials(index, env))
    default = checked[0] if default is not None else None
    uv_env = {k: v for k, v in env.items() if k in UV_INDEX_VARS or _NAMED_CREDENTIAL.fullmatch(k) or k in _CREDENTIAL_NAMES}
    if not any(env.get(v) for v in UV_INDEX_VARS):  # pip's configuration, given to uv as uv reads it
        if default is not None:
            uv_env["UV_DEFAULT_INDEX"] = default.url
        if checked[1 if default is not None else 0 :]:
            uv_env["UV_INDEX"] = " ".join(i.url for i in checked[1 if default is not None else 0 :])
    return Indexes(default, tuple(checked[1:] if default is not None else checked), uv_env)


def holds_secret(name: str, value: str) -> bool:
    """Whether an inherited ``UV_*`` / ``PIP_*`` variable carries a credential (which only the
    resolver and the downloader are given, by ``read``)."""
    from ..redact import redact

    return bool(_NAMED_CREDENTIAL.fullmatch(name)) or redact(value) != value or any(w in name.lower() for w in ("password", "token", "secret"))


def without_credentials(name: str, value: str) -> str | None:
    """What every other child (a build, a smoke check) gets of an inherited ``UV_*`` /
    ``PIP_*`` variable: an index URL keeps its place with its credentials removed (a build
    requirement behind authentication then fails loudly, never falls back to the public
    index; give builds credentials through ~/.netrc or a keyring); a variable that is a
    credential is left out (None)."""
    if name in UV_INDEX_VARS or name in PIP_INDEX_VARS:
        words = []
        for word in value.split():
            label, eq, url = word.partition("=")
            if not eq or "://" in label:
                label, url = "", word
            parts = urlsplit(url)
            if parts.username or parts.password:
                url = urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))
            words.append(f"{label}={url}" if label else url)
        return " ".join(words)
    return None if holds_secret(name, value) else value
