"""Target-side agent: everything that happens on the target, stdlib only.

The controller runs this file with the target's interpreter (``target.python``): for
a local target as a child process, for an SSH target sent over the connection as the
``-c`` program (as Ansible sends its modules). Local and SSH therefore behave the same
by construction. Protocol: ``python -c <this file> <op> <request-json>``; the bundle,
when there is one, arrives on stdin; the answer is one JSON line on stdout; the exit
code follows the contract (0 ok, 1 failed, 2 usage, 3 blocked, 4 refused).

Ops: facts, deploy, rollback, promote, status, verify, smoke, provision.
Names starting with ``.release-`` in a target root are this tool's own transient files
(lock, staging folders, trash) and are left out of the parent listing hash.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

PREFIX = ".release-"
LOCK = PREFIX + "lock"
MARKER = ".release-partial"
DEPLOY_MANIFEST = "DEPLOY-MANIFEST.txt"
BUNDLE_MANIFEST = "BUNDLE-MANIFEST.json"
CHUNK = 1 << 20


def _hostname() -> str:
    return os.uname().nodename


class AgentError(Exception):
    def __init__(self, code: int, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def refuse(message: str, hint: str = "") -> AgentError:
    return AgentError(4, message, hint)


def say(msg: str) -> None:
    """Progress on stderr; a controller that went away must not stop the work half-done."""
    try:
        sys.stderr.write(f"[{_hostname()}] {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ----------------------------------------------------------------------------- facts


def listing_sha256(parent: str) -> str:
    """sha256 of a folder's listing: name, type, and for files size+mtime, for links the target."""
    if not os.path.isdir(parent):
        return "absent"
    lines = []
    with os.scandir(parent) as it:
        for e in it:
            if e.name.startswith(PREFIX):
                continue
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                lines.append(f"{e.name}\tl\t{os.readlink(e.path)}")
            elif stat.S_ISDIR(st.st_mode):
                lines.append(f"{e.name}\td\t{stat.S_IMODE(st.st_mode):o}")
            elif stat.S_ISREG(st.st_mode):
                lines.append(f"{e.name}\tf\t{st.st_size}\t{st.st_mtime_ns}\t{stat.S_IMODE(st.st_mode):o}")
            else:
                lines.append(f"{e.name}\to")
    lines.sort()
    return hashlib.sha256("".join(x + "\n" for x in lines).encode("utf-8", "surrogateescape")).hexdigest()


def path_kind(path: str) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    return "file"


def op_facts(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    parent = os.path.join(root, req.get("parent", "")) if req.get("parent") else root
    target = os.path.join(parent, req["dir"]) if req.get("dir") else ""
    return {
        "host": _hostname(),
        "python": sys.version.split()[0],
        "root": root,
        "root_exists": os.path.isdir(root),
        "parent": parent,
        "parent_listing_sha256": listing_sha256(parent),
        "target": target,
        "target_kind": path_kind(target) if target else "",
        "lock": read_lock(root),
    }


# ----------------------------------------------------------------------------- lock


def read_lock(root: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(root, LOCK), "rb") as f:
            raw = f.read(1 << 16)
    except FileNotFoundError:
        return None
    except OSError:
        raw = b""
    try:
        data = json.loads(raw)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    return {"host": "?", "pid": -1, "time": 0, "deploy_id": "?", "unreadable": True}


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (to tell a reused pid from the lock's holder), or ''."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, started: str = "") -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead too
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return False
        return not started or fields[19] == started
    except (OSError, IndexError):
        return True


def _write_new(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Create ``name`` (O_EXCL, no link followed) holding ``data``; on any failure nothing is left."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name, dir_fd=dir_fd)
        raise
    os.close(fd)


class Lock:
    """The root's lock: ``.release-lock``, complete before it is visible, never outliving its op.

    Taking it: the JSON is written to a private new file, which is then hard-linked to
    the lock name (atomic, fails if the lock exists), so a full disk never leaves an
    empty lock. Breaking a stale one (``--break-lock``) happens under a second lock, so
    two breakers cannot both win.
    """

    def __init__(self, root: str, deploy_id: str, op: str, break_lock: bool) -> None:
        self.path = os.path.join(root, LOCK)
        self.root = root
        pid = os.getpid()
        self.info = {"host": _hostname(), "pid": pid, "started": _start_time(pid), "time": time.time(), "deploy_id": deploy_id, "op": op}
        self.break_lock = break_lock
        self.held = False

    def _describe(self, holder: dict[str, Any]) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(holder.get("time", 0) or 0)))
        return f"{holder.get('op', '?')} {holder.get('deploy_id', '?')} by pid {holder.get('pid')} on {holder.get('host')} since {since}"

    def _try(self, root_fd: int) -> bool:
        tmp = f"{PREFIX}lock-new-{secrets.token_hex(8)}"
        _write_new(root_fd, tmp, json.dumps(self.info).encode())
        try:
            os.link(tmp, LOCK, src_dir_fd=root_fd, dst_dir_fd=root_fd, follow_symlinks=False)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp, dir_fd=root_fd)

    def __enter__(self) -> Lock:
        root_fd = open_dir(self.root)
        try:
            for _ in range(3):
                if self._try(root_fd):
                    self.held = True
                    return self
                holder = read_lock(self.root)
                if holder is None:
                    continue  # released meanwhile: try again
                desc = self._describe(holder)
                same_host = holder.get("host") == _hostname()
                try:
                    pid = int(holder.get("pid", -1))
                except (TypeError, ValueError):
                    pid = -1
                dead = bool(holder.get("unreadable")) or (same_host and not _alive(pid, str(holder.get("started", ""))))
                if same_host and not dead:
                    raise AgentError(4, f"target root is locked: {self.path} held by {desc}", "wait for it to finish; a lock of a live process is never broken")
                if not self.break_lock:
                    if dead:
                        raise refuse(f"stale lock at {self.path}: {desc} (that process is gone)", "rerun with --break-lock to break it")
                    raise refuse(
                        f"target root is locked: {self.path} held by {desc}; it was taken on another host, so whether it is alive cannot be checked from here",
                        "if you are sure that run is gone, rerun with --break-lock",
                    )
                self._break(root_fd, holder, desc)
            raise refuse(f"could not take the lock at {self.path}", "rerun")
        finally:
            os.close(root_fd)

    def _break(self, root_fd: int, judged: dict[str, Any], desc: str) -> None:
        """Remove the stale lock ``judged`` if it is still the lock, under the breaker's lock."""
        breaker = PREFIX + "lock-breaking"
        try:
            os.link(self._breaker_file(root_fd), breaker, src_dir_fd=root_fd, dst_dir_fd=root_fd, follow_symlinks=False)
        except FileExistsError:
            raise AgentError(4, f"another run is breaking the lock at {self.path}", "rerun in a moment") from None
        finally:
            self._drop_breaker_file(root_fd)
        try:
            if read_lock(self.root) == judged:
                say(f"breaking stale lock: {desc}")
                try:
                    os.unlink(LOCK, dir_fd=root_fd)
                except FileNotFoundError:
                    pass
        finally:
            os.unlink(breaker, dir_fd=root_fd)

    def _breaker_file(self, root_fd: int) -> str:
        self._breaker_tmp = f"{PREFIX}lock-new-{secrets.token_hex(8)}"
        _write_new(root_fd, self._breaker_tmp, json.dumps(self.info).encode())
        return self._breaker_tmp

    def _drop_breaker_file(self, root_fd: int) -> None:
        try:
            os.unlink(self._breaker_tmp, dir_fd=root_fd)
        except FileNotFoundError:
            pass

    def __exit__(self, *exc: object) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


# ----------------------------------------------------------------------------- leftovers


def _remove_marked(parent_fd: int, name: str) -> None:
    """Remove our folder ``name``: everything but its marker first, the marker last, then the folder.

    A kill at any point leaves either the marked folder (cleaned by the next run) or
    nothing: never an unmarked copy.
    """
    fd = open_dir(name, parent_fd)
    try:
        with os.scandir(fd) as it:
            inner = [(e.name, e.is_dir(follow_symlinks=False)) for e in it if e.name != MARKER]
        for sub, is_dir in inner:
            if is_dir:
                remove_tree_at(fd, sub)
            else:
                os.unlink(sub, dir_fd=fd)
        try:
            os.unlink(MARKER, dir_fd=fd)
        except FileNotFoundError:
            pass
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def remove_tree_at(dir_fd: int, name: str) -> None:
    """Delete the folder ``name`` under ``dir_fd`` and all it holds, never following a link.

    Depth first with ``os.scandir`` on descriptors and ``unlinkat``: no path is resolved
    twice, no per-file stat beyond what the directory entry says.
    """
    fd = open_dir(name, dir_fd)
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for sub, is_dir in entries:
            if is_dir:
                remove_tree_at(fd, sub)
            else:
                os.unlink(sub, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def leftovers(parent: str) -> list[str]:
    """Names of this tool's transient entries in ``parent`` (staging, trash, lock temp files)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith((PREFIX + "tmp-", PREFIX + "trash-", PREFIX + "lock-new-", PREFIX + "current-")))


def clean_leftovers(parent: str) -> list[str]:
    """Remove what killed runs of this tool left in ``parent``; only what is provably ours.

    Staging and trash folders are ours when their marker names the id in their name, or
    when they are empty (killed before the marker was written). Lock temp files and
    pointer temp links are ours when the process that wrote them is gone.
    """
    cleaned: list[str] = []
    try:
        parent_fd = open_dir(parent)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return cleaned
    try:
        for name in leftovers(parent):
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if name.startswith((PREFIX + "tmp-", PREFIX + "trash-")):
                    if not stat.S_ISDIR(st.st_mode):
                        continue
                    marker = _read_marker(parent_fd, name)
                    if marker is None:
                        try:
                            os.rmdir(name, dir_fd=parent_fd)  # empty: killed before its marker
                        except OSError:
                            continue  # not empty and unmarked: not provably ours, never touched
                    elif _marker_matches(name, marker):
                        say(f"removing leftover of killed run {marker.get('deploy_id')}: {os.path.join(parent, name)}")
                        _remove_marked(parent_fd, name)
                    else:
                        continue
                elif name.startswith(PREFIX + "lock-new-"):
                    if not stat.S_ISREG(st.st_mode) or _writer_alive(parent_fd, name):
                        continue
                    os.unlink(name, dir_fd=parent_fd)
                elif name.startswith(PREFIX + "current-"):
                    pid = name.rsplit("-", 1)[-1]
                    if not stat.S_ISLNK(st.st_mode) or (pid.isdigit() and _alive(int(pid))):
                        continue
                    os.unlink(name, dir_fd=parent_fd)
                cleaned.append(os.path.join(parent, name))
            except FileNotFoundError:
                continue
    finally:
        os.close(parent_fd)
    return cleaned


def _read_marker(parent_fd: int, name: str) -> dict[str, Any] | None:
    try:
        fd = open_dir(name, parent_fd)
    except OSError:
        return None
    try:
        mfd = os.open(MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        os.close(fd)
        return None
    try:
        data = json.loads(os.read(mfd, 1 << 16))
        return data if isinstance(data, dict) else None
    except ValueError:
        return None
    finally:
        os.close(mfd)
        os.close(fd)


def _marker_matches(name: str, marker: dict[str, Any]) -> bool:
    did = str(marker.get("deploy_id", "\0"))
    return name.startswith((f"{PREFIX}tmp-{did}-", f"{PREFIX}trash-{did}-")) or name in (f"{PREFIX}tmp-{did}", f"{PREFIX}trash-{did}")


def _writer_alive(dir_fd: int, name: str) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        try:
            data = json.loads(os.read(fd, 1 << 16) or b"{}")
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and _alive(int(data.get("pid", -1) or -1), str(data.get("started", "")))


def make_marked_dir(parent_fd: int, kind: str, deploy_id: str, op: str) -> str:
    """Create ``.release-<kind>-<id>-<random>`` (0700) and write its marker first; return its name.

    The random part makes the name unguessable, so nobody can plant it beforehand; if
    the marker cannot be written (full disk) the empty folder is removed at once.
    """
    for _ in range(5):
        name = f"{PREFIX}{kind}-{deploy_id}-{secrets.token_hex(8)}"
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            continue
        try:
            fd = open_dir(name, parent_fd)
            try:
                _write_new(fd, MARKER, json.dumps({"deploy_id": deploy_id, "op": op, "pid": os.getpid(), "time": time.time()}).encode())
            finally:
                os.close(fd)
        except BaseException:
            os.rmdir(name, dir_fd=parent_fd)
            raise
        return name
    raise refuse("could not create a private staging folder", "inspect the target root")


# ----------------------------------------------------------------------------- names (one copy of each rule)

NAME_MAX = 255
PATH_MAX = 4096


def name_problem(rel: str) -> str:
    """Why ``rel`` (a '/'-separated path inside a release) is not a safe name, or ''.

    The one rule for names, used by the bundle writer and by the agent: UTF-8 only, no
    control character (0x00-0x1f, 0x7f), no backslash, relative, no empty, '.' or '..'
    component, bounded length.
    """
    if not rel:
        return "empty name"
    if any("\udc80" <= c <= "\udcff" for c in rel):
        return "not UTF-8"
    if any(ord(c) < 32 or ord(c) == 0x7F for c in rel):
        return "control character"
    if "\\" in rel:
        return "backslash"
    if rel.startswith("/"):
        return "absolute path"
    if len(rel.encode("utf-8")) > PATH_MAX:
        return "path too long"
    for part in rel.split("/"):
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
    where = rel.split("/")[:-1]
    parts = target.split("/")
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
    return ""


def manifest_entries(files: list[dict[str, Any]]) -> dict[str, str]:
    """BUNDLE-MANIFEST ``files`` as {path: sha256 | 'link:' + target}: the form hashed in tree_sha256."""
    out: dict[str, str] = {}
    for e in files:
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise refuse(f"{BUNDLE_MANIFEST} has a malformed file entry: {str(e)[:80]!r}", "do not deploy this bundle")
        out[e["path"]] = ("link:" + str(e["link"])) if "link" in e else str(e.get("sha256"))
    return out


# ----------------------------------------------------------------------------- the bundle reader
#
# One reader is the single authority on a bundle's members. The bundle's bytes are
# checksummed before anything parses them; ``scan`` then reads every header once and
# returns the accepted members with the offset of their data; ``extract`` writes exactly
# those members, reading data at those offsets; it never parses a header itself.

MAX_HEADER_BODY = 1 << 20  # a pax or GNU long-name body
MAX_MANIFEST = 64 << 20
MAX_MEMBER = 1 << 40
MAX_MEMBERS = 2_000_000
DATA_TYPES = (b"0", b"\0", b"7")  # regular files: the only members that carry data


def _keep_limit() -> int:
    """Bytes of inflated tar kept in memory between the passes: 256 MiB or an eighth of free memory."""
    limit = 256 << 20
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limit = min(limit, int(line.split()[1]) * 1024 // 8)
    except (OSError, ValueError, IndexError):
        pass
    return max(limit, 0)


def _mismatch(got: str, expected: str) -> AgentError:
    return refuse(
        f"checksum mismatch on the target: bundle has sha256 {got}, expected {expected}",
        "the bundle was altered or truncated; rebuild or re-ship it",
    )


class Verified:
    """A bundle whose sha256 was checked: its inflated tar kept in memory, or a private copy.

    ``read(src_fd, expected, copy_to)`` reads the bundle once: it hashes the bytes, inflates
    them (bounded), keeps the inflated tar when it fits, and writes a private copy when
    ``copy_to`` is given. Nothing is parsed before the checksum matched.
    """

    def __init__(self, kept: list[bytes] | None, copy: str | None, sha256: str) -> None:
        self.kept = kept
        self.copy = copy
        self.sha256 = sha256

    @classmethod
    def read(cls, src_fd: int, expected: str, copy_to: str | None = None, keep: bool = True) -> Verified:
        h = hashlib.sha256()
        out = os.open(copy_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600) if copy_to else -1
        limit = _keep_limit() if keep else -1
        kept: list[bytes] | None = [] if keep else None
        size = 0
        z = zlib.decompressobj(31)
        bad = ""
        try:
            while chunk := os.read(src_fd, 1 << 18):
                h.update(chunk)
                if out >= 0:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
                if kept is None or bad:
                    continue
                if z.eof:
                    if chunk.strip(b"\0"):
                        bad = "trailing data after the gzip stream"
                    continue
                data = chunk
                try:
                    while data:
                        piece = z.decompress(data, CHUNK)
                        data = z.unconsumed_tail
                        size += len(piece)
                        if size > limit:
                            kept = None
                            break
                        if piece:
                            kept.append(piece)
                        if z.eof:
                            if (z.unused_data + data).strip(b"\0"):
                                bad = "trailing data after the gzip stream"
                            break
                except zlib.error as exc:
                    bad = str(exc)
        finally:
            if out >= 0:
                os.fsync(out)
                os.close(out)
        got = h.hexdigest()
        if got != expected:
            raise _mismatch(got, expected)
        if kept is not None and not bad and not z.eof:
            bad = "gzip stream not finished"
        if bad:
            raise refuse(f"bundle is not a readable tar.gz: {bad}", "rebuild the bundle")
        if kept is None and copy_to is None:
            return cls(None, None, got)
        return cls(kept, copy_to, got)

    def chunks(self) -> Iterator[bytes]:
        """The inflated tar, bounded chunk by chunk."""
        if self.kept is not None:
            yield from self.kept
            return
        if self.copy is None:
            raise AgentError(1, "internal: no verified copy of the bundle to read")
        z = zlib.decompressobj(31)
        with open(self.copy, "rb") as f:
            while raw := f.read(CHUNK):
                data = raw
                while data and not z.eof:
                    piece = z.decompress(data, CHUNK)
                    data = z.unconsumed_tail
                    if piece:
                        yield piece
                if z.eof:
                    if z.unused_data.strip(b"\0") or data.strip(b"\0") or f.read(CHUNK).strip(b"\0"):
                        raise refuse("bundle has trailing data after the gzip stream", "do not deploy this bundle")
                    return
        raise refuse("bundle is truncated (gzip stream not finished)", "the bundle is damaged; rebuild it")


class _Stream:
    """A bounded, forward-only byte stream over inflated chunks, with an absolute position."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._src = chunks
        self._buf = b""
        self._at = 0  # position inside _buf
        self.pos = 0  # absolute position in the tar

    def _more(self) -> bool:
        chunk = next(self._src, None)
        if chunk is None:
            return False
        self._buf = self._buf[self._at :] + chunk if self._at < len(self._buf) else chunk
        self._at = 0
        return True

    def read(self, n: int) -> bytes:
        """Read exactly ``n`` bytes (callers bound ``n``)."""
        while len(self._buf) - self._at < n:
            if not self._more():
                raise refuse("bundle is truncated", "the bundle is damaged; rebuild it")
        out = self._buf[self._at : self._at + n]
        self._at += n
        self.pos += n
        return out

    def pump(self, n: int, sink: Any) -> None:
        """Pass the next ``n`` bytes to ``sink`` (or drop them if None) without holding them."""
        while n > 0:
            if self._at >= len(self._buf) and not self._more():
                raise refuse("bundle is truncated", "the bundle is damaged; rebuild it")
            step = min(n, len(self._buf) - self._at)
            if sink is not None:
                sink(memoryview(self._buf)[self._at : self._at + step])
            self._at += step
            self.pos += step
            n -= step

    def seek_forward(self, pos: int) -> None:
        if pos < self.pos:
            raise AgentError(1, "internal: the bundle reader cannot move backwards")
        self.pump(pos - self.pos, None)


class Member:
    """One accepted member: its path inside the top folder, kind, and where its data is."""

    __slots__ = ("exe", "kind", "link", "offset", "rel", "sha256", "size")

    def __init__(self, rel: str, kind: str, size: int, exe: bool, link: str, offset: int, sha256: str) -> None:
        self.rel = rel
        self.kind = kind  # "f" file, "d" folder, "l" symlink
        self.size = size
        self.exe = exe
        self.link = link
        self.offset = offset
        self.sha256 = sha256


class Scan:
    """What ``scan`` accepted: the only members ``extract`` may write."""

    def __init__(self, top: str, members: list[Member], manifest: dict[str, Any]) -> None:
        self.top = top
        self.members = members
        self.manifest = manifest

    def entries(self) -> dict[str, str]:
        """{path: sha256 | 'link:' + target} of every file and link but the bundle manifest."""
        return {m.rel: (m.sha256 if m.kind == "f" else "link:" + m.link) for m in self.members if m.kind != "d" and m.rel != BUNDLE_MANIFEST}


def _number(field: bytes, what: str) -> int:
    """A tar numeric field: octal text, or GNU base-256 (positive only)."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] and field[0] & 0x80:
        raise refuse(f"bundle has a negative or malformed {what} field", "do not deploy this bundle")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not all(48 <= c <= 55 for c in text):
        raise refuse(f"bundle has a non-numeric {what} field: {text[:20]!r}", "do not deploy this bundle")
    return int(text, 8)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise refuse(f"bundle has a {what} that is not UTF-8: {raw[:60]!r}", "do not deploy this bundle") from None


def _pax(body: bytes) -> dict[str, str]:
    """Parse pax records strictly: '<len> <key>=<value>\\n', lengths that add up exactly."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        if body[pos:].strip(b"\0") == b"":
            break
        sp = body.find(b" ", pos, pos + 21)
        digits = body[pos:sp] if sp > pos else b""
        if not digits or not digits.isdigit():
            raise refuse("bundle has a corrupt pax header (record length)", "do not deploy this bundle")
        length = int(digits)
        end = pos + length
        if length <= len(digits) + 1 or end > len(body) or body[end - 1 : end] != b"\n":
            raise refuse("bundle has a corrupt pax header (record bounds)", "do not deploy this bundle")
        key, eq, value = body[sp + 1 : end - 1].partition(b"=")
        if not eq:
            raise refuse("bundle has a corrupt pax header (no '=')", "do not deploy this bundle")
        out[_text(key, "pax key")] = _text(value, "pax value") if b"\0" not in value else "\0"
        pos = end
    return out


def _pax_size(value: str) -> int:
    if not value.isdigit() or not value.isascii() or len(value) > 20 or int(value) > MAX_MEMBER:
        raise refuse(f"bundle has an invalid pax size {value[:30]!r} (negative, overflowing or not a number)", "do not deploy this bundle")
    return int(value)


def _headers(stream: _Stream) -> Iterator[tuple[str, bytes, int, int, str]]:
    """Yield (name, type, size, mode, linkname) of each real member; the stream is left at its data."""
    pax: dict[str, str] = {}
    longname: str | None = None
    longlink: str | None = None
    pending = False
    count = 0
    while True:
        hdr = stream.read(512)
        if hdr == bytes(512):
            if pending:
                raise refuse("bundle ends after an extended header", "do not deploy this bundle")
            return
        count += 1
        if count > MAX_MEMBERS:
            raise refuse(f"bundle has more than {MAX_MEMBERS} members", "do not deploy this bundle")
        chk = _number(hdr[148:156], "checksum")
        unsigned = sum(hdr[:148]) + 256 + sum(hdr[156:])
        signed = sum(b - 256 if b > 127 else b for b in hdr[:148] + hdr[156:]) + 256
        if chk not in (unsigned, signed):
            raise refuse("bundle has a corrupt tar header (checksum)", "the bundle is damaged; rebuild it")
        type_ = hdr[156:157]
        size = _number(hdr[124:136], "size")
        if size > MAX_MEMBER:
            raise refuse(f"bundle member size {size} is beyond the limit of {MAX_MEMBER}", "do not deploy this bundle")
        if type_ in (b"x", b"g", b"L", b"K"):
            if size > MAX_HEADER_BODY:
                raise refuse(f"bundle has an extended header of {size} bytes (limit {MAX_HEADER_BODY})", "do not deploy this bundle")
            body = stream.read(size)
            stream.pump(-size % 512, None)
            if type_ == b"x":
                pax.update(_pax(body))
            elif type_ == b"g":
                if set(_pax(body)) & {"path", "linkpath", "size"}:
                    raise refuse("bundle has a global pax header that renames or resizes members", "do not deploy this bundle")
            elif type_ == b"L":
                longname = _text(body, "long name")
            else:
                longlink = _text(body, "long link name")
            pending = type_ != b"g"
            continue
        if any(k.startswith("GNU.sparse") for k in pax):
            raise refuse("bundle has a sparse member", "do not deploy this bundle")
        name = _text(hdr[0:100], "member name")
        if hdr[257:262] == b"ustar" and hdr[345:346] != b"\0":
            name = _text(hdr[345:500], "member name prefix") + "/" + name
        name = longname if longname is not None else pax.get("path", name)
        linkname = longlink if longlink is not None else pax.get("linkpath", _text(hdr[157:257], "link name"))
        if "size" in pax:
            size = _pax_size(pax["size"])
        if "\0" in name or "\0" in linkname:
            raise refuse("bundle has a NUL in a member name", "do not deploy this bundle")
        yield name, type_, size, _number(hdr[100:108], "mode"), linkname
        pax, longname, longlink, pending = {}, None, None, False


def scan(verified: Verified) -> Scan:
    """Read every header of a checksummed bundle once and decide; write nothing.

    Refused (exit 4): any name outside the single top folder or not safe by
    ``name_problem``, duplicates, a member under a link or under a file, hard links,
    devices, FIFOs, sparse or multi-volume members, setuid/setgid/sticky bits, a
    directory or link carrying data, a link leaving the tree (``link_problem``), a
    member named like the deploy manifest, and a BUNDLE-MANIFEST that does not list
    exactly the files and links the bundle holds, with their sha256.
    """
    stream = _Stream(verified.chunks())
    top = ""
    members: list[Member] = []
    kinds: dict[str, str] = {}
    manifest_raw: bytes | None = None
    for name, type_, size, mode, linkname in _headers(stream):
        is_dir = type_ == b"5"
        raw = name[:-1] if is_dir and name.endswith("/") else name
        why = name_problem(raw)
        if why:
            raise refuse(f"hostile bundle member refused: {name!r} ({why})", "do not deploy this bundle")
        head, _, rel = raw.partition("/")
        if not top:
            top = head
        if head != top:
            raise refuse(f"bundle member outside the single top folder: {name!r}", "do not deploy this bundle")
        if rel in kinds:
            raise refuse(f"duplicate bundle member refused: {name!r}", "do not deploy this bundle")
        if mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
            raise refuse(f"setuid/setgid/sticky bit refused: {name!r}", "do not deploy this bundle")
        if type_ in DATA_TYPES:
            kind = "f"
        elif is_dir:
            kind = "d"
        elif type_ == b"2":
            kind = "l"
        elif type_ == b"1":
            raise refuse(f"hard link refused: {name!r} -> {linkname!r}", "do not deploy this bundle")
        else:
            raise refuse(f"special or unsupported member refused (device, FIFO, sparse, multi-volume: type {type_!r}): {name!r}", "do not deploy this bundle")
        if kind != "f" and size:
            raise refuse(f"bundle member that cannot carry data has a size of {size}: {name!r}", "do not deploy this bundle")
        if not rel:
            if kind != "d":
                raise refuse(f"the bundle's top folder is not a folder: {name!r}", "do not deploy this bundle")
            stream.pump(size + (-size % 512), None)
            continue
        if rel == DEPLOY_MANIFEST or rel.startswith(DEPLOY_MANIFEST + "/"):
            raise refuse(f"bundle member {name!r} would take the place of the deploy manifest", "do not deploy this bundle")
        parts = rel.split("/")
        for i in range(1, len(parts)):
            above = kinds.get("/".join(parts[:i]))
            if above == "l":
                raise refuse(f"bundle member under a symlink refused: {name!r}", "do not deploy this bundle")
            if above == "f":
                raise refuse(f"bundle member under a file refused: {name!r}", "do not deploy this bundle")
        kinds[rel] = kind
        offset = stream.pos
        digest = ""
        if kind == "f":
            h = hashlib.sha256()
            if rel == BUNDLE_MANIFEST:
                if size > MAX_MANIFEST:
                    raise refuse(f"{BUNDLE_MANIFEST} is {size} bytes (limit {MAX_MANIFEST})", "do not deploy this bundle")
                manifest_raw = stream.read(size)
                h.update(manifest_raw)
            else:
                stream.pump(size, h.update)
            stream.pump(-size % 512, None)
            digest = h.hexdigest()
        members.append(Member(rel, kind, size, bool(mode & 0o111), linkname if kind == "l" else "", offset, digest))
    for m in members:  # a folder must not sit where a file or link already is (or the reverse)
        parts = m.rel.split("/")
        for i in range(1, len(parts)):
            if kinds.get("/".join(parts[:i]), "d") != "d":
                raise refuse(f"bundle member under a file or link refused: {m.rel!r}", "do not deploy this bundle")
    links = frozenset(m.rel for m in members if m.kind == "l")
    for m in members:
        if m.kind == "l":
            why = link_problem(m.rel, m.link, links)
            if why:
                raise refuse(f"symlink leaving the release folder refused: {m.rel!r} -> {m.link!r} ({why})", "do not deploy this bundle")
    if manifest_raw is None:
        raise refuse(f"bundle has no {BUNDLE_MANIFEST}", "rebuild the bundle with `release bundle`")
    try:
        manifest = json.loads(manifest_raw)
    except ValueError:
        raise refuse(f"bundle's {BUNDLE_MANIFEST} is not valid JSON", "rebuild the bundle") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise refuse(f"bundle's {BUNDLE_MANIFEST} has no file list", "rebuild the bundle")
    result = Scan(top, members, manifest)
    want = manifest_entries(manifest["files"])
    got = result.entries()
    if got != want:
        bad = sorted(p for p in set(got) | set(want) if got.get(p) != want.get(p))
        raise refuse(f"bundle content does not match its {BUNDLE_MANIFEST}: " + ", ".join(bad[:10]), "the bundle was tampered with; rebuild it")
    return result


# ----------------------------------------------------------------------------- writing under a folder we own

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_dir(name: str, dir_fd: int | None = None) -> int:
    """Open a folder without following a link in its last component (relative to ``dir_fd``)."""
    return os.open(name, O_DIR, dir_fd=dir_fd)


class DirFds:
    """Folder descriptors of a tree being written, opened component by component, never via a link."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.fds: dict[str, int] = {"": root_fd}

    def get(self, rel_dir: str) -> int:
        fd = self.fds.get(rel_dir)
        if fd is not None:
            return fd
        if len(self.fds) > 256:
            self.close()
        parent, _, base = rel_dir.rpartition("/")
        fd = open_dir(base, self.get(parent))
        self.fds[rel_dir] = fd
        return fd

    def close(self) -> None:
        for key, fd in list(self.fds.items()):
            if key:
                os.close(fd)
        self.fds = {"": self.root_fd}


def extract(verified: Verified, result: Scan, tree_fd: int) -> dict[str, Any]:
    """Write exactly the members ``scan`` accepted under ``tree_fd`` (an empty folder we created).

    Folders first, then files (data read at the offsets the scan recorded and hashed
    again as written), links last: no write can pass through a link, and every name is
    created relative to a descriptor of its parent (O_EXCL, O_NOFOLLOW).
    """
    fds = DirFds(tree_fd)
    try:
        for m in sorted((m for m in result.members if m.kind == "d"), key=lambda m: m.rel.count("/")):
            parent, _, base = m.rel.rpartition("/")
            _mkdir_parents(fds, parent)
            try:
                os.mkdir(base, 0o755, dir_fd=fds.get(parent))
            except FileExistsError:
                pass  # made earlier as the parent of another member
        stream = _Stream(verified.chunks())
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        for m in result.members:
            if m.kind != "f":
                continue
            parent, _, base = m.rel.rpartition("/")
            _mkdir_parents(fds, parent)
            stream.seek_forward(m.offset)
            fd = os.open(base, flags, 0o755 if m.exe else 0o644, dir_fd=fds.get(parent))
            h = hashlib.sha256()

            def sink(view: memoryview, fd: int = fd, h: Any = h) -> None:
                h.update(view)
                while view:
                    view = view[os.write(fd, view) :]

            try:
                stream.pump(m.size, sink)
            finally:
                os.close(fd)
            if h.hexdigest() != m.sha256:
                raise refuse(f"bundle data changed between the scan and the unpack: {m.rel}", "rerun the deploy")
        for m in result.members:
            if m.kind == "l":
                parent, _, base = m.rel.rpartition("/")
                _mkdir_parents(fds, parent)
                os.symlink(m.link, base, dir_fd=fds.get(parent))
    finally:
        fds.close()
    entries = result.entries()
    return {"files": len(entries), "tree_sha256": tree_sha256(entries)}


def _mkdir_parents(fds: DirFds, rel_dir: str) -> None:
    if not rel_dir or rel_dir in fds.fds:
        return
    parent, _, base = rel_dir.rpartition("/")
    _mkdir_parents(fds, parent)
    try:
        os.mkdir(base, 0o755, dir_fd=fds.get(parent))
    except FileExistsError:
        pass
    fds.get(rel_dir)


def tree_sha256(entries: dict[str, str]) -> str:
    """sha256 over sorted ``<sha256-or-link:target>  <path>`` lines of the release's files."""
    text = "".join(f"{v}  {p}\n" for p, v in sorted(entries.items()))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _renameat2(src_dir: int, src: str, dst_dir: int, dst: str, flags: int) -> int:
    """renameat2(2) through libc; returns 0, or the errno (ENOSYS when it is not there)."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return errno.ENOSYS
    if fn(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), flags) == 0:
        return 0
    return ctypes.get_errno()


AT_FDCWD = -100


def rename_noreplace(src: str, dst: str, src_dir: int = AT_FDCWD, dst_dir: int = AT_FDCWD) -> None:
    """rename(2) that fails if ``dst`` exists (renameat2 RENAME_NOREPLACE where available)."""
    err = _renameat2(src_dir, src, dst_dir, dst, 1)
    if err == 0:
        return
    if err == errno.EEXIST:
        raise refuse(f"target appeared during the deploy: {dst}", "nothing was overwritten; inspect it")
    if err not in (errno.ENOSYS, errno.EINVAL):
        raise OSError(err, os.strerror(err), dst)
    try:
        os.stat(dst, dir_fd=None if dst_dir == AT_FDCWD else dst_dir, follow_symlinks=False)
        raise refuse(f"target appeared during the deploy: {dst}", "nothing was overwritten; inspect it")
    except FileNotFoundError:
        pass
    os.rename(src, dst, src_dir_fd=None if src_dir == AT_FDCWD else src_dir, dst_dir_fd=None if dst_dir == AT_FDCWD else dst_dir)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- deploy

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


def checkpoint(name: str) -> None:
    """Test hooks at named points of the ops that change the target.

    ``RELEASE_TEST_KILL_AT=<name>`` kills this agent here (SIGKILL), as a crash would;
    ``RELEASE_TEST_PAUSE_AT=<name>@<file>`` creates <file> here and waits until it is
    removed, so a test can act at exactly this point (no timing races).
    """
    if os.environ.get("RELEASE_TEST_KILL_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    point, _, flag = os.environ.get("RELEASE_TEST_PAUSE_AT", "").partition("@")
    if point == name and flag:
        with open(flag, "w") as f:
            f.write(str(os.getpid()))
        end = time.monotonic() + 300
        while os.path.exists(flag) and time.monotonic() < end:
            time.sleep(0.01)


def _lstat_kind(name: str, dir_fd: int) -> str:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "absent"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    return "file" if stat.S_ISREG(st.st_mode) else "special file"


def _io_error(exc: OSError, where: str) -> AgentError:
    """An OSError from the filesystem as a refusal that names the place and the way out."""
    hints = {
        errno.ENOSPC: "the disk is full: free space on the target and rerun (nothing was left behind)",
        errno.EDQUOT: "the disk quota is exhausted: free space and rerun",
        errno.EROFS: "the target filesystem is read-only: remount it read-write or choose another target.root",
        errno.EACCES: "permission denied: run as a user who may write there, or choose another target.root",
        errno.EPERM: "operation not permitted: check the folder's owner and attributes",
        errno.ELOOP: "a symlink is in the way: this tool never writes through one; inspect it",
        errno.ENOTDIR: "a file is where a folder should be: inspect it",
    }
    code = 3 if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM) else 4
    return AgentError(code, f"{where}: {exc.strerror or exc}", hints.get(exc.errno or 0, "inspect the target"))


def op_deploy(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    deploy_id = checked_id(req["deploy_id"])
    dirname = checked_folder_name(req["dir"], "target.dir")
    parent_rel = checked_folder_name(req["parent"], "the releases folder") if req.get("parent") else ""
    if not os.path.isdir(root):
        if req.get("create_root"):
            try:
                os.makedirs(root, 0o755, exist_ok=True)
            except OSError as exc:
                raise _io_error(exc, f"cannot create target root {root}") from None
        else:
            raise AgentError(3, f"target root does not exist: {root}", "create it, or set target.create_root = true")
    try:
        with Lock(root, deploy_id, "deploy", bool(req.get("break_lock"))):
            root_fd = open_dir(root)
            try:
                return _deploy_locked(req, root, root_fd, parent_rel, dirname, deploy_id)
            finally:
                os.close(root_fd)
    except OSError as exc:
        raise _io_error(exc, f"deploy to {os.path.join(root, parent_rel, dirname)} failed") from None


def _deploy_locked(req: dict[str, Any], root: str, root_fd: int, parent_rel: str, dirname: str, deploy_id: str) -> dict[str, Any]:
    parent = os.path.join(root, parent_rel) if parent_rel else root
    cleaned = clean_leftovers(root)
    parent_existed = True
    if parent_rel:
        kind = _lstat_kind(parent_rel, root_fd)
        if kind == "absent":
            parent_existed = False
        elif kind != "directory":
            raise refuse(f"{parent} is a {kind}, not a folder: a release is never written through it", f"move {parent} away by hand")
        else:
            cleaned += clean_leftovers(parent)
            if _only_parent_marker(parent):
                parent_existed = False  # made by a run that was killed before it could take it back
    before = listing_sha256(parent)
    target = os.path.join(parent, dirname)
    present = not parent_rel or _lstat_kind(parent_rel, root_fd) == "directory"
    parent_fd = open_dir(parent_rel, root_fd) if present and parent_rel else -1
    try:
        kind = _lstat_kind(dirname, parent_fd if parent_fd >= 0 else root_fd) if present else "absent"
        if kind != "absent":
            raise refuse(
                f"target already exists ({kind}): {target}",
                "nothing was changed; choose another target.dir, or remove it yourself if it is not needed",
            )
        if not present:
            os.mkdir(parent_rel, 0o755, dir_fd=root_fd)
        if parent_fd < 0:
            parent_fd = open_dir(parent_rel, root_fd) if parent_rel else os.dup(root_fd)
        if not parent_existed and _lstat_kind(PARENT_MARKER, parent_fd) == "absent":
            _write_new(parent_fd, PARENT_MARKER, json.dumps({"deploy_id": deploy_id}).encode(), 0o644)
        stage = ""
        try:
            stage = make_marked_dir(parent_fd, "tmp", deploy_id, "deploy")
            checkpoint("deploy:staged")
            result = _unpack(req, parent, parent_fd, stage, dirname, target, deploy_id)
            if result.get("shipped"):
                return result
            result.update(parent=parent, parent_existed=parent_existed, parent_listing_sha256_before=before, cleaned=cleaned)
            lines = result["manifest"]
            lines["parent_existed"] = "true" if parent_existed else "false"
            lines["parent_listing_sha256_before"] = before
            text = manifest_text(lines)
            stage_fd = open_dir(stage, parent_fd)
            try:
                tree_fd = open_dir("tree", stage_fd)
                try:
                    _write_new(tree_fd, DEPLOY_MANIFEST, text.encode(), 0o644)
                finally:
                    os.close(tree_fd)
                os.sync()
                checkpoint("deploy:before-rename")
                rename_noreplace("tree", dirname, stage_fd, parent_fd)
                os.fsync(parent_fd)
            finally:
                os.close(stage_fd)
            checkpoint("deploy:renamed")
            result["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()
            return result
        finally:
            if stage:
                _remove_marked(parent_fd, stage)
            if not parent_existed and _lstat_kind(dirname, parent_fd) == "absent":
                _remove_parent_if_ours(root_fd, parent_rel)  # a failed deploy takes back the releases/ folder it made
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)


def _unpack(req: dict[str, Any], parent: str, parent_fd: int, stage: str, dirname: str, target: str, deploy_id: str) -> dict[str, Any]:
    """Read the bundle once (checksum first), scan it, write the accepted members into ``stage/tree``."""
    sha = str(req["bundle_sha256"])
    copy = os.path.join(parent, stage, "bundle.tar.gz")
    if req.get("bundle_path") and not req.get("ship_only"):
        # same machine: hash and inflate the bundle where it lies, in one read; what is
        # unpacked are the bytes that were hashed, never the file read again
        say(f"checking {req['bundle']} in place")
        src = os.open(req["bundle_path"], os.O_RDONLY)
        try:
            verified = Verified.read(src, sha, None, keep=True)
            if verified.kept is None:  # too large to keep in memory: work from a private copy
                os.lseek(src, 0, os.SEEK_SET)
                verified = Verified.read(src, sha, copy, keep=False)
        finally:
            os.close(src)
    else:
        say(f"receiving {req['bundle']}")
        verified = Verified.read(sys.stdin.fileno(), sha, copy, keep=not req.get("ship_only"))
        if req.get("ship_only"):
            return {"shipped": True, "bundle_sha256": sha}
    say("checking every member")
    accepted = scan(verified)
    for key in ("name", "version", "commit"):
        want = req["expect"].get(key)
        if want and accepted.manifest.get(key) != want:
            raise refuse(f"bundle manifest {key} is {accepted.manifest.get(key)!r}, expected {want!r}", "deploy the bundle of the recorded HEAD")
    stage_fd = open_dir(stage, parent_fd)
    try:
        os.mkdir("tree", 0o755, dir_fd=stage_fd)
        tree_fd = open_dir("tree", stage_fd)
        try:
            say("unpacking")
            facts = extract(verified, accepted, tree_fd)
        finally:
            os.close(tree_fd)
    finally:
        os.close(stage_fd)
    del verified
    checkpoint("deploy:extracted")
    lines = {str(k): str(v) for k, v in dict(req["manifest"]).items()}
    lines.update(
        {
            "pre_existed": "false",
            "files": str(facts["files"]),
            "tree_sha256": facts["tree_sha256"],
            "target": target,
            "target_host": _hostname(),
            "rollback": rollback_command(target),
        }
    )
    return {"target": target, **facts, "manifest": lines}


PARENT_MARKER = PREFIX + "parent"


def _only_parent_marker(parent: str) -> bool:
    try:
        return os.listdir(parent) == [PARENT_MARKER]
    except OSError:
        return False


def _remove_parent_if_ours(root_fd: int, parent_rel: str) -> bool:
    """Remove ``releases/`` if it holds nothing but the marker the deploy that made it wrote."""
    try:
        names = os.listdir(os.path.join(f"/proc/self/fd/{root_fd}", parent_rel))
    except OSError:
        return False
    if names not in ([], [PARENT_MARKER]):
        return False
    fd = open_dir(parent_rel, root_fd)
    try:
        if names:
            os.unlink(PARENT_MARKER, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(parent_rel, dir_fd=root_fd)
    return True


def rollback_command(target: str) -> str:
    """The exact shell command that removes a release, quoted for any folder name."""
    import shlex

    return shlex.join(["rm", "-rf", "--", target])


def manifest_text(lines: dict[str, str]) -> str:
    for k, v in lines.items():
        if any(ord(c) < 32 or ord(c) == 0x7F for c in k + v) or ": " in k:
            raise AgentError(2, f"manifest value for {k!r} holds a control character", "fix the config")
    return "".join(f"{k}: {v}\n" for k, v in lines.items())


# ----------------------------------------------------------------------------- manifests


def _read_regular(dir_fd: int, name: str, limit: int) -> bytes:
    """Read a regular file under ``dir_fd`` without following a link or opening a FIFO/device."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise refuse(f"{name} is not a regular file", "inspect it by hand")
        data = b""
        while len(data) <= limit and (chunk := os.read(fd, CHUNK)):
            data += chunk
        if len(data) > limit:
            raise refuse(f"{name} is larger than {limit} bytes", "inspect it by hand")
        return data
    finally:
        os.close(fd)


def parse_deploy_manifest(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            out[k] = v
    return out


def read_deploy_manifest(folder: str) -> dict[str, str]:
    fd = open_dir(folder)
    try:
        return parse_deploy_manifest(_read_regular(fd, DEPLOY_MANIFEST, 1 << 20))
    finally:
        os.close(fd)


def _manifest_of(folder_fd: int) -> tuple[dict[str, str], str] | None:
    try:
        raw = _read_regular(folder_fd, DEPLOY_MANIFEST, 1 << 20)
    except (OSError, AgentError):
        return None
    return parse_deploy_manifest(raw), hashlib.sha256(raw).hexdigest()


def _walk(fd: int, prefix: str, out: dict[str, str], dirs: set[str]) -> None:
    """Every entry under ``fd``: {path: 'f' | 'l' | 'o'} (file, link, other); folders in ``dirs``."""
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_symlink(), e.is_file(follow_symlinks=False)) for e in it]
    for name, is_dir, is_link, is_file in entries:
        rel = prefix + name
        if is_dir:
            dirs.add(rel)
            sub = open_dir(name, fd)
            try:
                _walk(sub, rel + "/", out, dirs)
            finally:
                os.close(sub)
        else:
            out[rel] = "l" if is_link else ("f" if is_file else "o")


def _added(folder_fd: int, expected: set[str]) -> list[str]:
    """Paths in a release that its manifest does not list (bytecode caches aside)."""
    found: dict[str, str] = {}
    dirs: set[str] = set()
    _walk(folder_fd, "", found, dirs)
    wanted_dirs = {p.rsplit("/", 1)[0] for p in expected if "/" in p}
    wanted_dirs |= {"/".join(d.split("/")[:i]) for d in list(wanted_dirs) for i in range(1, d.count("/") + 1)}
    added = [p for p in found if p not in expected and p not in (DEPLOY_MANIFEST, BUNDLE_MANIFEST) and "__pycache__" not in p.split("/")]
    added += [d + "/" for d in dirs if d not in wanted_dirs and "__pycache__" not in d.split("/")]
    return sorted(added)


def _bundle_entries(folder_fd: int) -> dict[str, str]:
    try:
        bm = json.loads(_read_regular(folder_fd, BUNDLE_MANIFEST, MAX_MANIFEST))
        return manifest_entries(bm["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def op_rollback(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    target = req["target"]
    parent, name = os.path.split(target)
    deploy_id = checked_id(req["deploy_id"])
    if not os.path.isdir(root):
        raise AgentError(3, f"target root does not exist: {root}", "nothing to roll back")
    try:
        with Lock(root, deploy_id, "rollback", bool(req.get("break_lock"))):
            return _rollback_locked(req, root, parent, name, target, deploy_id)
    except OSError as exc:
        raise _io_error(exc, f"rollback of {target} failed") from None


def _rollback_locked(req: dict[str, Any], root: str, parent: str, name: str, target: str, deploy_id: str) -> dict[str, Any]:
    cleaned = clean_leftovers(parent) + (clean_leftovers(root) if parent != root else [])
    finished = [c for c in cleaned if os.path.basename(c).startswith(f"{PREFIX}trash-{deploy_id}")]
    try:
        parent_fd = open_dir(parent)
    except FileNotFoundError:
        parent_fd = -1
    try:
        kind = _lstat_kind(name, parent_fd) if parent_fd >= 0 else "absent"
        if kind == "absent":
            if finished:  # a killed rollback had moved the release to its trash: that is now gone
                return _rolled_back(req, root, parent, target, {}, finished=True, pointer=pointer_state(root))
            raise AgentError(3, f"nothing to roll back: {target} does not exist", "it was already removed")
        if kind != "directory":
            raise refuse(f"refusing to remove {target}: it is a {kind}, not the folder this tool created", "inspect it by hand")
        folder_fd = open_dir(name, parent_fd)
        try:
            got = _manifest_of(folder_fd)
            if got is None:
                raise refuse(f"refusing to remove {target}: it has no readable {DEPLOY_MANIFEST}, so this tool did not create it", "inspect it by hand")
            manifest, manifest_sha = got
            if manifest.get("deploy_id") != deploy_id:
                raise refuse(
                    f"refusing to remove {target}: its {DEPLOY_MANIFEST} names deploy {manifest.get('deploy_id')!r}, the record names {deploy_id!r}",
                    "roll back with the matching --deploy-id",
                )
            recorded = req.get("manifest_sha256")
            drift = bool(recorded) and recorded != manifest_sha
            # the controller's record proves the deploy created the folder; the on-target
            # manifest (which a smoke check could edit) is only asked when there is no record
            if not recorded and manifest.get("pre_existed") != "false":
                raise refuse(f"refusing to remove {target}: its manifest does not prove it was created by the deploy", "inspect it by hand")
            entries = _bundle_entries(folder_fd)
            trusted = req.get("tree_sha256") in (None, "") or tree_sha256(entries) == req.get("tree_sha256")
            added = _added(folder_fd, set(entries)) if trusted else ["(BUNDLE-MANIFEST.json changed: the release's own file list cannot be trusted)"]
        finally:
            os.close(folder_fd)
        if added and not req.get("discard_added"):
            shown = ", ".join(added[:10]) + (f" and {len(added) - 10} more" if len(added) > 10 else "")
            raise refuse(
                f"refusing to remove {target}: it holds {len(added)} entries the deploy did not create: {shown}; nothing was removed",
                "move them out first, or rerun with --discard-added to delete them with the release",
            )
        pointer = restore_pointer(root, target, req.get("previous_current"))
        checkpoint("rollback:pointer")
        trash = make_marked_dir(parent_fd, "trash", deploy_id, "rollback")
        checkpoint("rollback:trash")
        os.rename(name, f"{trash}/release", src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        os.fsync(parent_fd)
        checkpoint("rollback:renamed")
        _remove_marked(parent_fd, trash)
        checkpoint("rollback:removed")
        return _rolled_back(req, root, parent, target, manifest, pointer=pointer, drift=drift, discarded=added)
    finally:
        if parent_fd >= 0:
            os.close(parent_fd)


def _rolled_back(
    req: dict[str, Any],
    root: str,
    parent: str,
    target: str,
    manifest: dict[str, str],
    *,
    pointer: str,
    finished: bool = False,
    drift: bool = False,
    discarded: list[str] | None = None,
) -> dict[str, Any]:
    removed_parent = False
    if req.get("remove_parent_if_empty") and parent != root and os.path.isdir(parent):
        root_fd = open_dir(root)
        try:
            removed_parent = _remove_parent_if_ours(root_fd, os.path.relpath(parent, root))
        finally:
            os.close(root_fd)
    after = listing_sha256(parent)
    before = manifest.get("parent_listing_sha256_before") or str(req.get("parent_listing_sha256_before") or "")
    parent_existed = manifest.get("parent_existed", "true" if req.get("parent_existed", True) else "false")
    return {
        "removed": target,
        "pointer": pointer,
        "current": pointer_state(root),
        "removed_parent": removed_parent,
        "finished_interrupted": finished,
        "manifest_drift": drift,
        "discarded": discarded or [],
        "parent_listing_sha256_before": before,
        "parent_listing_sha256_after": after,
        "parent_restored": after == before or (removed_parent and parent_existed == "false"),
    }


def pointer_state(root: str) -> str:
    """What ``<root>/current`` is now, in words: 'none', or 'current -> <target>'."""
    current = os.path.join(root, "current")
    kind = path_kind(current)
    if kind == "absent":
        return "none"
    if kind != "symlink":
        return f"a {kind} (not managed by this tool)"
    link = os.readlink(current)
    return f"current -> {link}" + ("" if os.path.isdir(current) else " (dangling)")


def _is_release(path: str) -> bool:
    return path_kind(path) == "directory" and path_kind(os.path.join(path, DEPLOY_MANIFEST)) == "file"


def restore_pointer(root: str, target: str, previous: str | None) -> str:
    """If ``current`` points at the release being removed, point it at ``previous`` if that
    release still exists, else remove it: ``current`` never points at a missing release."""
    current = os.path.join(root, "current")
    if path_kind(current) != "symlink":
        return "untouched"
    if os.path.realpath(current) != os.path.realpath(target):
        return "untouched"
    if previous and _is_release(os.path.join(root, previous)) and os.path.realpath(os.path.join(root, previous)) != os.path.realpath(target):
        switch_link(root, previous)
        return f"restored to {previous}"
    os.unlink(current)
    fsync_dir(root)
    if previous:
        return f"removed (the previous release {previous} no longer exists)"
    return "removed (no previous release)"


def switch_link(root: str, rel_target: str) -> str | None:
    """Atomically point ``<root>/current`` at ``rel_target``; return the previous target."""
    current = os.path.join(root, "current")
    kind = path_kind(current)
    if kind not in ("absent", "symlink"):
        raise refuse(f"{current} exists and is a {kind}, not a pointer this tool manages", "move it away by hand")
    previous = os.readlink(current) if kind == "symlink" else None
    tmp = os.path.join(root, f"{PREFIX}current-{secrets.token_hex(6)}-{os.getpid()}")
    os.symlink(rel_target, tmp)
    checkpoint("promote:link-made")
    os.replace(tmp, current)
    fsync_dir(root)
    return previous


def op_promote(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    target = req["target"]
    try:
        with Lock(root, checked_id(req["deploy_id"]), "promote", bool(req.get("break_lock"))):
            clean_leftovers(root)
            if not _is_release(target):
                raise AgentError(3, f"no release at {target} to promote", "deploy it first; a rolled-back release cannot be promoted")
            manifest = read_deploy_manifest(target)
            if manifest.get("deploy_id") != req["deploy_id"]:
                raise refuse(f"{target} belongs to deploy {manifest.get('deploy_id')!r}, not {req['deploy_id']!r}")
            rel = os.path.relpath(target, root)
            previous = switch_link(root, rel)
            return {"current": rel, "previous": previous}
    except OSError as exc:
        raise _io_error(exc, f"promote of {target} failed") from None


def op_tidy(req: dict[str, Any]) -> dict[str, Any]:
    """Under the lock, remove what killed runs left in the root and in the releases folder."""
    root = req["root"]
    with Lock(root, checked_id(req["deploy_id"]), "tidy", bool(req.get("break_lock"))):
        cleaned = clean_leftovers(root)
        if req.get("parent"):
            cleaned += clean_leftovers(os.path.join(root, checked_folder_name(req["parent"], "the releases folder")))
        return {"cleaned": cleaned}


def op_inspect(req: dict[str, Any]) -> dict[str, Any]:
    """What the target says about one deploy: does its release exist, is it that deploy's,
    is a run of it still holding the lock. Used to reconcile an outcome the controller did not see."""
    root, target, deploy_id = req["root"], req["target"], checked_id(req["deploy_id"])
    lock = read_lock(root) if os.path.isdir(root) else None
    running = bool(
        lock and lock.get("deploy_id") == deploy_id and lock.get("host") == _hostname() and _alive(int(lock.get("pid", -1) or -1), str(lock.get("started", "")))
    )
    out: dict[str, Any] = {"target": target, "kind": path_kind(target), "running": running, "manifest": None, "manifest_sha256": ""}
    if out["kind"] == "directory":
        try:
            fd = open_dir(target)
        except OSError:
            return out
        try:
            got = _manifest_of(fd)
        finally:
            os.close(fd)
        if got:
            out["manifest"], out["manifest_sha256"] = got
    return out


def op_status(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    releases = []
    current = os.path.join(root, "current")
    cur_real = os.path.realpath(current) if path_kind(current) == "symlink" else None
    left: list[str] = []
    for parent in (root, os.path.join(root, "releases")):
        if path_kind(parent) != "directory":
            continue
        left += [os.path.join(parent, n) for n in leftovers(parent)]
        for name in sorted(os.listdir(parent)):
            path = os.path.join(parent, name)
            if name.startswith(PREFIX) or not _is_release(path):
                continue
            try:
                m = read_deploy_manifest(path)
            except (OSError, AgentError):
                continue
            releases.append(
                {
                    "path": path,
                    "version": m.get("version"),
                    "head": m.get("head"),
                    "release_stamp": m.get("release_stamp"),
                    "deploy_id": m.get("deploy_id"),
                    "strategy": m.get("strategy"),
                    "promoted": cur_real == os.path.realpath(path),
                }
            )
    others = sorted(n for n in os.listdir(root) if not n.startswith(PREFIX)) if os.path.isdir(root) else []
    return {"root": root, "releases": releases, "lock": read_lock(root), "entries": others, "leftovers": left, "current": pointer_state(root)}


def op_verify(req: dict[str, Any]) -> dict[str, Any]:
    """Re-hash a release against its BUNDLE-MANIFEST (files, links, folders) and its DEPLOY-MANIFEST
    against the controller's record. Only regular files are ever opened: anything else is drift."""
    target = req["target"]
    if path_kind(target) != "directory":
        raise AgentError(3, f"no deployed release at {target}", "deploy first, or pass --deploy-id")
    fd = open_dir(target)
    try:
        got_manifest = _manifest_of(fd)
        want = _bundle_entries(fd)
        found: dict[str, str] = {}
        dirs: set[str] = set()
        _walk(fd, "", found, dirs)
        got: dict[str, str] = {}
        others: list[str] = []
        for rel, kind in found.items():
            if rel in (DEPLOY_MANIFEST, BUNDLE_MANIFEST):
                continue
            if kind == "l":
                got[rel] = "link:" + os.readlink(rel, dir_fd=fd)
            elif kind == "f":
                got[rel] = _hash_at(fd, rel)
            else:
                others.append(rel)
                got[rel] = "special"
    finally:
        os.close(fd)
    wanted_dirs = {"/".join(p.split("/")[:i]) for p in want for i in range(1, p.count("/") + 1)}
    added = sorted(set(got) - set(want)) + sorted(d + "/" for d in dirs - wanted_dirs)
    removed = sorted(set(want) - set(got))
    changed = sorted(p for p in set(got) & set(want) if got[p] != want[p])
    dm, dm_sha = got_manifest if got_manifest else ({}, "")
    recorded_tree = req.get("tree_sha256") or dm.get("tree_sha256")
    manifest_ok = bool(want) and tree_sha256(want) == dm.get("tree_sha256") == recorded_tree
    deploy_manifest_ok = not req.get("manifest_sha256") or req.get("manifest_sha256") == dm_sha
    return {
        "target": target,
        "added": added,
        "removed": removed,
        "changed": changed,
        "special": sorted(others),
        "manifest_intact": manifest_ok,
        "deploy_manifest_intact": deploy_manifest_ok,
        "files": len(got),
        "clean": not (added or removed or changed) and manifest_ok and deploy_manifest_ok,
    }


def _hash_at(dir_fd: int, rel: str) -> str:
    fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "special"
        h = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- smoke (G5)

_ATTR_SCRIPT = """
import importlib, json, sys
mod, _, attr = sys.argv[1].partition(":")
obj = importlib.import_module(mod)
for part in attr.split("."):
    obj = getattr(obj, part)
try:
    print(json.dumps(obj))
except TypeError:
    print(json.dumps(repr(obj)))
"""

_IMPORT_SCRIPT = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n    print('imported', m)\n"


def _become_subreaper() -> bool:
    """Make orphaned descendants of check commands (even new sessions) our children (Linux)."""
    import ctypes

    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc), children before their parent's siblings."""
    parents: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for n in names:
        if not n.isdigit():
            continue
        try:
            with open(f"/proc/{n}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(n))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_descendants() -> int:
    """SIGKILL every process below this agent and reap them; return how many there were."""
    import signal

    me = os.getpid()
    killed = 0
    for _ in range(5):
        found = _descendants(me)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        _reap()
        time.sleep(0.01)
    return killed


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _run_limited(argv: list[str], cwd: str, env: dict[str, str], timeout: float) -> tuple[int | None, str, float]:
    """Run a check command with a hard bound: when it ends or times out, every process it
    started (its own session or not) is killed. Output goes to a private file, so a
    descendant that keeps it open cannot hold the check. Returns (exit code or None on
    timeout, output tail, seconds it ran)."""
    import subprocess
    import tempfile

    t0 = time.monotonic()
    with tempfile.TemporaryFile(dir=env.get("TMPDIR")) as out:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = p.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            code = None
        try:
            os.killpg(p.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        _kill_descendants()
        p.wait()
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - 64 * 1024))
        text = out.read().decode("utf-8", "replace")
    return code, text, time.monotonic() - t0


def _pytest_counts(output: str) -> dict[str, int]:
    import re

    counts: dict[str, int] = {}
    for line in reversed(output.strip().splitlines()):
        if re.search(r"\bin [0-9.]+s\b", line) and re.search(r"\d+ (passed|failed|error|errors|skipped|no tests ran)", line):
            for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)", line):
                key = {"error": "errors", "warning": "warnings"}.get(word, word)
                counts[key] = counts.get(key, 0) + int(n)
            break
    return counts


_ANSI = None


def strip_ansi(text: str) -> str:
    """Remove terminal escape sequences and other control characters but newline and tab."""
    import re

    global _ANSI
    if _ANSI is None:
        _ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")
    return _ANSI.sub("", text.replace("\r\n", "\n"))


def run_check(check: dict[str, Any], target: str, python: str, env: dict[str, str], budget: float | None = None) -> dict[str, Any]:
    kind = check["kind"]
    opts = check["options"]
    timeout = float(check["timeout"]) if budget is None else max(0.1, min(float(check["timeout"]), budget))
    t0 = time.monotonic()
    status, detail, data = "passed", "", {}
    if kind == "compileall":
        argv = [python, "-m", "compileall", "-q", target]
    elif kind == "import":
        argv = [python, "-c", _IMPORT_SCRIPT, *opts["modules"]]
    elif kind == "attr":
        argv = [python, "-c", _ATTR_SCRIPT, opts["object"]]
    elif kind == "pytest":
        argv = [python, "-m", "pytest", "-p", "no:cacheprovider", *opts.get("args", [])]
    elif kind == "command":
        argv = [a.replace("{python}", python).replace("{target}", target) for a in opts["argv"]]
    else:
        return {"name": check["name"], "kind": kind, "status": "error", "duration": 0.0, "detail": f"unknown check kind {kind!r}"}
    try:
        code, out, ran = _run_limited(argv, target, env, timeout)
    except OSError as exc:
        code, out, ran = -1, f"cannot run {argv[0]}: {exc}", 0.0
    out = strip_ansi(out)
    tail = out.strip()[-3000:]
    if code is None:
        status, detail = "timeout", f"timed out after {timeout:g}s: every process it started was killed (ran {ran:.1f}s)\n{tail}"
    elif kind == "attr":
        if code != 0:
            status, detail = "failed", tail
        else:
            import json as _json

            value = _json.loads(out.strip().splitlines()[-1])
            data["value"] = value
            if "startswith" in opts:
                ok = isinstance(value, str) and value.startswith(opts["startswith"])
                detail = f"{opts['object']} = {value!r}; expected to start with {opts['startswith']!r}"
            else:
                ok = value == opts["equals"] and type(value) is type(opts["equals"])
                detail = f"{opts['object']} = {value!r}; expected {opts['equals']!r}"
            status = "passed" if ok else "failed"
    elif kind == "pytest":
        counts = _pytest_counts(out)
        data["counts"] = counts
        want = opts.get("expect_passed")
        reasons = []
        if code != 0:
            reasons.append(f"pytest exit code {code}")
        if counts.get("failed") or counts.get("errors"):
            reasons.append(f"{counts.get('failed', 0)} failed, {counts.get('errors', 0)} errors")
        if want is not None and counts.get("passed", 0) != want:
            reasons.append(f"{counts.get('passed', 0)} passed, expected {want}")
        status = "failed" if reasons else "passed"
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no summary line"
        detail = (("; ".join(reasons) + "\n") if reasons else "") + summary + ("\n" + tail if reasons else "")
    elif kind == "command":
        want_code = int(opts.get("expect_exit", 0))
        expect = opts.get("expect_output")
        reasons = []
        if code != want_code:
            reasons.append(f"exit code {code}, expected {want_code}")
        if expect is not None and expect not in out:
            reasons.append(f"output lacks {expect!r}")
        status = "failed" if reasons else "passed"
        detail = ("; ".join(reasons) + "\n" if reasons else "") + tail
    else:
        status = "passed" if code == 0 else "failed"
        detail = tail if code != 0 else (tail or "ok")
    return {
        "name": check["name"],
        "kind": kind,
        "status": status,
        "duration": round(time.monotonic() - t0, 3),
        "detail": detail,
        "data": data,
    }


ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME", "HOME")


def check_env(scratch: str, target: str) -> dict[str, str]:
    """The clean environment of a check: an allowlist of the agent's variables (never a DSN,
    password or token) plus what keeps the release unwritten."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOW or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPYCACHEPREFIX": os.path.join(scratch, "pycache"),
            "PYTHONPATH": target,
            "HOME": env.get("HOME", scratch),
            "TMPDIR": scratch,
        }
    )
    return env


def op_smoke(req: dict[str, Any]) -> dict[str, Any]:
    """Run G5 checks in the deployed folder; bytecode and caches go to a private temp dir."""
    target = req["target"]
    if path_kind(target) != "directory" or not os.path.isfile(os.path.join(target, DEPLOY_MANIFEST)):
        raise AgentError(3, f"no deployed release at {target}", "deploy first")
    import tempfile

    python = req["python"]
    scratch = tempfile.mkdtemp(prefix="release-smoke-")
    env = check_env(scratch, target)
    _become_subreaper()
    deadline = time.monotonic() + float(req.get("total_timeout") or sum(float(c["timeout"]) for c in req["checks"]) + 5)
    results = []
    try:
        for check in req["checks"]:
            say(f"smoke: {check['name']}")
            left = deadline - time.monotonic()
            if left <= 0:
                results.append(
                    {
                        "name": check["name"],
                        "kind": check["kind"],
                        "status": "timeout",
                        "duration": 0.0,
                        "detail": "not run: the smoke's total time was used up",
                        "data": {},
                    }
                )
                continue
            results.append(run_check(check, target, python, env, left))
    finally:
        _kill_descendants()
        shutil.rmtree(scratch, ignore_errors=True)
    # in the same connection: prove the smoke left the deployed tree unchanged
    verify = op_verify({"target": target, "tree_sha256": req.get("tree_sha256"), "manifest_sha256": req.get("manifest_sha256")})
    return {"target": target, "results": results, "verify": verify}


# ----------------------------------------------------------------------------- provision (G4)


def _make_dirs(path: str, created: list[dict[str, str]]) -> None:
    """mkdir -p that records every folder it creates, and never touches what exists."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    if path_kind(p) != "directory":
        raise refuse(f"cannot provision under {p}: it is a {path_kind(p)}, not a folder", "move it away by hand")
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        created.append({"type": "dir", "path": d})


def _inside(root: str, rel: str, what: str) -> str:
    """``root``/``rel`` for a relative, '..'-free ``rel``; the resolved folder must stay under the resolved root."""
    why = name_problem(rel.strip("/") if rel else "")
    if why or rel.startswith("/"):
        raise AgentError(2, f"{what} {rel!r} is not a path inside provision.root ({why or 'absolute path'})", "use a relative path without '..'")
    path = os.path.join(root, rel)
    real_root = os.path.realpath(root)
    probe = path
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    inside = probe == root or probe.startswith(root.rstrip("/") + "/")
    real = os.path.realpath(probe)
    if inside and real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise refuse(f"{what} {rel!r} resolves outside provision.root ({real})", "a link under provision.root leads elsewhere; inspect it")
    return path


def op_provision(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    created: list[dict[str, str]] = []
    existed: list[str] = []
    lock_root = req["lock_root"]
    if req.get("create_lock_root"):
        os.makedirs(lock_root, exist_ok=True)
    if not os.path.isdir(lock_root):
        raise AgentError(3, f"target root does not exist: {lock_root} (provision locks it)", "create it, or set target.create_root = true")
    with Lock(lock_root, req["id"], "provision", bool(req.get("break_lock"))):
        try:
            for d in req["dirs"]:
                path = _inside(root, d, "provision.dirs entry")
                if os.path.lexists(path):
                    if path_kind(path) != "directory":
                        raise refuse(f"{path} exists and is a {path_kind(path)}, not a folder", "move it away by hand")
                    existed.append(path)
                    continue
                _make_dirs(path, created)
            if req.get("config_file"):
                path = _inside(root, req["config_file"], "provision.config_file")
                if os.path.lexists(path):
                    existed.append(path)
                else:
                    _make_dirs(os.path.dirname(path), created)
                    data = req["config_text"].encode()
                    parent_fd = open_dir(os.path.dirname(path))
                    try:
                        _write_new(parent_fd, os.path.basename(path), data, 0o644)
                    finally:
                        os.close(parent_fd)
                    created.append({"type": "file", "path": path, "sha256": hashlib.sha256(data).hexdigest()})
        except BaseException:
            _undo(created)  # nothing half-done: take back what this run made
            raise
    return {"created": created, "existed": existed}


def _undo(created: list[dict[str, str]]) -> list[str]:
    removed = []
    for entry in reversed(created):
        path = entry["path"]
        if entry["type"] == "file":
            if path_kind(path) != "file":
                raise refuse(f"{path} is no longer the file provision created", "inspect it by hand")
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() != entry["sha256"]:
                    raise refuse(f"{path} was changed since provision created it; not removed", "remove it by hand if it is not needed")
            os.unlink(path)
        else:
            if path_kind(path) != "directory":
                raise refuse(f"{path} is no longer the folder provision created", "inspect it by hand")
            if os.listdir(path):
                raise refuse(f"{path} is not empty (it holds data provision did not create); not removed", "empty it by hand first")
            os.rmdir(path)
        removed.append(path)
    return removed


def op_unprovision(req: dict[str, Any]) -> dict[str, Any]:
    created = req["created"]
    # check everything first, so a refusal removes nothing
    for entry in created:
        path = entry["path"]
        want = "file" if entry["type"] == "file" else "directory"
        if path_kind(path) != want:
            raise refuse(f"{path} is no longer the {want} provision created", "inspect it by hand")
        if want == "directory":
            inner = {os.path.join(path, n) for n in os.listdir(path)}
            if inner - {e["path"] for e in created}:
                raise refuse(f"{path} holds entries provision did not create; nothing was removed", "empty it by hand first")
    with Lock(req["lock_root"], req["id"], "unprovision", bool(req.get("break_lock"))):
        return {"removed": _undo(created)}


OPS = {
    "facts": op_facts,
    "deploy": op_deploy,
    "rollback": op_rollback,
    "promote": op_promote,
    "status": op_status,
    "inspect": op_inspect,
    "tidy": op_tidy,
    "verify": op_verify,
    "smoke": op_smoke,
    "provision": op_provision,
    "unprovision": op_unprovision,
}


def _answer(doc: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # the controller went away: it reconciles the outcome with the target later


def main(argv: list[str]) -> int:
    import signal

    if len(argv) > 1 and argv[1] in ("deploy", "rollback", "promote", "provision", "unprovision"):
        # a lost connection must not cut an op short: what it started, it finishes or undoes
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        op, raw = argv[1], argv[2]
        req = json.loads(raw)
        handler = OPS.get(op)
        if handler is None:
            raise AgentError(2, f"unknown agent op {op!r}")
        result = handler(req)
        _answer({"ok": True, "result": result})
        return 0
    except AgentError as exc:
        _answer({"ok": False, "exit_code": exc.code, "message": exc.message, "hint": exc.hint})
        return exc.code
    except Exception as exc:
        import traceback

        _answer({"ok": False, "exit_code": 1, "message": f"{type(exc).__name__}: {exc}", "hint": "", "traceback": traceback.format_exc()[-4000:]})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
