"""Built artifacts made reproducible where their format allows, and compared where not.

A build backend run twice on the same commit with ``SOURCE_DATE_EPOCH`` set writes the
same files, but not always the same archives: setuptools' sdist takes each file's time
and owner from the disk and gzip's header time from the clock, and a wheel's zip entries
carry times and attributes. ``sdist`` and ``wheel`` rewrite both archives with what
their content alone decides: members in the backend's order, times set to the commit's
time, owners 0 / empty, gzip without a name or time, zip entries deflated at one level.
No member's content changes, so a wheel's RECORD (hashes of the members) stays true.

What normalisation cannot fix (a compiler that embeds a build path or a random value into
a binary) is found by ``first_difference``: ``--reproducible-check`` names the artifact,
its build backend and the first member whose content differs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

ZIP_EPOCH = 315532800  # 1980-01-01: the earliest time a zip entry can hold


def sdist(path: Path, epoch: int) -> None:
    """Rewrite the sdist ``path`` (tar.gz) in place, normalised."""
    raw = io.BytesIO()
    with tarfile.open(path, "r:gz") as src, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as out:
        for m in src:
            m.mtime = epoch
            m.uid = m.gid = 0
            m.uname = m.gname = ""
            m.pax_headers = {k: v for k, v in m.pax_headers.items() if k not in ("mtime", "atime", "ctime", "uid", "gid", "uname", "gname")}
            m.mode = (0o755 if m.isdir() or m.mode & 0o111 else 0o644) if not m.issym() else m.mode
            out.addfile(m, src.extractfile(m) if m.isreg() else None)
    _replace(path, _gzip(raw.getvalue()))


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def wheel(path: Path, epoch: int) -> None:
    """Rewrite the wheel ``path`` (zip) in place, normalised: the same members in the same
    order (RECORD stays last), each with the commit's time, its permission bits only, and
    deflated at level 9."""
    stamp = time.gmtime(max(epoch, ZIP_EPOCH))[:6]
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            new = zipfile.ZipInfo(info.filename, date_time=stamp)
            mode = (info.external_attr >> 16) & 0o777
            new.external_attr = ((0o100000 | (0o755 if mode & 0o111 else 0o644)) << 16) if not info.is_dir() else info.external_attr
            new.compress_type = zipfile.ZIP_DEFLATED
            new.create_system = 3  # unix, whatever the building system was
            out.writestr(new, src.read(info), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    _replace(path, buf.getvalue())


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.normalised")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def artifacts(dist: Path, epoch: int) -> None:
    """Every sdist and wheel in ``dist``, normalised."""
    for p in sorted(dist.iterdir()):
        if p.name.endswith(".tar.gz"):
            sdist(p, epoch)
        elif p.suffix == ".whl":
            wheel(p, epoch)


def _members(data: bytes, name: str) -> list[tuple[str, str]]:
    """(member, sha256 of its content) of an artifact, in its own order."""
    out: list[tuple[str, str]] = []
    if name.endswith(".whl"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                out.append((info.filename, hashlib.sha256(z.read(info)).hexdigest()))
    elif name.endswith(".tar.gz"):
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
            for m in tf:
                f = tf.extractfile(m) if m.isreg() else None
                out.append((m.name, hashlib.sha256(f.read() if f else m.linkname.encode()).hexdigest()))
    return out


def first_difference(a: bytes, b: bytes, name: str) -> str:
    """The first member of two builds of the artifact ``name`` whose content (or presence)
    differs; '' when only the archive's framing differs."""
    try:
        ma, mb = _members(a, name), _members(b, name)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError):
        return "(not a readable archive)"
    da, db = dict(ma), dict(mb)
    for member, digest in ma:
        if db.get(member) != digest:
            return member
    for member, _ in mb:
        if member not in da:
            return member
    return ""
