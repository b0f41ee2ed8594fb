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
import posixpath
import shutil
import stat
import sys
import time
import zlib
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
    sys.stderr.write(f"[{_hostname()}] {msg}\n")
    sys.stderr.flush()


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
        with open(os.path.join(root, LOCK)) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return {"host": "?", "pid": -1, "time": 0, "deploy_id": "?", "unreadable": True}


def _alive(pid: int) -> bool:
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
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Lock:
    """An atomic lock file in the target root (O_EXCL); never outlives the op that took it."""

    def __init__(self, root: str, deploy_id: str, op: str, break_lock: bool) -> None:
        self.path = os.path.join(root, LOCK)
        self.root = root
        self.info = {"host": _hostname(), "pid": os.getpid(), "time": time.time(), "deploy_id": deploy_id, "op": op}
        self.break_lock = break_lock
        self.held = False

    def __enter__(self) -> Lock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                holder = read_lock(self.root) or {}
                since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(holder.get("time", 0)))
                who = f"{holder.get('op', '?')} {holder.get('deploy_id', '?')}"
                desc = f"{who} by pid {holder.get('pid')} on {holder.get('host')} since {since}"
                same_host = holder.get("host") == _hostname()
                stale = holder.get("unreadable") or (same_host and not _alive(int(holder.get("pid", -1))))
                if stale and self.break_lock:
                    say(f"breaking stale lock: {desc}")
                    os.unlink(self.path)
                    continue
                if stale:
                    raise refuse(f"stale lock at {self.path}: {desc} (that process is gone)", "rerun with --break-lock to break it") from None
                raise AgentError(
                    4,
                    f"target root is locked: {self.path} held by {desc}",
                    "wait for it to finish; a lock of a live process is never broken",
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(self.info, f)
            self.held = True
            return self
        raise refuse(f"could not take the lock at {self.path}")

    def __exit__(self, *exc: object) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


# ----------------------------------------------------------------------------- leftovers


def clean_leftovers(parent: str) -> list[str]:
    """Remove staging/trash folders of killed runs: only those whose marker names their id."""
    cleaned: list[str] = []
    if not os.path.isdir(parent):
        return cleaned
    for name in sorted(os.listdir(parent)):
        if not (name.startswith(PREFIX + "tmp-") or name.startswith(PREFIX + "trash-")):
            continue
        path = os.path.join(parent, name)
        if path_kind(path) != "directory":
            continue
        try:
            with open(os.path.join(path, MARKER)) as f:
                marker = json.load(f)
        except (OSError, ValueError):
            continue  # not provably ours: never touched
        if name.endswith("-" + str(marker.get("deploy_id", "\0"))):
            say(f"removing leftover of killed run {marker.get('deploy_id')}: {path}")
            remove_tree(path)
            cleaned.append(path)
    return cleaned


def remove_tree(path: str) -> None:
    """Remove a folder without following symlinks (GNU rm when present, else rmtree)."""
    rm = shutil.which("rm")
    if rm:
        import subprocess

        subprocess.run([rm, "-rf", "--one-file-system", "--", path], check=True)
    else:
        shutil.rmtree(path)


def write_marker(folder: str, deploy_id: str, op: str) -> None:
    with open(os.path.join(folder, MARKER), "w") as f:
        json.dump({"deploy_id": deploy_id, "op": op, "pid": os.getpid(), "time": time.time()}, f)


# ----------------------------------------------------------------------------- bundle checks


def receive(dest: str, expected_sha: str, fd: int | None = None) -> None:
    """Copy stdin (or ``fd``) to ``dest`` while hashing; refuse a checksum mismatch."""
    h = hashlib.sha256()
    fd = sys.stdin.fileno() if fd is None else fd
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # take whatever has arrived (no waiting for a full buffer), so hashing and
        # writing overlap with the transfer instead of following it
        while chunk := os.read(fd, 1 << 18):
            h.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view) :]
    finally:
        os.close(out)
    if h.hexdigest() != expected_sha:
        raise _mismatch(h.hexdigest(), expected_sha)


class Member:
    __slots__ = ("linkname", "mode", "name", "size", "type")

    def __init__(self, name: str, mode: int, size: int, type_: bytes, linkname: str) -> None:
        self.name = name
        self.mode = mode
        self.size = size
        self.type = type_
        self.linkname = linkname

    def isreg(self) -> bool:
        return self.type in (b"0", b"\0", b"7")

    def isdir(self) -> bool:
        return self.type == b"5"

    def issym(self) -> bool:
        return self.type == b"2"

    def islnk(self) -> bool:
        return self.type == b"1"


def _octal(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # base-256 (GNU) for huge values
        n = int.from_bytes(field[1:], "big")
        return -n if field[:1] == b"\xff" else n
    field = field.split(b"\0", 1)[0].strip()
    return int(field, 8) if field else 0


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


class TarReader:
    """A small, strict, streaming reader of tar.gz (ustar, pax and GNU long names).

    Much faster per member than ``tarfile`` for the many-small-files case; anything it
    does not understand is refused rather than guessed.
    """

    KEEP_LIMIT = 768 << 20  # keep the inflated tar between passes up to this size

    def __init__(self, path: str, chunks: list[bytes] | None = None, keep: bool = False) -> None:
        """Read the tar.gz at ``path``, or (``chunks``) the tar an earlier pass inflated.

        With ``keep`` the inflated chunks are kept (up to KEEP_LIMIT) in ``self.kept``,
        so the second pass over the same, already verified file need not inflate again.
        """
        self.path = path
        self.buf = bytearray()
        self.pos = 0
        self.kept: list[bytes] | None = [] if keep else None
        self.raw_sha = hashlib.sha256()  # of the compressed file, as it was read
        self._src = iter(chunks) if chunks is not None else self._inflate()

    def _inflate(self) -> Any:
        z = zlib.decompressobj(31)
        kept_size = 0
        with open(self.path, "rb") as f:
            while raw := f.read(CHUNK):
                self.raw_sha.update(raw)
                out = z.decompress(raw)
                if z.eof and z.unused_data.strip(b"\0"):
                    raise refuse("bundle has trailing data after the gzip stream", "do not deploy this bundle")
                if self.kept is not None:
                    kept_size += len(out)
                    if kept_size > self.KEEP_LIMIT:
                        self.kept = None
                    else:
                        self.kept.append(out)
                yield out
        if not z.eof:
            raise refuse("bundle is truncated (gzip stream not finished)", "the bundle is damaged; rebuild it")

    def close(self) -> None:
        self._src = iter(())

    def __enter__(self) -> TarReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self, n: int) -> None:
        while len(self.buf) - self.pos < n:
            chunk = next(self._src, None)
            if chunk is None:
                return
            if self.pos > CHUNK:
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += chunk

    def read(self, n: int) -> bytes:
        self._fill(n)
        if len(self.buf) - self.pos < n:
            raise refuse("bundle is truncated", "the bundle is damaged; rebuild it")
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            self._fill(min(n, CHUNK))
            step = min(n, len(self.buf) - self.pos)
            if step <= 0:
                raise refuse("bundle is truncated", "the bundle is damaged; rebuild it")
            self.pos += step
            n -= step

    def data(self, m: Member) -> bytes:
        out = self.read(m.size)
        self.skip(-m.size % 512)
        return out

    def skip_data(self, m: Member) -> None:
        self.skip(m.size + (-m.size % 512))

    def __iter__(self) -> Any:
        pax: dict[str, str] = {}
        longname = longlink = None
        while True:
            hdr = self.read(512)
            if hdr == bytes(512):
                return
            chk = _octal(hdr[148:156])
            if chk != sum(hdr[:148]) + 256 + sum(hdr[156:]):
                raise refuse("bundle has a corrupt tar header", "the bundle is damaged; rebuild it")
            type_ = hdr[156:157]
            size = _octal(hdr[124:136])
            if size < 0:
                raise refuse("bundle has a negative member size", "do not deploy this bundle")
            if type_ in (b"x", b"X", b"g", b"L", b"K"):
                body = self.read(size)
                self.skip(-size % 512)
                if type_ in (b"x", b"X"):
                    pax.update(_pax(body))
                elif type_ == b"L":
                    longname = _text(body)
                elif type_ == b"K":
                    longlink = _text(body)
                continue
            name = _text(hdr[0:100])
            if hdr[257:262] == b"ustar" and hdr[345:346] != b"\0":
                name = _text(hdr[345:500]) + "/" + name
            name = longname or pax.get("path", name)
            linkname = longlink or pax.get("linkpath", _text(hdr[157:257]))
            if "size" in pax:
                size = int(pax["size"])
            yield Member(name, _octal(hdr[100:108]), size, type_, linkname)
            pax, longname, longlink = {}, None, None


def _pax(body: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        sp = body.index(b" ", pos)
        length = int(body[pos:sp])
        if length <= 0:
            raise refuse("bundle has a corrupt pax header", "do not deploy this bundle")
        key, _, value = body[sp + 1 : pos + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _safe_rel(name: str) -> str | None:
    if name.startswith("/") or "\\" in name or any(ord(c) < 32 for c in name):
        return None
    norm = posixpath.normpath(name)
    if norm in (".", "..") or norm.startswith("../") or "/../" in f"/{name}/":
        return None
    return norm


def scan(bundle: str) -> tuple[str, dict[str, Any], list[bytes] | None, str]:
    """Pre-scan every member before anything is written.

    Returns (top folder, manifest, the inflated tar if it was small enough to keep,
    sha256 of the file as read).
    """
    top = ""
    seen: set[str] = set()
    links: set[str] = set()
    manifest: dict[str, Any] | None = None
    try:
        with TarReader(bundle, keep=True) as tf:
            for m in tf:
                rel = _safe_rel(m.name)
                if rel is None:
                    raise refuse(f"hostile bundle member refused: {m.name!r} (absolute path or '..')", "do not deploy this bundle")
                head = rel.split("/", 1)[0]
                if not top:
                    top = head
                if head != top:
                    raise refuse(f"bundle member outside the single top folder: {m.name!r}", "do not deploy this bundle")
                if rel in seen:
                    raise refuse(f"duplicate bundle member refused: {m.name!r}", "do not deploy this bundle")
                seen.add(rel)
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    if "/".join(parts[:i]) in links:
                        raise refuse(f"bundle member under a symlink refused: {m.name!r}", "do not deploy this bundle")
                if m.mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
                    raise refuse(f"setuid/setgid/sticky bit refused: {m.name!r}", "do not deploy this bundle")
                if m.islnk():
                    raise refuse(f"hard link refused: {m.name!r} -> {m.linkname!r}", "do not deploy this bundle")
                if m.issym():
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.linkname))
                    if m.linkname.startswith("/") or not (target == top or target.startswith(top + "/")):
                        raise refuse(f"symlink leaving the release folder refused: {m.name!r} -> {m.linkname!r}", "do not deploy this bundle")
                    links.add(rel)
                elif not (m.isreg() or m.isdir()):
                    raise refuse(f"special file refused (device, FIFO or other): {m.name!r}", "do not deploy this bundle")
                if m.isreg() and rel == f"{top}/{BUNDLE_MANIFEST}":
                    manifest = json.loads(tf.data(m))
                else:
                    tf.skip_data(m)
            kept = tf.kept
            raw_sha = tf.raw_sha.hexdigest()
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise refuse(f"bundle is not a readable tar.gz: {exc}", "rebuild the bundle") from None
    if manifest is None:
        raise refuse(f"bundle has no {BUNDLE_MANIFEST}", "rebuild the bundle with `release bundle`")
    return top, manifest, kept, raw_sha


def _write_file(path: str, data: bytes, mode: int) -> str:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def scan_in_place(path: str, expected_sha: str) -> tuple[str, dict[str, Any], list[bytes] | None, str]:
    """Pre-scan a bundle on this machine without copying it; the checksum is checked first
    in the report: a damaged or altered bundle is a checksum mismatch, whatever else is wrong."""
    try:
        result = scan(path)
    except AgentError:
        got = _file_sha256(path)
        if got != expected_sha:
            raise _mismatch(got, expected_sha) from None
        raise
    if result[3] != expected_sha:
        raise _mismatch(result[3], expected_sha)
    return result


def _mismatch(got: str, expected: str) -> AgentError:
    return refuse(
        f"checksum mismatch on the target: bundle has sha256 {got}, expected {expected}",
        "the bundle was altered or truncated; rebuild or re-ship it",
    )


def extract(bundle: str, top: str, manifest: dict[str, Any], dest: str, inflated: list[bytes] | None = None) -> dict[str, Any]:
    """Write the pre-scanned bundle into ``dest`` (a new folder), verifying every file.

    ``inflated`` is the tar the pre-scan kept in memory (None: inflate the file again).
    """
    expected = {f["path"]: f for f in manifest["files"]}
    got: dict[str, str] = {}
    os.mkdir(dest, 0o755)
    made = {dest}
    with TarReader(bundle, inflated) as tf:
        for m in tf:
            rel = posixpath.normpath(m.name)[len(top) + 1 :]
            if not rel:
                continue
            path = os.path.join(dest, rel)
            if m.isdir():
                if path not in made:
                    os.makedirs(path, 0o755, exist_ok=True)
                    made.add(path)
                continue
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, 0o755, exist_ok=True)
                made.add(parent)
            if m.issym():
                os.symlink(m.linkname, path)
                got[rel] = "link:" + m.linkname
                continue
            digest = _write_file(path, tf.data(m), 0o755 if m.mode & 0o111 else 0o644)
            if rel != BUNDLE_MANIFEST:
                got[rel] = digest
    want = {p: ("link:" + e["link"]) if "link" in e else e["sha256"] for p, e in expected.items()}
    if got != want:
        bad = sorted(p for p in set(got) | set(want) if got.get(p) != want.get(p))
        raise refuse(f"bundle content does not match its {BUNDLE_MANIFEST}: " + ", ".join(bad[:10]), "the bundle was tampered with; rebuild it")
    return {"files": len(got), "tree_sha256": tree_sha256(got)}


def tree_sha256(entries: dict[str, str]) -> str:
    """sha256 over sorted ``<sha256-or-link:target>  <path>`` lines of the release's files."""
    text = "".join(f"{v}  {p}\n" for p, v in sorted(entries.items()))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def rename_noreplace(src: str, dst: str) -> None:
    """rename(2) that fails if ``dst`` exists (renameat2 RENAME_NOREPLACE where available)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        fn = None
    if fn is not None:
        at_fdcwd = -100
        if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), 1) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise refuse(f"target appeared during the deploy: {dst}", "nothing was overwritten; inspect it")
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), dst)
    if os.path.lexists(dst):
        raise refuse(f"target appeared during the deploy: {dst}", "nothing was overwritten; inspect it")
    os.rename(src, dst)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- deploy


def op_deploy(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    if not os.path.isdir(root):
        if req.get("create_root"):
            os.makedirs(root, 0o755, exist_ok=True)
        else:
            raise AgentError(3, f"target root does not exist: {root}", "create it, or set target.create_root = true")
    parent = os.path.join(root, req["parent"]) if req.get("parent") else root
    deploy_id = req["deploy_id"]
    with Lock(root, deploy_id, "deploy", bool(req.get("break_lock"))):
        cleaned = clean_leftovers(parent)
        parent_existed = os.path.isdir(parent)
        before = listing_sha256(parent)
        target = os.path.join(parent, req["dir"])
        kind = path_kind(target)
        if kind != "absent":
            raise refuse(
                f"target already exists ({kind}): {target}",
                "nothing was changed; choose another target.dir, or remove it yourself if it is not needed",
            )
        if not parent_existed:
            os.mkdir(parent, 0o755)
        stage = os.path.join(parent, f"{PREFIX}tmp-{deploy_id}")
        os.mkdir(stage, 0o700)
        write_marker(stage, deploy_id, "deploy")
        try:
            bundle = os.path.join(stage, "bundle.tar.gz")
            in_place = req.get("bundle_path") and not req.get("ship_only")
            if in_place:
                # same machine: checksum and pre-scan in one read of the bundle where it
                # lies; what is unpacked is the inflated copy that was hashed, never the file again
                say(f"checking {req['bundle']} in place")
                top, manifest, inflated, raw_sha = scan_in_place(req["bundle_path"], req["bundle_sha256"])
                if inflated is None:  # too large to keep in memory: work from a private copy
                    with open(req["bundle_path"], "rb") as f:
                        receive(bundle, req["bundle_sha256"], f.fileno())
                    top, manifest, inflated, raw_sha = scan(bundle)
            else:
                say(f"receiving {req['bundle']}")
                receive(bundle, req["bundle_sha256"])
                if req.get("ship_only"):
                    return {"shipped": True, "bundle_sha256": req["bundle_sha256"]}
                say("checking every member")
                top, manifest, inflated, raw_sha = scan(bundle)
            if raw_sha != req["bundle_sha256"]:
                raise refuse(f"checksum mismatch: bundle changed while it was read ({raw_sha})", "rerun the deploy")
            for key in ("name", "version", "commit"):
                want = req["expect"].get(key)
                if want and manifest.get(key) != want:
                    raise refuse(f"bundle manifest {key} is {manifest.get(key)!r}, expected {want!r}", "deploy the bundle of the recorded HEAD")
            tree = os.path.join(stage, "tree")
            say("unpacking and verifying")
            facts = extract(bundle, top, manifest, tree, inflated)
            del inflated
            lines = dict(req["manifest"])
            lines.update(
                {
                    "pre_existed": "false",
                    "parent_existed": "true" if parent_existed else "false",
                    "parent_listing_sha256_before": before,
                    "files": str(facts["files"]),
                    "tree_sha256": facts["tree_sha256"],
                    "target": target,
                    "target_host": _hostname(),
                    "rollback": f"rm -rf -- {target}",
                }
            )
            with open(os.path.join(tree, DEPLOY_MANIFEST), "x") as f:
                f.write("".join(f"{k}: {v}\n" for k, v in lines.items()))
                f.flush()
                os.fsync(f.fileno())
            os.sync()
            rename_noreplace(tree, target)
            fsync_dir(parent)
        finally:
            remove_tree(stage)
            if not parent_existed and path_kind(target) == "absent" and not os.listdir(parent):
                os.rmdir(parent)  # a failed deploy takes back the releases/ folder it made
        return {
            "target": target,
            "parent": parent,
            "parent_existed": parent_existed,
            "parent_listing_sha256_before": before,
            "cleaned": cleaned,
            **facts,
            "manifest": lines,
        }


# ----------------------------------------------------------------------------- manifests


def read_deploy_manifest(folder: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(os.path.join(folder, DEPLOY_MANIFEST)) as f:
        for line in f:
            if ": " in line:
                k, v = line.rstrip("\n").split(": ", 1)
                out[k] = v
    return out


def op_rollback(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    target = req["target"]
    parent = os.path.dirname(target)
    deploy_id = req["deploy_id"]
    if not os.path.isdir(root):
        raise AgentError(3, f"target root does not exist: {root}", "nothing to roll back")
    with Lock(root, deploy_id, "rollback", bool(req.get("break_lock"))):
        clean_leftovers(parent)
        kind = path_kind(target)
        if kind == "absent":
            raise AgentError(3, f"nothing to roll back: {target} does not exist", "it was already removed")
        if kind != "directory":
            raise refuse(f"refusing to remove {target}: it is a {kind}, not the folder this tool created", "inspect it by hand")
        try:
            manifest = read_deploy_manifest(target)
        except OSError:
            raise refuse(f"refusing to remove {target}: it has no {DEPLOY_MANIFEST}, so this tool did not create it", "inspect it by hand") from None
        if manifest.get("deploy_id") != deploy_id:
            raise refuse(
                f"refusing to remove {target}: its {DEPLOY_MANIFEST} names deploy {manifest.get('deploy_id')!r}, the record names {deploy_id!r}",
                "roll back with the matching --deploy-id",
            )
        if manifest.get("pre_existed") != "false":
            raise refuse(f"refusing to remove {target}: its manifest does not prove it was created by the deploy", "inspect it by hand")
        restored = restore_pointer(root, target, req.get("previous_current"))
        trash = os.path.join(parent, f"{PREFIX}trash-{deploy_id}")
        os.mkdir(trash, 0o700)
        write_marker(trash, deploy_id, "rollback")
        os.rename(target, os.path.join(trash, "release"))
        fsync_dir(parent)
        remove_tree(trash)
        removed_parent = False
        if req.get("remove_parent_if_empty") and parent != root and not os.listdir(parent):
            os.rmdir(parent)
            removed_parent = True
        after = listing_sha256(parent)
        before = manifest.get("parent_listing_sha256_before", "")
        return {
            "removed": target,
            "pointer": restored,
            "removed_parent": removed_parent,
            "parent_listing_sha256_before": before,
            "parent_listing_sha256_after": after,
            "parent_restored": after == before or (removed_parent and manifest.get("parent_existed") == "false"),
        }


def restore_pointer(root: str, target: str, previous: str | None) -> str:
    """If ``current`` points at the release being removed, point it back (or remove it)."""
    current = os.path.join(root, "current")
    if path_kind(current) != "symlink":
        return "untouched"
    if os.path.realpath(current) != os.path.realpath(target):
        return "untouched"
    if previous:
        switch_link(root, previous)
        return f"restored to {previous}"
    os.unlink(current)
    return "removed (no previous release)"


def switch_link(root: str, rel_target: str) -> str | None:
    """Atomically point ``<root>/current`` at ``rel_target``; return the previous target."""
    current = os.path.join(root, "current")
    kind = path_kind(current)
    if kind not in ("absent", "symlink"):
        raise refuse(f"{current} exists and is a {kind}, not a pointer this tool manages", "move it away by hand")
    previous = os.readlink(current) if kind == "symlink" else None
    tmp = os.path.join(root, f"{PREFIX}current-{os.getpid()}")
    os.symlink(rel_target, tmp)
    os.replace(tmp, current)
    fsync_dir(root)
    return previous


def op_promote(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    target = req["target"]
    with Lock(root, req["deploy_id"], "promote", bool(req.get("break_lock"))):
        manifest = read_deploy_manifest(target)
        if manifest.get("deploy_id") != req["deploy_id"]:
            raise refuse(f"{target} belongs to deploy {manifest.get('deploy_id')!r}, not {req['deploy_id']!r}")
        rel = os.path.relpath(target, root)
        previous = switch_link(root, rel)
        return {"current": rel, "previous": previous}


def op_status(req: dict[str, Any]) -> dict[str, Any]:
    root = req["root"]
    releases = []
    current = os.path.join(root, "current")
    cur_real = os.path.realpath(current) if path_kind(current) == "symlink" else None
    for parent in (root, os.path.join(root, "releases")):
        if not os.path.isdir(parent):
            continue
        for name in sorted(os.listdir(parent)):
            path = os.path.join(parent, name)
            if name.startswith(PREFIX) or path_kind(path) != "directory" or not os.path.isfile(os.path.join(path, DEPLOY_MANIFEST)):
                continue
            m = read_deploy_manifest(path)
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
    return {"root": root, "releases": releases, "lock": read_lock(root), "entries": others}


def op_verify(req: dict[str, Any]) -> dict[str, Any]:
    target = req["target"]
    if path_kind(target) != "directory":
        raise AgentError(3, f"no deployed release at {target}", "deploy first, or pass --deploy-id")
    dm = read_deploy_manifest(target)
    with open(os.path.join(target, BUNDLE_MANIFEST)) as f:
        bm = json.load(f)
    want = {e["path"]: ("link:" + e["link"]) if "link" in e else e["sha256"] for e in bm["files"]}
    got: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(target):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, target)
            if rel in (DEPLOY_MANIFEST, BUNDLE_MANIFEST):
                continue
            if os.path.islink(path):
                got[rel] = "link:" + os.readlink(path)
                continue
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
            got[rel] = h.hexdigest()
    added = sorted(set(got) - set(want))
    removed = sorted(set(want) - set(got))
    changed = sorted(p for p in set(got) & set(want) if got[p] != want[p])
    manifest_ok = tree_sha256(want) == dm.get("tree_sha256") == (req.get("tree_sha256") or dm.get("tree_sha256"))
    return {
        "target": target,
        "added": added,
        "removed": removed,
        "changed": changed,
        "manifest_intact": manifest_ok,
        "files": len(got),
        "clean": not (added or removed or changed) and manifest_ok,
    }


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


def _run_limited(argv: list[str], cwd: str, env: dict[str, str], timeout: int) -> tuple[int | None, str]:
    """Run a check command in its own process group; kill the group on timeout."""
    import subprocess

    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        out, _ = p.communicate()
        return None, out.decode("utf-8", "replace")
    return p.returncode, out.decode("utf-8", "replace")


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


def run_check(check: dict[str, Any], target: str, python: str, env: dict[str, str]) -> dict[str, Any]:
    kind = check["kind"]
    opts = check["options"]
    timeout = int(check["timeout"])
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
        code, out = _run_limited(argv, target, env, timeout)
    except OSError as exc:
        code, out = -1, f"cannot run {argv[0]}: {exc}"
    tail = out.strip()[-3000:]
    if code is None:
        status, detail = "timeout", f"killed after {timeout}s\n{tail}"
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


def op_smoke(req: dict[str, Any]) -> dict[str, Any]:
    """Run G5 checks in the deployed folder; bytecode and caches go to a private temp dir."""
    target = req["target"]
    if path_kind(target) != "directory" or not os.path.isfile(os.path.join(target, DEPLOY_MANIFEST)):
        raise AgentError(3, f"no deployed release at {target}", "deploy first")
    import tempfile

    python = req["python"]
    scratch = tempfile.mkdtemp(prefix="release-smoke-")
    env = dict(os.environ)
    hidden = set(req.get("hide_env", [])) | {"PGPASSWORD"}
    for key in list(env):
        if key.startswith(("PYTEST_", "PYTHONSTARTUP")) or key in ("PYTHONPATH", "PYTHONHOME") or key in hidden:
            env.pop(key)  # the database DSN and password never reach the app's code
    env.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPYCACHEPREFIX": os.path.join(scratch, "pycache"),
            "PYTHONPATH": target,
            "HOME": env.get("HOME", scratch),
            "TMPDIR": scratch,
        }
    )
    results = []
    try:
        for check in req["checks"]:
            say(f"smoke: {check['name']}")
            results.append(run_check(check, target, python, env))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # in the same connection: prove the smoke left the deployed tree unchanged
    verify = op_verify({"target": target, "tree_sha256": req.get("tree_sha256")})
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
                path = os.path.join(root, d)
                if os.path.lexists(path):
                    if path_kind(path) != "directory":
                        raise refuse(f"{path} exists and is a {path_kind(path)}, not a folder", "move it away by hand")
                    existed.append(path)
                    continue
                _make_dirs(path, created)
            if req.get("config_file"):
                path = os.path.join(root, req["config_file"])
                if os.path.lexists(path):
                    existed.append(path)
                else:
                    _make_dirs(os.path.dirname(path), created)
                    data = req["config_text"].encode()
                    with open(path, "xb") as f:
                        f.write(data)
                    os.chmod(path, 0o644)
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
    "verify": op_verify,
    "smoke": op_smoke,
}


def main(argv: list[str]) -> int:
    try:
        op, raw = argv[1], argv[2]
        req = json.loads(raw)
        handler = OPS.get(op) or globals().get("op_" + op)
        if handler is None:
            raise AgentError(2, f"unknown agent op {op!r}")
        result = handler(req)
        sys.stdout.write(json.dumps({"ok": True, "result": result}) + "\n")
        return 0
    except AgentError as exc:
        sys.stdout.write(json.dumps({"ok": False, "exit_code": exc.code, "message": exc.message, "hint": exc.hint}) + "\n")
        return exc.code
    except Exception as exc:
        sys.stdout.write(json.dumps({"ok": False, "exit_code": 1, "message": f"{type(exc).__name__}: {exc}", "hint": ""}) + "\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
