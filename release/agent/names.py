"""Name rules, one copy each: release-relative paths, links, deploy ids, folder names,
the rollback command, the manifest format and the tree hash. The controller imports them."""

from __future__ import annotations

import hashlib

from .protocol import BUNDLE_MANIFEST, PREFIX, AgentError, refuse

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from typing import Any


VENV_DIR = ".venv"  # the release's environment: made by the deploy, never shipped in a bundle
NAME_MAX = 255
PATH_MAX = 4096
MAX_DEPTH = 128  # components of one name: a release's paths, a wheel's members, a link's target


# the control characters, backslash, and every surrogate: U+DC80-U+DCFF is a byte that was not
# UTF-8 (surrogateescape), any other is a lone half that no UTF-8 can carry either
_BAD_CHARS = frozenset([*map(chr, range(0x20)), "\x7f", "\\", *map(chr, range(0xD800, 0xE000))])


def name_problem(rel: str) -> str:
    """Why ``rel`` (a '/'-separated path inside a release) is not a safe name, or ''.

    The one rule for names, used by the bundle writer and by the agent: UTF-8 only, no
    control character (0x00-0x1f, 0x7f), no backslash, relative, no empty, '.' or '..'
    component, bounded length (``PATH_MAX`` bytes, ``NAME_MAX`` per component) and depth
    (``MAX_DEPTH`` components): the work every reader does per name is then bounded too.
    """
    if not rel:
        return "empty name"
    if not _BAD_CHARS.isdisjoint(rel):
        c = next(c for c in rel if c in _BAD_CHARS)
        return "not UTF-8" if "\ud800" <= c <= "\udfff" else ("backslash" if c == "\\" else "control character")
    if rel.startswith("/"):
        return "absolute path"
    if len(rel.encode("utf-8")) > PATH_MAX:
        return "path too long"
    parts = rel.split("/")
    if len(parts) > MAX_DEPTH:
        return f"more than {MAX_DEPTH} components deep"
    for part in parts:
        if part in ("", ".", ".."):
            return "'..', '.' or empty path component"
        if len(part.encode("utf-8")) > NAME_MAX:
            return "name component too long"
    return ""


def link_problem(rel: str, target: str, links: set[str] | frozenset[str]) -> str:
    """Why the symlink ``rel -> target`` may leave the tree, or ''.

    Resolved against the tree itself, component by component, the way the kernel would:
    a target that is absolute, climbs above the tree's top, or passes through another
    link (whose own target text would then decide where '..' goes) is refused. The last
    component may be a link (``libx.so -> libx.so.1``): that link is checked by itself.
    """
    if not target:
        return "empty link target"
    if target.startswith("/"):
        return "absolute link target"
    if any(ord(c) < 32 or ord(c) == 0x7F for c in target) or "\\" in target:
        return "control character or backslash in the link target"
    if len(target.encode("utf-8", "surrogateescape")) > PATH_MAX:
        return "link target too long"
    where = rel.split("/")[:-1]
    parts = target.split("/")
    if len(parts) > 2 * MAX_DEPTH:
        return "link target too deep"
    for i, part in enumerate(parts):
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                return "link target climbs out of the tree"
            where.pop()
            continue
        where.append(part)
        if i < len(parts) - 1 and "/".join(where) in links:
            return f"link target passes through another link ({'/'.join(where)})"
        if len(where) >= 3 and where[0] == VENV_DIR and where[1] == "bin" and where[2].startswith("python"):
            # the deploy makes these links itself, to the target's interpreter outside the tree
            return f"link target is (or passes through) {'/'.join(where[:3])}, a link the release's environment makes out of the tree"
    return ""


def manifest_entries(files: list[dict[str, Any]]) -> dict[str, str]:
    """BUNDLE-MANIFEST ``files`` as {path: sha256 | 'link:' + target}: the form hashed in tree_sha256."""
    out: dict[str, str] = {}
    for e in files:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise refuse(f"{BUNDLE_MANIFEST} has a malformed file entry: {str(e)[:80]!r}", "do not deploy this bundle")
        out[e["path"]] = ("link:" + str(e["link"])) if "link" in e else str(e.get("sha256"))
    return out


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def checked_id(value: object) -> str:
    """A deploy id as the agent accepts it: 1-100 of [A-Za-z0-9._-], not starting with '.' or '-'."""
    s = str(value)
    if not (0 < len(s) <= 100) or not set(s) <= _ID_CHARS or s[0] in ".-":
        raise AgentError(2, f"invalid deploy id {s[:40]!r}", "deploy ids are made by the controller")
    return s


def checked_folder_name(value: object, what: str) -> str:
    s = str(value)
    why = name_problem(s) or ("contains '/'" if "/" in s else "") or ("starts with the tool's reserved prefix" if s.startswith(PREFIX) else "")
    if why:
        raise AgentError(2, f"{what} is not a safe folder name: {s[:80]!r} ({why})", "fix the config")
    return s


# what shlex.quote leaves unquoted (its [^\w@%+=:,./-] in ASCII): checked here first, so an
# ordinary path costs no import of shlex, whose re (with enum) is 7 - 9 ms of an agent start
_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def rollback_command(target: str) -> str:
    """The exact shell command that removes a release, quoted for any folder name (as
    ``shlex.join`` quotes it)."""
    if target and _SHELL_SAFE.issuperset(target):
        return "rm -rf -- " + target
    import shlex

    return shlex.join(["rm", "-rf", "--", target])


def manifest_text(lines: dict[str, str]) -> str:
    for k, v in lines.items():
        if any(ord(c) < 32 or ord(c) == 0x7F for c in k + v) or ": " in k:
            raise AgentError(2, f"manifest value for {k!r} holds a control character", "fix the config")
    return "".join(f"{k}: {v}\n" for k, v in lines.items())


def utf8(text: str) -> bytes:
    """``text`` as the bytes a digest is taken over: a file name's undecodable bytes as they
    were (surrogateescape); any other lone surrogate (a JSON escape no file name holds) as
    UTF-8 would write it, never an exception."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def tree_sha256(entries: dict[str, str]) -> str:
    """sha256 over sorted ``<sha256-or-link:target>  <path>`` lines of the release's files."""
    text = "".join(f"{v}  {p}\n" for p, v in sorted(entries.items()))
    return hashlib.sha256(utf8(text)).hexdigest()


_VERSION_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.+!_-")


def version_ok(version: str) -> bool:
    """A version as names carry it (a bundle's name, a release's manifest, a health check's
    ``{version}``): an ASCII letter or digit, then letters, digits and ``. + ! _ -``, at most
    100 characters."""
    return 0 < len(version) <= 100 and version[0] not in ".+!_-" and all(c in _VERSION_CHARS for c in version)
