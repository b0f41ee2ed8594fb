"""Command line: ``release [--config PATH] [--json] <stage> [options]``.

``main(argv) -> int`` is the one place where errors become an ERROR line, a hint and
an exit code (0 done, 1 failed, 2 bad usage/config, 3 blocked, 4 refused).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, progress
from .config import Config, load
from .errors import ConfigError, ReleaseError
from .redact import redact, redact_obj

Handler = Callable[[Config, argparse.Namespace], dict[str, Any]]

# the stages that talk to the target
TARGET_STAGES = frozenset({"deploy", "rollback", "smoke", "status", "verify", "promote", "plan", "provision"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 through our own error path
        raise ConfigError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _stage_bundle(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from . import bundle

    result = bundle.build(cfg)
    out = result.to_dict()
    if args.reproducible_check:
        check = bundle.reproducible_check(cfg, result)
        out["reproducible"] = check
        if not check["identical"]:
            out["exit_code"] = 1
            out["failed"] = "reproducible-check: second build differs: " + ", ".join(check["differing"][:20])
    if args.sign:
        from . import signing

        out["signature"] = str(signing.sign(result.sha256_path, args.sign))
    return out


def _lazy(module: str, func: str = "cli") -> Handler:
    def handler(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
        import importlib

        mod = importlib.import_module(f"release.{module}")
        result: dict[str, Any] = getattr(mod, func)(cfg, args)
        return result

    return handler


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="release", description="Side-by-side release pipeline: plan, bundle, deploy, smoke, rollback.")
    p.add_argument("--config", metavar="PATH", help="release.toml or pyproject.toml ([tool.release]) to use")
    p.add_argument("--json", action="store_true", help="print one machine-readable result object on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command run (redacted)")
    p.add_argument("--limit", metavar="PATTERN", default=None, help="fleet: only these hosts or inventory groups (comma-separated; !name excludes)")
    p.add_argument("--version", action="version", version=f"release {__version__}")
    # the global options are accepted after the stage too (`release bundle --json`)
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--limit", metavar="PATTERN", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="stage", metavar="<stage>", parser_class=_Parser)
    _add = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign,assignment]
    sub.required = True

    s = sub.add_parser("bundle", help="build the release bundle from the recorded HEAD")
    s.add_argument("--reproducible-check", action="store_true", help="build twice and compare the content byte for byte")
    s.add_argument("--sign", metavar="KEY", help="sign the .sha256 with `ssh-keygen -Y sign` using this private key")
    s.set_defaults(handler=_stage_bundle)

    s = sub.add_parser("deploy", help="ship the bundle and unpack it side-by-side")
    s.add_argument("--bundle", metavar="PATH", help="deploy this bundle instead of the newest of the recorded HEAD")
    s.add_argument("--no-plan", action="store_true", help="deploy without a locked plan (.release/plan.lock)")
    s.add_argument("--break-lock", action="store_true", help="break a stale target lock left by a dead process")
    s.add_argument("--ship-only", action="store_true", help=argparse.SUPPRESS)  # benchmark: ship + verify, then discard
    s.set_defaults(handler=_lazy("deploy"))

    s = sub.add_parser("rollback", help="remove exactly what the last (or a given) deploy created")
    s.add_argument("--deploy-id", metavar="ID", help="roll back this deploy instead of the last one")
    s.add_argument("--break-lock", action="store_true", help="break a stale target lock left by a dead process")
    s.add_argument("--discard-added", action="store_true", help="also delete files added to the release after the deploy (refused by default)")
    s.set_defaults(handler=_lazy("rollback"))

    s = sub.add_parser("smoke", help="run the smoke checks against the deployed release")
    s.add_argument("--mode", choices=["dryrun", "live"], default="dryrun", help="dryrun (default); live is always refused")
    s.add_argument("--deploy-id", metavar="ID", help="smoke this deploy instead of the last one")
    s.set_defaults(handler=_lazy("smoke"))

    s = sub.add_parser("status", help="list the releases on the target root")
    s.set_defaults(handler=_lazy("status"))

    s = sub.add_parser("verify", help="re-hash a deployed release against its manifest")
    s.add_argument("--deploy-id", metavar="ID", help="verify this deploy instead of the last one")
    s.set_defaults(handler=_lazy("status", "verify_cli"))

    s = sub.add_parser("promote", help="switch the `current` pointer to a release (timestamped strategy)")
    s.add_argument("--deploy-id", metavar="ID", help="promote this deploy instead of the last one")
    s.add_argument("--break-lock", action="store_true", help="break a stale target lock left by a dead process")
    s.set_defaults(handler=_lazy("promote"))

    s = sub.add_parser("plan", help="compute and lock the deploy plan (changes nothing)")
    s.set_defaults(handler=_lazy("plan"))

    s = sub.add_parser("provision", help="create the runtime skeleton on the target (G4)")
    s.add_argument("--undo", action="store_true", help="remove exactly what provision created")
    s.set_defaults(handler=_lazy("provision"))
    return p


def _print_human(result: dict[str, Any]) -> None:
    text = result.pop("_text", None)
    if text:
        print(redact(text))
        return
    for key, value in result.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        print(f"{key}: {redact(value)}")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in args_list
    try:
        args = build_parser().parse_args(args_list)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
        progress.configure(enabled=not args.json)
        cfg = load(args.config)
        handler = args.handler
        if cfg.hosts or getattr(args, "limit", None):
            from . import fleet

            cfg = fleet.limited(cfg, getattr(args, "limit", None))
            if args.stage not in fleet.HANDLERS:
                raise ConfigError(f"`release {args.stage}` works on one target, not on a fleet", hint="use target.host for it")
            handler = fleet.HANDLERS[args.stage]
            progress.configure(enabled=not args.json)
        from . import secretenv

        # the DSNs live only in this process's memory from here on (not in its environment)
        secretenv.take([str(c.options["dsn_env"]) for c in cfg.checks if c.kind == "db-readonly"] + ["PGPASSWORD"])
        if args.stage in TARGET_STAGES and not cfg.hosts and not cfg.is_local:
            from .transport import SshTransport, for_config

            t = for_config(cfg)
            if isinstance(t, SshTransport):
                t.connect_soon()  # the key exchange overlaps the local work (git, checksums) before the first call
        result = handler(cfg, args)
        code = int(result.pop("exit_code", 0))
        failed = result.pop("failed", None)
        if args.json:
            result.pop("_text", None)
            print(json.dumps(redact_obj({**result, "exit_code": code}), sort_keys=True))
        else:
            _print_human(result)
        if failed:
            print(f"FAILED: {redact(failed)}", file=sys.stderr)
        return code
    except ReleaseError as exc:
        _report(exc, want_json)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        return 1


def _report(exc: ReleaseError, want_json: bool) -> None:
    label = {2: "ERROR (usage/config)", 3: "BLOCKED", 4: "REFUSED"}.get(exc.exit_code, "ERROR")
    print(f"{label}: {exc.message}", file=sys.stderr)
    if exc.detail:
        print(exc.detail, file=sys.stderr)
    if exc.hint:
        print(f"hint: {exc.hint}", file=sys.stderr)
    if want_json:
        print(json.dumps(exc.to_dict(), sort_keys=True))
