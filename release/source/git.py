"""The application's source: resolve the recorded HEAD, read files, stream its tree.

Only committed content is ever read (``git archive``/``git show`` of one commit), so
uncommitted or untracked files in a working tree never reach a bundle.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import proc
from ..config import Config
from ..errors import BlockedError, ConfigError, ReleaseError
from ..redact import redact


@dataclass(frozen=True)
class Source:
    """Facts about the recorded commit (read-only; computed once, then passed along)."""

    git_dir: str  # the repository git runs against (a local path or a mirror of a URL)
    location: str  # what the config named (path made absolute, or URL)
    sha: str
    commit_time: int
    subdir: str

    @property
    def sha7(self) -> str:
        return self.sha[:7]

    @property
    def treeish(self) -> str:
        return f"{self.sha}:{self.subdir}" if self.subdir else f"{self.sha}^{{tree}}"


def git(git_dir: str, *args: str, check: bool = True, error: type[ReleaseError] = ReleaseError) -> proc.Completed:
    return proc.run(["git", "-C", git_dir, *args], check=check, error=error)


def open_repo(cfg: Config) -> str:
    """Return a local git directory for ``source.repo``.

    A local repository is used in place; a URL or a ``git bundle`` file is mirrored
    once under the state folder and fetched on later runs.
    """
    location = cfg.repo_location()
    if location.startswith("-"):  # git would read it as an option (--upload-pack=...)
        raise ConfigError(f"source.repo must not start with '-': {redact(location)!r}", hint="write a path as ./-name, or a URL")
    path = Path(location)
    if path.is_dir():
        cp = proc.run(["git", "-C", location, "rev-parse", "--git-dir"], check=False)
        if cp.returncode != 0:
            said = redact(next(iter(cp.err.strip().splitlines()), ""))[:300]
            if "dubious ownership" in said:  # git's safe.directory rule (CVE-2022-24765): the folder is another user's
                raise BlockedError(
                    f"git refuses to read source.repo {location}: {said.removeprefix('fatal: ')} (it belongs to another user)",
                    hint=f"git config --global --add safe.directory {location} (if you trust it), or run as its owner",
                )
            raise ConfigError(f"source.repo is not a git repository: {location}" + (f" ({said})" if said else ""), hint="point source.repo at a git repository")
        # a folder inside a work tree stands for its repository: git runs at the top, where
        # source.subdir is read from (inside apps/site, `git archive` took paths from there)
        top = proc.run(["git", "-C", location, "rev-parse", "--show-toplevel"], check=False)
        found = top.out.strip()
        return found if top.returncode == 0 and found and os.path.isdir(found) else location
    if not path.exists() and location != cfg.repo:
        raise ConfigError(f"source.repo does not exist: {location}", hint="fix source.repo (a path, a git bundle file or a URL)")
    mirror = cfg.state / "mirrors" / hashlib.sha256(location.encode()).hexdigest()[:16]
    if mirror.exists():
        # the URL is passed each time, never stored: a token in it stays out of the mirror's config
        proc.run(["git", "-C", str(mirror), "fetch", "--quiet", "--prune", "--tags", location, "+refs/*:refs/*"], check=False)
    else:
        from ..state import private_dir

        private_dir(mirror.parent)
        proc.run(
            ["git", "clone", "--quiet", "--mirror", location, str(mirror)],
            error=BlockedError if location == cfg.repo else ConfigError,
            what=f"git clone {redact(location)}",
            hint="check the URL or bundle file and your git credentials (never put a password in source.repo)",
        )
        proc.run(["git", "-C", str(mirror), "remote", "set-url", "origin", redact(location)], check=False)
    return str(mirror)


def resolve(cfg: Config) -> Source:
    """Resolve ``source.head`` to one full commit sha, or STOP (exit 3) if it is not there."""
    location = cfg.repo_location()
    head = cfg.head
    if head.startswith("-"):
        raise ConfigError(f"source.head must not start with '-': {head!r}", hint="use a sha, a tag or HEAD")
    here = Path(location)
    # the usual case (the top of a work tree, or a bare repository), one git call; anything
    # else takes the long way (a folder inside a work tree resolves to its top there)
    if here.is_dir() and ((here / ".git").exists() or (here / "objects").is_dir()):
        cp = git(location, "-c", "log.showSignature=false", "show", "-s", "--format=%H %ct", "--end-of-options", f"{head}^{{commit}}", "--", check=False)
        m = _SHA_TIME.fullmatch(cp.out.strip()) if cp.returncode == 0 else None
        if m:
            return _source(cfg, location, location, m.group(1), int(m.group(2)))
    git_dir = open_repo(cfg)
    cp = git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{head}^{{commit}}", check=False)
    if cp.returncode != 0:
        raise BlockedError(
            f"source unavailable: the recorded HEAD {head} is not a commit in {location}",
            hint=(
                "deliver it, then rerun: fetch it (git -C <repo> fetch origin "
                f"{head}), or point source.repo at a `git bundle` file holding it, or at a path/URL that has it"
            ),
            detail=f"looked for: {head}^{{commit}} in {git_dir}",
        )
    sha = cp.out.strip()
    ct = int(git(git_dir, "-c", "log.showSignature=false", "show", "-s", "--format=%ct", sha).out.strip())
    return _source(cfg, git_dir, location, sha, ct)


_SHA_TIME = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64}) ([0-9]+)")


def _source(cfg: Config, git_dir: str, location: str, sha: str, ct: int) -> Source:
    subdir = cfg.subdir
    if subdir:
        t = git(git_dir, "cat-file", "-t", f"{sha}:{subdir}", check=False)
        if t.returncode != 0 or t.out.strip() != "tree":
            raise ConfigError(f"source.subdir '{subdir}' is not a folder in commit {sha[:12]}", hint="fix source.subdir")
    return Source(git_dir=git_dir, location=location, sha=sha, commit_time=ct, subdir=subdir)


def read_file(src: Source, relpath: str) -> bytes | None:
    spec = f"{src.sha}:{src.subdir}/{relpath}" if src.subdir else f"{src.sha}:{relpath}"
    cp = git(src.git_dir, "cat-file", "blob", spec, check=False)
    return cp.stdout if cp.returncode == 0 else None


_VERSION_RE = re.compile(r"""^__version__\s*(?::\s*str\s*)?=\s*['"]([^'"]+)['"]""", re.MULTILINE)


def scm_version(src: Source) -> str:
    """The version setuptools-scm / hatch-vcs would compute at the recorded commit.

    Scheme ``guess-next-dev`` with local ``node``: a tagged commit gives the tag's version;
    N commits past tag X.Y.Z gives X.Y.(Z+1).devN+g<sha7>; no tag gives 0.1.devN+g<sha7>.
    """
    cp = git(src.git_dir, "describe", "--tags", "--long", "--abbrev=7", "--match", "*[0-9]*", src.sha, check=False)
    if cp.returncode != 0:
        n = git(src.git_dir, "rev-list", "--count", src.sha).out.strip()
        return f"0.1.dev{n}+g{src.sha7}"
    m = re.fullmatch(r"(?P<tag>.+)-(?P<n>\d+)-g[0-9a-f]+", cp.out.strip())
    if not m:
        raise ReleaseError(f"cannot parse git describe output {cp.out.strip()!r}")
    tag, distance = m["tag"], int(m["n"])
    vm = re.search(r"(\d+(?:\.\d+)*)", tag)
    if not vm:
        raise ReleaseError(f"tag {tag!r} holds no version number")
    version = vm.group(1)
    if distance == 0:
        return version
    parts = version.split(".")
    parts[-1] = str(int(parts[-1]) + 1)
    return f"{'.'.join(parts)}.dev{distance}+g{src.sha7}"


def tree_files(src: Source) -> dict[str, int]:
    """Every file and link of the recorded tree (``source.subdir`` of it) with its size: what
    ``git archive`` would write if no ``export-ignore`` applied (submodules left out)."""
    listed = git(src.git_dir, "ls-tree", "-r", "-z", "--long", "--end-of-options", src.treeish)
    out: dict[str, int] = {}
    for entry in listed.out.split("\0"):
        if not entry or "\t" not in entry:
            continue
        meta, path = entry.split("\t", 1)
        _, kind, _, size = meta.split(None, 3)
        if kind == "blob":
            out[path] = int(size) if size.strip().isdigit() else 0
    return out


def tag_version(src: Source) -> str:
    """``version_from = "git-tag"``: the version of the nearest tag (a tagged commit gives the
    tag's; N commits past it, the next version's ``.devN+g<sha7>``, as setuptools-scm
    computes it); no tag reachable is exit 3."""
    cp = git(src.git_dir, "describe", "--tags", "--abbrev=0", "--match", "*[0-9]*", src.sha, check=False)
    if cp.returncode != 0:
        raise BlockedError(
            f'bundle.version_from = "git-tag", but no tag with a version is reachable from commit {src.sha[:12]}',
            hint='tag a commit (git tag v1.0.0), or set bundle.version = "..." instead',
        )
    return scm_version(src)


# the environment variable that ``archive_argv`` points git's --config-env at: empty
_EMPTY = "RELEASE_GIT_EMPTY"


def submodules(src: Source) -> list[str]:
    """The paths of the git submodules (gitlinks, mode 160000) in the recorded tree: a commit
    records only their commit id, so ``git archive`` writes an empty folder for each."""
    listed = git(src.git_dir, "ls-tree", "-r", "-z", "--end-of-options", src.treeish)
    return [entry.split("\t", 1)[1] for entry in listed.out.split("\0") if entry.startswith("160000 ")]


def archive_argv(src: Source) -> tuple[list[str], dict[str, str]]:
    """``git archive`` of the recorded tree, and the environment it adds: the committed blobs
    as git exports them, the same on every machine. Left to itself, ``git archive`` runs
    the filter drivers (clean/smudge, and the long-running ``process`` filter that Git LFS
    installs) that this repository's or this machine's configuration defines, for each
    file whose attributes name them, and applies this machine's line endings
    (``core.autocrlf``) and global attributes file (an ``export-subst`` there rewrites
    files). Here every configured filter driver is emptied (``--config-env``, which takes
    any driver name whole), the line endings and the global and system attributes are
    fixed. What stays is the tree's own ``export-ignore``; ``export-subst`` never applies
    (a tree is archived, which carries no commit to substitute)."""
    fixed = ["-c", "core.autocrlf=false", "-c", "core.eol=lf", "-c", "core.attributesFile=/dev/null", *_emptied_filters(src.git_dir)]
    return ["git", "-C", src.git_dir, *fixed, "archive", "--format=tar", src.treeish], {_EMPTY: "", "GIT_ATTR_NOSYSTEM": "1"}


def _emptied_filters(git_dir: str) -> tuple[str, ...]:
    """Every filter driver git's configuration defines, emptied; asked at each archive (not
    cached: a driver configured between two runs of one process must not slip through)."""
    listed = git(git_dir, "config", "--null", "--name-only", "--get-regexp", r"^filter\..+\.(clean|smudge|process|required)$", check=False)
    drivers = sorted({name.split(".", 1)[1].rsplit(".", 1)[0] for name in listed.out.split("\0") if name.count(".") >= 2})
    return tuple(f"--config-env=filter.{d}.{key}={_EMPTY}" for d in drivers for key in ("clean", "smudge", "process", "required"))


def export(src: Source, dest: Path) -> None:
    """Write the recorded commit's tree (``source.subdir`` of it) into the new folder ``dest``."""
    import tarfile

    dest.mkdir(parents=True)
    argv, env = archive_argv(src)
    p = proc.popen(argv, env=env)
    assert p.stdout is not None
    try:
        with tarfile.open(fileobj=p.stdout, mode="r|") as tf:
            tf.extractall(dest, filter="data")
    finally:
        p.stdout.close()
        if p.stderr is not None:
            p.stderr.close()
        rc = p.wait()
    if rc != 0:
        raise ReleaseError(f"git archive of {src.sha[:12]} failed (exit {rc})")
