"""``release verify --bundle PATH``: a bundle checked offline, on any machine.

The checksum file must list the bundle, its SBOM and its provenance, and each must match;
with ``--allowed-signers FILE`` (or ``target.allowed_signers``) the checksum file must be
signed by one of them (``ssh-keygen -Y verify``). The provenance must name this bundle
(file name and sha256) and the commit the bundle's manifest records (and, with a config,
its recorded head); the SBOM must be a valid CycloneDX 1.6 document, the same bytes as
the copy inside the bundle, and list exactly the wheels the bundle carries with their
sha256 (and so must the provenance). Every file is read once, with bounds; every problem
is named with its file. Exit 0 when all holds, 4 (refused) when anything does not.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

from . import provenance, sbom
from .agent.trust import compare_wheels, parse_sums, sbom_wheels
from .archive import sha256_file
from .bundlefile import read_checksum_bytes
from .config import Config
from .errors import BlockedError, ReleaseError
from .stage import Options, StageResult

MAX_SBOM = 64 << 20
MAX_MANIFEST = 64 << 20
MAX_MEMBERS = 2_000_000
CHUNK = 1 << 20


def _read_bounded(path: Path, limit: int) -> bytes:
    if not path.is_file() or path.is_symlink():
        raise BlockedError(f"{path} is missing (or not a regular file)", hint="copy it beside the bundle: it is written with it")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data


def _members(bundle: Path) -> tuple[dict[str, str], bytes, bytes]:
    """Every regular member's sha256 (by its path under the top folder), the SBOM inside
    and the BUNDLE-MANIFEST, read in one pass."""
    digests: dict[str, str] = {}
    inside, manifest = b"", b""
    with tarfile.open(bundle, "r|gz") as tf:
        for n, m in enumerate(tf):
            if n >= MAX_MEMBERS:
                raise ValueError(f"more than {MAX_MEMBERS} members")
            tf.members = []  # type: ignore[attr-defined]  # a stream: keep no list of what was read
            rel = m.name.split("/", 1)[1] if "/" in m.name else ""
            if not m.isreg() or not rel:
                continue
            f = tf.extractfile(m)
            assert f is not None
            h = hashlib.sha256()
            keep = rel in (sbom.NAME, "BUNDLE-MANIFEST.json")
            kept = bytearray()
            while block := f.read(CHUNK):
                h.update(block)
                if keep and len(kept) <= MAX_MANIFEST:
                    kept += block
            digests[rel] = h.hexdigest()
            if rel == sbom.NAME:
                inside = bytes(kept)
            elif rel == "BUNDLE-MANIFEST.json":
                manifest = bytes(kept)
    return digests, inside, manifest


def beside(bundle: Path, sums: dict[str, str], bundle_sha: str, commit: str) -> tuple[list[str], bytes, dict[str, Any] | None]:
    """The SBOM and the provenance beside a bundle, as its checksum file lists them: each
    listed and matching, the provenance (read by the in-toto bindings) naming this bundle
    (name and sha256) and ``commit``. Returns the problems, the SBOM's bytes and the
    provenance's facts (None when unreadable). The deploy runs this before it ships."""
    problems: list[str] = []
    sbom_path = bundle.with_name(bundle.name + sbom.SUFFIX)
    prov_path = bundle.with_name(bundle.name + provenance.SUFFIX)
    for p in (bundle, sbom_path, prov_path):
        if p.name not in sums:
            problems.append(f"{bundle.name}.sha256 does not list {p.name}")
    try:
        bom = _read_bounded(sbom_path, MAX_SBOM)
        statement = _read_bounded(prov_path, provenance.MAX_BYTES)
    except (BlockedError, ValueError) as exc:
        return [*problems, exc.message if isinstance(exc, BlockedError) else str(exc)], b"", None
    for path, data in ((sbom_path, bom), (prov_path, statement)):
        if sums.get(path.name) not in (None, hashlib.sha256(data).hexdigest()):
            problems.append(f"{path.name}: its sha256 is not the one {bundle.name}.sha256 lists (altered or swapped)")
    try:
        facts = provenance.read(statement)
    except ValueError as exc:
        return [*problems, f"{prov_path.name}: {exc}"], bom, None
    if facts["subject"] != bundle.name or facts["subject_sha256"] != bundle_sha:
        problems.append(f"{prov_path.name} names another bundle ({facts['subject']}, sha256 {facts['subject_sha256'][:12]}...)")
    if facts["commit"] != commit:
        problems.append(f"{prov_path.name} names commit {facts['commit'][:12] or '(none)'}, the bundle's manifest {commit[:12]}")
    return problems, bom, facts


def check(bundle: Path, allowed_signers: str = "", head: str = "") -> dict[str, Any]:
    """Every check, as a report (``problems`` empty when the bundle holds)."""
    from .agent import jsonio

    problems: list[str] = []
    report: dict[str, Any] = {"bundle": str(bundle)}
    sums_bytes = read_checksum_bytes(bundle)
    try:
        sums = parse_sums(sums_bytes)
    except ValueError as exc:
        return {**report, "problems": [f"{bundle.name}.sha256: {exc}"]}
    report["signed_by"] = ""
    if allowed_signers:
        from . import signing

        try:
            report["signed_by"] = signing.verify(bundle, allowed_signers, sums_bytes)
        except ReleaseError as exc:
            problems.append(f"{bundle.name}.sha256.sig: {exc.message}")
    else:
        report["signature"] = "present, not checked (pass --allowed-signers FILE)" if bundle.with_name(bundle.name + ".sha256.sig").exists() else "none"
    bundle_sha = sha256_file(bundle)
    report["sha256"] = bundle_sha
    if sums.get(bundle.name) not in (None, bundle_sha):
        problems.append(f"{bundle.name}: its sha256 is not the one {bundle.name}.sha256 lists")
        return {**report, "problems": problems}  # nothing inside a bundle that is not the checksummed one is read
    try:
        digests, inside, manifest_bytes = _members(bundle)
        manifest = jsonio.loads_bounded(manifest_bytes, MAX_MANIFEST) if manifest_bytes else {}
    except (ValueError, tarfile.TarError, OSError) as exc:
        return {**report, "problems": [*problems, f"{bundle.name}: not a readable bundle: {exc}"]}
    commit = str(manifest.get("commit", "")) if isinstance(manifest, dict) else ""
    report["commit"] = commit
    found, bom, facts = beside(bundle, sums, bundle_sha, commit)
    problems += found
    carried = {p: d for p, d in digests.items() if p.endswith(".whl")}
    report["wheels"] = len(carried)
    sbom_name = bundle.name + sbom.SUFFIX
    if bom:
        if inside != bom:
            problems.append(f"{sbom_name} is not the SBOM inside the bundle ({sbom.NAME})")
        invalid = sbom.validate(bom.decode("utf-8", "replace"))
        if invalid:
            problems.append(f"{sbom_name} is not a valid CycloneDX 1.6 document: {invalid}")
        else:
            doc = jsonio.loads_bounded(bom, MAX_SBOM)
            report["sbom_components"] = len(doc.get("components") or [])
            problems += compare_wheels(sbom_name, sbom_wheels(doc), carried)
    if facts is not None:
        report["provenance"] = {k: v for k, v in facts.items() if k != "wheels"}
        problems += compare_wheels(bundle.name + provenance.SUFFIX, facts["wheels"], carried)
    if head and commit != head:
        problems.append(f"the bundle is of commit {commit[:12]}, the config's recorded head is {head[:12]}")
    report["head_checked"] = bool(head)
    return {**report, "problems": problems}


def cli(cfg: Config | None, options: Options) -> StageResult:
    if not options.bundle:
        raise BlockedError("verify --bundle needs a bundle", hint="release verify --bundle PATH")
    bundle = Path(options.bundle)
    if not bundle.is_file():
        raise BlockedError(f"no bundle at {bundle}", hint="pass the path of a .tar.gz bundle")
    signers = options.allowed_signers or (cfg.allowed_signers if cfg is not None else "")
    head = ""
    if cfg is not None:
        from .source import git as gitsource

        try:
            head = gitsource.resolve(cfg).sha
        except ReleaseError:
            head = ""  # the repository is not here: the commit is checked against the bundle's own manifest only
    report = check(bundle, signers, head)
    lines = [f"bundle:     {bundle.name}", f"sha256:     {report.get('sha256', '?')}"]
    lines.append(f"signed by:  {report['signed_by']}" if report.get("signed_by") else f"signature:  {report.get('signature', 'not verified')}")
    if "provenance" in report:
        p = report["provenance"]
        lines += [
            f"commit:     {report.get('commit', '')}" + (" (the config's recorded head)" if report.get("head_checked") and not report["problems"] else ""),
            f"built by:   {p['builder']} {p['builder_version']}" + (f" in {p['run']}" if p["run"] else ""),
            f"config:     sha256 {p['config_sha256']}",
        ]
    lines.append(f"wheels:     {report.get('wheels', 0)} carried, {report.get('sbom_components', '?')} in the SBOM")
    problems = report["problems"]
    lines += [f"REFUSED: {p}" for p in problems] or ["every check passed"]
    if problems:
        return StageResult({"stage": "verify", **report}, "\n".join(lines), 4, problems[0])
    return StageResult({"stage": "verify", **report}, "\n".join(lines))
