"""Stage ``promote``: atomically switch ``<root>/current`` to a release (timestamped strategy).

A new link is made under a temporary name, then renamed over the old one; the previous
target is recorded so that rollback can restore it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import service
from .config import Config
from .errors import BlockedError, ConfigError
from .remote.client import for_config
from .stage import Options, StageResult
from .state import State, Status, now_iso

if TYPE_CHECKING:  # the request shapes, for the type checker only
    from .agent.messages import PromoteRequest, PromoteResult


def require_timestamped(cfg: Config) -> None:
    if cfg.strategy != "timestamped":
        raise ConfigError(
            "promote switches the `current` pointer of the timestamped strategy; this config uses side-by-side",
            hint='set target.strategy = "timestamped"; side-by-side promotion in place is a separate reviewed step (seed §2)',
        )


def _reverted(cfg: Config, state: State, record: dict[str, Any], result: PromoteResult) -> StageResult:
    """The new release did not come up healthy: the host went back by itself. Exit 1, with
    what failed, where ``current`` is now, and whether the release gone back to is healthy."""
    why = service.why_failed(result["service"])
    back = result.get("revert_service")
    now = result["current"] or "none (there was no release before)"
    state.audit("promote", deploy_id=record["deploy_id"], target=record["target"], result=f"reverted to {now}: {why}")
    lines = [
        f"promote of {record['deploy_id']} on {cfg.host or 'localhost'} REVERTED: {why}",
        *service.render(result["service"], "restarted"),
        f"current -> {now} (back where it was)",
        *service.render(back, "restarted again"),
    ]
    if back is not None and not back["ok"]:
        lines.append(f"WARNING: the release gone back to is not healthy either: {service.why_failed(back)}")
    data = {"stage": "promote", "deploy_id": record["deploy_id"], **result}
    return StageResult(data, "\n".join(lines), 1, f"{why}; current went back to {now}")


def cli(cfg: Config, options: Options) -> StageResult:
    require_timestamped(cfg)
    state = State(cfg.state)
    record = state.pick(options.deploy_id)
    if record.get("status") != Status.DEPLOYED:
        raise BlockedError(
            f"deploy {record['deploy_id']} is {record.get('status')!r}: only a deployed release can be promoted",
            hint="deploy it again, or promote another deploy with --deploy-id",
        )
    req: PromoteRequest = {
        "root": record["root"],
        "target": record["target"],
        "deploy_id": record["deploy_id"],
        "break_lock": options.break_lock,
        "force": options.force,
    }
    if cfg.service:
        req["service"] = cfg.service.spec()
    result = for_config(cfg).promote(req)
    if result.get("reverted"):
        return _reverted(cfg, state, record, result)
    if result.get("unchanged"):  # already the current release: the previous pointer stays the one recorded first
        result["previous"] = result.get("previous") or (record.get("promotion") or {}).get("previous")
    record["promotion"] = {"time": now_iso(), "current": result["current"], "previous": result["previous"]}
    state.save(record)
    state.audit(
        "promote",
        deploy_id=record["deploy_id"],
        target=record["target"],
        result=f"current -> {result['current']} (was {result['previous']})",
    )
    done = StageResult(
        {"stage": "promote", "deploy_id": record["deploy_id"], **result},
        "\n".join(
            [
                f"current -> {result['current']} " + ("(already; nothing changed)" if result.get("unchanged") else f"(was {result['previous'] or 'none'})"),
                *service.render(result.get("service"), "restarted"),
            ]
        ),
    )
    if not cfg.keep:
        return done
    from . import prune  # target.keep: retention after a successful promote

    pruned = prune.run(cfg, cfg.keep, dry_run=False)
    return StageResult({**done.data, "pruned": pruned.data}, done.text + "\n" + pruned.text, pruned.exit_code, pruned.failed)
