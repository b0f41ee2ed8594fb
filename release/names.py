"""Every name this tool makes, formatted and parsed in one place.

    bundle_name(name, version, sha, stamp)   -> "<name>-<version>-<sha7>-<stamp>.tar.gz"
    parse_bundle_name(name, filename)        -> BundleName | None   (the exact inverse)
    release_dir(...)                         -> (parent, folder) for the strategy
    new_deploy_id(now)                       -> "<stamp>-<microseconds>-<random>", sorts by time
    rollback_command(target)                 -> the shell-quoted `rm -rf -- <target>`

Names that reach a filesystem or a shell are checked against a strict character set:
an application name (config) is exit 2, a version from a repository is exit 4.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

from .agent import name_problem, rollback_command
from .agent.names import version_ok
from .errors import ConfigError, RefusedError

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # whole names (fullmatch: a trailing newline is no match)
FOLDER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_@=,-]{0,199}")
_BUNDLE_TAIL = re.compile(r"^(?P<version>.+)-(?P<sha7>[0-9a-f]{7})-(?P<stamp>\d{8}T\d{6}Z)\.tar\.gz$")

__all__ = [
    "BundleName",
    "bundle_name",
    "check_folder",
    "check_name",
    "check_version",
    "new_deploy_id",
    "normalize_version",
    "parse_bundle_name",
    "release_dir",
    "rollback_command",
    "utc_stamp",
]


def utc_stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime(STAMP_FORMAT)


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"config key 'name' is not a safe file name: {name!r}", hint="use letters, digits, '.', '_', '-' (up to 100)")
    return name


def normalize_version(version: str) -> str:
    """The PEP 440 normal form of ``version`` (``1.0-RC1`` -> ``1.0rc1``); refused if it is not one."""
    from packaging.version import InvalidVersion, Version

    try:
        normal = str(Version(version))
    except InvalidVersion:
        raise RefusedError(
            f"the project's version {version[:80]!r} is not a valid PEP 440 version",
            hint="fix the version in the application's repository",
        ) from None
    return check_version(normal)


def check_version(version: str) -> str:
    if not version_ok(version):
        raise RefusedError(
            f"version {version[:80]!r} holds characters that are not safe in a file name or a shell command",
            hint="use a PEP 440 version (letters, digits, '.', '+', '!')",
        )
    return version


def check_folder(folder: str, key: str = "target.dir") -> str:
    why = name_problem(folder) or ("" if FOLDER_RE.fullmatch(folder) else "only letters, digits and . + ! _ @ = , - are allowed")
    if "/" in folder:
        why = "must be a single folder name"
    if folder.startswith(".release-"):
        why = "'.release-' is the tool's reserved prefix"
    if why:
        raise ConfigError(f"{key} gives an unsafe folder name {folder[:80]!r}: {why}", hint=f"fix {key}")
    return folder


class BundleName(NamedTuple):
    name: str
    version: str
    sha7: str
    stamp: str

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.sha7}-{self.stamp}.tar.gz"

    @property
    def basename(self) -> str:
        return self.filename.removesuffix(".tar.gz")


def bundle_name(name: str, version: str, sha: str, stamp: str) -> BundleName:
    return BundleName(name, version, sha[:7], stamp)


def parse_bundle_name(name: str, filename: str) -> BundleName | None:
    """The inverse of :func:`bundle_name` for bundles of application ``name``; None if not one."""
    if not filename.startswith(name + "-"):
        return None
    m = _BUNDLE_TAIL.match(filename[len(name) + 1 :])
    if not m or not version_ok(m["version"]):
        return None
    return BundleName(name, m["version"], m["sha7"], m["stamp"])


def release_dir(strategy: str, template: str, name: str, version: str, sha: str, stamp: str) -> tuple[str, str]:
    """(parent relative to the root, folder name) of a release for the strategy."""
    if strategy == "timestamped":
        parent, folder = "releases", f"{name}-{version}-{sha[:7]}-{stamp}"
    else:
        parent, folder = "", template.format(name=name, version=version, sha=sha[:7], stamp=stamp)
    check_folder(folder.replace("<stamp>", "20000101T000000Z"))  # plan shows the stamp as a placeholder
    return parent, folder


def new_deploy_id(now: dt.datetime | None = None) -> str:
    """``<UTC stamp>-<microseconds>-<random>``: two deploys of the same second sort by time."""
    t = now or dt.datetime.now(dt.UTC)
    import secrets  # only a deploy makes an id

    return f"{utc_stamp(t)}-{t.microsecond:06d}-{secrets.token_hex(3)}"
