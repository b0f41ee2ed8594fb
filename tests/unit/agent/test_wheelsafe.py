"""The wheel reader's bounds and names, on crafted zips: each refusal names its cause, and
a worst case (many members, a huge declared RECORD) is refused from the zip's end record or
a declared size, without reading it."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from release.agent import wheelsafe

pytestmark = pytest.mark.unit

WHEEL = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def make(path: Path, extra: dict[str, bytes] | None = None, record_extra: str = "", compression: int = zipfile.ZIP_DEFLATED) -> Path:
    members = {
        "demo/__init__.py": b"",
        "demo-1.0.dist-info/METADATA": b"Name: demo\nVersion: 1.0\n",
        "demo-1.0.dist-info/WHEEL": WHEEL.encode(),
        **(extra or {}),
    }
    record = "".join(f"{n},,\n" for n in members) + "demo-1.0.dist-info/RECORD,,\n" + record_extra
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, body in members.items():
            z.writestr(name, body)
        z.writestr("demo-1.0.dist-info/RECORD", record)
    return path


def problem(path: Path) -> str:
    with pytest.raises(wheelsafe.WheelProblem) as info:
        wheelsafe.check(str(path))
    return str(info.value)


def test_a_plain_wheel_passes_with_its_declared_size(tmp_path: Path) -> None:
    facts = wheelsafe.check(str(make(tmp_path / "ok.whl", {"demo-1.0.dist-info/entry_points.txt": b"[console_scripts]\ndemo = demo:main\n"})))
    assert facts.files == 5 and facts.size > 0


@pytest.mark.parametrize("name", ["../x", "/abs/x", "a/b", "..", "x\ny", ""])
def test_a_script_name_that_is_not_one_file_name_is_refused(tmp_path: Path, name: str) -> None:
    ep = f"[console_scripts]\n{name} = demo:main\n".encode() if name else b"[gui_scripts]\n = demo:main\n"
    why = problem(make(tmp_path / "w.whl", {"demo-1.0.dist-info/entry_points.txt": ep}))
    assert "entry_points.txt" in why


@pytest.mark.parametrize("member", ["../evil.py", "demo/../../evil.py", "/etc/evil", "demo/a\\b.py"])
def test_a_member_or_record_path_outside_the_scheme_is_refused(tmp_path: Path, member: str) -> None:
    assert repr(member) in problem(make(tmp_path / "m.whl", {member: b"x"}))
    assert "RECORD entry" in problem(make(tmp_path / "r.whl", record_extra=f"{member},,\n"))


def test_a_zip_bomb_member_is_refused_by_its_ratio(tmp_path: Path) -> None:
    assert "zip bomb" in problem(make(tmp_path / "b.whl", {"demo/zeros": bytes(40 << 20)}))


def test_an_oversized_record_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = make(tmp_path / "r.whl", record_extra="x" * (wheelsafe.MAX_DIST_INFO["RECORD"] + 10), compression=zipfile.ZIP_STORED)
    tracemalloc.start()
    why = problem(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "RECORD" in why and "limit" in why
    assert peak < 8 << 20, f"{peak} bytes held to refuse it"


def test_too_many_members_are_refused_from_the_end_record(tmp_path: Path) -> None:
    """The end record claims a million entries (and the zip64 form does too): refused before
    zipfile would read a central directory of that size."""
    path = make(tmp_path / "many.whl")
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, 0xFFFF, 0xFFFF)  # entries here and in all: zip64 says the truth
    path.write_bytes(bytes(data))
    assert "zip64" in problem(path)
    data = bytearray(make(tmp_path / "big.whl").read_bytes())
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<L", data, at + 12, wheelsafe.MAX_CENTRAL_DIR + 1)
    path.write_bytes(bytes(data))
    assert "central directory" in problem(path)
    # a real zip64 end record claiming too many entries
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as z:
        z.writestr("a", b"")
    body = bytearray(raw.getvalue())
    eocd = body.rfind(b"PK\x05\x06")
    cd_size, cd_at = struct.unpack("<LL", body[eocd + 12 : eocd + 20])
    rec = struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 10**6, 10**6, cd_size, cd_at)
    loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
    end = bytearray(body[eocd:])
    struct.pack_into("<HH", end, 8, 0xFFFF, 0xFFFF)
    (tmp_path / "z64.whl").write_bytes(bytes(body[:eocd]) + rec + loc + bytes(end))
    assert "members" in problem(tmp_path / "z64.whl")


def test_a_long_entry_points_file_is_bounded(tmp_path: Path) -> None:
    ep = b"[console_scripts]\n" + b"".join(b"s%d = demo:main\n" % i for i in range(120_000))
    start = time.process_time()
    why = problem(make(tmp_path / "ep.whl", {"demo-1.0.dist-info/entry_points.txt": ep}, compression=zipfile.ZIP_STORED))
    assert "entry_points.txt" in why and "limit" in why
    assert time.process_time() - start < 2


def test_the_destination_refuses_a_path_where_it_writes(tmp_path: Path) -> None:
    """The second line: installer's destination itself refuses a name the check did not see."""
    from installer.destinations import SchemeDictionaryDestination

    scheme = {k: str(tmp_path / "venv" / k) for k in ("purelib", "platlib", "headers", "scripts", "data")}
    dest = wheelsafe.safe_destination(SchemeDictionaryDestination)(scheme, interpreter="/usr/bin/python3", script_kind="posix")
    with pytest.raises(wheelsafe.WheelProblem):
        dest.write_to_fs("purelib", "../../escaped", io.BytesIO(b"x"), False)
    with pytest.raises(wheelsafe.WheelProblem):
        dest.write_script("../escaped", "demo", "main", "console")
    (tmp_path / "venv" / "purelib").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "venv" / "purelib" / "pkg").symlink_to(tmp_path / "outside")
    with pytest.raises(wheelsafe.WheelProblem, match="through a link"):
        dest.write_to_fs("purelib", "pkg/mod.py", io.BytesIO(b"x"), False)
    assert not list((tmp_path / "outside").iterdir()) and not (tmp_path / "escaped").exists()
    record = dest.write_to_fs("purelib", "good/mod.py", io.BytesIO(b"x"), False)
    assert record.path == "good/mod.py" and (tmp_path / "venv" / "purelib" / "good" / "mod.py").read_bytes() == b"x"


def test_a_member_flagged_encrypted_is_refused_not_a_crash(tmp_path: Path) -> None:
    """General-purpose bit 0 (encrypted) set on every member, byte by byte in the local and
    central headers: zipfile then asks for a password (a RuntimeError); the wheel is refused."""
    path = make(tmp_path / "demo-1.0-py3-none-any.whl")
    data = bytearray(path.read_bytes())
    for magic, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := data.find(magic, start)) >= 0:
            data[i + flag_at] |= 0x01
            start = i + 4
    path.write_bytes(bytes(data))
    assert "not a readable wheel" in problem(path)
