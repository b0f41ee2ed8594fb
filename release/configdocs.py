"""What every configuration key means, next to the schema it documents (``config``): the
configuration reference (docs/configuration.md) is generated from both, and a test fails
when a key of the schema has no text here, or a text names no key."""

from __future__ import annotations

TOP = {
    "name": "The application's name: bundle and release folder names start with it.",
    "state": "The controller's state folder (records, audit log, reports, plan lock), relative to the config file.",
}

SECTIONS: dict[str, dict[str, str]] = {
    "source": {
        "repo": "The application's git repository: a local path (relative to the config file) or any URL git can clone.",
        "head": "The recorded HEAD: a full or short sha, a tag, or `HEAD`. Only this commit is ever built.",
        "subdir": "The project's folder inside the repository, when it is not the root.",
    },
    "bundle": {
        "out": "Where bundles and their `.sha256` files are written.",
        "artifacts": 'What pypa build makes into `dist/` of the bundle: `["sdist", "wheel"]`, or `[]` for the source tree only.',
        "submodules": "A commit with git submodules: `refuse` (their files are not in the commit) or `omit` them from the bundle.",
        "version": 'A plain application\'s version (no build backend to ask), e.g. `"2.4.0"`; PEP 440.',
        "version_from": '`"git-tag"`: a plain application\'s version is its nearest git tag (as setuptools-scm computes it); absent: the build backend says.',
        "exclude": (
            'Paths that do not ship (`"docs/"` a folder, `"*.md"` a pattern, relative to the project); '
            "`.gitattributes` `export-ignore` is honoured too. The manifest and `plan` list what was left out."
        ),
        "include": "When set, only these paths ship (then `exclude` applies). The build still sees the whole commit.",
    },
    "target": {
        "host": 'The ssh destination of one target (an alias or `user@host`); `""` is this machine.',
        "root": "The parent folder of releases on the target.",
        "dir": "The side-by-side folder name; placeholders `{name}` `{version}` `{sha}` `{stamp}`.",
        "strategy": "`side-by-side` (a new folder next to the old) or `timestamped` (`releases/...` plus a `current` pointer that `promote` switches).",
        "python": "The interpreter on the target that runs the agent (and builds the release's environment).",
        "ssh_config": "An ssh_config file passed to OpenSSH (writable by its owner only).",
        "create_root": "Create `target.root` when it does not exist (a deploy refuses otherwise).",
        "allowed_signers": "An OpenSSH allowed_signers file: a bundle's checksum must be signed by one of them (`bundle --sign KEY`).",
        "hosts": "A fleet: a list of ssh destinations (host names, aliases, `user@host`).",
        "inventory": "A fleet from an Ansible inventory (INI or YAML), with `target.group`.",
        "group": "The inventory group released to.",
        "op_timeout": "Seconds any agent op may take on a target before its outcome is unknown (a smoke: at least its checks' own timeouts).",
        "shared": (
            'Folders kept across releases under `<root>/shared/` and linked into each (`["var/uploads", "logs"]`); made empty when missing, never deleted.'
        ),
        "keep": "After a successful promote, prune to this many releases that passed smoke (never the current, the previous or the newest failed); 0: never.",
        "trust": (
            "An allowed_signers file on the target (owned by root, writable by nobody else): the agent there refuses any bundle not signed by "
            "one of its keys, or whose provenance or SBOM does not match it, before it writes anything."
        ),
        "shared_files": 'Files kept under `<root>/shared/` and linked into each release (`[".env"]`); never created: a missing one is exit 3.',
    },
    "fleet": {
        "forks": "Hosts worked on at once.",
        "serial": 'Promotion waves: counts or percentages, the last repeating (`[1, "25%", "100%"]`).',
        "max_fail_percentage": "More failed hosts than this: stop, and undo on every host.",
    },
    "smoke": {
        "check": "The ordered smoke checks (`[[smoke.check]]` tables, below).",
        "timeout": "The default timeout of a check, in seconds.",
    },
    "service": {
        "restart": (
            'The restart, an argv without a shell (`["systemctl", "reload", "myapp"]`), run on the target in the new release folder after `current` '
            "switches (`{python}` and `{target}` filled in; `RELEASE_ROOT`, `RELEASE_DIR`, `RELEASE_CURRENT` set); its failure reverts the promote."
        ),
        "timeout": "Seconds the restart may take; past them it is killed with its process group, and the promote reverts.",
    },
    "health": {
        "check": "The health checks run on the target after the restart (`[[health.check]]` tables, below); one failing reverts the promote.",
    },
    "provision": {
        "root": "The runtime skeleton's root folder (G4).",
        "dirs": "Folders created under it (existing ones are never touched).",
        "config_file": "A non-secret settings file written under it.",
        "settings": "The settings written to `config_file` (TOML; a secret-looking key or value is refused).",
    },
    "environment": {
        "extras": "Project extras added to the runtime dependencies.",
        "groups": "Dependency groups added (for example pytest, for the smoke): PEP 735 `[dependency-groups]`, or Poetry's `[tool.poetry.group.<name>]`.",
        "python": "Resolve for this Python version without asking the target (with `platforms`).",
        "platforms": "Platform tags to resolve for (most specific first), with `python`.",
        "requirements": (
            'Requirements files of the commit resolved with the rest (`["requirements.txt"]`; `-r`/`-c` followed inside the project; index options refused).'
        ),
        "dependencies": 'A plain list of requirements resolved with the rest (`["pytest>=8"]`).',
    },
}

CHECKS: dict[str, dict[str, str]] = {
    "": {
        "kind": "The check's kind: `compileall`, `import`, `attr`, `pytest`, `command` or `db-readonly`.",
        "name": "The check's name in reports (default: its kind).",
        "timeout": "Seconds the check may take (default: `smoke.timeout`).",
    },
    "compileall": {
        "paths": "Paths compiled, relative to the release.",
        "exclude": "A regular expression of paths not compiled.",
    },
    "import": {"modules": "Modules imported, each in a fresh interpreter of the release."},
    "attr": {
        "object": "`module:attribute` read from the release.",
        "startswith": "The attribute's text must start with this.",
        "equals": "The attribute must equal this TOML value.",
    },
    "pytest": {
        "args": "pytest's arguments, run in the release folder.",
        "expect_passed": "The number of tests that must pass (failures and errors always fail the check).",
    },
    "command": {
        "argv": "The command, without a shell; `{python}` and `{target}` are filled in.",
        "expect_output": "Text its output must contain.",
        "expect_exit": "Its exit code.",
    },
    "db-readonly": {
        "dsn_env": "The environment variable that holds the DSN (never the file).",
        "role": "The role the DSN must connect as.",
        "queries": "The SELECT statements run, each in its own read-only transaction.",
        "count_tables": "Tables whose row counts are compared before and after.",
        "forbid_functions": "Functions no query may call.",
        "allow_functions": "Non-volatile user functions a query may call, once reviewed.",
        "allow_foreign": "Allow reading foreign tables and tables of other access methods, once reviewed.",
        "via": "`controller` (this machine reaches the database) or `target` (through an OpenSSH forward, as the target sees it).",
        "expected_grant_matrix_sha": "The sha256 of the role's grant matrix (the check fails when it differs).",
        "demo": "With the DSN variable unset, start an embedded throwaway PostgreSQL (the built-in example).",
        "demo_schema": "The schema file the demo database is seeded from, in the recorded commit.",
    },
}

HEALTH: dict[str, dict[str, str]] = {
    "": {
        "kind": "`http` (a URL fetched from the target itself), `tcp` (an address that accepts a connection) or `command` (an argv).",
        "name": "The check's name in reports and the journal (default: `<kind>-<index>`).",
        "retries": "Attempts after the first before the check fails (0 to 1000).",
        "interval": "Seconds between attempts.",
        "timeout": "Seconds one attempt may take (the whole attempt, however slowly the answer comes).",
    },
    "http": {
        "url": "An `http://` or `https://` URL, fetched from the target without a proxy and without following redirects; `{version}` is the release's version.",
        "status": "The HTTP status the answer must have.",
        "contains": (
            "Text the answer's body (its first MiB) must contain; `{version}` is the version of the release checked "
            '(`"{version}"`: the new one after a promote, the old one after a revert).'
        ),
    },
    "tcp": {"address": '`host:port` (`"[::1]:8000"` for IPv6) that must accept a connection.'},
    "command": {
        "argv": (
            "The command, without a shell, run in the release folder with its environment first on PATH "
            "(`{python}`, `{target}`, `{version}` filled in); exit 0 passes."
        )
    },
}
