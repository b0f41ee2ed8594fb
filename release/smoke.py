"""Stage ``smoke``: G5 (static and unit) on the target, G6 (read-only database) here.

G5 checks run on the target with ``target.python`` in the deployed folder, through the
same transport as deploy; bytecode and pytest caches go to a scratch folder, and the
tree is re-verified afterwards, so a smoke provably leaves the release unchanged. G6
checks run on this machine with psycopg and pglast. Only DRYRUN runs: LIVE is exit 4.

Each run writes ``.release/reports/<UTC stamp>/`` (mode 0700): report.json, junit.xml.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from . import progress
from .config import Check, Config
from .errors import ConfigError, RefusedError, ReleaseError
from .names import utc_stamp
from .redact import redact, redact_obj
from .remote.client import for_config
from .source import git as gitsource
from .stage import Options, StageResult
from .state import State, private_dir

if TYPE_CHECKING:  # the request shapes, for the type checker only
    from .agent.messages import SmokeRequest

PASSED, FAILED, REFUSED = "passed", "failed", "refused"
TABLE_TAIL = 5  # lines of a failed check's output shown under its row


def _baseline_finder(cfg: Config) -> Any:
    def find(sha: str) -> list[str] | None:
        reports = cfg.state / "reports"
        if not reports.is_dir():
            return None
        for rep in sorted(reports.glob("*/report.json"), reverse=True):
            for c in json.loads(rep.read_text()).get("checks", []):
                d = c.get("data") or {}
                if d.get("grant_matrix_sha256") == sha and "grant_matrix" in d:
                    lines: list[str] = d["grant_matrix"]
                    return lines
        return None

    return find


@contextlib.contextmanager
def _database(cfg: Config, check: Check) -> Iterator[tuple[str, str]]:
    """Yield (dsn, description): the DSN variable's value, or the embedded demo server."""
    from .db import check as dbcheck

    dsn = dbcheck.dsn_from_env(check)
    name = check.options["dsn_env"]
    if dsn and check.options.get("via") == "target":
        from .db import forward

        with forward.through(cfg, dsn) as through:
            yield through, f"from ${name}, through {cfg.host or 'localhost'} (as the target sees it)"
        return
    if dsn:
        yield dsn, f"from ${name}"
        return
    if not check.options.get("demo"):
        raise ConfigError(
            f"environment variable {name} is not set (smoke check {check.name!r})",
            hint=f"export {name} with the read-only role's DSN (or use PGPASSFILE for its password)",
        )
    from .db import pgdemo

    src = gitsource.resolve(cfg)
    schema = gitsource.read_file(src, check.options["demo_schema"])
    if schema is None:
        raise ConfigError(f"demo schema {check.options['demo_schema']} not found in the recorded commit", hint="fix demo_schema")
    with pgdemo.server() as srv:
        yield (
            pgdemo.seed(srv, schema.decode(), check.options.get("role") or "context_pack_readonly"),
            f"embedded demo PostgreSQL (${name} unset), seeded from {check.options['demo_schema']}",
        )


def _tree_changed(verify: Mapping[str, Any]) -> str:
    """What the checks changed in the release, and where what the application writes at run
    time belongs (a folder it adds at the top: a shared path, kept across releases)."""
    said = f"smoke changed the tree: added {verify['added'][:5]} changed {verify['changed'][:5]} removed {verify['removed'][:5]}"
    said += "" if verify.get("deploy_manifest_intact", True) else "; DEPLOY-MANIFEST.txt was changed"
    tops = sorted({str(a).split("/", 1)[0] for a in verify["added"] if str(a).count("/") <= 1 and str(a).endswith("/")})[:5]
    if tops:
        said += f"; if the application writes there at run time, make it a shared path: target.shared = {json.dumps(tops)}"
    return said


def _db_result(cfg: Config, check: Check) -> dict[str, Any]:
    from .db import check as dbcheck

    t0 = time.monotonic()
    status, detail, data = PASSED, "", {}
    try:
        with progress.task(f"G6 smoke: {check.name}"), _database(cfg, check) as (dsn, where):
            data = dbcheck.run(check, dsn, baseline=_baseline_finder(cfg))
            data["database"] = where
            detail = (
                f"{where}; {len(data['statements'])} statements read-only, counts {data['counts_before']} unchanged; "
                f"role {data['role']}; grant matrix {data['grant_matrix_sha256']}"
            )
    except dbcheck.CheckFailed as exc:
        status, detail, data = FAILED, exc.message, exc.data
    except RefusedError as exc:
        status, detail = REFUSED, exc.message
    except ConfigError:
        raise
    except ReleaseError as exc:
        status, detail = FAILED, exc.message + (f"\n{exc.detail}" if exc.detail else "")
    if "grants" in data:
        data["grant_matrix"] = data.pop("grants")
    return {
        "name": check.name,
        "kind": check.kind,
        "status": status,
        "duration": round(time.monotonic() - t0, 3),
        "detail": detail,
        "data": data,
    }


def database_ready(cfg: Config) -> list[Check]:
    """The G6 checks of the config, each query through layer 1 and each DSN variable set,
    before anything runs anywhere (exit 2 naming what is missing)."""
    checks = [c for c in cfg.checks if c.kind == "db-readonly"]
    if checks:
        from .db import check as dbcheck
    for c in checks:
        dbcheck.validate_queries(c)
        if not dbcheck.dsn_from_env(c) and not c.options.get("demo"):
            raise ConfigError(
                f"environment variable {c.options['dsn_env']} is not set (smoke check {c.name!r})",
                hint=f"export {c.options['dsn_env']} with the read-only role's DSN",
            )
    return checks


def database(cfg: Config) -> list[dict[str, Any]]:
    """G6 here, once: every read-only database check of the config (the fleet's smoke and the
    Ansible collection's dbcheck run it this way)."""
    return [_db_result(cfg, c) for c in database_ready(cfg)]


def refuse_live(mode: str) -> None:
    """Only DRYRUN runs: LIVE is refused (exit 4) before anything else happens."""
    if mode != "dryrun":
        raise RefusedError("smoke --mode live refused: a smoke never writes (Mode.LIVE is refused)", hint="run the default --mode dryrun")


def request(cfg: Config, record: dict[str, Any], checks: list[Check]) -> SmokeRequest:
    """The target's half of a smoke (G5): its checks as the agent runs them (the Ansible
    collection's smoke sends the same)."""
    return {
        "root": record["root"],
        "target": record["target"],
        "python": cfg.python,
        "tree_sha256": record.get("tree_sha256"),
        "manifest_sha256": record.get("manifest_sha256", ""),
        "checks": [{"kind": c.kind, "name": c.name, "timeout": c.timeout, "options": dict(c.options)} for c in checks],
    }


def run(cfg: Config, record: dict[str, Any], mode: str = "dryrun", *, db: bool = True, write: bool = True) -> StageResult:
    """Smoke one deployed release. ``db=False`` leaves out the G6 checks (a fleet runs them
    once); ``write=False`` returns the report without writing it (a fleet writes one)."""
    refuse_live(mode)
    if not cfg.checks:
        raise ConfigError("no smoke checks configured", hint="add [[smoke.check]] tables to the config")
    if db:
        database_ready(cfg)
    target_checks = [c for c in cfg.checks if c.kind != "db-readonly"]
    results: dict[int, dict[str, Any]] = {}
    started = utc_stamp()
    if target_checks:
        with progress.task(f"G5 smoke: {len(target_checks)} checks on {record['host']}"):
            req = request(cfg, record, target_checks)
            try:
                # the op's deadline: the operator's, and never shorter than its checks' own
                deadline = max(cfg.op_timeout, sum(c.timeout for c in target_checks) + 120)
                answer: dict[str, Any] = dict(for_config(cfg).smoke(req, timeout=deadline))
            except ReleaseError as exc:
                if exc.exit_code != 1:
                    raise
                # an unexpected error on the target: reported with its traceback, not lost
                answer = _agent_failed(target_checks, exc)
        it = iter(answer["results"])
        for i, c in enumerate(cfg.checks):
            if c.kind != "db-readonly":
                results[i] = next(it)
        verify = answer["verify"]
        results[len(cfg.checks)] = {
            "name": "tree-unchanged",
            "kind": "verify",
            "status": PASSED if verify["clean"] else FAILED,
            "duration": 0.0,
            "detail": "the deployed tree still matches its manifest" if verify["clean"] else _tree_changed(verify),
            "data": {},
        }
    for i, c in enumerate(cfg.checks):
        if c.kind == "db-readonly" and db:
            results[i] = _db_result(cfg, c)
    ordered = [results[k] for k in sorted(results)]
    report = {
        "stage": "smoke",
        "mode": "DRYRUN",
        "deploy_id": record["deploy_id"],
        "target": f"{record['host']}:{record['target']}",
        "version": record.get("version"),
        "head": record.get("head"),
        "started": started,
        "finished": utc_stamp(),
        "checks": ordered,
    }
    code, failed = verdict(ordered)
    if not write:
        return StageResult(report, "", code, failed)
    folder = write_report(cfg, report)
    State(cfg.state).audit("smoke", deploy_id=record["deploy_id"], target=report["target"], result=f"exit {code}", report=str(folder))
    return StageResult({**report, "report": str(folder)}, summary_table(ordered, folder), code, failed)


def verdict(checks: list[dict[str, Any]]) -> tuple[int, str]:
    """The smoke's exit code (4 when a check was refused, 1 when one did not pass) and the
    line naming every check that did not pass."""
    statuses = {c["status"] for c in checks}
    code = 4 if REFUSED in statuses else (1 if statuses - {PASSED} else 0)
    bad = [f"{c['name']} ({c['status']}): {c['detail'].splitlines()[0] if c['detail'] else ''}" for c in checks if c["status"] != PASSED]
    return code, "; ".join(bad)


def _agent_failed(checks: list[Check], exc: ReleaseError) -> dict[str, Any]:
    detail = exc.message + (f"\n{exc.detail}" if exc.detail else "")
    results = [{"name": c.name, "kind": c.kind, "status": "error", "duration": 0.0, "detail": detail, "data": {}} for c in checks]
    verify = {"clean": False, "added": [], "changed": [], "removed": [], "deploy_manifest_intact": True}
    return {"results": results, "verify": verify}


def write_report(cfg: Config, report: dict[str, Any]) -> Path:
    base = private_dir(cfg.state / "reports")
    folder: Path = base / str(report["started"])
    n = 1
    while True:
        try:
            folder.mkdir(mode=0o700)
            break
        except FileExistsError:
            n += 1
            folder = base / f"{report['started']}-{n}"
    clean = cast(dict[str, Any], redact_obj(report))
    (folder / "report.json").write_text(json.dumps(clean, indent=1, sort_keys=True) + "\n")
    (folder / "junit.xml").write_bytes(junit(clean))
    return folder


def junit(report: dict[str, Any]) -> bytes:
    from xml.etree import ElementTree as ET  # only here: every fleet command imports this module

    checks = report["checks"]
    suite = ET.Element(
        "testsuite",
        name=f"smoke {report.get('version')} {report.get('deploy_id')}",
        tests=str(len(checks)),
        failures=str(sum(c["status"] != PASSED for c in checks)),
        time=str(round(sum(c["duration"] for c in checks), 3)),
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"smoke.{c['kind']}", name=c["name"], time=str(c["duration"]))
        if c["status"] != PASSED:
            fail = ET.SubElement(case, "failure", message=f"{c['status']}: {(c['detail'] or '').splitlines()[0] if c['detail'] else ''}")
            fail.text = c["detail"]
        elif c["detail"]:
            ET.SubElement(case, "system-out").text = c["detail"]
    return bytes(ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def summary_table(results: list[dict[str, Any]], folder: Path) -> str:
    lines = [f"{'check':<18} {'kind':<12} {'status':<8} {'time':>7}  detail"]
    for r in results:
        first = (r["detail"] or "").strip().splitlines()
        lines.append(f"{r['name']:<18} {r['kind']:<12} {r['status'].upper():<8} {r['duration']:6.2f}s  {redact(first[0][:100]) if first else ''}")
        if r["status"] != PASSED:  # the end of what it said (the whole is in the report)
            lines += [f"    {redact(line[:200])}" for line in first[1:][-TABLE_TAIL:]]
    lines.append(f"report: {folder}/report.json  junit: {folder}/junit.xml")
    return "\n".join(lines)


def cli(cfg: Config, options: Options) -> StageResult:
    refuse_live(options.mode)
    record = State(cfg.state).pick(options.deploy_id)
    return run(cfg, record, options.mode)
