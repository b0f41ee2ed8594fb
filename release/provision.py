"""Stage ``provision`` (G4): the runtime skeleton on the target, and its exact undo.

Creates the configured folders (e.g. runs, batches, locks) under ``provision.root`` and a
non-secret config file of ``provision.settings``; existing paths are never overwritten.
What was created is recorded in ``.release/provision.json`` so ``--undo`` removes exactly
that, and refuses (removing nothing) when a created folder now holds other data or the
file was changed. A setting whose name looks secret is refused: this tool never writes
secrets.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .config import SECRET_WORDS, Config
from .errors import BlockedError, ConfigError, RefusedError
from .redact import redact
from .remote.client import for_config
from .stage import Options, StageResult
from .state import State, now_iso, private_dir, write_json

if TYPE_CHECKING:  # the request shapes, for the type checker only
    from .agent.messages import ProvisionRequest


def render_settings(settings: dict[str, Any]) -> str:
    for key in settings:
        if any(w in key.lower() for w in SECRET_WORDS):
            raise RefusedError(
                f"provision.settings.{key} looks like a secret: refused",
                hint="secrets are never written by this tool; keep them in the host's env file",
            )
    for key, value in settings.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and redact(text) != text:
                raise RefusedError(
                    f"provision.settings.{key} holds a secret (a password, token or DSN with a password): refused; the value is withheld",
                    hint="secrets are never written by this tool; keep them in the host's env file",
                )
    import tomllib

    import tomli_w

    for key in sorted(settings):
        if isinstance(settings[key], dict):
            raise ConfigError(f"provision.settings.{key}: nested tables are not supported", hint="flatten it: 'section.key' = value")
    try:
        text = "# written by `release provision`; non-secret settings only\n" + tomli_w.dumps({k: settings[k] for k in sorted(settings)})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"provision.settings: a value TOML cannot hold ({exc})", hint="use strings, numbers, booleans or lists") from None
    if tomllib.loads(text) != settings:  # what is written is read back as the same settings, or nothing is written
        raise ConfigError("provision.settings: the settings do not round-trip through TOML", hint="use strings, numbers, booleans or lists")
    return text


def cli(cfg: Config, options: Options) -> StageResult:
    state = State(cfg.state)
    record_path = cfg.state / "provision.json"
    if not cfg.provision_root or not (cfg.provision_dirs or cfg.provision_config_file):
        raise ConfigError("nothing to provision", hint="set provision.root and provision.dirs (and optionally config_file, settings)")
    text = render_settings(dict(cfg.provision_settings)) if cfg.provision_config_file else ""
    transport = for_config(cfg)
    if options.undo:
        if not record_path.is_file():
            raise BlockedError(f"no provision record at {record_path}", hint="nothing was provisioned by this tool")
        record = json.loads(record_path.read_text())
        result = transport.unprovision({"created": record["created"], "lock_root": cfg.root, "id": "provision"})
        record_path.unlink()
        state.audit("provision --undo", result=f"removed {len(result['removed'])}")
        return StageResult({"stage": "provision", "undo": True, **result}, "removed:\n" + "\n".join(f"  {p}" for p in result["removed"]))
    if record_path.is_file():
        raise RefusedError(f"already provisioned (record {record_path})", hint="run `release provision --undo` first to recreate it")
    req: ProvisionRequest = {
        "root": cfg.provision_root,
        "dirs": list(cfg.provision_dirs),
        "config_file": cfg.provision_config_file,
        "config_text": text,
        "lock_root": cfg.root,
        "create_lock_root": cfg.create_root,
        "id": "provision",
    }
    result = transport.provision(req)
    result.pop("_log", None)
    private_dir(cfg.state)
    write_json(record_path, {"time": now_iso(), "host": cfg.host or "localhost", **result})
    state.audit("provision", result=f"created {len(result['created'])}, existed {len(result['existed'])}")
    lines = [f"created: {e['path']}" for e in result["created"]] + [f"existed (untouched): {p}" for p in result["existed"]]
    return StageResult({"stage": "provision", **result}, "\n".join(lines) or "nothing to do")
