"""The bundle writer's own ustar headers are byte for byte what tarfile writes in PAX
format, for every entry they take; any other entry is left to tarfile. The manifest's
layout is JSON that reads back as the document."""

from __future__ import annotations

import json
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from release.archive import ustar_header
from release.bundle import manifest_text

TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE])
NAMES = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="\x7f"), min_size=1, max_size=120)


def _tarfile(name: str, type_: bytes, mode: int, size: int, mtime: int, linkname: str) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.mtime, ti.linkname = type_, mode, size, mtime, linkname
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


@settings(max_examples=400, deadline=None)
@given(
    name=NAMES,
    type_=TYPES,
    mode=st.sampled_from([0o644, 0o755, 0o777, 0o7777]),
    size=st.one_of(st.integers(0, 4096), st.integers(8**11 - 2, 8**11 + 2)),
    mtime=st.one_of(st.integers(0, 2**31), st.integers(8**11 - 2, 8**11 + 2)),
    linkname=st.one_of(st.just(""), NAMES),
)
def test_own_headers_equal_tarfiles_or_are_left_to_it(name: str, type_: bytes, mode: int, size: int, mtime: int, linkname: str) -> None:
    ours = ustar_header(name, type_, mode, size, mtime, linkname)
    theirs = _tarfile(name, type_, mode, size, mtime, linkname)
    if ours is None:  # needs a pax record: tarfile writes it
        assert len(theirs) > tarfile.BLOCKSIZE or not (name.isascii() and linkname.isascii())
        return
    assert ours == theirs
    read = tarfile.TarInfo.frombuf(ours, "utf-8", "strict")
    shown = name.rstrip("/") if type_ == tarfile.DIRTYPE else name  # tarfile reads a folder's name without its trailing '/'
    assert (read.name, read.type, read.mode, read.size, read.mtime, read.linkname) == (shown, type_, mode, size, mtime, linkname)


def test_a_plain_entry_takes_the_fast_path() -> None:
    assert ustar_header("app-1.0/pkg/mod.py", tarfile.REGTYPE, 0o644, 10, 1_700_000_000) is not None
    assert ustar_header("app-1.0/" + "x" * 100, tarfile.REGTYPE, 0o644, 10, 1) is None
    assert ustar_header("app-1.0/é.py", tarfile.REGTYPE, 0o644, 10, 1) is None


def test_the_manifest_reads_back_as_the_document_with_a_file_per_line() -> None:
    doc = {
        "name": "app",
        "files": [{"path": f"d/f{i}.py", "size": i, "sha256": "0" * 64, "mode": "644"} for i in range(3)] + [{"path": "l", "link": "d/f0.py"}],
        "environment": {"packages": [{"name": "a", "version": "1"}], "lock": "release-env/pylock.toml"},
        "builder": {},
        "artifacts": [],
    }
    text = manifest_text(doc)
    assert json.loads(text) == doc
    assert text.count('{"mode": "644", "path": "d/f') == 3, "one line per file"
