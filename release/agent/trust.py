"""The host decides what it runs (``target.trust``): before a deploy writes anything, the
agent itself, on the target, checks the bundle against the host's own signers.

- The signers file (an OpenSSH allowed_signers file, a path on the target) must be a
  regular file (not a link), owned by root, writable by nobody else, and not empty.
- The checksum file the controller sent must be signed by one of its keys for the
  ``release-bundle`` namespace (``ssh-keygen -Y find-principals`` and ``-Y verify``); it
  must list the bundle with the digest the agent checks the bundle against, its SBOM and
  its provenance.
- The provenance must be the one the checksum file lists, an in-toto v1 Statement with an
  SLSA v1 predicate whose only subject is this bundle (name and sha256) and whose commit is
  the one the bundle's manifest must record.
- Once the bundle is scanned (in the private staging folder, before it appears): its SBOM
  must be the one the checksum file lists, and the SBOM and the provenance must list
  exactly the wheels the bundle carries, with their sha256.

Any failure is a refusal (exit 4) naming the file and the reason; the staging folder goes,
the target root is left as it was. Standard library only, bounded reads.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import tempfile

from . import jsonio
from .protocol import AgentError, refuse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

NAMESPACE = "release-bundle"
SBOM_NAME = "SBOM.cdx.json"
SBOM_SUFFIX = ".cdx.json"
PROVENANCE_SUFFIX = ".intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
MAX_SUMS = 64 << 10
MAX_SIG = 64 << 10
MAX_PROVENANCE = 96 << 10  # it travels in the request (a command line argument over SSH: 128 KiB at most)
MAX_SBOM = 64 << 20
_SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *]([^/\s][^/]*)")


def parse_sums(data: bytes) -> dict[str, str]:
    """``sha256sum`` lines: file name -> sha256 (at most 16 lines; any other line is a ValueError)."""
    out: dict[str, str] = {}
    lines = data.decode("utf-8", "replace").splitlines()
    if len(lines) > 16:
        raise ValueError(f"{len(lines)} lines, at most 16")
    for line in lines:
        m = _SUM_LINE.fullmatch(line)
        if not m or m.group(2) in out:
            raise ValueError(f"malformed or repeated line {line[:100]!r}")
        out[m.group(2)] = m.group(1)
    return out


def _items(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (an attacker's object, number, text) as none."""
    return value if isinstance(value, list) else []


def sbom_wheels(doc: Mapping[str, Any]) -> dict[str, str]:
    """The wheels an SBOM lists (its subject's and its components'): path in the bundle -> sha256."""
    out: dict[str, str] = {}
    subject = doc["metadata"].get("component") if isinstance(doc.get("metadata"), dict) else None
    items = [*_items(doc.get("components")), *([subject] if isinstance(subject, dict) else [])]
    for c in items:
        if not isinstance(c, dict):
            continue
        path = next((p.get("value") for p in _items(c.get("properties")) if isinstance(p, dict) and p.get("name") == "release:path"), None)
        digest = next((h.get("content") for h in _items(c.get("hashes")) if isinstance(h, dict) and h.get("alg") == "SHA-256"), None)
        if isinstance(path, str) and isinstance(digest, str):
            out[path] = digest
    return out


def _table(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def provenance_facts(doc: Any) -> dict[str, Any]:
    """What a provenance statement says, checked for its shape (a ValueError names what is wrong)."""
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise ValueError(f"not an in-toto v1 statement (_type {doc.get('_type') if isinstance(doc, dict) else None!r})")
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise ValueError(f"predicate type {doc.get('predicateType')!r}, expected {PREDICATE_TYPE}")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise ValueError("its subject must be the bundle alone")
    pred = doc.get("predicate")
    if not isinstance(pred, dict) or not isinstance(pred.get("buildDefinition"), dict):
        raise ValueError("no buildDefinition")
    bd = pred["buildDefinition"]
    ext = _table(bd, "externalParameters")
    rd = _table(pred, "runDetails")
    builder = _table(rd, "builder")
    meta = _table(rd, "metadata")
    wheels: dict[str, str] = {}
    for d in _items(bd.get("resolvedDependencies")):
        if isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("digest"), dict):
            wheels[d["name"]] = str(d["digest"].get("sha256", ""))
    digest = subjects[0].get("digest")
    return {
        "subject": str(subjects[0].get("name", "")),
        "subject_sha256": str(digest.get("sha256", "")) if isinstance(digest, dict) else "",
        "build_type": str(bd.get("buildType", "")),
        "commit": str(ext.get("commit", "")),
        "config_sha256": str(ext.get("config_sha256", "")),
        "repository": str(ext.get("repository", "")),
        "builder": str(builder.get("id", "")),
        "builder_version": dict(builder.get("version") or {}) if isinstance(builder.get("version"), dict) else {},
        "run": str(meta.get("invocationId", "")),
        "wheels": wheels,
    }


def compare_wheels(what: str, listed: Mapping[str, str], carried: Mapping[str, str]) -> list[str]:
    """Every difference between the wheels ``what`` lists and those the bundle carries."""
    problems = [f"{what} lists {p}, which the bundle does not carry" for p in sorted(set(listed) - set(carried))]
    problems += [f"the bundle carries {p}, which {what} does not list" for p in sorted(set(carried) - set(listed))]
    problems += [f"{what} gives {p} another sha256 than the bundle's" for p in sorted(set(listed) & set(carried)) if listed[p] != carried[p]]
    return problems


def check_signers_file(path: str) -> None:
    """The host's own signers: a regular file owned by root that nobody else may write, not empty."""
    if not path.startswith("/"):
        raise refuse(f"target.trust {path!r} is not an absolute path on the target", "set target.trust to the allowed_signers file's full path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise refuse(
            f"target.trust {path} does not exist on this host: nothing is deployed without it", f"install the host's allowed_signers at {path}"
        ) from None
    if stat.S_ISLNK(st.st_mode):
        raise refuse(f"target.trust {path} is a symbolic link: the host's signers are never read through one", f"replace {path} with the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise refuse(f"target.trust {path} is not a regular file", f"install the host's allowed_signers at {path}")
    if st.st_uid != 0:
        raise refuse(f"target.trust {path} is owned by uid {st.st_uid}, not root: the deploy user could change who is trusted", f"chown root {path}")
    if st.st_mode & 0o022:
        raise refuse(f"target.trust {path} is writable by its group or by everyone (mode {stat.S_IMODE(st.st_mode):04o})", f"chmod go-w {path}")
    if st.st_size == 0:
        raise refuse(f"target.trust {path} is empty: it trusts no key", f"list the keys allowed to sign releases in {path}")


def _keygen(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["ssh-keygen", *args], input=data, capture_output=True, timeout=60, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=False
        )
    except FileNotFoundError:
        raise AgentError(3, "ssh-keygen is not installed on this host: target.trust verifies signatures with it", "install OpenSSH's client tools") from None
    except subprocess.TimeoutExpired:
        raise refuse("ssh-keygen did not answer within 60 s while verifying the bundle's signature") from None


def verify_signature(signers: str, sums: bytes, sig: bytes, sums_name: str) -> str:
    """The principal whose key in ``signers`` signed ``sums`` (namespace release-bundle)."""
    if not sig:
        raise refuse(
            f"unsigned bundle refused: {sums_name}.sig is missing and this host trusts only signed releases ({signers})", "sign it: release bundle --sign KEY"
        )
    with tempfile.TemporaryDirectory(prefix="release-trust-") as tmp:
        sig_path = os.path.join(tmp, "sig")
        with open(sig_path, "wb") as f:
            f.write(sig[:MAX_SIG])
        found = _keygen(["-Y", "find-principals", "-s", sig_path, "-f", signers])
        principal = found.stdout.decode("utf-8", "replace").strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else ""
        if not principal:
            raise refuse(f"{sums_name}.sig is not by any key in this host's {signers}", "sign with a key the host trusts, or add it to its allowed_signers")
        cp = _keygen(["-Y", "verify", "-f", signers, "-I", principal, "-n", NAMESPACE, "-s", sig_path], sums)
        if cp.returncode != 0:
            said = cp.stderr.decode("utf-8", "replace").strip()[-300:]
            raise refuse(f"bad signature on {sums_name} (signer {principal}, namespace {NAMESPACE}): {said}", "the checksum file or its signature was altered")
    return principal


def check_before(req: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that can be checked before the bundle is read: the signers file, the
    signature, the checksum file's lines, the provenance. Returns what the checks after
    the scan need (the signer, the SBOM's digest, the provenance's wheels)."""
    trust = req["trust"]
    signers = str(trust.get("signers", ""))
    bundle = str(req["bundle"])
    sums_name = bundle + ".sha256"
    check_signers_file(signers)
    sums = str(trust.get("sums", "")).encode()
    if not sums or len(sums) > MAX_SUMS:
        raise refuse(f"{sums_name}: missing or larger than {MAX_SUMS} bytes")
    principal = verify_signature(signers, sums, str(trust.get("sig", "")).encode(), sums_name)
    try:
        lines = parse_sums(sums)
    except ValueError as exc:
        raise refuse(f"{sums_name}: {exc}") from None
    if lines.get(bundle) != req["bundle_sha256"]:
        raise refuse(f"{sums_name} (signed by {principal}) does not give {bundle} the sha256 this deploy checks it against")
    for suffix, what in ((SBOM_SUFFIX, "SBOM"), (PROVENANCE_SUFFIX, "provenance")):
        if bundle + suffix not in lines:
            raise refuse(f"{sums_name} does not list the bundle's {what} ({bundle + suffix})", "bundle it again with this tool: every bundle carries both")
    prov_name = bundle + PROVENANCE_SUFFIX
    statement = str(trust.get("provenance", "")).encode()
    if not statement:
        raise refuse(f"{prov_name} is missing: this host deploys only releases with their provenance", "keep it beside the bundle")
    if len(statement) > MAX_PROVENANCE:
        raise refuse(f"{prov_name} is larger than {MAX_PROVENANCE} bytes")
    if hashlib.sha256(statement).hexdigest() != lines[prov_name]:
        raise refuse(f"{prov_name}: its sha256 is not the one {sums_name} lists (altered, truncated or swapped)")
    try:
        facts = provenance_facts(jsonio.loads_bounded(statement, MAX_PROVENANCE))
    except ValueError as exc:
        raise refuse(f"{prov_name}: {exc}") from None
    if facts["subject"] != bundle or facts["subject_sha256"] != req["bundle_sha256"]:
        raise refuse(f"{prov_name} is the provenance of another bundle ({facts['subject']})")
    want = str(req["expect"].get("commit", ""))
    if facts["commit"] != want:
        raise refuse(f"{prov_name} names commit {facts['commit'][:12] or '(none)'}, the bundle's manifest must record {want[:12]}")
    return {"signed_by": principal, "sbom_sha256": lines[bundle + SBOM_SUFFIX], "provenance_wheels": facts["wheels"], "bundle": bundle}


def check_contents(expected: Mapping[str, Any], members: Mapping[str, str], tree_fd: int) -> None:
    """After the scan: the SBOM inside is the signed one, and the SBOM and the provenance
    list exactly the wheels the bundle carries (``members``: each regular file -> sha256)."""
    bundle = expected["bundle"]
    sbom_name = bundle + SBOM_SUFFIX
    if members.get(SBOM_NAME) != expected["sbom_sha256"]:
        raise refuse(
            f"the bundle's {SBOM_NAME} is not the SBOM its checksum file lists ({sbom_name})" if SBOM_NAME in members else f"the bundle carries no {SBOM_NAME}"
        )
    fd = os.open(SBOM_NAME, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=tree_fd)
    try:
        data = os.read(fd, MAX_SBOM + 1)
    finally:
        os.close(fd)
    try:
        doc = jsonio.loads_bounded(data, MAX_SBOM)
    except ValueError as exc:
        raise refuse(f"{sbom_name}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise refuse(f"{sbom_name} is not a CycloneDX document")
    carried = {rel: digest for rel, digest in members.items() if rel.endswith(".whl")}
    problems = compare_wheels(sbom_name, sbom_wheels(doc), carried) + compare_wheels(bundle + PROVENANCE_SUFFIX, expected["provenance_wheels"], carried)
    if problems:
        raise refuse("; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
