"""Stage ``rollback``: remove exactly what a deploy created, prove the parent is back.

The folder is removed only if the controller's record and the target's
DEPLOY-MANIFEST.txt name the same deploy id and the manifest says the folder did not
pre-exist. It is first renamed to a private trash name (atomic), then deleted without
following symlinks. With the timestamped strategy a `current` pointer aimed at the
release is restored to its previous target first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import reconcile, service
from .config import Config
from .errors import AbsentError, BlockedError, ReleaseError
from .remote.client import Agent
from .remote.transport import Transport, for_config
from .stage import Options, StageResult
from .state import State, Status, now_iso

if TYPE_CHECKING:  # the request shapes, for the type checker only
    from .agent.messages import RepointRequest, RollbackRequest


def run(
    cfg: Config,
    record: dict[str, Any],
    transport: Transport,
    *,
    break_lock: bool = False,
    discard_added: bool = False,
    again: bool = False,
    journal_event: str = "",
    from_host: bool = False,
) -> StageResult:
    """Roll back ``record`` on the target. ``again``: a record already rolled back is sent
    once more, so a rollback killed after it removed the release finishes what the deploy
    made around it (a parent folder it created) and proves the parent restored."""
    state = State(cfg.state)
    if record.get("status") == Status.ROLLED_BACK and not again:
        raise BlockedError(f"deploy {record['deploy_id']} was already rolled back", hint="nothing to do")
    if record.get("status") == Status.ROLLED_BACK:
        record = {**record, "status": Status.DEPLOYED.value}
    if record.get("status") != Status.DEPLOYED:
        raise BlockedError(
            f"deploy {record['deploy_id']} is {record.get('status')!r}: its release is not on the target, so there is nothing of it to roll back",
            hint="`release status` lists the deploys",
        )
    req: RollbackRequest = {
        "root": record["root"],
        "target": record["target"],
        "deploy_id": record["deploy_id"],
        "previous_current": (record.get("promotion") or {}).get("previous"),
        "remove_parent_if_empty": record.get("parent_existed") is False,
        "parent_existed": record.get("parent_existed", True),
        "parent_listing_sha256_before": record.get("parent_listing_sha256_before", ""),
        "manifest_sha256": record.get("manifest_sha256", ""),
        "tree_sha256": record.get("tree_sha256", ""),
        "names_sha256": record.get("names_sha256", ""),
        "discard_added": discard_added,
        "break_lock": break_lock,
    }
    if journal_event:
        req["journal_event"] = journal_event  # prune: the host's journal says "pruned"
    if from_host:
        req["from_host"] = True  # no record of this controller's: the host's own records describe the rollback
    if cfg.service and not journal_event:
        req["service"] = cfg.service.spec()  # `current` may go back to another release: restarted and checked there
    try:
        result = Agent(transport).rollback(req)
    except ReleaseError as exc:
        state.audit("rollback", deploy_id=record["deploy_id"], target=record["target"], result=f"failed (exit {exc.exit_code}): {exc.message}")
        if isinstance(exc, AbsentError) and not from_host:  # the target root itself is gone: so is the release
            record.update(status=Status.ROLLED_BACK.value, rolled_back=now_iso(), note="found already removed at rollback")
            state.save(record)
        raise
    record.update(status=Status.ROLLED_BACK.value, rolled_back=now_iso(), parent_listing_sha256_after=result["parent_listing_sha256_after"])
    state.save(record)
    ok = bool(result["parent_restored"])
    state.audit("rollback", deploy_id=record["deploy_id"], target=record["target"], result="removed" + ("" if ok else " (parent listing differs)"))
    text = (
        (
            f"{record['host']}:{result['removed']} was already removed (deploy {record['deploy_id']})"
            if result.get("already_removed")
            else f"removed {record['host']}:{result['removed']} (deploy {record['deploy_id']})"
        )
        + (" (finished an interrupted rollback)" if result.get("finished_interrupted") else "")
        + "\n"
        + (f"discarded {len(result['discarded'])} entries added after the deploy\n" if result.get("discarded") else "")
        + (
            "WARNING: its DEPLOY-MANIFEST.txt had been changed after the deploy (drift); the controller's record was trusted\n"
            if result.get("manifest_drift")
            else ""
        )
        + f"pointer: {result['pointer']}; now {result.get('current', 'none')}\n"
        f"parent listing sha256 before: {result['parent_listing_sha256_before']}\n"
        f"parent listing sha256 after:  {result['parent_listing_sha256_after']}\n"
        + (
            "parent folder is back to its pre-deploy state"
            if ok
            else "WARNING: the parent listing differs from its pre-deploy state: something else changed there since"
        )
        + (
            f"\nremoved the root target.create_root made, and the folders above it it made: {', '.join(result['removed_root'])}"
            if result.get("removed_root")
            else ""
        )
    )
    up = result.get("service")
    if up is not None:
        text += "\n" + "\n".join(service.render(up, "restarted"))
    elif cfg.service and result.get("pointer") != "untouched" and result.get("current") == "none":  # it pointed at the release, and nothing is left to point at
        text += "\nWARNING: `current` was removed with the release it pointed at: nothing was restarted, and the application may still run the removed release"
    data = {"stage": "rollback", "deploy_id": record["deploy_id"], **result}
    if up is not None and not up["ok"]:
        return StageResult(data, text, 1, f"the release `current` went back to is not healthy: {service.why_failed(up)}")
    if not ok:
        return StageResult(data, text, 1, "parent listing differs from the pre-deploy state")
    if not result.get("pointer_restored", True):
        return StageResult(data, text, 1, f"`current` could not be restored: {result['pointer']}")
    return StageResult(data, text)


def to_previous(cfg: Config, transport: Transport, state: State) -> StageResult:
    """``rollback --to-previous``: ``current`` back at the release that was current before,
    as the host's journal says (never by folder time or name order); nothing is removed."""
    from .errors import ConfigError

    if cfg.strategy != "timestamped":
        raise ConfigError("rollback --to-previous moves the `current` pointer of the timestamped strategy", hint='set target.strategy = "timestamped"')
    agent = Agent(transport)
    st = agent.status({"root": cfg.root})
    previous = st.get("previous")
    live = next((r for r in st["releases"] if r.get("promoted")), None)
    if not previous or live is None:
        raise BlockedError(
            f"the journal of {cfg.host or 'localhost'}:{cfg.root} names no previous release to go back to",
            hint="`release status` shows the releases; promote one with `release promote --deploy-id ID`",
        )

    def named(r: Mapping[str, Any]) -> bool:
        return str(r["path"]).endswith("/" + str(previous)) or str(r["path"]) == str(previous)

    if not any(named(r) for r in st["releases"]):
        raise BlockedError(f"the previous release {previous} is no longer on the target", hint="promote another release with `release promote --deploy-id ID`")
    if named(live):
        raise BlockedError(
            f"the journal of {cfg.host or 'localhost'}:{cfg.root} names {previous} as the previous release, "
            "and `current` already points at it: nothing to step back to",
            hint="`release status` shows the releases; promote one with `release promote --deploy-id ID`",
        )
    req: RepointRequest = {"root": cfg.root, "deploy_id": str(live["deploy_id"]), "to": str(previous), "from_host": False}
    if cfg.service:
        req["service"] = cfg.service.spec()
    answer = agent.repoint(req)
    if state.has(str(live["deploy_id"])):
        record = state.load(str(live["deploy_id"]))
        record.pop("promotion", None)
        state.save(record)
    up = answer.get("service")
    state.audit(
        "rollback --to-previous",
        deploy_id=str(live["deploy_id"]),
        target=cfg.root,
        result=str(answer.get("current")) + ("" if up is None else " (healthy)" if up["ok"] else " (NOT healthy)"),
    )
    data = {"stage": "rollback", "to_previous": True, "from": live["path"], "current": answer.get("current"), "service": up}
    text = "\n".join([f"{answer.get('current')} (was {live['path']}); nothing was removed", *service.render(up, "restarted")])
    if up is not None and not up["ok"]:
        return StageResult(data, text, 1, f"the release gone back to is not healthy: {service.why_failed(up)}")
    return StageResult(data, text)


def cli(cfg: Config, options: Options) -> StageResult:
    state = State(cfg.state)
    transport = for_config(cfg)
    if options.to_previous:
        return to_previous(cfg, transport, state)
    reconcile.settle(cfg, state, transport, running_ok=False)  # an unseen outcome is settled before anything is removed
    if options.deploy_id and not state.has(options.deploy_id):
        # a deploy another controller made (the Ansible collection): the host holds the truth
        record = {"deploy_id": options.deploy_id, "root": cfg.root, "target": "", "host": cfg.host or "localhost", "status": Status.DEPLOYED.value}
        return run(cfg, record, transport, break_lock=options.break_lock, discard_added=options.discard_added, from_host=True)
    record = state.pick(options.deploy_id)
    return run(cfg, record, transport, break_lock=options.break_lock, discard_added=options.discard_added)
