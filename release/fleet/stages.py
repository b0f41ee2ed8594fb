"""Fleets: one release to many hosts, in parallel and in waves, with exact fleet-wide undo.

A fleet is ``target.hosts`` or an inventory group (``inventory``); ``--limit`` narrows it.
Every host is worked on by the same single-host code that `deploy`, `smoke`, `verify`,
`status`, `rollback` and `promote` use for one target, with that host's own state folder
(``.release/hosts/<host>/``: records, reconciliation, audit), so every safety property of
one host holds on each. This module adds what a fleet needs:

- one bundle and one deploy id for the whole fleet, recorded per host and in
  ``.release/fleet/<deploy_id>.json`` (which hosts hold the release);
- ``fleet.forks`` hosts at once, at most 10 new SSH connections at a time (sshd's default
  ``MaxStartups``), one shared OpenSSH connection per host for all of a stage's calls;
- all or nothing: when more than ``fleet.max_fail_percentage`` of the hosts fail, every
  host where the release landed is rolled back exactly, and the command exits 1 naming
  each failed host and why (unreachable, disk full, refused, connection lost, ...);
- ``promote`` in waves (``fleet.serial``): each wave's hosts are smoked (tree check
  included), then switched; a wave that fails beyond the threshold stops the promotion
  and every host switched so far points back to its previous release.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import deploy as deploy_stage
from .. import names, proc, progress, reconcile, service, smoke
from .. import rollback as rollback_stage
from ..config import Config
from ..errors import BlockedError, ConfigError, OutcomeUnknownError, ReleaseError, UnhealthyError
from ..remote.client import Agent
from ..remote.transport import SshTransport, for_config
from ..stage import Handler, Options, StageResult
from ..state import State, Status, now_iso, private_dir, write_json
from . import inventory

if TYPE_CHECKING:  # the request shapes, for the type checker only
    from ..agent.messages import RepointRequest

MAX_NEW_CONNECTIONS = 10  # sshd's default MaxStartups: never more unauthenticated connections at once
CONNECT_GATE = threading.Semaphore(MAX_NEW_CONNECTIONS)


class FleetStatus(StrEnum):
    """Where a fleet record (``.release/fleet/<deploy_id>.json``) stands: a closed set."""

    STARTED = "started"  # written before any host was touched: a run interrupted or killed left it
    DEPLOYED = "deployed"
    PARTIAL = "partial"  # on some hosts: failures within max_fail_percentage, or a --limit rollback
    UNDO_FAILED = "undo-failed"  # the all-or-nothing undo did not reach every host: rollback only
    ROLLED_BACK = "rolled-back"


# the fleet records a stage may act on (the newest of them), rollback included
LIVE_FLEET = frozenset({FleetStatus.DEPLOYED, FleetStatus.PARTIAL, FleetStatus.STARTED, FleetStatus.UNDO_FAILED})


@dataclass
class Outcome:
    host: str
    ok: bool
    result: Mapping[str, Any] | None = None
    error: ReleaseError | None = None
    seconds: float = 0.0

    @property
    def reason(self) -> str:
        return reason(self.error) if self.error else ""


def reason(exc: ReleaseError) -> str:
    """Why a host failed, in one word or two (its error class's kind, set where it was
    raised), then the message."""
    return f"{exc.kind}: {exc.message}"


def host_config(cfg: Config, host: inventory.Host) -> Config:
    """The single-target config of one fleet host (its own state folder and connection
    options): ssh is given what Ansible gives it, the host's ``ansible_host`` (else its name)
    as the destination, ``ansible_port`` and ``ansible_user`` as options, so an ssh_config
    written for Ansible applies as it does there; records and messages use the inventory
    name."""
    opts: list[str] = []
    if host.port:
        opts += ["-p", str(host.port)]
    if host.user:
        opts += ["-l", host.user]
    opts += host.ssh_args
    return cfg._replace(
        host=host.name,
        connect_to=host.address,  # Ansible's rule: ansible_host is what ssh is given (an ssh_config is keyed by it)
        python=host.python or cfg.python,
        state=cfg.state / "hosts" / host.name,
        ssh_options=tuple(opts),
        local=host.local,  # ansible_connection=local: this machine, no ssh
        hosts=(),
        host_names=(),
        inventory_path="",
    )


def resolve(cfg: Config, pattern: str | None) -> Config:
    """The fleet's hosts (``target.hosts``, or the inventory's group, read once here), with
    ``--limit`` applied."""
    if not cfg.is_fleet:
        raise ConfigError("--limit needs a fleet (target.hosts or target.inventory)", hint="remove --limit, or configure target.hosts")
    inv = inventory.load(Path(cfg.inventory_path)) if cfg.inventory_path else None
    hosts = tuple(inv.host(h) for h in inv.members(cfg.group)) if inv else tuple(inventory.Host(n) for n in cfg.host_names)
    if not pattern:
        return cfg._replace(hosts=hosts)
    chosen = set(inventory.select([h.name for h in hosts], inv, pattern))
    return cfg._replace(hosts=tuple(h for h in hosts if h.name in chosen))


def connect_soon(cfg: Config, hosts: tuple[inventory.Host, ...]) -> None:
    """Start opening every host's shared connection, at most MAX_NEW_CONNECTIONS at a time
    (sshd's MaxStartups); each host's first call waits for its own."""
    for h in hosts:
        t = for_config(host_config(cfg, h))
        if isinstance(t, SshTransport):
            t.connect_soon(CONNECT_GATE)


def run_all(cfg: Config, fn: Callable[[Config], Mapping[str, Any]], what: str, hosts: tuple[inventory.Host, ...] | None = None) -> list[Outcome]:
    """``fn(host_config)`` on every host, ``fleet.forks`` at a time; progress per host on stderr."""
    chosen = hosts if hosts is not None else cfg.hosts
    connect_soon(cfg, chosen)

    def one(h: inventory.Host) -> Outcome:
        hcfg = host_config(cfg, h)
        t0 = time.monotonic()
        try:
            result = fn(hcfg)
            progress.note(f"{h.name}: {what}: ok")
            return Outcome(h.name, True, result, None, time.monotonic() - t0)
        except ReleaseError as exc:
            progress.note(f"{h.name}: {what}: {reason(exc)}")
            return Outcome(h.name, False, None, exc, time.monotonic() - t0)
        except Exception as exc:  # an answer this controller could not understand: that host's failure, never the fleet's
            proc.log.debug("%s: %s", h.name, "".join(traceback.format_exception(exc)))
            err = OutcomeUnknownError(
                f"{what} on {h.name}: outcome unknown: its answer could not be understood ({type(exc).__name__}: {str(exc)[:200]})",
                hint="inspect that host (`release status --limit HOST`); the next deploy or rollback reconciles it",
            )
            progress.note(f"{h.name}: {what}: {reason(err)}")
            return Outcome(h.name, False, None, err, time.monotonic() - t0)

    ex = ThreadPoolExecutor(max_workers=max(1, min(cfg.fleet.forks, len(chosen))))
    futures = [ex.submit(one, h) for h in chosen]
    try:
        return [f.result() for f in futures]
    except BaseException:  # Ctrl-C: no other host starts; the hosts in flight get a bounded wait
        _interrupted(futures)
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        ex.shutdown(wait=True)


INTERRUPT_GRACE = 10.0  # seconds the hosts in flight get to answer after an interrupt


def _interrupted(futures: list[Any]) -> None:
    """After an interrupt: cancel the queued hosts, give those in flight ``INTERRUPT_GRACE``
    seconds (a second Ctrl-C ends the wait), then stop their agents' connections: their
    outcomes are unknown, settled by the next rollback or deploy (the fleet record says the
    run never finished)."""
    from concurrent.futures import wait

    for f in futures:
        f.cancel()
    running = [f for f in futures if not f.done()]
    if running:
        progress.note(f"interrupted: no other host starts; waiting up to {INTERRUPT_GRACE:g} s for the {len(running)} in flight (Ctrl-C again: stop now)")
        try:
            wait(running, timeout=INTERRUPT_GRACE)
        except KeyboardInterrupt:
            pass
    if any(not f.done() for f in futures):
        stopped = proc.stop_children()
        progress.note(f"interrupted: stopped {stopped} connections still in flight; their outcome is unknown")
        try:
            wait(futures, timeout=INTERRUPT_GRACE)
        except KeyboardInterrupt:
            pass


def too_many(failed: int, total: int, max_fail_percentage: float) -> bool:
    return total > 0 and failed * 100.0 / total > max_fail_percentage


def _table(title: str, outcomes: list[Outcome], ok_text: Callable[[Mapping[str, Any]], str]) -> str:
    lines = [title, f"{'host':<20} {'result':<8} {'time':>7}  detail"]
    for o in outcomes:
        detail = ok_text(o.result or {}) if o.ok else o.reason
        lines.append(f"{o.host:<20} {'OK' if o.ok else 'FAILED':<8} {o.seconds:6.1f}s  {detail}")
    return "\n".join(lines)


def _record(cfg: Config, deploy_id: str, doc: dict[str, Any]) -> Path:
    folder = private_dir(cfg.state / "fleet")
    path = folder / f"{deploy_id}.json"
    write_json(path, {"deploy_id": deploy_id, "updated": now_iso(), **doc})
    return path


def _fleet_records(cfg: Config) -> list[dict[str, Any]]:
    import json

    folder = cfg.state / "fleet"
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(p.read_text()))
        except ValueError:
            continue
    return sorted(out, key=lambda r: str(r.get("deploy_id")))


def _holders(cfg: Config, deploy_id: str) -> tuple[dict[str, Any], tuple[inventory.Host, ...]]:
    """The fleet record of ``deploy_id`` and the (limited) hosts that hold its release."""
    doc = next((r for r in _fleet_records(cfg) if r.get("deploy_id") == deploy_id), {})
    if not doc or doc.get("status") == FleetStatus.STARTED:  # no record, or a run that never finished: every host may hold it
        return doc, cfg.hosts
    landed = set(doc.get("landed") or [h.name for h in cfg.hosts])
    return doc, tuple(h for h in cfg.hosts if h.name in landed)


def _pick_fleet_id(cfg: Config, explicit: str | None, *, unfinished_ok: bool = False) -> str:
    """The fleet deploy a stage acts on: ``--deploy-id``, else the newest live one. A deploy
    that never finished (interrupted or killed) is rollback's to undo; any other stage
    refuses it rather than act on some hosts, or on an older deploy."""
    if explicit:
        return explicit
    live = [r for r in _fleet_records(cfg) if r.get("status") in LIVE_FLEET]
    if not live:
        raise BlockedError(f"no fleet deploy to act on in {cfg.state / 'fleet'}", hint="deploy first, or pass --deploy-id")
    newest = live[-1]
    if newest.get("status") == FleetStatus.STARTED and not unfinished_ok:
        raise BlockedError(
            f"fleet deploy {newest['deploy_id']} never finished (interrupted or killed)",
            hint="undo it with `release rollback`, then deploy again; or pass --deploy-id",
        )
    if newest.get("status") == FleetStatus.UNDO_FAILED and not unfinished_ok:
        raise BlockedError(
            f"fleet deploy {newest['deploy_id']} failed and its undo did not reach {', '.join(newest.get('landed') or [])}",
            hint="finish the undo with `release rollback` once those hosts answer; or pass --deploy-id",
        )
    return str(newest["deploy_id"])


# ----------------------------------------------------------------------------- stages


def _failed_hosts(outcomes: list[Outcome]) -> str:
    return "; ".join(f"{o.host} ({o.reason})" for o in outcomes if not o.ok)


def _per_host(outcomes: list[Outcome]) -> dict[str, Any]:
    return {o.host: (dict(o.result) if o.result is not None else {"error": o.reason}) for o in outcomes}


def deploy(cfg: Config, options: Options) -> StageResult:
    first = host_config(cfg, cfg.hosts[0])
    plan, chosen = deploy_stage.prepare(first, options.bundle)
    deploy_stage.check_before(first, plan, chosen, no_plan=options.no_plan)

    def one(hcfg: Config) -> Mapping[str, Any]:
        return deploy_stage.run(hcfg, dataclasses.replace(plan, host=hcfg.host), for_config(hcfg), break_lock=options.break_lock, sums=chosen.sums).data

    doc: dict[str, Any] = {"bundle": Path(plan.bundle).name, "version": plan.version, "head": plan.head, "hosts": [h.name for h in cfg.hosts]}
    # written before any host is touched: a run killed or interrupted midway leaves a
    # "started" record, which status shows and rollback undoes on every host it reached
    _record(cfg, plan.deploy_id, {**doc, "status": FleetStatus.STARTED.value})
    outcomes = run_all(cfg, one, "deploy")
    failed = [o for o in outcomes if not o.ok]
    landed = [o.host for o in outcomes if o.ok]
    doc.update(landed=landed, failed={o.host: o.reason for o in failed})
    out: dict[str, Any] = {"stage": "deploy", "deploy_id": plan.deploy_id, "hosts": _per_host(outcomes)}
    text = _table(
        f"deploy {plan.name} {plan.version} ({plan.head[:12]}) to {len(outcomes)} hosts, deploy_id {plan.deploy_id}", outcomes, lambda r: r.get("target", "")
    )
    if failed and too_many(len(failed), len(outcomes), cfg.fleet.max_fail_percentage):
        undo = _undo_deploy(cfg, plan.deploy_id, [o.host for o in outcomes if o.ok or isinstance(o.error, OutcomeUnknownError)])
        # a host whose undo failed, or whose outcome is unknown, may still hold the release
        # until it says otherwise: it stays a holder, and the record stays live for rollback
        still = sorted(h for h, r in undo.items() if r.startswith("undo failed"))
        status = FleetStatus.ROLLED_BACK.value if not still else FleetStatus.UNDO_FAILED.value
        doc.update(status=status, undo=undo, landed=still)
        _record(cfg, plan.deploy_id, doc)
        out.update(status=status, failed_hosts=doc["failed"], undo=undo)
        limit = f"max_fail_percentage {cfg.fleet.max_fail_percentage:g}"
        done = (
            "the release was rolled back on every host where it landed"
            if not still
            else f"the undo failed on {', '.join(still)}, which may still hold the release: run `release rollback` once they answer"
        )
        why = f"{len(failed)} of {len(outcomes)} hosts failed ({limit}): {_failed_hosts(outcomes)}; {done}"
        return StageResult(out, text + "\nundo: " + ", ".join(f"{h}: {r}" for h, r in undo.items()), 1, why)
    status = FleetStatus.DEPLOYED.value if not failed else FleetStatus.PARTIAL.value
    doc["status"] = status
    _record(cfg, plan.deploy_id, doc)
    out.update(status=status, landed=landed, failed_hosts=doc["failed"])
    return StageResult(out, text + (f"\nthe release is on {len(landed)} of {len(outcomes)} hosts (within max_fail_percentage)" if failed else ""))


def _undo_deploy(cfg: Config, deploy_id: str, hosts: list[str]) -> dict[str, str]:
    """Roll back ``deploy_id`` exactly on each of ``hosts`` (its outcome settled first)."""
    chosen = tuple(h for h in cfg.hosts if h.name in hosts)

    def one(hcfg: Config) -> dict[str, Any]:
        state = State(hcfg.state)
        transport = for_config(hcfg)
        reconcile.settle(hcfg, state, transport, running_ok=False)
        record = state.load(deploy_id)
        if record.get("status") != Status.DEPLOYED:
            return {"undo": f"nothing to undo ({record.get('status')})"}
        res = rollback_stage.run(hcfg, record, transport)
        return {"undo": "rolled back" + ("" if res.get("parent_restored") else " (parent listing differs)")}

    return {o.host: (o.result or {}).get("undo", "") if o.ok else f"undo failed: {o.reason}" for o in run_all(cfg, one, "undo", chosen)}


def rollback(cfg: Config, options: Options) -> StageResult:
    if options.to_previous:  # every host's `current` back at its previous release, as its own journal says

        def back(hcfg: Config) -> Mapping[str, Any]:
            done = rollback_stage.to_previous(hcfg, for_config(hcfg), State(hcfg.state))
            if done.exit_code:
                raise UnhealthyError(done.failed, detail=done.text)
            return done.data

        outcomes = run_all(cfg, back, "rollback --to-previous")
        text = _table(f"rollback --to-previous on {len(outcomes)} hosts", outcomes, lambda r: str(r.get("current")))
        why = _failed_hosts(outcomes)
        return StageResult({"stage": "rollback", "to_previous": True, "hosts": _per_host(outcomes)}, text, 1 if why else 0, why)
    deploy_id = _pick_fleet_id(cfg, options.deploy_id, unfinished_ok=True)
    doc, holders = _holders(cfg, deploy_id)

    unfinished = doc.get("status") == FleetStatus.STARTED  # an interrupted deploy: a host may never have been reached

    def one(hcfg: Config) -> Mapping[str, Any]:
        state = State(hcfg.state)
        transport = for_config(hcfg)
        reconcile.settle(hcfg, state, transport, running_ok=False)
        if unfinished and not state.has(deploy_id):
            return {"nothing_here": True}  # the run stopped before this host
        record = state.load(deploy_id)
        if record.get("status") == Status.ROLLED_BACK:  # a rerun after a killed rollback: finish it and prove the parent
            return {**rollback_stage.run(hcfg, record, transport, break_lock=options.break_lock, again=True).data, "already": True}
        if unfinished and record.get("status") != Status.DEPLOYED:
            return {"nothing_here": True}  # settled: its release never landed here
        try:
            return rollback_stage.run(hcfg, record, transport, break_lock=options.break_lock, discard_added=options.discard_added).data
        except BlockedError:
            if state.load(deploy_id).get("status") == Status.ROLLED_BACK:  # found already removed: the rollback's goal holds
                return {"already": True}
            raise

    outcomes = run_all(cfg, one, "rollback", holders)

    def done(o: Outcome) -> bool:
        r = o.result or {}
        healthy = (r.get("service") or {}).get("ok", True)  # `current` went back to a release that does not serve: a failure
        return o.ok and bool((r.get("parent_restored") and r.get("pointer_restored", True) and healthy) or r.get("nothing_here"))

    failed = [o for o in outcomes if not done(o)]
    if doc:
        # the holders are the old holders less the hosts rolled back now (a --limit
        # rollback leaves the rest of the fleet's deploy live)
        before = list(doc.get("landed") or doc.get("hosts") or []) if doc.get("status") != FleetStatus.STARTED else list(doc.get("hosts") or [])
        undone = {o.host for o in outcomes if o.ok}
        remaining = [h for h in before if h not in undone]
        left = FleetStatus.UNDO_FAILED if doc.get("status") == FleetStatus.UNDO_FAILED else FleetStatus.PARTIAL
        _record(cfg, deploy_id, {**doc, "status": (FleetStatus.ROLLED_BACK if not remaining else left).value, "landed": remaining})
    out = {"stage": "rollback", "deploy_id": deploy_id, "hosts": _per_host(outcomes)}
    text = _table(f"rollback of {deploy_id} on {len(outcomes)} hosts", outcomes, _rollback_text)
    if failed:
        return StageResult(out, text, 1, "; ".join(f"{o.host} ({o.reason or _rollback_text(o.result or {})})" for o in failed))
    return StageResult(out, text)


def _rollback_text(result: Mapping[str, Any]) -> str:
    if result.get("already"):
        return "already rolled back" + ("" if result.get("parent_restored") else "; parent listing differs")
    if result.get("nothing_here"):
        return "the interrupted deploy never reached it"
    if result.get("removed_root"):
        return "root removed: create_root made it, and it held no other release"
    said = "root back to its pre-deploy state" if result.get("parent_restored") else "parent listing differs"
    up = result.get("service")
    if up:
        said += f"; current back at {up['release']}: " + ("healthy" if up["ok"] else f"NOT healthy ({service.why_failed(up)})")
    return said


def _smoke_host(hcfg: Config, deploy_id: str) -> Mapping[str, Any]:
    """One host's G5 smoke of ``deploy_id`` (tree check included; the database is checked once
    for the fleet); raises when a check did not pass."""
    report = smoke.run(hcfg, State(hcfg.state).load(deploy_id), "dryrun", db=False, write=False)
    if report.exit_code:
        bad = [f"{c['name']}: {c['detail'].splitlines()[0] if c['detail'] else ''}" for c in report["checks"] if c["status"] != smoke.PASSED]
        raise SmokeFailed("; ".join(bad), report.data)
    return report.data


class SmokeFailed(ReleaseError):
    def __init__(self, message: str, report: Mapping[str, Any]) -> None:
        super().__init__(f"smoke failed: {message}")
        self.report = report


def smoke_stage(cfg: Config, options: Options) -> StageResult:
    smoke.refuse_live(options.mode)
    deploy_id = _pick_fleet_id(cfg, options.deploy_id)
    doc, holders = _holders(cfg, deploy_id)
    results: dict[str, Mapping[str, Any]] = {}

    def one(hcfg: Config) -> Mapping[str, Any]:
        try:
            results[hcfg.host] = _smoke_host(hcfg, deploy_id)
        except SmokeFailed as exc:
            results[hcfg.host] = exc.report
            raise
        return results[hcfg.host]

    outcomes = run_all(cfg, one, "smoke", holders)
    checks: list[dict[str, Any]] = []
    for o in outcomes:
        rep = results.get(o.host)
        if rep is None:
            checks.append(
                {"name": f"{o.host}: reachable", "kind": "host", "status": smoke.FAILED, "duration": o.seconds, "detail": o.reason, "data": {}, "host": o.host}
            )
            continue
        checks += [{**c, "name": f"{o.host}: {c['name']}", "host": o.host} for c in rep["checks"]]
    db_checks = [c for c in cfg.checks if c.kind == "db-readonly"]
    if db_checks:  # the database is checked once, not per host: through the first reachable host
        reachable = [o.host for o in outcomes if results.get(o.host) is not None] or [h.name for h in holders]
        first = host_config(cfg, next(h for h in cfg.hosts if h.name == reachable[0]))
        for c in db_checks:
            checks.append({**smoke._db_result(first, c), "host": first.host})
    report = {
        "stage": "smoke",
        "mode": "DRYRUN",
        "deploy_id": deploy_id,
        "target": "fleet: " + ", ".join(h.name for h in holders),
        "version": doc.get("version"),
        "head": doc.get("head"),
        "started": names.utc_stamp(),
        "finished": names.utc_stamp(),
        "checks": checks,
    }
    folder = smoke.write_report(cfg, report)
    code, failed = smoke.verdict(checks)
    return StageResult({**report, "report": str(folder)}, smoke.summary_table(checks, folder), code, failed)


def verify(cfg: Config, options: Options) -> StageResult:
    from .. import status as status_stage

    deploy_id = _pick_fleet_id(cfg, options.deploy_id)

    def one(hcfg: Config) -> Mapping[str, Any]:
        res = status_stage.verify_cli(hcfg, Options(deploy_id=deploy_id))
        if res.exit_code:
            raise ReleaseError(f"drift: added {res['added'][:3]} changed {res['changed'][:3]} removed {res['removed'][:3]}")
        return res.data

    outcomes = run_all(cfg, one, "verify")
    out = {"stage": "verify", "deploy_id": deploy_id, "hosts": _per_host(outcomes)}
    text = _table(f"verify {deploy_id} on {len(outcomes)} hosts", outcomes, lambda r: f"clean ({r.get('files')} files)")
    failed = _failed_hosts(outcomes)
    return StageResult(out, text, 1 if failed else 0, failed)


def status(cfg: Config, options: Options) -> StageResult:
    from .. import status as status_stage

    outcomes = run_all(cfg, lambda hcfg: status_stage.cli(hcfg, options).data, "status")
    out: dict[str, Any] = {"stage": "status", "hosts": _per_host(outcomes), "fleet": _fleet_records(cfg)}
    text = _table(
        f"status of {len(outcomes)} hosts",
        outcomes,
        lambda r: f"{len(r.get('releases', []))} releases; {r.get('current', 'none')}",
    )
    for rec in out["fleet"]:
        if rec.get("status") == FleetStatus.STARTED:
            never = f"fleet deploy {rec.get('deploy_id')} never finished (interrupted or killed)"
            text += f"\n{never}: `release rollback` undoes it on every host it reached"
        elif rec.get("status") == FleetStatus.UNDO_FAILED:
            text += (
                f"\nfleet deploy {rec.get('deploy_id')} failed and its undo did not reach {', '.join(rec.get('landed') or [])}:"
                " `release rollback` finishes it once they answer"
            )
    failed = _failed_hosts(outcomes)
    return StageResult(out, text, 1 if failed else 0, failed)


def waves(hosts: list[inventory.Host], serial: tuple[int | str, ...]) -> list[list[inventory.Host]]:
    """Split hosts into promotion waves: counts or percentages of the fleet; the last repeats."""
    if not serial:
        return [hosts]
    out: list[list[inventory.Host]] = []
    i, k = 0, 0
    while i < len(hosts):
        spec = serial[min(k, len(serial) - 1)]
        size = int(spec) if isinstance(spec, int) else max(1, math.floor(len(hosts) * int(spec[:-1]) / 100))
        out.append(hosts[i : i + size])
        i += size
        k += 1
    return out


def promote(cfg: Config, options: Options) -> StageResult:
    from .. import promote as promote_stage

    promote_stage.require_timestamped(cfg)
    deploy_id = _pick_fleet_id(cfg, options.deploy_id)
    _, held = _holders(cfg, deploy_id)
    holders = list(held)
    switched: dict[str, Any] = {}  # host -> previous `current` (None: there was none)
    unknown: set[str] = set()  # hosts whose promote answer was lost
    lines: list[str] = []
    all_outcomes: list[Outcome] = []
    for n, wave in enumerate(waves(holders, cfg.fleet.serial), 1):

        def one(hcfg: Config) -> Mapping[str, Any]:
            _smoke_host(hcfg, deploy_id)  # the wave's gate
            done = promote_stage.cli(hcfg._replace(keep=0), Options(deploy_id=deploy_id))  # target.keep: once every wave passed
            if done.exit_code:  # not healthy: the host went back by itself (its pointer is not ours to revert)
                raise UnhealthyError(done.failed, detail=done.text)
            return done.data

        outcomes = run_all(cfg, one, f"wave {n}", tuple(wave))
        all_outcomes += outcomes
        for o in outcomes:
            if o.ok and o.result is not None and not o.result.get("unchanged"):
                switched[o.host] = o.result.get("previous")
            elif isinstance(o.error, OutcomeUnknownError):
                unknown.add(o.host)  # it may have switched: its own record says
        failed = [o for o in outcomes if not o.ok]
        lines.append(_table(f"wave {n}: {', '.join(h.name for h in wave)}", outcomes, lambda r: f"current -> {r.get('current')}"))
        if failed and too_many(len(failed), len(outcomes), cfg.fleet.max_fail_percentage):
            reverted = _revert(cfg, deploy_id, switched, unknown)
            later = [h.name for w in waves(holders, cfg.fleet.serial)[n:] for h in w]
            return StageResult(
                {"stage": "promote", "deploy_id": deploy_id, "reverted": reverted, "untouched": later},
                "\n".join(
                    [*lines, "reverted: " + ", ".join(f"{h}: {r}" for h, r in reverted.items())] + ([f"never touched: {', '.join(later)}"] if later else [])
                ),
                1,
                f"wave {n} failed on {_failed_hosts(outcomes)}; every switched host points back to its previous release",
            )
    done = StageResult({"stage": "promote", "deploy_id": deploy_id, "hosts": _per_host(all_outcomes)}, "\n".join(lines))
    if not cfg.keep:
        return done
    pruned = prune(cfg, Options(keep=cfg.keep))
    return StageResult({**done.data, "pruned": pruned.data}, done.text + "\n" + pruned.text, pruned.exit_code, pruned.failed)


def prune(cfg: Config, options: Options) -> StageResult:
    """``release prune`` on every host: each host's own facts decide what goes (``retention``)."""
    from .. import prune as prune_stage

    keep = options.keep if options.keep is not None else cfg.keep
    if not keep:
        raise ConfigError("prune needs --keep N (or target.keep)", hint="release prune --keep 5 --dry-run")

    def one(hcfg: Config) -> Mapping[str, Any]:
        done = prune_stage.run(hcfg, keep, options.dry_run)
        if done.exit_code:
            raise ReleaseError(done.failed, detail=done.text)
        return done.data

    outcomes = run_all(cfg, one, "prune")

    def said(r: Mapping[str, Any]) -> str:
        gone = r.get("would_remove" if options.dry_run else "removed") or []
        return f"{'would remove' if options.dry_run else 'removed'} {len(gone)}, kept {len(r.get('kept') or {})}"

    text = _table(f"prune (keep {keep}){' dry run' if options.dry_run else ''} on {len(outcomes)} hosts", outcomes, said)
    why = _failed_hosts(outcomes)
    return StageResult({"stage": "prune", "keep": keep, "dry_run": options.dry_run, "hosts": _per_host(outcomes)}, text, 1 if why else 0, why)


def _revert(cfg: Config, deploy_id: str, switched: dict[str, Any], unknown: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """Point every switched host back; a host whose promote answer was lost is asked to go
    back by its own record (it wrote the pointer it replaced before switching)."""
    chosen = tuple(h for h in cfg.hosts if h.name in switched or h.name in unknown)

    def one(hcfg: Config) -> Mapping[str, Any]:
        state = State(hcfg.state)
        record = state.load(deploy_id)
        from_host = hcfg.host not in switched
        req: RepointRequest = {"root": record["root"], "deploy_id": deploy_id, "to": switched.get(hcfg.host), "from_host": from_host, "undo": True}
        if hcfg.service:
            req["service"] = hcfg.service.spec()
        answer = Agent(for_config(hcfg)).repoint(req)
        record.pop("promotion", None)
        state.save(record)
        up = answer.get("service")
        said = str(answer.get("current")) + ("" if up is None else " (healthy)" if up["ok"] else f" (NOT healthy: {service.why_failed(up)})")
        state.audit("promote --revert", deploy_id=deploy_id, target=record["target"], result=said)
        return {"current": said}

    return {o.host: str((o.result or {}).get("current")) if o.ok else f"revert failed: {o.reason}" for o in run_all(cfg, one, "revert", chosen)}


def bundle(cfg: Config, options: Options) -> StageResult:
    """One bundle for the fleet (an environment is resolved for the first host's interpreter;
    deploy checks every host's interpreter against it)."""
    from .. import bundle as bundle_stage

    return bundle_stage.cli(host_config(cfg, cfg.hosts[0])._replace(state=cfg.state), options)


class GateNotPassed(ReleaseError):
    """A host whose plan a gate blocked (exit 3) or refused as unsafe (exit 4)."""

    kind = "blocked"

    def __init__(self, message: str, gates: Mapping[str, Any], unsafe: bool) -> None:
        super().__init__(message)
        self.gates = gates
        self.exit_code = 4 if unsafe else 3
        self.kind = "unsafe" if unsafe else "blocked"


def plan(cfg: Config, options: Options) -> StageResult:
    """The plan of every host (G3 per host): each host's row says PASS or the gate that
    stopped it (never "ok" for a host that will be blocked); the lock is written only if
    every host passes, else the exit code is the gates' (3 blocked, 4 unsafe)."""
    from .. import gates as gate_rules
    from .. import plan as plan_stage

    def one(hcfg: Config) -> Mapping[str, Any]:
        computed = plan_stage.compute(hcfg)
        stopped = {g: v for g, v in (computed.get("gates") or {}).items() if v["verdict"] != gate_rules.PASS and g != "G2 plan"}
        if stopped:
            why = "; ".join(f"{g}: {v['verdict']}: {v['reason']}" for g, v in stopped.items())
            raise GateNotPassed(why, computed.get("gates") or {}, any(v["verdict"] == gate_rules.UNSAFE for v in stopped.values()))
        return computed

    outcomes = run_all(cfg, one, "plan")
    gates = {o.host: (o.result or {}).get("gates") if o.ok else getattr(o.error, "gates", None) for o in outcomes}
    text = _table(f"plan for {len(outcomes)} hosts", outcomes, lambda r: "PASS: every gate")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        code = 4 if any(o.error is not None and o.error.exit_code == 4 for o in failed) else 3
        return StageResult({"stage": "plan", "hosts": gates}, text + "\nno plan locked: a host did not pass", code, _failed_hosts(outcomes))
    first = host_config(cfg, cfg.hosts[0])._replace(state=cfg.state)
    single = plan_stage.cli(first, options)
    return single.replace(text=single.text + "\n" + text).with_data(hosts=gates)


# the stages that change hosts and write the fleet's records: one at a time per state folder
CHANGING_STAGES = frozenset({"deploy", "rollback", "promote", "prune"})


def fleet_lock(cfg: Config, stage: str, break_lock: bool) -> Any:
    """The controller's fleet lock (``<state>/fleet/.release-lock``: host, pid and start time,
    the agent's own lock): a second deploy, rollback or promote of the same fleet from another
    shell is refused (exit 4) while the first runs, so no record is written from a stale
    read. A holder on this machine whose process is gone is broken without asking; one of
    another machine only with --break-lock."""
    from ..agent.lock import Lock, _alive, read_lock
    from ..agent.protocol import _hostname

    folder = private_dir(cfg.state / "fleet")
    holder = read_lock(str(folder))
    if holder and holder.get("host") == _hostname():
        try:
            dead = not _alive(int(holder.get("pid", -1)), str(holder.get("started", "")))
        except (TypeError, ValueError):
            dead = True
        break_lock = break_lock or dead
    return Lock(str(folder), "fleet", stage, break_lock, cfg.lock_wait)


def locked(stage: str, fn: Handler) -> Handler:
    def run(cfg: Config, options: Options) -> StageResult:
        from ..agent import AgentError
        from ..errors import from_exit_code

        try:
            lock = fleet_lock(cfg, stage, options.break_lock)
            lock.__enter__()
        except AgentError as exc:
            raise from_exit_code(exc.code, f"fleet {stage}: {exc.message}", hint=exc.hint) from None
        try:
            return fn(cfg, options)
        finally:
            lock.__exit__(None, None, None)

    return run


HANDLERS: dict[str, Handler] = {
    "bundle": bundle,
    "plan": plan,
    "deploy": locked("deploy", deploy),
    "rollback": locked("rollback", rollback),
    "smoke": smoke_stage,
    "verify": verify,
    "status": status,
    "promote": locked("promote", promote),
    "prune": locked("prune", prune),
}
