"""Command line: ``release [--config PATH] [--json] <stage> [options]``.

``main(argv) -> int`` is the one place where errors become an ERROR line, a hint and
an exit code (0 done, 1 failed, 2 bad usage/config, 3 blocked, 4 refused).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, progress
from .config import Config, load
from .errors import ConfigError, ReleaseError, disk_error
from .redact import redact_obj, shown
from .stage import Handler, Options, StageResult

# the stages that talk to the target
TARGET_STAGES = frozenset({"deploy", "rollback", "smoke", "status", "verify", "promote", "plan", "provision", "prune"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 through our own error path
        raise ConfigError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _lazy(module: str, func: str = "cli") -> Handler:
    def handler(cfg: Config, options: Options) -> StageResult:
        import importlib

        mod = importlib.import_module(f"release.{module}")
        result: StageResult = getattr(mod, func)(cfg, options)
        return result

    return handler


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, its width taken as shutil would take it, without importing
    shutil (and its compression modules) for every run."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (ValueError, OSError, AttributeError):
            columns = 80
        super().__init__(prog, width=max(columns - 2, 11))


def _bundle_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--reproducible-check", action="store_true", help="build twice and compare the content byte for byte")
    s.add_argument("--sign", metavar="KEY", help="sign the .sha256 with `ssh-keygen -Y sign` using this private key")
    s.set_defaults(handler=_lazy("bundle"))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError("between 0 and 86400 seconds")
    return value


def _lock_wait(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--lock-wait", metavar="SECONDS", type=_seconds, default=0.0, help="wait up to SECONDS for a live holder of the target's lock (default: refuse at once)"
    )


def _deploy_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--bundle", metavar="PATH", help="deploy this bundle instead of the newest of the recorded HEAD")
    s.add_argument("--no-plan", action="store_true", help="deploy without a locked plan (.release/plan.lock)")
    s.add_argument("--break-lock", action="store_true", help="break a stale target lock left by a dead process")
    s.add_argument("--ship-only", action="store_true", help=argparse.SUPPRESS)  # benchmark: ship + verify, then discard
    _lock_wait(s)
    s.set_defaults(handler=_lazy("deploy"))


def _rollback_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--deploy-id", metavar="ID", help="roll back this deploy instead of the last one")
    s.add_argument("--break-lock", action="store_true", help="break a stale target lock left by a dead process")
    s.add_argument("--discard-added", action="store_true", help="also delete files added to the release after the deploy (refused by default)")
    s.add_argument("--to-previous", action="store_true", help="point `current` back at the previous release, as the target's journal says (removes nothing)")
    _lock_wait(s)
    s.set_defaults(handler=_lazy("rollback"))


def _smoke_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--mode", choices=["dryrun", "live"], default="dryrun", help="dryrun (default); live is always refused")
    s.add_argument("--deploy-id", metavar="ID", help="smoke this deploy instead of the last one")
    s.set_defaults(handler=_lazy("smoke"))


def _status_options(s: argparse.ArgumentParser) -> None:
    s.set_defaults(handler=_lazy("status"))


def _verify_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--deploy-id", metavar="ID", help="verify this deploy instead of the last one")
    s.add_argument("--bundle", metavar="PATH", help="check this bundle offline instead: checksums, signature, provenance, SBOM")
    s.add_argument(
        "--allowed-signers", metavar="FILE", help="with --bundle: the checksum file must be signed by one of these keys (default: target.allowed_signers)"
    )
    s.set_defaults(handler=_lazy("status", "verify_cli"))


def _promote_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--deploy-id", metavar="ID", help="promote this deploy instead of the last one")
    s.add_argument("--break-lock", action="store_true", help="break a stale target lock left by a dead process")
    s.add_argument("--force", action="store_true", help="promote a release whose last smoke on the host did not pass (journalled)")
    _lock_wait(s)
    s.set_defaults(handler=_lazy("promote"))


def _plan_options(s: argparse.ArgumentParser) -> None:
    s.set_defaults(handler=_lazy("plan"))


def _prune_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--keep", metavar="N", type=int, default=None, help="keep the N newest releases that passed smoke (default: target.keep)")
    s.add_argument("--dry-run", action="store_true", help="list what would be removed and why the rest stays; change nothing")
    _lock_wait(s)
    s.set_defaults(handler=_lazy("prune"))


def _init_options(s: argparse.ArgumentParser) -> None:
    s.set_defaults(handler=_lazy("init"))


def _provision_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--undo", action="store_true", help="remove exactly what provision created")
    _lock_wait(s)
    s.set_defaults(handler=_lazy("provision"))


# stage -> (help, its options): in the order `release --help` lists them
STAGES: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "bundle": ("build the release bundle from the recorded HEAD", _bundle_options),
    "deploy": ("ship the bundle and unpack it side-by-side", _deploy_options),
    "rollback": ("remove exactly what the last (or a given) deploy created", _rollback_options),
    "smoke": ("run the smoke checks against the deployed release", _smoke_options),
    "status": ("list the releases on the target root", _status_options),
    "verify": ("re-hash a deployed release against its manifest", _verify_options),
    "promote": ("switch the `current` pointer to a release (timestamped strategy)", _promote_options),
    "plan": ("compute and lock the deploy plan (changes nothing)", _plan_options),
    "provision": ("create the runtime skeleton on the target (G4)", _provision_options),
    "prune": ("remove old releases beyond the N newest that passed smoke (never current or previous)", _prune_options),
    "init": ("write a first release.toml for the project in this folder (never overwrites)", _init_options),
}
_VALUED = ("--config", "--limit")  # the global options that take a value


def _stage_named(argv: Sequence[str]) -> str | None:
    """The stage argv names, found as argparse finds it (the first word that is not an
    option or an option's value); None when there is none, or help is asked for."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help", "--"):
            return None
        if len(word) > 2 and "=" not in word and any(v.startswith(word) for v in _VALUED):
            next(words, None)  # its value (argparse also takes "--conf" for "--config")
        elif not word.startswith("-"):
            return word if word in STAGES else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line, with only the sub-parser of the stage it names
    (the others are built for help, errors, or when no stage is named)."""
    p = _Parser(prog="release", description="Side-by-side release pipeline: plan, bundle, deploy, smoke, rollback.", formatter_class=_Formatter)
    p.add_argument("--config", metavar="PATH", help="release.toml or pyproject.toml ([tool.release]) to use")
    p.add_argument("--json", action="store_true", help="print one machine-readable result object on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command run (redacted)")
    p.add_argument("--limit", metavar="PATTERN", default=None, help="fleet: only these hosts or inventory groups (comma-separated; !name excludes)")
    p.add_argument("--version", action="version", version=f"release {__version__}")
    # the global options are accepted after the stage too (`release bundle --json`)
    common = _Parser(add_help=False, formatter_class=_Formatter)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--limit", metavar="PATTERN", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="stage", metavar="<stage>", parser_class=_Parser)
    sub.required = True
    named = _stage_named(argv) if argv is not None else None
    for name, (help_text, options) in STAGES.items():
        if named is None or name == named:
            options(sub.add_parser(name, parents=[common], help=help_text, formatter_class=_Formatter))
    return p


def _print_human(result: StageResult) -> None:
    if result.text:
        print(shown(result.text))
        return
    for key, value in result.data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        print(f"{key}: {shown(value)}")


def _emit(result: StageResult, as_json: bool) -> None:
    """The result on stdout. A reader that left early (`release status | head -1`) ends the
    output, not the run: the stage's own exit code stands, and no traceback is printed."""
    try:
        if as_json:
            print(json.dumps(redact_obj(result.to_json()), sort_keys=True))
        else:
            _print_human(result)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the exit's own flush writes nowhere, quietly
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in args_list
    try:
        try:
            args = build_parser(args_list).parse_args(args_list)
        except ConfigError:  # the usage error as the whole parser words it
            args = build_parser().parse_args(args_list)
        if args.verbose:
            from .proc import log_commands

            log_commands()
        progress.configure(enabled=not args.json)
        if args.stage == "init":  # before there is a configuration to load
            from . import init

            done = init.cli(None, Options.from_args(args))
            _emit(done, args.json)
            return done.exit_code
        if args.stage == "verify" and getattr(args, "bundle", None):  # offline, on any machine: a config only adds its recorded head
            from . import bundleverify

            try:
                found: Config | None = load(args.config)
            except ConfigError:
                if args.config:
                    raise
                found = None
            done = bundleverify.cli(found, Options.from_args(args))
            _emit(done, args.json)
            if done.failed:
                print(f"FAILED: {shown(done.failed)}", file=sys.stderr)
            return done.exit_code
        cfg = load(args.config)
        if getattr(args, "lock_wait", 0.0):
            cfg = cfg._replace(lock_wait=float(args.lock_wait))
        handler = args.handler
        if cfg.is_fleet or getattr(args, "limit", None):
            from .fleet import stages as fleet

            cfg = fleet.resolve(cfg, getattr(args, "limit", None))
            if args.stage not in fleet.HANDLERS:
                raise ConfigError(f"`release {args.stage}` works on one target, not on a fleet", hint="use target.host for it")
            handler = fleet.HANDLERS[args.stage]
            progress.configure(enabled=not args.json)
        from . import secretenv

        # the DSNs live only in this process's memory from here on (not in its environment)
        secretenv.take([str(c.options["dsn_env"]) for c in cfg.checks if c.kind == "db-readonly"] + ["PGPASSWORD"])
        if args.stage in TARGET_STAGES and not cfg.hosts and not cfg.is_local:
            from .remote.transport import SshTransport, for_config

            t = for_config(cfg)
            if isinstance(t, SshTransport):
                t.connect_soon()  # the key exchange overlaps the local work (git, checksums) before the first call
        if argv is None:  # run as the program, not called from Python (tests)
            import gc

            # what the imports made lives until exit: no collection walks it again (the one at
            # exit included, about 6 ms), and a forked agent shares its pages (gc.freeze's case)
            gc.freeze()
        result: StageResult = handler(cfg, Options.from_args(args))
        _emit(result, args.json)
        if result.failed:
            print(f"FAILED: {shown(result.failed)}", file=sys.stderr)
        return result.exit_code
    except ReleaseError as exc:
        _report(exc, want_json)
        return exc.exit_code
    except OSError as exc:  # a disk of this machine that takes no more: blocked, named, not a traceback
        full = disk_error(exc, "a file of this run", hint="free space there and rerun; a rerun reconciles whatever this run had started")
        if full is None:
            raise
        _report(full, want_json)
        return full.exit_code
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        print("hint: what the run had started is reconciled by the next one: `release status` shows it, `release rollback` undoes a deploy", file=sys.stderr)
        return 1


def run() -> None:
    """The console script ``release``: ``main()``, then an exit that does not tear the
    interpreter down. Deallocating the hundred-odd modules a run imported takes about 5 ms
    (4 % of a local rollback) and changes nothing outside this process; what an exit must
    do is done: the exit handlers run (``logging``'s flush, ``tempfile``'s finalizers) and
    the output is flushed. A process with a second thread, or whose output cannot be
    flushed (a closed pipe), exits the ordinary way."""
    code = main()
    from .proc import single_threaded

    if single_threaded():
        import atexit

        atexit._run_exitfuncs()  # what the interpreter's own exit would run first
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)
        os._exit(code)
    sys.exit(code)


def _report(exc: ReleaseError, want_json: bool) -> None:
    label = {2: "ERROR (usage/config)", 3: "BLOCKED", 4: "REFUSED"}.get(exc.exit_code, "ERROR")
    print(f"{label}: {shown(exc.message)}", file=sys.stderr)
    if exc.detail:
        print(shown(exc.detail), file=sys.stderr)
    if exc.hint:
        print(f"hint: {shown(exc.hint)}", file=sys.stderr)
    if want_json:
        print(json.dumps(exc.to_dict(), sort_keys=True))
