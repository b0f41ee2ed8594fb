"""The wheel reader: every name pypa ``installer`` will write, and every size it will read or
write, checked before anything of the environment is installed.

A wheel in a bundle is untrusted input as much as the bundle's own members: the bundle's
checksum proves it arrived as built, not that it is harmless. installer 0.7 (the one that
still runs on Python 3.8 and 3.9 targets) joins a console script's name from
``entry_points.txt`` onto the scripts folder as it stands (``../../x`` or ``/abs`` writes
anywhere), reads RECORD and the entry points whole, and writes what a member declares.
So, per wheel, before any wheel is installed:

- the zip's central directory is read from its end record first: at most
  ``MAX_WHEEL_MEMBERS`` entries and ``MAX_CENTRAL_DIR`` bytes, before ``zipfile`` parses it;
- every member and every RECORD path passes the release's name rule (``name_problem``);
- every console or GUI script name is one plain file name by the same rule;
- RECORD, METADATA, WHEEL and entry_points.txt are read only below their own bounds;
- a member whose declared size is more than ``MAX_RATIO`` times its compressed size (past
  ``RATIO_FLOOR`` bytes) is refused (a zip bomb), and the declared sizes of all the wheels
  must fit the target's free space, less the reserve the bundle reader keeps (``Space``).

Then, while installing, ``SafeDestination`` checks every path again where it is written
(scheme folder + a path by the name rule, created O_EXCL and without following a link), so
a name the check above did not foresee still cannot land outside the release.
"""

from __future__ import annotations

import os
import struct

from .names import name_problem

TYPE_CHECKING = False  # typing is for the type checker: not imported on the target
if TYPE_CHECKING:
    from typing import Any, BinaryIO


MAX_WHEEL_MEMBERS = 200_000
MAX_CENTRAL_DIR = 64 << 20
MAX_DIST_INFO = {"RECORD": 64 << 20, "METADATA": 16 << 20, "WHEEL": 64 << 10, "entry_points.txt": 1 << 20}
MAX_RATIO = 200  # declared size / compressed size of one member, past RATIO_FLOOR
RATIO_FLOOR = 16 << 20
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"


class WheelFacts:
    """What the check of one wheel found: its declared uncompressed bytes and file count."""

    __slots__ = ("files", "size")

    def __init__(self, size: int, files: int) -> None:
        self.size = size
        self.files = files


class WheelProblem(Exception):
    """Why a wheel cannot be installed (its text names the member or entry)."""


def central_directory(f: BinaryIO, file_size: int) -> tuple[int, int]:
    """(entries, bytes) of a zip's central directory, from its end record (zip64 too), read
    from the file's last 64 KiB + 22 bytes only."""
    tail_len = min(file_size, (1 << 16) + 22)
    f.seek(file_size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise WheelProblem("not a zip archive (no end record)")
    _sig, _disk, _cd_disk, _here, entries, cd_size, _cd_at, _comment = struct.unpack("<4s4H2LH", tail[at : at + 22])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = at - 20
        if loc < 0 or tail[loc : loc + 4] != _EOCD64_LOCATOR:
            raise WheelProblem("a zip64 archive without its locator")
        (rec_at,) = struct.unpack("<Q", tail[loc + 8 : loc + 16])
        if rec_at + 56 > file_size:
            raise WheelProblem("a zip64 end record past the end of the file")
        f.seek(rec_at)
        rec = f.read(56)
        if rec[:4] != _EOCD64:
            raise WheelProblem("a damaged zip64 end record")
        entries, cd_size = struct.unpack("<QQ", rec[32:48])
    if entries > MAX_WHEEL_MEMBERS:
        raise WheelProblem(f"{entries} members (limit {MAX_WHEEL_MEMBERS})")
    if cd_size > MAX_CENTRAL_DIR:
        raise WheelProblem(f"a central directory of {cd_size} bytes (limit {MAX_CENTRAL_DIR})")
    return entries, cd_size


def script_problem(name: str) -> str:
    """Why a console/GUI script name would not be one plain file in the scripts folder, or ''."""
    return name_problem(name) or ("a path, not a file name" if "/" in name else "")


def check(path: str) -> WheelFacts:
    """Check the wheel at ``path`` (see the module's text); its facts, or ``WheelProblem``."""
    import zipfile
    import zlib

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            central_directory(f, size)
            with zipfile.ZipFile(f) as z:
                return _check_members(z)
    except (OSError, ValueError, zipfile.BadZipFile, struct.error, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # a damaged member (zlib), an unsupported compression (NotImplementedError), a member
        # flagged encrypted (RuntimeError: "password required"; found by the fuzz)
        raise WheelProblem(f"not a readable wheel ({type(exc).__name__}: {exc})") from None


def _check_members(z: Any) -> WheelFacts:
    import csv
    import io

    infos = z.infolist()
    total = 0
    dist_info: dict[str, list[Any]] = {}
    for info in infos:
        name = info.filename
        why = name_problem(name[:-1] if name.endswith("/") else name)
        if why:
            raise WheelProblem(f"its member {name!r}: {why}")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise WheelProblem(f"its member {name!r} declares {info.file_size} bytes from {info.compress_size} (more than {MAX_RATIO}:1, a zip bomb)")
        total += info.file_size
        top, _sep, base = name.partition("/")
        if top.endswith(".dist-info") and base in MAX_DIST_INFO:
            dist_info.setdefault(base, []).append(info)
    if len(dist_info.get("RECORD", [])) != 1:
        raise WheelProblem(f"{len(dist_info.get('RECORD', []))} RECORD files")

    def text(base: str) -> str:
        found = dist_info.get(base, [])
        if not found:
            return ""
        if len(found) > 1:
            raise WheelProblem(f"{len(found)} {base} files")
        info = found[0]
        if info.file_size > MAX_DIST_INFO[base]:
            raise WheelProblem(f"its {info.filename} is {info.file_size} bytes (limit {MAX_DIST_INFO[base]})")
        with z.open(info) as member:
            data = member.read(MAX_DIST_INFO[base] + 1)  # the declared size bounds it; this bounds a liar
        if len(data) > MAX_DIST_INFO[base]:
            raise WheelProblem(f"its {info.filename} is longer than {MAX_DIST_INFO[base]} bytes")
        return str(data.decode("utf-8"))

    for row in csv.reader(io.StringIO(text("RECORD"))):
        why = name_problem(row[0]) if row else ""
        if why:
            raise WheelProblem(f"its RECORD entry {row[0]!r}: {why}")
    text("METADATA")
    text("WHEEL")
    entry_points = text("entry_points.txt")
    if entry_points:
        from installer.utils import parse_entrypoints

        try:
            scripts = list(parse_entrypoints(entry_points))
        except Exception as exc:  # configparser's own errors, and installer's for a bad value
            raise WheelProblem(f"its entry_points.txt cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None
        for name, _module, _attr, section in scripts:
            why = script_problem(name)
            if why:
                raise WheelProblem(f"its {section} script {name!r} in entry_points.txt: {why}")
    return WheelFacts(total, len(infos))


def safe_destination(base: type) -> type:
    """installer's ``SchemeDictionaryDestination`` with every write checked where it happens:
    a script's name is one file name, every path inside its scheme folder passes the name
    rule, its folder is reached through no link, and the file is created new (O_EXCL,
    O_NOFOLLOW) and hashed as it is written, as installer's own ``write_to_fs`` does."""
    from installer.records import Hash, RecordEntry
    from installer.utils import copyfileobj_with_hashing, make_file_executable

    checked: set[str] = set()  # folders found reached through no link (only this install writes there)

    class SafeDestination(base):  # type: ignore[misc]
        def write_script(self, name: str, module: str, attr: str, section: str) -> Any:
            why = script_problem(name)
            if why:
                raise WheelProblem(f"its {section} script {name!r}: {why}")
            return super().write_script(name, module, attr, section)

        def write_to_fs(self, scheme: str, path: str, stream: BinaryIO, is_executable: bool) -> Any:
            why = name_problem(path)
            if why:
                raise WheelProblem(f"it would write {path!r} in its {scheme} folder: {why}")
            root = self.scheme_dict[scheme]
            target = os.path.join(root, path)
            parent = os.path.dirname(target)
            if parent not in checked:  # once per folder: a wheel writes many files into each
                os.makedirs(parent, exist_ok=True)
                if os.path.realpath(parent) != os.path.realpath(root).rstrip("/") + ("/" + os.path.dirname(path) if "/" in path else ""):
                    raise WheelProblem(f"it would write {path!r} in its {scheme} folder through a link")
                checked.add(parent)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
            with os.fdopen(fd, "wb") as f:
                digest, size = copyfileobj_with_hashing(stream, f, self.hash_algorithm)
            if is_executable:
                make_file_executable(target)
            return RecordEntry(path, Hash(self.hash_algorithm, digest), size)

    return SafeDestination
