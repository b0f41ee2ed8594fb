"""Filesystem helpers that never follow a link they did not mean to: descriptors relative to
folders we opened, O_EXCL/O_NOFOLLOW, renameat2(RENAME_NOREPLACE), the parent listing hash."""

from __future__ import annotations

import errno
import hashlib
import os
import stat

from .protocol import CHUNK, PREFIX, refuse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    Listing = dict[str, list[tuple[str, bool]]]  # a walk's view: folder prefix -> (name, is folder)


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
    return hashlib.sha256("".join(x + "\n" for x in lines).encode("utf-8", "surrogateescape")).hexdigest()  # names from the disk: undecodable bytes only


MAX_MOUNTINFO = 16 << 20  # bytes of /proc/self/mountinfo read (a host of many containers has thousands of mounts)


def mounts_inside(folder: str) -> list[str]:
    """The mount points strictly inside ``folder`` (its real path), as this process's mount
    namespace has them (/proc/self/mountinfo; none where there is no such file): another
    filesystem, or a bind mount of a folder from elsewhere, is never the tool's to delete."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            data = f.read(MAX_MOUNTINFO)
    except OSError:
        return []
    real = os.path.realpath(folder)
    inside = real.rstrip("/") + "/"
    found = []
    for line in data.splitlines():
        fields = line.split(b" ")
        if len(fields) > 4:
            point = _unescape_mount(fields[4])
            if point != real and point.startswith(inside):
                found.append(point)
    return sorted(found)


def _unescape_mount(field: bytes) -> str:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes."""
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i : i + 1] == b"\\" and field[i + 1 : i + 4].isdigit() and len(field) >= i + 4:
            out.append(int(field[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def path_kind(path: str) -> str:
    """'absent', 'symlink', 'directory', 'file' or 'special file' of ``path`` (no link followed)."""
    return _lstat_kind(path, None)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` (``os.write`` may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_new(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Create ``name`` (O_EXCL, no link followed) holding ``data``; on any failure nothing is left."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode, dir_fd=dir_fd)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name, dir_fd=dir_fd)
        raise
    os.close(fd)


def remove_tree_at(dir_fd: int, name: str, last: str = "", listing: Listing | None = None) -> None:
    """Delete the folder ``name`` under ``dir_fd`` and all it holds, never following a link;
    the entry ``last`` (a marker) goes after everything else, just before the folder.

    With ``listing`` (a ``list_tree`` of this folder) the folders are not read again; without
    one, the folder is listed first. Deletion is by ``delete_listed``: no recursion, so a tree
    of any depth goes. Anything that changed since the listing is found by the kernel's answer
    and removed all the same; a folder still not empty (written into meanwhile) is listed and
    deleted again, at most ``PASSES`` times.
    """
    for _pass in range(PASSES):
        try:
            fd = open_dir(name, dir_fd)
        except OSError as exc:
            if listing is None or exc.errno not in (errno.ENOTDIR, errno.ELOOP, errno.ENOENT):
                raise
            if exc.errno != errno.ENOENT:  # a folder when listed, a file or link now
                os.unlink(name, dir_fd=dir_fd)
            return
        try:
            if listing is None:
                listing = {}
                list_tree(fd, "", listing)
            delete_listed(fd, listing, keep=last)
            if last:
                try:
                    os.unlink(last, dir_fd=fd)
                except FileNotFoundError:
                    pass
        finally:
            os.close(fd)
        try:
            os.rmdir(name, dir_fd=dir_fd)
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
        listing = None  # something was added since the listing: read it now
    raise OSError(errno.ENOTEMPTY, f"still not empty after {PASSES} passes: something keeps writing into it", name)


PASSES = 8


def delete_listed(top_fd: int, listing: Listing, keep: str = "") -> None:
    """Delete what ``listing`` (keyed as ``list_tree`` keys it, relative to ``top_fd``) holds:
    each listed folder's files and links, then the folder itself, after every folder below it;
    the top folder stays, and so does its entry ``keep``. A folder listed as a folder's entry but
    not a key of its own is not touched (another process deletes it; ``rmdir`` of its parent
    then finds it, and the parent is read and removed). What changed since the listing is
    removed all the same: a folder where a file was is read and removed, a file or link where
    a folder was is unlinked, an entry gone is nothing to do."""
    fds = DirFds(top_fd)
    try:
        for rel in _children_first(listing):
            try:
                fd = fds.get(rel[:-1])
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP) or not rel:
                    raise
                _unlink_if_there(fds, rel[:-1])  # not a folder now (or gone): as its parent holds it
                continue
            for name, is_dir in listing[rel]:
                if is_dir or (not rel and name == keep):
                    continue
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                except IsADirectoryError:  # a file when listed, a folder now
                    remove_tree_at(fd, name)
            if rel:
                fds.forget(rel[:-1])
                parent, _sep, name = rel[:-1].rpartition("/")
                pfd = fds.get(parent)
                try:
                    os.rmdir(name, dir_fd=pfd)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno == errno.ENOTEMPTY:
                        remove_tree_at(pfd, name)  # something was added since the listing: read it now
                    elif exc.errno == errno.ENOTDIR:
                        os.unlink(name, dir_fd=pfd)
                    else:
                        raise
    finally:
        fds.close()


def _children_first(listing: Listing) -> list[str]:
    """The listed folders, each after every folder below it, a subtree after another (a
    reversed depth-first order, without recursion): the folders near the one being deleted
    are the ones ``DirFds`` still holds open."""
    tops = [rel for rel in listing if not rel or f"{rel[:-1].rpartition('/')[0]}/".lstrip("/") not in listing]
    order: list[str] = []
    stack = tops[::-1]
    while stack:
        rel = stack.pop()
        order.append(rel)
        stack.extend(sub for sub in (f"{rel}{name}/" for name, is_dir in listing[rel] if is_dir) if sub in listing)
    order.reverse()
    return order


def _unlink_if_there(fds: DirFds, rel_dir: str) -> None:
    parent, _sep, name = rel_dir.rpartition("/")
    try:
        os.unlink(name, dir_fd=fds.get(parent))
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR):
            raise  # EISDIR: a folder again (replaced meanwhile): its parent's rmdir reads it


O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_dir(name: str, dir_fd: int | None = None) -> int:
    """Open a folder without following a link in its last component (relative to ``dir_fd``)."""
    return os.open(name, O_DIR, dir_fd=dir_fd)


class DirFds:
    """Folder descriptors under a root descriptor, opened component by component, never via a
    link, at any depth. At most ``LIMIT`` are kept open, the least recently used closed first
    (a descent keeps the folders nearest its end; a deepest-first deletion finds a folder's
    parent still open). A descriptor ``get`` returned stays open until ``forget``,
    ``close``, or ``LIMIT`` other folders have been opened since: use it at once."""

    LIMIT = 256

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.fds: dict[str, int] = {}  # folder -> descriptor, least recently used first

    def get(self, rel_dir: str) -> int:
        if not rel_dir:
            return self.root_fd
        fd = self.fds.pop(rel_dir, None)
        if fd is not None:
            self.fds[rel_dir] = fd  # now the most recently used
            return fd
        chain = []  # the folders to open, deepest first
        key = rel_dir
        while key and key not in self.fds:
            chain.append(key)
            key = key.rpartition("/")[0]
        fd = self.fds[key] if key else self.root_fd
        for sub in reversed(chain):
            fd = open_dir(sub.rpartition("/")[2], fd)
            self.fds[sub] = fd
            if len(self.fds) > self.LIMIT:  # the least recently used goes (never the one just opened)
                os.close(self.fds.pop(next(iter(self.fds))))
        return fd

    def forget(self, rel_dir: str) -> None:
        fd = self.fds.pop(rel_dir, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def _libc_call(name: str, *args: object) -> int:
    """Call ``name`` in the C library (ctypes); returns 0, or the errno (ENOSYS when the
    function or the library is not there)."""
    import ctypes

    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return errno.ENOSYS
    if fn(*args) == 0:
        return 0
    return ctypes.get_errno()


def _renameat2(src_dir: int, src: str, dst_dir: int, dst: str, flags: int) -> int:
    """renameat2(2) through libc; returns 0, or the errno (ENOSYS when it is not there)."""
    return _libc_call("renameat2", src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), flags)


def sync_filesystem(fd: int) -> None:
    """Flush the filesystem that holds ``fd`` to disk (syncfs(2)): only that filesystem, not
    every one of the host as sync(2) does, and a write-back error is raised (sync(2) reports
    none). Where syncfs is missing (not Linux), sync(2)."""
    err = _libc_call("syncfs", fd)
    if err == errno.ENOSYS:
        os.sync()
    elif err:
        raise OSError(err, os.strerror(err))


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


def _lstat_kind(name: str, dir_fd: int | None) -> str:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):  # nothing there, or a file where a folder of the path would be
        return "absent"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    return "file" if stat.S_ISREG(st.st_mode) else "special file"


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


def _folders(fd: int, kinds: bool) -> Iterator[tuple[str, list[Any]]]:
    """Each folder under ``fd`` (its prefix: '' for the top, 'a/b/' below) with its entries:
    (name, is folder), or with ``kinds`` (name, is folder, is link, is file); breadth first,
    never through a link, at any depth (no recursion)."""
    fds = DirFds(fd)
    try:
        queue, i = [""], 0
        while i < len(queue):
            rel = queue[i]
            i += 1
            entries: list[Any]
            with os.scandir(fds.get(rel[:-1])) as it:
                if kinds:
                    entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_symlink(), e.is_file(follow_symlinks=False)) for e in it]
                else:
                    entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            yield rel, entries
            queue.extend(f"{rel}{entry[0]}/" for entry in entries if entry[1])
    finally:
        fds.close()


def walk(fd: int, prefix: str, out: dict[str, str], dirs: set[str]) -> None:
    """Every entry under ``fd``: {path: 'f' | 'l' | 'o'} (file, link, other); folders in ``dirs``."""
    for rel, entries in _folders(fd, True):
        for name, is_dir, is_link, is_file in entries:
            if is_dir:
                dirs.add(prefix + rel + name)
            else:
                out[prefix + rel + name] = "l" if is_link else ("f" if is_file else "o")


def list_tree(fd: int, prefix: str, listing: Listing) -> None:
    """Each folder's (name, is folder) pairs under its prefix ('' for the top, 'a/b/'
    below), never through a link: what rollback checks, then deletes by."""
    for rel, entries in _folders(fd, False):
        listing[prefix + rel] = entries


def hash_at(dir_fd: int | None, rel: str) -> str:
    """sha256 of a regular file (relative to ``dir_fd``), never following a link or opening a FIFO;
    'special' for anything else."""
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


def widen_pipe(fd: int) -> None:
    """A stream through a pipe (SSH): a 1 MiB pipe buffer instead of 64 KiB, so the writer
    and the reader wake each other 16 times less (Linux F_SETPIPE_SZ; best effort)."""
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            import fcntl

            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError):
        pass
