"""The bundle reader in-process, attacked as a hostile bundle author would: archives built
byte by byte, archives made by ``tarfile`` in every format, and a property-based fuzz.

Every case runs the agent's own code (``Verified.read`` -> ``scan`` -> ``extract``) on a
real file under a sandbox folder, and checks that nothing appears outside the staging
folder and that every failure is a refusal (exit 4), never a crash.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release import agent

TOP = "app-1.0-abcdef0-20260101T000000Z"


# ----------------------------------------------------------------------------- byte-level builders


def header(name: str, size: int = 0, type_: bytes = b"0", linkname: str = "", mode: int = 0o644, size_field: bytes | None = None) -> bytes:
    h = bytearray(512)
    h[0:100] = name.encode()[:100].ljust(100, b"\0")
    h[100:108] = f"{mode:07o}\0".encode()
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = size_field if size_field is not None else f"{size:011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[156:157] = type_
    h[157:257] = linkname.encode()[:100].ljust(100, b"\0")
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b"        "
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def member(name: str, data: bytes = b"", **kw: object) -> bytes:
    size = kw.pop("size", len(data))
    return header(name, size, **kw) + data + bytes(-len(data) % 512)  # type: ignore[arg-type]


def pax(records: dict[str, str]) -> bytes:
    body = b""
    for k, v in records.items():
        rec = f" {k}={v}\n".encode()
        n = len(rec) + 1
        while len(str(n).encode()) + len(rec) != n:
            n += 1
        body += str(n).encode() + rec
    return member("././@PaxHeader", body, type_=b"x")


def manifest_member(files: list[dict[str, object]]) -> bytes:
    return member(f"{TOP}/BUNDLE-MANIFEST.json", json.dumps({"name": "app", "version": "1.0", "files": files}).encode())


def file_entry(path: str, data: bytes) -> dict[str, object]:
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def finish(*parts: bytes) -> bytes:
    return gzip.compress(b"".join(parts) + bytes(1024), mtime=0)


def good_bundle(extra: bytes = b"", files: list[dict[str, object]] | None = None) -> bytes:
    data = b"print('hi')\n"
    entries = [file_entry("app/main.py", data)] if files is None else files
    return finish(member(TOP + "/", type_=b"5"), member(f"{TOP}/app/", type_=b"5"), member(f"{TOP}/app/main.py", data), extra, manifest_member(entries))


# ----------------------------------------------------------------------------- the harness


class Sandbox:
    """A parent folder holding the staging tree; everything else in it must stay as it was."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.parent = base / "parent"
        self.parent.mkdir()
        (self.base / "canary").mkdir()
        (self.base / "canary" / "keep.txt").write_text("keep")
        self.stage = self.parent / "stage"
        self.stage.mkdir(mode=0o700)

    def listing(self) -> set[str]:
        return {str(p.relative_to(self.base)) for p in self.base.rglob("*")}

    def deploy(self, raw: bytes) -> dict[str, object]:
        bundle = self.base / "bundle.tar.gz"
        bundle.write_bytes(raw)
        copy = self.stage / "copy.tar.gz"
        copy.unlink(missing_ok=True)
        fd = os.open(bundle, os.O_RDONLY)
        try:
            verified = agent.Verified.read(fd, hashlib.sha256(raw).hexdigest(), str(copy), keep=True)
        finally:
            os.close(fd)
        tree = self.stage / "tree"
        tree.mkdir()
        tree_fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
        try:
            facts: dict[str, object] = agent.finish(agent.scan(verified, tree_fd), tree_fd)
            return facts
        except BaseException:
            shutil.rmtree(tree)  # as the deploy removes its private staging folder
            raise
        finally:
            os.close(tree_fd)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def refused(box: Sandbox, raw: bytes, words: str = "") -> agent.AgentError:
    before = box.listing()
    with pytest.raises(agent.AgentError) as e:
        box.deploy(raw)
    assert e.value.code == 4, e.value.message
    assert words.lower() in e.value.message.lower(), e.value.message
    after = box.listing()
    assert not {p for p in after - before if p not in ("parent/stage/copy.tar.gz", "bundle.tar.gz")}, f"a refused bundle wrote {after - before}"
    return e.value


# ----------------------------------------------------------------------------- findings 1 and 12


def test_a_good_bundle_unpacks(sandbox: Sandbox) -> None:
    facts = sandbox.deploy(good_bundle())
    assert facts["files"] == 1
    assert (sandbox.stage / "tree" / "app" / "main.py").read_text() == "print('hi')\n"


def test_headers_hidden_in_a_directory_members_data_are_refused(sandbox: Sandbox) -> None:
    hidden = member(f"/{TOP}/../../escape.txt", b"pwned")
    refused(sandbox, good_bundle(extra=member(f"{TOP}/docs/", hidden, type_=b"5")), "cannot carry data")
    assert not (sandbox.base / "escape.txt").exists()


def test_headers_hidden_in_a_symlink_members_data_are_refused(sandbox: Sandbox) -> None:
    hidden = member("evil.txt", b"x")
    refused(sandbox, good_bundle(extra=member(f"{TOP}/link", hidden, type_=b"2", linkname="app")), "cannot carry data")


def test_data_in_the_top_folder_member_is_refused(sandbox: Sandbox) -> None:
    hidden = member(f"/{TOP}/x", b"x")
    raw = finish(member(TOP + "/", hidden, type_=b"5"), manifest_member([]))
    refused(sandbox, raw, "cannot carry data")


@pytest.mark.parametrize("size", ["-512", "-1", "99999999999999999999999", "12x", "", " 5", "0x10", "+3"])
def test_bad_pax_sizes_are_refused(sandbox: Sandbox, size: str) -> None:
    raw = good_bundle(extra=pax({"size": size}) + member(f"{TOP}/app/x.py", b"abc"))
    refused(sandbox, raw)


@pytest.mark.parametrize("field", [b"-0000000012\0", b"00000000q12\0", b"\xff" + b"\xff" * 10 + b"\x00"])
def test_non_numeric_and_negative_size_fields_are_refused(sandbox: Sandbox, field: bytes) -> None:
    raw = good_bundle(extra=header(f"{TOP}/app/y.py", size_field=field))
    refused(sandbox, raw)


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", f"{TOP}/../escape", f"{TOP}/app/../../escape", "other-top/file", f"{TOP}//double", f"{TOP}/./dot", f"{TOP}/a\\b", f"{TOP}/del\x7f"],
)
def test_unsafe_names_are_refused(sandbox: Sandbox, name: str) -> None:
    refused(sandbox, good_bundle(extra=member(name, b"x")))


def test_pax_path_override_cannot_escape(sandbox: Sandbox) -> None:
    raw = good_bundle(extra=pax({"path": f"{TOP}/../../escape"}) + member(f"{TOP}/app/innocent.py", b"x"))
    refused(sandbox, raw, "hostile")


def test_special_members_are_refused(sandbox: Sandbox) -> None:
    for type_, words in ((b"1", "hard link"), (b"3", "special"), (b"4", "special"), (b"6", "special"), (b"S", "special"), (b"M", "special"), (b"V", "special")):
        refused(sandbox, good_bundle(extra=member(f"{TOP}/app/dev", type_=type_, linkname="app/main.py")), words)


def test_setuid_duplicate_and_reserved_names_are_refused(sandbox: Sandbox) -> None:
    refused(sandbox, good_bundle(extra=member(f"{TOP}/app/suid", b"x", mode=0o4755)), "setuid")
    refused(sandbox, good_bundle(extra=member(f"{TOP}/app/main.py", b"again")), "duplicate")
    refused(sandbox, good_bundle(extra=member(f"{TOP}/DEPLOY-MANIFEST.txt", b"pre_existed: true\n")), "which the deploy writes itself")
    # the environment's manifest, which verify and rollback trust to say which files the deploy wrote
    env_doc = b'{"files": [{"path": "added-later.txt", "id": "x"}], "dirs": []}'
    refused(sandbox, good_bundle(extra=member(f"{TOP}/ENVIRONMENT-MANIFEST.json", env_doc)), "ENVIRONMENT-MANIFEST.json, which the deploy writes itself")
    refused(sandbox, good_bundle(extra=member(f"{TOP}/DEPLOY-MANIFEST.txt/", type_=b"5")), "which the deploy writes itself")


def test_member_under_a_symlink_or_a_file_is_refused(sandbox: Sandbox) -> None:
    refused(sandbox, good_bundle(extra=member(f"{TOP}/l", type_=b"2", linkname="app") + member(f"{TOP}/l/x.py", b"x")), "under a symlink")
    refused(sandbox, good_bundle(extra=member(f"{TOP}/app/main.py/x", b"x")), "under a file")


def test_the_manifest_is_checked_against_the_scan_before_any_write(sandbox: Sandbox) -> None:
    """A file the manifest does not list (or lists with another hash) is refused: nothing written."""
    extra = member(f"{TOP}/app/unlisted.py", b"import os")
    refused(sandbox, good_bundle(extra=extra), "does not match")
    assert not (sandbox.stage / "tree").exists()
    wrong: list[dict[str, object]] = [{"path": "app/main.py", "sha256": "0" * 64}]
    refused(sandbox, good_bundle(files=wrong), "does not match")


@pytest.mark.parametrize("inline", [True, False])
def test_trailing_data_and_truncation_are_refused(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, inline: bool) -> None:
    """Both ways of inflating: inline (a small bundle) and ahead in a worker thread."""
    from release.agent import tarsafe

    monkeypatch.setattr(tarsafe, "INLINE_INFLATE", 1 << 20 if inline else -1)
    raw = good_bundle()
    way = getattr(agent.Verified([raw], None, "").chunks(), "__qualname__", "")
    assert way == ("Verified._inflate" if inline else "Verified._ahead")
    refused(sandbox, raw[: len(raw) // 2])
    refused(sandbox, raw + b"garbage after the gzip stream", "trailing")
    assert sandbox.deploy(raw)["files"] == 1


def test_checksum_is_checked_before_anything_is_parsed(sandbox: Sandbox) -> None:
    bundle = sandbox.base / "b.tar.gz"
    bundle.write_bytes(good_bundle(extra=member("/etc/evil", b"x")))
    fd = os.open(bundle, os.O_RDONLY)
    try:
        with pytest.raises(agent.AgentError) as e:
            agent.Verified.read(fd, "0" * 64, None)
    finally:
        os.close(fd)
    assert e.value.code == 4 and "checksum mismatch" in e.value.message


# ----------------------------------------------------------------------------- finding 3: link chains


def test_symlink_chains_climbing_through_links_are_refused(sandbox: Sandbox) -> None:
    chain = member(f"{TOP}/a", type_=b"2", linkname=".")
    prev = "a"
    for i in range(1, 8):
        chain += member(f"{TOP}/up{i}", type_=b"2", linkname=f"{prev}/..")
        prev = f"up{i}"
    chain += member(f"{TOP}/shadow", type_=b"2", linkname=f"{prev}/etc/shadow")
    refused(sandbox, good_bundle(extra=chain), "passes through another link")


@pytest.mark.parametrize(
    ("rel", "target", "ok"),
    [
        ("lib/libx.so", "libx.so.1", True),
        ("lib/libx.so", "../lib/libx.so.1", True),
        ("a", ".", True),
        ("up", "a/..", False),
        ("x", "../outside", False),
        ("d/x", "../../outside", False),
        ("x", "/etc/passwd", False),
        ("x", "", False),
        ("d/x", "../d/./y", True),
    ],
)
def test_link_rule(rel: str, target: str, ok: bool) -> None:
    links = frozenset({"a", "lib/libx.so", "up", "x", "d/x"})
    assert (agent.link_problem(rel, target, links) == "") is ok


# ----------------------------------------------------------------------------- tarfile-made archives


def tarfile_bundle(fmt: int, names: list[str], big_name: bool = False) -> bytes:
    buf = io.BytesIO()
    files = []
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        d = tarfile.TarInfo(TOP)
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tf.addfile(d)
        for n in names:
            data = (n * 3).encode()
            ti = tarfile.TarInfo(f"{TOP}/{n}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
            files.append(file_entry(n, data))
        if big_name:
            ti = tarfile.TarInfo(f"{TOP}/{'l' * 50}")
            ti.type = tarfile.SYMTYPE
            ti.linkname = "d/" + "x" * 150
            tf.addfile(ti)
            files.append({"path": "l" * 50, "link": ti.linkname})
        m = json.dumps({"files": files}).encode()
        ti = tarfile.TarInfo(f"{TOP}/BUNDLE-MANIFEST.json")
        ti.size = len(m)
        tf.addfile(ti, io.BytesIO(m))
    return gzip.compress(buf.getvalue(), mtime=0)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_archives_made_by_tarfile_in_every_format(tmp_path: Path, fmt: int) -> None:
    names = ["short.py", "d/" + "x" * 150, "ünïcode/名前.txt"] if fmt != tarfile.USTAR_FORMAT else ["short.py", "d/" + "x" * 90]
    box = Sandbox(tmp_path)
    facts = box.deploy(tarfile_bundle(fmt, names, big_name=fmt != tarfile.USTAR_FORMAT))
    assert facts["files"] == len(names) + (fmt != tarfile.USTAR_FORMAT)
    for n in names:
        assert (box.stage / "tree" / n).read_bytes() == (n * 3).encode()


def test_base256_sizes_are_read(tmp_path: Path) -> None:
    data = b"z" * 1000
    h = bytearray(header(f"{TOP}/big.bin", size_field=b"\x80" + (1000).to_bytes(11, "big")))
    h[148:156] = b"        "
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    raw = finish(bytes(h) + data + bytes(-len(data) % 512), manifest_member([file_entry("big.bin", data)]))
    box = Sandbox(tmp_path)
    assert box.deploy(raw)["files"] == 1
    assert (box.stage / "tree" / "big.bin").read_bytes() == data


def test_gnu_sparse_members_are_refused(sandbox: Sandbox) -> None:
    refused(sandbox, good_bundle(extra=pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}) + member(f"{TOP}/app/s", b"x")), "sparse")


def test_oversized_extended_headers_are_refused(sandbox: Sandbox) -> None:
    refused(sandbox, good_bundle(extra=header("././@LongLink", size=agent.MAX_HEADER_BODY + 1, type_=b"L")), "extended header")


SCAN_AND_MEASURE = """
fd = os.open(path, os.O_RDONLY)
v = agent.Verified.read(fd, sha, None, keep=True)
if not v.readable:
    os.lseek(fd, 0, 0)
    v = agent.Verified.read(fd, sha, path + ".copy", keep=False)
os.mkdir(path + ".tree")
tree_fd = os.open(path + ".tree", os.O_RDONLY | os.O_DIRECTORY)
try:
    agent.scan(v, tree_fd)
    print("accepted")
except agent.AgentError as e:
    print("refused", e.code, e.message[:80])
print("maxrss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print("bundle_bytes", os.path.getsize(path))
"""


def scan_in_a_child(script: str, path: Path) -> dict[str, str]:
    """Run ``script`` (which writes the bundle at ``path`` and sets ``sha``), then scan it in
    the same child process: {"accepted" | "refused": ..., "maxrss_kib", "bundle_bytes"}."""
    cp = subprocess.run([sys.executable, "-c", script + SCAN_AND_MEASURE, str(path)], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    return dict(line.split(" ", 1) for line in cp.stdout.strip().splitlines())


@pytest.mark.slow
def test_memory_stays_bounded_for_a_1_gib_member(tmp_path: Path) -> None:
    """Finding 12: one member of 1 GiB (a 1 MB bundle) inflated and written as it passes."""
    script = f"""
import gzip, hashlib, json, os, resource, sys, zlib
sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
from release import agent
top = {TOP!r}
path = sys.argv[1]
size = 1 << 30
def hdr(name, size, t=b"0"):
    h = bytearray(512); h[0:len(name)] = name.encode(); h[100:108] = b"0000644\\0"; h[108:124] = b"0000000\\0" * 2
    h[124:136] = f"{{size:011o}}\\0".encode(); h[136:148] = b"00000000000\\0"; h[156:157] = t; h[257:263] = b"ustar\\0"; h[263:265] = b"00"
    h[148:156] = b"        "; h[148:156] = f"{{sum(h):06o}}\\0 ".encode(); return bytes(h)
z = zlib.compressobj(9, zlib.DEFLATED, 31)
with open(path, "wb") as f:
    f.write(z.compress(hdr(top + "/", 0, b"5") + hdr(top + "/zeros", size)))
    block = bytes(1 << 24)
    for _ in range(size // len(block)):
        f.write(z.compress(block))
    m = json.dumps({{"files": [{{"path": "zeros", "sha256": "0" * 64}}]}}).encode()
    f.write(z.compress(hdr(top + "/BUNDLE-MANIFEST.json", len(m)) + m + bytes(-len(m) % 512) + bytes(1024)))
    f.write(z.flush())
sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
"""
    out = scan_in_a_child(script, tmp_path / "bomb.tar.gz")
    assert out["refused"].startswith("4 ") and "does not match" in out["refused"]
    assert int(out["bundle_bytes"]) < 4 << 20, "the bomb is a small file"
    assert int(out["maxrss_kib"]) < 300 * 1024, f"peak memory {int(out['maxrss_kib']) // 1024} MiB for a 1 GiB member"


# ----------------------------------------------------------------------------- fuzz

NAMES = st.lists(st.sampled_from(["a", "b", "..", ".", "", "lib", "x.py", "/", "\\", TOP, "ü", "\x7f"]), min_size=1, max_size=4).map("/".join)


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    parts = [member(TOP + "/", type_=b"5")]
    files = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(NAMES)
        kind = draw(st.sampled_from([b"0", b"5", b"2", b"1", b"x", b"L", b"3"]))
        data = draw(st.binary(max_size=700))
        full = draw(st.sampled_from([f"{TOP}/{name}", name, f"/{TOP}/{name}"]))
        if kind == b"2":
            parts.append(member(full, type_=kind, linkname=draw(NAMES)))
        elif kind in (b"x", b"L"):
            parts.append(member("././@x", f"18 path={name[:5]}\n".encode() if kind == b"x" else name.encode(), type_=kind))
        else:
            parts.append(member(full, data, type_=kind))
            if kind == b"0" and draw(st.booleans()):
                files.append(file_entry(full[len(TOP) + 1 :] if full.startswith(TOP + "/") else full, data))
    parts.append(manifest_member(files))
    raw = b"".join(parts) + bytes(1024)
    if draw(st.booleans()):  # mutate some bytes of the tar
        buf = bytearray(raw)
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        raw = bytes(buf)
    return gzip.compress(raw, mtime=0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=archives())
def test_fuzz_random_and_mutated_archives_never_escape_and_only_refuse(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    box = Sandbox(tmp_path_factory.mktemp("fuzz"))
    try:
        box.deploy(raw)
    except agent.AgentError as exc:
        assert exc.code == 4, exc.message
    for p in box.base.rglob("*"):
        rel = p.relative_to(box.base)
        assert rel.parts[0] in ("parent", "canary", "bundle.tar.gz"), f"written outside the staging folder: {p}"
        if rel.parts[0] == "parent" and len(rel.parts) > 1:
            assert rel.parts[1] == "stage"
        if p.is_symlink():
            real = p.resolve()
            assert str(real).startswith(str((box.stage / "tree").resolve())), f"link leaves the tree: {p} -> {os.readlink(p)}"
    assert (box.base / "canary" / "keep.txt").read_text() == "keep"


@pytest.mark.slow
def test_a_bundle_kept_in_memory_and_one_read_from_its_copy_give_the_same_tree(tmp_path: Path) -> None:
    """The one pass writes the same tree whether the compressed bundle was kept in memory
    or spilled to its private copy: contents (data spanning the inflater's chunks), the
    executable bit, empty files, links."""
    import random

    rng = random.Random(5)
    buf = io.BytesIO()
    files: list[dict[str, object]] = []
    expect: dict[str, bytes] = {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo(TOP)
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tf.addfile(d)
        for i in range(120):
            rel = f"p{i % 7}/q{i % 3}/f{i}.bin"
            n = rng.choice([0, 1, 511, 4096, 300_000, 1_500_000])
            data = rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""  # (randbytes is 3.9+)
            ti = tarfile.TarInfo(f"{TOP}/{rel}")
            ti.size = len(data)
            ti.mode = 0o755 if i % 11 == 0 else 0o644
            tf.addfile(ti, io.BytesIO(data))
            files.append(file_entry(rel, data))
            expect[rel] = data
        ti = tarfile.TarInfo(f"{TOP}/p0/link")
        ti.type = tarfile.SYMTYPE
        ti.linkname = "q0/f0.bin"
        tf.addfile(ti)
        files.append({"path": "p0/link", "link": "q0/f0.bin"})
        m = json.dumps({"files": files}).encode()
        ti = tarfile.TarInfo(f"{TOP}/BUNDLE-MANIFEST.json")
        ti.size = len(m)
        tf.addfile(ti, io.BytesIO(m))
    raw = gzip.compress(buf.getvalue(), mtime=0)
    sha = hashlib.sha256(raw).hexdigest()
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(raw)
    trees = {}
    for keep in (True, False):  # the compressed bytes in memory / in the private copy
        tree = tmp_path / f"tree-{keep}"
        tree.mkdir()
        fd = os.open(bundle, os.O_RDONLY)
        try:
            verified = agent.Verified.read(fd, sha, str(tmp_path / f"copy-{keep}"), keep=keep)
        finally:
            os.close(fd)
        assert (verified.raw is not None) == keep and (tmp_path / f"copy-{keep}").exists() != keep
        tree_fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
        try:
            agent.finish(agent.scan(verified, tree_fd), tree_fd)
        finally:
            os.close(tree_fd)
        trees[keep] = {
            str(p.relative_to(tree)): (os.readlink(p) if p.is_symlink() else (p.read_bytes(), p.stat().st_mode & 0o777))  # (Path.readlink is 3.9+)
            for p in tree.rglob("*")
            if p.is_symlink() or p.is_file()
        }
    assert trees[True] == trees[False]
    assert {k: v[0] for k, v in trees[True].items() if k != "p0/link" and k != "BUNDLE-MANIFEST.json"} == expect
    assert trees[True]["p0/link"] == "q0/f0.bin"
    assert trees[True]["p0/q0/f0.bin"][1] == 0o755


@given(hdr=st.binary(min_size=0, max_size=512))
@settings(max_examples=300, deadline=None)
def test_the_header_sum_is_the_plain_sum_of_the_bytes(hdr: bytes) -> None:
    """Adler-32's halves give exactly what summing the bytes one by one gives."""
    from release.agent import tarsafe

    assert tarsafe.header_sum(hdr) == sum(hdr[:148]) + 256 + sum(hdr[156:])


@pytest.mark.parametrize("fill", [0x00, 0x7F, 0x80, 0xFF])
def test_the_header_sum_holds_at_the_extremes(fill: int) -> None:
    from release.agent import tarsafe

    hdr = bytes([fill]) * 512
    assert tarsafe.header_sum(hdr) == sum(hdr[:148]) + 256 + sum(hdr[156:])


# ----------------------------------------------------------------------------- the one pass


def test_a_file_where_an_earlier_member_made_a_folder_is_refused(sandbox: Sandbox) -> None:
    """'x/y' makes the folder x as it is written; a later member 'x' (a file) would need
    the same name: refused (exit 4), and the partial tree goes with the staging folder."""
    raw = finish(
        member(TOP + "/", type_=b"5"),
        member(f"{TOP}/x/y", b"first"),
        member(f"{TOP}/x", b"second"),
        manifest_member([file_entry("x/y", b"first"), file_entry("x", b"second")]),
    )
    refused(sandbox, raw, "under a file or link")


def test_a_folder_where_an_earlier_member_wrote_a_file_is_refused(sandbox: Sandbox) -> None:
    raw = finish(
        member(TOP + "/", type_=b"5"),
        member(f"{TOP}/x", b"a file"),
        member(f"{TOP}/x/", type_=b"5"),
        manifest_member([file_entry("x", b"a file")]),
    )
    refused(sandbox, raw)


def test_a_link_where_an_earlier_member_made_a_folder_is_refused_before_any_link(sandbox: Sandbox) -> None:
    raw = finish(
        member(TOP + "/", type_=b"5"),
        member(f"{TOP}/x/y", b"data"),
        member(f"{TOP}/x", type_=b"2", linkname="/etc"),
        manifest_member([file_entry("x/y", b"data"), {"path": "x", "link": "/etc"}]),
    )
    refused(sandbox, raw)


def test_a_refusal_after_the_files_were_written_leaves_nothing(sandbox: Sandbox) -> None:
    """The manifest comes last: by then every file was written into the staging folder.
    A manifest that does not match is refused and nothing remains outside staging."""
    raw = good_bundle(files=[file_entry("app/main.py", b"something else")])
    refused(sandbox, raw, "does not match")
    assert not (sandbox.stage / "tree").exists()


def test_a_bundle_past_the_memory_limit_spills_to_its_copy_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept in memory up to the limit, then the kept part and the rest go to the private
    copy, in order; the one pass reads the copy and writes the same tree."""
    from release.agent import tarsafe

    monkeypatch.setattr(tarsafe, "_keep_limit", lambda: 1000)
    data = os.urandom(300_000)
    raw = good_bundle(extra=member(f"{TOP}/app/blob.bin", data), files=[file_entry("app/main.py", b"print('hi')\n"), file_entry("app/blob.bin", data)])
    assert len(raw) > 3 * 1000
    r, w = os.pipe()
    copy = tmp_path / "copy.tar.gz"

    def send() -> None:  # through a pipe, in bounded chunks, as over SSH
        view = memoryview(raw)
        while view:
            view = view[os.write(w, view[:65536]) :]
        os.close(w)

    writer = threading.Thread(target=send)
    writer.start()
    try:
        verified = agent.Verified.read(r, hashlib.sha256(raw).hexdigest(), str(copy), keep=True)
    finally:
        writer.join()
        os.close(r)
    assert verified.raw is None and copy.read_bytes() == raw
    (tmp_path / "tree").mkdir()
    tree_fd = os.open(tmp_path / "tree", os.O_RDONLY | os.O_DIRECTORY)
    try:
        facts = agent.finish(agent.scan(verified, tree_fd), tree_fd)
    finally:
        os.close(tree_fd)
    assert facts["files"] == 2 and (tmp_path / "tree" / "app" / "blob.bin").read_bytes() == data


def test_an_empty_folder_member_is_not_made(sandbox: Sandbox) -> None:
    """A manifest lists files and links, not folders: a folder member with nothing under it
    is accepted but never made (verify and rollback would take it for a foreign folder),
    and ten thousand of them write nothing."""
    empties = b"".join(member(f"{TOP}/empty{i}/", type_=b"5") for i in range(10_000))
    data = b"print('hi')\n"
    raw = finish(
        member(TOP + "/", type_=b"5"),
        member(f"{TOP}/app/", type_=b"5"),
        empties,
        member(f"{TOP}/app/main.py", data),
        manifest_member([file_entry("app/main.py", data)]),
    )
    sandbox.deploy(raw)
    tree = sandbox.stage / "tree"
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == ["BUNDLE-MANIFEST.json", "app", "app/main.py"]


def test_a_manifest_nested_past_the_parsers_limit_is_a_refusal_not_a_crash(sandbox: Sandbox) -> None:
    """A bundle built byte by byte whose BUNDLE-MANIFEST.json nests 100,000 lists deep: the
    JSON reader's RecursionError never escapes; exit 4, nothing left behind."""
    data = b"print('hi')\n"
    deep = b'{"name": "app", "version": "1.0", "files": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    raw = finish(member(TOP + "/", type_=b"5"), member(f"{TOP}/app/main.py", data), member(f"{TOP}/BUNDLE-MANIFEST.json", deep))
    refused(sandbox, raw, "not valid JSON")


# ----------------------------------------------------------------------------- names: memory, depth, time


def long_name(name: str, type_: bytes = b"5") -> bytes:
    """A member whose name rides in a GNU long-name header (any length)."""
    body = name.encode() + b"\0"
    return header("././@LongLink", len(body), type_=b"L") + body + bytes(-len(body) % 512) + header(name[:99], type_=type_)


@pytest.mark.slow
def test_names_past_the_memory_bound_are_refused_with_memory_bounded(tmp_path: Path) -> None:
    """50,000 empty folders with 4 KB names: a 1.5 MB bundle that once took the deploy past
    1 GB. Refused once the names held pass MAX_NAME_BYTES; the reader's peak memory stays
    within a small multiple of that bound."""
    script = f"""
import hashlib, os, resource, sys, zlib
sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
from tests.unit.agent.test_agent_tar import TOP, header, long_name
from release import agent
path = sys.argv[1]
z = zlib.compressobj(9, zlib.DEFLATED, 31)
with open(path, "wb") as f:
    f.write(z.compress(header(TOP + "/", type_=b"5")))
    for i in range(50_000):
        f.write(z.compress(long_name(f"{{TOP}}/{{i:05d}}/" + "/".join(["x" * 250] * 16) + "/")))
    f.write(z.compress(bytes(1024)) + z.flush())
sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
"""
    out = scan_in_a_child(script, tmp_path / "names.tar.gz")
    assert out["refused"].startswith("4 ") and "names take more than" in out["refused"], out
    assert int(out["bundle_bytes"]) < 4 << 20
    assert int(out["maxrss_kib"]) < 400 * 1024, f"peak memory {int(out['maxrss_kib']) // 1024} MiB"


def test_a_name_deeper_than_the_bound_is_refused(sandbox: Sandbox) -> None:
    deep = "/".join(["d"] * (agent.names.MAX_DEPTH + 1))
    refused(sandbox, good_bundle(extra=long_name(f"{TOP}/{deep}/")), "components deep")


@pytest.mark.slow  # a worst-case timing: the whole suite runs it, the inner loop does not
def test_the_scan_is_linear_in_deep_names(sandbox: Sandbox) -> None:
    """Thousands of members as deep as the bound allows, each in its own chain: the work per
    member is linear in its name (the folders above it are checked once), so a scan of
    such a bundle takes about as long as one of flat names of the same bytes."""
    import time

    depth = agent.names.MAX_DEPTH - 2

    def bundle(deep: bool) -> bytes:
        parts = [member(TOP + "/", type_=b"5")]
        for i in range(1000):
            name = f"{TOP}/c{i}/" + ("/".join(["abcd"] * depth) if deep else "/".join(["abcd" * (depth // 3) + "x" * (depth // 3)] * 3)) + "/"
            parts.append(long_name(name))
        return finish(*parts, manifest_member([]))

    def timed(raw: bytes) -> float:
        start = time.process_time()
        sandbox.deploy(raw)
        shutil.rmtree(sandbox.stage / "tree")
        return time.process_time() - start

    flat, deep = bundle(False), bundle(True)
    timed(flat)
    t_flat, t_deep = min(timed(flat) for _ in range(3)), min(timed(deep) for _ in range(3))
    assert t_deep < 4 * t_flat + 0.2, f"deep names {t_deep:.2f} s against flat {t_flat:.2f} s"


@pytest.mark.parametrize(
    ("where", "target"),
    [("py-link", ".venv/bin/python3"), ("py-link", ".venv/bin/python"), ("app/py-link", "../.venv/bin/python3.11"), ("py-link", ".venv/bin/python3/../x")],
)
def test_a_link_into_the_environments_interpreter_links_is_refused(sandbox: Sandbox, where: str, target: str) -> None:
    """`py-link -> .venv/bin/python3`: once the deploy builds the environment, that name is a
    link to the target's interpreter, outside the release; the link is judged against it."""
    link = member(f"{TOP}/{where}", type_=b"2", linkname=target)
    refused(sandbox, good_bundle(extra=link, files=[file_entry("app/main.py", b"print('hi')\n"), {"path": where, "link": target}]), ".venv/bin/python")
