"""A release tree listed, checked, then removed by several processes at once.

Listing and deleting 20,000 files is nearly all system calls: one process makes them one
after another, two processes on two cores take about half the time (threads would take
turns at the GIL around every call: slower than one). ``ParallelTree`` lists the top of
the tree here, until there are folders enough to share, hands the folders below out to
worker processes (forked: the same code, the tree's descriptor inherited) and lists its
own share meanwhile; each worker lists its subtrees and sends its listing back, then
waits. The caller checks the whole listing (rollback: the names the deploy recorded);
only ``remove`` tells each worker to delete its subtrees, files and folders, while this
process deletes its own. What is left (the top folders, anything a failed worker did not
remove, anything added since the listing) is for ``remove_tree_at`` with the listing.

A worker is never trusted with the check: one that is not told to go (the check refused,
this process died: its pipe closes) removes nothing, and one that fails to list has its
share listed here instead, so the listing the check sees is always the whole tree's.
Folders are opened component by component from the tree's descriptor, never through a
link, in every process.
"""

from __future__ import annotations

import marshal
import os

from .fsutil import DirFds, delete_listed, list_tree, widen_pipe, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .fsutil import Listing

WORKERS = 2  # processes in all, this one included
_SHARE = 4  # folders per process before sharing out: enough to even out uneven subtrees
_HEADER = 8  # bytes: the length of a worker's listing, ahead of it (little-endian)


class ParallelTree:
    """The tree under ``top_fd`` (a folder descriptor the caller keeps open until ``close``)."""

    def __init__(self, top_fd: int, workers: int = WORKERS) -> None:
        self.top_fd = top_fd
        self.top, frontier = _frontier(top_fd, workers * _SHARE)  # the top folders: what is left for the caller
        self.listing: Listing = dict(self.top)  # the whole tree's, once every share is in
        parts = [frontier[i::workers] for i in range(max(1, workers))]
        self.mine = parts[0]
        self.workers: list[_Worker] = []
        try:  # whatever fails from here (a pipe, a fork, a listing), no worker is left waiting
            for part in parts[1:]:
                worker = _Worker.start(top_fd, part, self.workers) if part and hasattr(os, "fork") else None
                if worker is None:
                    self.mine = [*self.mine, *part]
                else:
                    self.workers.append(worker)
            self.own = _list_parts(top_fd, self.mine)  # this process's share: what it deletes
            self.listing.update(self.own)
            for worker in self.workers:
                got = worker.listing()
                if got is None:  # it failed: its share is listed (and deleted) here, and it is told to stop
                    worker.stop()
                    got = _list_parts(top_fd, worker.part)
                    self.own.update(got)
                self.listing.update(got)
        except BaseException:
            self.close()
            raise

    def remove(self) -> None:
        """Delete every shared-out subtree (the workers theirs, this process its own), then
        wait for the workers. The top folders stay: ``remove_tree_at`` with ``top`` removes
        them (and reads any subtree a failed worker left)."""
        try:
            for worker in self.workers:
                worker.go()
            delete_listed(self.top_fd, self.own)
        finally:
            self.close()

    def close(self) -> None:
        """End every worker: one not told to go stops without removing anything."""
        for worker in self.workers:
            worker.stop()
            worker.wait()
        self.workers = []


def _frontier(top_fd: int, want: int) -> tuple[Listing, list[str]]:
    """List breadth first from the top until ``want`` folders wait to be listed: the
    listing so far, and those folders' prefixes ('a/b/')."""
    listing: Listing = {}
    queue = [""]
    fds = DirFds(top_fd)
    try:
        while queue and len(queue) < want:
            prefix = queue.pop(0)
            with os.scandir(fds.get(prefix[:-1])) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            listing[prefix] = entries
            queue.extend(f"{prefix}{name}/" for name, is_dir in entries if is_dir)
    finally:
        fds.close()
    return listing, queue


def _list_parts(top_fd: int, part: list[str]) -> Listing:
    out: Listing = {}
    fds = DirFds(top_fd)
    try:
        for prefix in part:
            list_tree(fds.get(prefix[:-1]), prefix, out)
    finally:
        fds.close()
    return out


class _Worker:
    """A forked process that lists ``part``, sends its listing, and removes the part only
    when told to go."""

    def __init__(self, pid: int, part: list[str], out_r: int, go_w: int) -> None:
        self.pid = pid
        self.part = part
        self.out_r = out_r
        self.go_w = go_w

    @classmethod
    def start(cls, top_fd: int, part: list[str], others: list[_Worker]) -> _Worker | None:
        out_r, out_w = os.pipe()
        widen_pipe(out_w)  # the answer is written whole while this process lists its own share
        try:
            go_r, go_w = os.pipe()
        except OSError:  # no descriptor to spare: this process does that share too
            os.close(out_r)
            os.close(out_w)
            return None
        try:
            pid = os.fork()
        except OSError:  # no process to spare: this one does that share too
            for fd in (out_r, out_w, go_r, go_w):
                os.close(fd)
            return None
        if pid == 0:
            code = 1
            try:
                for fd in (out_r, go_w, *(end for w in others for end in (w.out_r, w.go_w))):
                    os.close(fd)
                code = _work(top_fd, part, out_w, go_r)
            finally:
                os._exit(code)  # never return into the caller's code, never run its exit handlers
        os.close(out_w)
        os.close(go_r)
        return cls(pid, part, out_r, go_w)

    def listing(self) -> Listing | None:
        """What the worker listed; None when it failed (no complete answer)."""
        chunks = []
        try:
            while True:
                chunk = os.read(self.out_r, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self.out_r)
            self.out_r = -1
        data = b"".join(chunks)
        if len(data) < _HEADER or int.from_bytes(data[:_HEADER], "little") != len(data) - _HEADER:
            return None
        try:
            got = marshal.loads(data[_HEADER:])  # noqa: S302  # written by our own fork: this very code, before it ran anything else
        except (ValueError, EOFError, TypeError):
            return None
        return got if isinstance(got, dict) else None

    def go(self) -> None:
        if self.go_w >= 0:
            try:
                os.write(self.go_w, b"g")
            except OSError:
                pass  # it is gone: what it would have removed is removed after
            self.stop()

    def stop(self) -> None:
        if self.out_r >= 0:
            os.close(self.out_r)
            self.out_r = -1
        if self.go_w >= 0:
            os.close(self.go_w)
            self.go_w = -1

    def wait(self) -> None:
        while self.pid:
            try:
                os.waitpid(self.pid, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                pass
            self.pid = 0


def _work(top_fd: int, part: list[str], out_w: int, go_r: int) -> int:
    """The worker: list, answer, then remove only on b"g" (end of file: stop)."""
    listing = _list_parts(top_fd, part)
    data = marshal.dumps(listing)
    write_all(out_w, len(data).to_bytes(_HEADER, "little") + data)
    os.close(out_w)
    while True:
        try:
            told = os.read(go_r, 1)
            break
        except InterruptedError:
            continue
    if told != b"g":
        return 0
    delete_listed(top_fd, listing)
    return 0
