"""The bundle reader: the single authority on a bundle's members."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import zlib

from . import jsonio
from .fsutil import DirFds, widen_pipe, write_all
from .names import link_problem, manifest_entries, name_problem, tree_sha256
from .protocol import BUNDLE_MANIFEST, CHUNK, DEPLOY_WRITES, AgentError, checkpoint, refuse

TYPE_CHECKING = False  # typing and the message shapes are for the type checker: not imported on the target
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


# ----------------------------------------------------------------------------- the bundle reader
#
# One reader is the single authority on a bundle's members. The bundle's bytes are
# checksummed before anything parses them; ``scan`` then reads every header once and, in
# the same pass, writes each member it accepted into a fresh folder inside the private
# staging folder (folders and files only, each relative to a descriptor of its parent,
# O_EXCL, O_NOFOLLOW). Links are made by ``finish``, after every member and the manifest
# were accepted, so no write ever passes through a link. A refusal at any point leaves
# only the staging folder, which the caller removes: nothing outside it was touched.

MAX_HEADER_BODY = 1 << 20  # a pax or GNU long-name body
MAX_MANIFEST = 64 << 20
MAX_MEMBER = 1 << 40
MAX_MEMBERS = 2_000_000
MAX_NAME_BYTES = 96 << 20  # names (and link targets) held while a bundle is read, with 128 bytes of bookkeeping each
INLINE_INFLATE = 1 << 20  # a bundle this small (compressed, in memory) inflates inline: a worker thread costs more
DATA_TYPES = (b"0", b"\0", b"7")  # regular files: the only members that carry data


def _keep_limit() -> int:
    """Bytes of the compressed bundle kept in memory (past them, its private copy): 256 MiB or an eighth of free memory."""
    limit = 256 << 20
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limit = min(limit, int(line.split()[1]) * 1024 // 8)
    except (OSError, ValueError, IndexError):
        pass
    return max(limit, 0)


def header_sum(hdr: bytes) -> int:
    """The tar checksum's unsigned sum: every byte of the header, the checksum field counted
    as eight spaces. Summed in C by Adler-32, whose low half is 1 + the sum of the bytes
    modulo 65521: exact for 256 bytes (at most 65,280), so each half is summed alone."""
    return (zlib.adler32(hdr[:256]) & 0xFFFF) + (zlib.adler32(hdr[256:]) & 0xFFFF) - 2 - sum(hdr[148:156]) + 256


def _mismatch(got: str, expected: str) -> AgentError:
    return refuse(
        f"checksum mismatch on the target: bundle has sha256 {got}, expected {expected}",
        "the bundle was altered or truncated; rebuild or re-ship it",
    )


class Verified:
    """A bundle whose sha256 was checked: its compressed bytes in memory, or a private copy.

    ``read(src_fd, expected, copy_to)`` reads the bundle once and hashes it (keeping the
    compressed bytes when they fit, and writing a private copy when ``copy_to`` is given);
    nothing is inflated or parsed before the checksum matched. ``chunks()`` then inflates
    in a worker thread (zlib releases the GIL, so inflating overlaps the scan and its
    writes, as gzip and tar do in a pipe), or inline when the bundle is small.
    """

    def __init__(self, raw: list[bytes] | None, copy: str | None, sha256: str) -> None:
        self.raw = raw
        self.copy = copy
        self.sha256 = sha256

    @classmethod
    def read(cls, src_fd: int, expected: str, copy_to: str | None = None, keep: bool = True) -> Verified:
        """With ``keep`` the compressed bytes stay in memory while they fit; past that (or
        without ``keep``) they go to the private copy ``copy_to``, the kept part first."""
        h = hashlib.sha256()
        widen_pipe(src_fd)
        limit = _keep_limit() if keep else -1
        raw: list[bytes] | None = [] if keep else None
        out = -1
        size = 0
        try:
            while chunk := os.read(src_fd, 1 << 18):
                h.update(chunk)
                if raw is not None:
                    size += len(chunk)
                    if size <= limit:
                        raw.append(chunk)
                        continue
                    spill, raw = [*raw, chunk], None
                else:
                    spill = [chunk]
                if copy_to is None:
                    continue
                if out < 0:
                    out = os.open(copy_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                for piece in spill:
                    write_all(out, piece)
        finally:
            if out >= 0:
                os.fsync(out)
                os.close(out)
        got = h.hexdigest()
        if got != expected:
            raise _mismatch(got, expected)
        return cls(raw, copy_to if out >= 0 else None, got)

    @property
    def readable(self) -> bool:
        return self.raw is not None or self.copy is not None

    def _compressed(self) -> Iterator[bytes]:
        if self.raw is not None:
            yield from self.raw
            return
        if self.copy is None:
            raise AgentError(1, "internal: no verified copy of the bundle to read")
        with open(self.copy, "rb") as f:
            while raw := f.read(CHUNK):
                yield raw

    def _inflate(self) -> Iterator[bytes]:
        z = zlib.decompressobj(31)
        source = self._compressed()
        for raw in source:
            data = raw
            try:
                while data and not z.eof:
                    piece = z.decompress(data, CHUNK)
                    data = z.unconsumed_tail
                    if piece:
                        yield piece
            except zlib.error as exc:
                raise refuse(f"bundle is not a readable tar.gz: {exc}", "rebuild the bundle") from None
            if z.eof:
                if z.unused_data.strip(b"\0") or data.strip(b"\0") or any(rest.strip(b"\0") for rest in source):
                    raise refuse("bundle has trailing data after the gzip stream", "do not deploy this bundle")
                return
        raise refuse("bundle is truncated (gzip stream not finished)", "the bundle is damaged; rebuild it")

    def chunks(self) -> Iterator[bytes]:
        """The inflated tar, chunk by chunk (bounded): inflated ahead in a worker thread, or
        inline for a small bundle (a fleet host's agent then starts no thread and imports
        neither ``threading`` nor ``queue``)."""
        if self.raw is not None and sum(len(c) for c in self.raw) <= INLINE_INFLATE:
            return self._inflate()
        return self._ahead()

    def _ahead(self) -> Iterator[bytes]:
        import queue
        import threading

        q: queue.Queue[Any] = queue.Queue(maxsize=16)
        stop = threading.Event()

        def produce() -> None:
            try:
                for piece in self._inflate():
                    while not stop.is_set():
                        try:
                            q.put(piece, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(None)
            except BaseException as exc:  # handed to the consumer, raised there
                q.put(exc)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()


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

    def drain(self) -> None:
        """Read the rest of the stream (the tar's end padding): it must be zeros."""
        rest = self._buf[self._at :]
        self._buf, self._at = b"", 0
        while True:
            if rest.strip(b"\0"):
                raise refuse("bundle has data after the end of the tar archive", "do not deploy this bundle")
            chunk = next(self._src, None)
            if chunk is None:
                return
            rest = chunk

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
    """What ``scan`` accepted (and wrote): the only members a release holds."""

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
    if text.strip(b"01234567"):  # anything but octal digits
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
        unsigned = header_sum(hdr)
        # the old signed-char sum some tars write: each byte above 127 counts 256 less
        if chk != unsigned and chk != unsigned - 256 * sum(1 for b in hdr[:148] + hdr[156:] if b > 127):
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


def scan(verified: Verified, tree_fd: int) -> Scan:
    """Read every header of a checksummed bundle once, decide, and write each accepted
    folder and file under ``tree_fd`` (an empty folder inside the private staging folder)
    as it passes; links are left to ``finish``.

    Refused (exit 4): any name outside the single top folder or not safe by
    ``name_problem``, duplicates, a member under a link or under a file, hard links,
    devices, FIFOs, sparse or multi-volume members, setuid/setgid/sticky bits, a
    directory or link carrying data, a link leaving the tree (``link_problem``), a
    member named like the deploy manifest, and a BUNDLE-MANIFEST that does not list
    exactly the files and links the bundle holds, with their sha256. On a refusal the
    folder holds part of the bundle: the caller removes the staging folder.
    """
    fds = DirFds(tree_fd)
    try:
        return _scan(_Stream(verified.chunks()), fds, Space(tree_fd))
    finally:
        fds.close()


class Space:
    """The free space and inodes of the staging folder's filesystem, as the pass takes them:
    a member that would leave less than the reserve (1 % of the filesystem, at most
    64 MiB, and 1 % of its inodes) is not written, so a bundle, however crafted, never
    fills the target's disk. Sizes come from the headers, before the data is written; a
    filesystem that reports no sizes is not guarded (ENOSPC still stops the pass)."""

    def __init__(self, fd: int) -> None:
        try:
            st = os.fstatvfs(fd)
        except OSError:
            st = None
        self.guarded = bool(st and st.f_blocks and st.f_frsize)
        if st is None or not self.guarded:
            self.bytes = self.inodes = 0
            return
        self.block = max(st.f_bsize, st.f_frsize, 512)
        self.bytes = st.f_bavail * st.f_frsize - min(st.f_blocks * st.f_frsize // 100, 64 << 20)
        self.inodes = st.f_favail - st.f_files // 100 if st.f_files else -1  # -1: no inode limit

    def take(self, name: str, size: int, files: int = 1) -> None:
        """Count ``files`` files of ``size`` bytes in all (each rounded up to a block) as written."""
        if not self.guarded:
            return
        self.bytes -= -(-size // self.block) * self.block + (files - 1) * self.block if size else files * self.block
        if self.inodes != -1:
            self.inodes -= files
        if self.bytes < 0 or (self.inodes != -1 and self.inodes < 0):
            raise OSError(errno.ENOSPC, f"not enough free space for the release (stopped before {name!r}; 1% of the filesystem stays free)")


def _scan(stream: _Stream, fds: DirFds, space: Space) -> Scan:
    top = ""
    members: list[Member] = []
    kinds: dict[str, str] = {}
    manifest_raw: bytes | None = None
    written_one = False
    kept = 0  # bytes of names held (with their bookkeeping), bounded by MAX_NAME_BYTES
    for name, type_, size, mode, linkname in _headers(stream):
        is_dir = type_ == b"5"
        raw = name[:-1] if is_dir and name.endswith("/") else name
        why = name_problem(raw)
        if why:
            raise refuse(f"hostile bundle member refused: {name!r} ({why})", "do not deploy this bundle")
        head, _sep, rel = raw.partition("/")
        if not top:
            top = head
        if head != top:
            raise refuse(f"bundle member outside the single top folder: {name!r}", "do not deploy this bundle")
        seen = kinds.get(rel)
        if seen is not None and not (seen == "i" and type_ == b"5"):
            if seen == "i":
                raise refuse(f"bundle member under a file or link refused: {name!r} (a member lies under it)", "do not deploy this bundle")
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
        if rel.split("/", 1)[0] in DEPLOY_WRITES:
            raise refuse(f"bundle member {name!r} would take the place of {rel.split('/', 1)[0]}, which the deploy writes itself", "do not deploy this bundle")
        # the folders above it, nearest first, up to the first one already known (whose own
        # folders were checked when it came): linear in the name, each folder kept once
        above = rel
        while (cut := above.rfind("/")) > 0:
            above = above[:cut]
            known = kinds.get(above)
            if known is None:
                kinds[above] = "i"  # a folder implied by a member under it
                kept += len(above) + 128
                continue
            if known == "l":
                raise refuse(f"bundle member under a symlink refused: {name!r}", "do not deploy this bundle")
            if known == "f":
                raise refuse(f"bundle member under a file refused: {name!r}", "do not deploy this bundle")
            break
        kept += len(rel) + len(linkname) + 128
        if kept > MAX_NAME_BYTES:
            raise refuse(f"bundle names take more than {MAX_NAME_BYTES} bytes to keep (stopped at {name[:200]!r})", "do not deploy this bundle")
        kinds[rel] = kind
        offset = stream.pos
        digest = ""
        exe = bool(mode & 0o111)
        if kind != "l":
            space.take(name, size)
        if kind == "d":
            pass  # made when a member under it is written: a manifest lists files and links, so
            # an empty folder member (which verify and rollback would take for a foreign one)
            # is never made, and a bundle of a million of them writes nothing
        elif kind == "f":
            h = hashlib.sha256()
            if rel == BUNDLE_MANIFEST and size > MAX_MANIFEST:
                raise refuse(f"{BUNDLE_MANIFEST} is {size} bytes (limit {MAX_MANIFEST})", "do not deploy this bundle")
            fd = _written(name, _create, fds, rel, exe)
            try:
                if rel == BUNDLE_MANIFEST:
                    manifest_raw = stream.read(size)
                    h.update(manifest_raw)
                    write_all(fd, manifest_raw)
                else:

                    def sink(view: memoryview, fd: int = fd, h: Any = h) -> None:
                        h.update(view)
                        write_all(fd, view)

                    stream.pump(size, sink)
            finally:
                os.close(fd)
            stream.pump(-size % 512, None)
            digest = h.hexdigest()
            if not written_one:  # a test hook: a kill with the staging tree half written
                written_one = True
                checkpoint("deploy:unpacking")
        members.append(Member(rel, kind, size, exe, linkname if kind == "l" else "", offset, digest))
    stream.drain()  # to the gzip stream's end: trailing data is refused, and the inflated tar is kept
    links = frozenset(m.rel for m in members if m.kind == "l")
    for m in members:
        if m.kind == "l":
            why = link_problem(m.rel, m.link, links)
            if why:
                raise refuse(f"symlink leaving the release folder refused: {m.rel!r} -> {m.link!r} ({why})", "do not deploy this bundle")
    if manifest_raw is None:
        raise refuse(f"bundle has no {BUNDLE_MANIFEST}", "rebuild the bundle with `release bundle`")
    try:
        manifest = jsonio.loads(manifest_raw)
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


def finish(result: Scan, tree_fd: int) -> dict[str, Any]:
    """Make the links of an accepted bundle under ``tree_fd`` (its folders and files were
    written by ``scan``), each relative to a descriptor of its folder; the facts of the tree."""
    fds = DirFds(tree_fd)
    try:
        for m in result.members:
            if m.kind == "l":
                parent, _sep, base = m.rel.rpartition("/")
                _mkdir_parents(fds, parent)
                os.symlink(m.link, base, dir_fd=fds.get(parent))
    finally:
        fds.close()
    entries = result.entries()
    return {"files": len(entries), "tree_sha256": tree_sha256(entries)}


FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _create(fds: DirFds, rel: str, exe: bool) -> int:
    parent, _sep, base = rel.rpartition("/")
    _mkdir_parents(fds, parent)
    return os.open(base, FILE_FLAGS, 0o755 if exe else 0o644, dir_fd=fds.get(parent))


def _written(name: str, make: Any, *args: Any) -> Any:
    """``make(*args)``; a name the tree already holds as another kind (a file where a
    folder was made for an earlier member, or the reverse) is the bundle's conflict."""
    try:
        return make(*args)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.ELOOP, errno.EISDIR):
            raise refuse(f"bundle member under a file or link refused: {name!r}", "do not deploy this bundle") from None
        raise


def _mkdir_parents(fds: DirFds, rel_dir: str) -> None:
    if not rel_dir or rel_dir in fds.fds:
        return
    parent, _sep, base = rel_dir.rpartition("/")
    _mkdir_parents(fds, parent)
    try:
        os.mkdir(base, 0o755, dir_fd=fds.get(parent))
    except FileExistsError:
        pass
    fds.get(rel_dir)
