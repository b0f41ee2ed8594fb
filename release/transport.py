"""One transport interface, two implementations: this machine, or an SSH host.

Both run the stdlib-only target agent (``release/agent.py``) with the target's
interpreter; for SSH the agent's source travels inside the remote command, so the
target needs nothing installed but Python. SSH is the system OpenSSH client in batch
mode: the user's ssh_config (or ``target.ssh_config`` as ``-F``), agent, jump hosts and
known_hosts apply.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from . import proc
from .config import Config
from .errors import OutcomeUnknownError, ReleaseError, from_exit_code
from .redact import redact

if TYPE_CHECKING:  # subprocess, shlex and base64 are imported by the SSH and program paths that use them
    import subprocess

# the agent is stdlib only: isolated mode (no PYTHON* variables, no user site, no cwd on
# sys.path) and no site import, which also makes it start faster
AGENT_FLAGS = ("-I", "-S")
SSH_OPTIONS = ("-o", "BatchMode=yes")  # always: a prompt would hang the run
# the connection's time limits, unless the operator's ssh_config sets its own (``ssh_defaults``)
CONNECT_TIMEOUT = ("-o", "ConnectTimeout=20")
KEEPALIVE = ("-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4")


AGENT_PACKAGE = "release_agent"  # the agent package's name on the target (it never touches its disk)

# The program on the command line. M: {package: [module paths]}. The modules' code, compiled
# by this controller's interpreter, arrives first on stdin ({n} bytes: zlib'd marshal of
# {"package/path": code}) and is used when the target's bytecode format (magic number) is
# the controller's; otherwise, or for a module it lacks, the source (compressed, in the
# program) is compiled there. A small finder serves the modules from memory.
_BOOT = """import sys,zlib
from importlib.machinery import ModuleSpec
M={index}
C={}
if {n}:
 import os,marshal
 b=bytearray()
 while len(b)<{n}:
  c=os.read(0,{n}-len(b))
  if not c:sys.exit('release agent: its code was cut short on stdin')
  b+=c
 if getattr(sys.modules.get('_frozen_importlib_external'),'MAGIC_NUMBER',None)==bytes.fromhex('{magic}'):
  try:C=marshal.loads(zlib.decompress(b))
  except Exception:sys.exit('release agent: its code arrived damaged on stdin')
S=[]
class F:
 def key(self,name):
  top,_,rest=name.partition('.')
  m=M.get(top)
  if m is None:return None
  r=rest.replace('.','/') or '__init__'
  if r in m:return top,r
  if r+'/__init__' in m:return top,r+'/__init__'
 def find_spec(self,name,path=None,target=None):
  k=self.key(name)
  if k:return ModuleSpec(name,self,is_package=k[1].endswith('__init__'))
 def create_module(self,spec):return None
 def exec_module(self,m):
  top,k=self.key(m.__name__)
  c=C.get(top+'/'+k)
  if c is None:
   if not S:
    import json,base64
    S.append(json.loads(zlib.decompress(base64.b64decode('{blob}'))))
   c=compile(S[0][top][k],'<'+top+'/'+k+'.py>','exec')
  exec(c,m.__dict__)
sys.meta_path.insert(0,F())
from {pkg}.ops import main
sys.exit(main(sys.argv))
"""


def _package_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).with_suffix("").as_posix(): p for p in sorted(folder.rglob("*.py"))}


def _package_folders() -> dict[str, Path]:
    """What travels to the target: the agent package, and pypa ``installer`` (used to build a
    release's environment; carried here so that deploying never runs code from the bundle)."""
    import importlib.util

    spec = importlib.util.find_spec("installer")  # located, not imported: the controller never runs it
    if spec is None or not spec.submodule_search_locations:
        from .errors import BlockedError

        raise BlockedError("pypa installer is not installed", hint="pip install installer (a dependency of this tool)")
    return {AGENT_PACKAGE: Path(__file__).parent / "agent", "installer": Path(next(iter(spec.submodule_search_locations)))}


def agent_sources() -> dict[str, dict[str, str]]:
    """{package: {module path: source}} of everything that travels to the target."""
    return {top: {k: p.read_text() for k, p in _package_files(folder).items()} for top, folder in _package_folders().items()}


@functools.cache
def _compiled() -> bytes:
    """The agent package's code as this interpreter compiled it: read from its own bytecode
    cache (``__pycache__``, checked against the source as imports check it), so a run costs
    no compiling; file names as the source fallback names them. pypa installer is left to
    the fallback: only a deploy that builds an environment runs it."""
    import importlib.machinery
    import marshal
    import types

    def renamed(code: types.CodeType, name: str) -> types.CodeType:
        consts = tuple(renamed(c, name) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        return code.replace(co_filename=name, co_consts=consts)

    codes = {}
    for k, path in _package_files(_package_folders()[AGENT_PACKAGE]).items():
        name = f"{AGENT_PACKAGE}.{k.replace('/', '.')}".removesuffix(".__init__")
        code = importlib.machinery.SourceFileLoader(name, str(path)).get_code(name)
        if code is None:
            raise ReleaseError(f"the agent module {path} has no code", hint="reinstall the tool")
        codes[f"{AGENT_PACKAGE}/{k}"] = renamed(code, f"<{AGENT_PACKAGE}/{k}.py>")
    return zlib.compress(marshal.dumps(codes), 1)


@functools.cache
def _program(code_size: int = 0, magic: bytes = b"") -> str:
    """The program: the source (compressed) and a small ``sys.meta_path`` importer; with
    ``code_size``, it first reads that many bytes of compiled code from stdin (``_compiled``)."""
    import base64
    import importlib.util

    sources = agent_sources()
    blob = base64.b64encode(zlib.compress(json.dumps(sources, sort_keys=True).encode(), 6)).decode()
    index = repr({top: sorted(modules) for top, modules in sources.items()})
    fields = {"index": index, "n": str(code_size), "magic": (magic or importlib.util.MAGIC_NUMBER).hex(), "pkg": AGENT_PACKAGE, "blob": blob}
    return _fill(_BOOT, fields)


def _fill(template: str, fields: dict[str, str]) -> str:
    for key, value in fields.items():
        template = template.replace("{" + key + "}", value)
    return template


def _bootstrap() -> str:
    """The program that compiles every module from its source (any target Python)."""
    return _program()


_BUILDING = threading.Lock()


def agent_program() -> tuple[str, bytes]:
    """(the program, the code it reads first on stdin): built once per run, by the first of
    the fleet's threads to need it (the others wait instead of building it again)."""
    with _BUILDING:
        code = _compiled()
        return _program(len(code)), code


class Transport(Protocol):
    label: str
    same_machine: bool  # the target can read the controller's files in place

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]: ...

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]: ...


class _Base:
    label = ""
    same_machine = False

    def __init__(self, python: str) -> None:
        self.python = python

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]:
        raise NotImplementedError

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]:
        argv = self.argv(op, request)
        proc.log.debug("agent %s on %s", op, self.label)
        cp = proc.run(
            argv,
            stdin=stdin,
            prefix=agent_program()[1],
            check=False,
            timeout=timeout,
            what=f"agent op {op} on {self.label}",
            hint=f"install {argv[0]} or fix target.python / PATH",
        )
        return self._answer(op, cp)

    def _answer(self, op: str, cp: proc.Completed) -> dict[str, Any]:
        err = redact(cp.stderr.decode("utf-8", "replace").strip())
        lines = cp.stdout.decode("utf-8", "replace").strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise self._no_answer(op, cp.returncode, err)
        if not answer.get("ok"):
            detail = err
            if answer.get("traceback"):
                proc.log.debug("agent traceback on %s:\n%s", self.label, answer["traceback"])
                detail = (err + "\n" if err else "") + str(answer["traceback"])
            raise from_exit_code(int(answer.get("exit_code", 1)), str(answer.get("message", "")), hint=str(answer.get("hint", "")), detail=detail)
        result: dict[str, Any] = answer["result"]
        if err:
            result.setdefault("_log", err)
        return result

    def _no_answer(self, op: str, code: int, err: str) -> ReleaseError:
        if op in CHANGING_OPS:
            return _unknown(op, self.label, f"the target agent gave no answer (exit {code})", err)
        return ReleaseError(f"target agent ({op}) on {self.label} gave no answer (exit {code})", detail=err, hint=f"check that {self.python} runs there")


# OpenSSH's messages for a connection that never reached the remote command
NEVER_CONNECTED = (
    "ssh: connect to host",
    "Could not resolve hostname",
    "Permission denied",
    "Host key verification failed",
    "No route to host",
    "Connection refused",
    "banner exchange",
    "Bad configuration option",
    "Too many authentication failures",
)

# ops that change the target: when their answer is lost, the outcome is unknown, not failed
CHANGING_OPS = frozenset({"deploy", "rollback", "promote", "provision", "unprovision", "repoint"})


def _unknown(op: str, label: str, why: str, err: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        f"{op} on {label}: outcome unknown: {why}",
        detail=err,
        hint="the target may have finished it; the next deploy or rollback reconciles it with the target first (see `release status`)",
    )


class LocalTransport(_Base):
    label = "localhost"
    same_machine = True

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]:
        return [self.python, *AGENT_FLAGS, "-c", agent_program()[0], op, json.dumps(request)]

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]:
        from . import inprocess

        if stdin is None and inprocess.usable(self.python, op):  # no second interpreter start (see inprocess)
            proc.log.debug("agent %s on %s, in a forked child", op, self.label)
            return self._answer(op, inprocess.run(op, request, timeout))
        return super().agent(op, request, stdin=stdin, timeout=timeout)


class _Shared:
    """OpenSSH connection sharing for this run: one authenticated connection per host, reused
    by every call of every stage (ControlMaster/ControlPersist), its socket in a private 0700
    folder; at exit each master is told to stop and the folder is removed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.folder = ""
        self.masters: set[tuple[str, ...]] = set()
        self.opening: dict[tuple[str, ...], threading.Thread] = {}
        self.failed: dict[tuple[str, ...], str] = {}
        self.openers: list[subprocess.Popen[bytes]] = []

    def options(self, base: list[str], host: str) -> list[str]:
        with self.lock:
            if not self.folder:
                import tempfile

                self.folder = tempfile.mkdtemp(prefix="release-ssh-")  # mode 0700
                atexit.register(self.close)
            self.masters.add((*base, host))
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.socket(base, host)}", "-o", "ControlPersist=60"]

    def socket(self, base: list[str], host: str) -> str:
        """One socket per host as named here (OpenSSH's %C hashes the resolved address, so
        two names for one machine would share a master and an opener would hang on it)."""
        return f"{self.folder}/" + hashlib.sha256("\0".join([*base, host]).encode()).hexdigest()[:24]

    def open_soon(self, base: list[str], host: str, gate: threading.Semaphore | None = None) -> None:
        """Start opening the connection in the background (``ssh -N``: it returns once the
        master is up, no remote command), at most ``gate`` at a time, while this run does
        other work; the host's first call waits for it (``wait``)."""
        key = (*base, host)

        def run() -> None:
            why = self._open(base, host, gate)
            if why:
                with self.lock:
                    self.failed[key] = why

        thread = threading.Thread(target=run, daemon=True)
        with self.lock:
            if key in self.opening:
                return
            self.opening[key] = thread
        thread.start()

    def open_now(self, base: list[str], host: str) -> str:
        return self._open(base, host, None)

    def _open(self, base: list[str], host: str, gate: threading.Semaphore | None) -> str:
        """'' when the connection is up (or was already), else OpenSSH's message."""
        import subprocess

        argv = [*base, *ssh_defaults(tuple(base), host), *self.options(base, host), "-N", "--", host]
        with gate or contextlib.nullcontext():
            if os.path.exists(self.socket(base, host)):  # a call opened it already (-N would wait on it)
                return ""
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=proc.clean_env())
            with self.lock:
                self.openers.append(child)
            try:
                _, err = child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                return "ssh: connect timed out"
        return "" if child.returncode == 0 else (redact(err.decode("utf-8", "replace").strip()) or f"ssh exited {child.returncode}")

    def wait(self, base: list[str], host: str) -> str:
        """Wait for a connection being opened in the background: '' or why it failed (told
        once: a later call makes its own connection)."""
        key = (*base, host)
        with self.lock:
            thread = self.opening.get(key)
        if thread is not None:
            thread.join()
        with self.lock:
            return self.failed.pop(key, "")

    def close(self) -> None:
        """Stop openers still connecting, tell every master to stop (all at once), then
        remove the socket folder."""
        import subprocess

        for child in self.openers:
            if child.poll() is None:
                child.kill()
                child.wait()
        self.openers.clear()
        stops = [
            subprocess.Popen(
                [*base, "-o", f"ControlPath={self.socket(base, host)}", "-O", "exit", "--", host],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=proc.clean_env(),
            )
            for *base, host in sorted(self.masters)
        ]
        for p in stops:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.masters.clear()
        if self.folder:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""


SHARED = _Shared()


@functools.cache
def ssh_defaults(base: tuple[str, ...], host: str) -> tuple[str, ...]:
    """The time limits this tool adds for ``host``: only those the operator's configuration
    (in ``base``: ``-F``, an inventory's options, else ssh's own files) does not set itself.
    OpenSSH takes the first value it sees and a ``-o`` comes before any file, so a default
    of ours would override theirs. Read from ``ssh -G`` (the configuration as ssh resolves
    it; no connection), once per host and run, in the thread that opens the host's
    connection; when ssh cannot tell, all of them (the call itself then reports what is
    wrong). ``BatchMode=no`` first, for the question only: in batch mode ssh reports an
    unset ServerAliveInterval as 300. An interval of 0 reads as unset."""
    try:
        cp = proc.run([base[0], "-o", "BatchMode=no", *base[1:], "-G", "--", host], check=False, timeout=20)
    except ReleaseError:  # no ssh, or it hung
        return CONNECT_TIMEOUT + KEEPALIVE
    if cp.returncode != 0:
        return CONNECT_TIMEOUT + KEEPALIVE
    seen = dict(line.partition(" ")[::2] for line in cp.out.splitlines())
    unset = ("", "none", "0", "-1")  # as OpenSSH versions print a value nobody set
    return (CONNECT_TIMEOUT if seen.get("connecttimeout", "") in unset else ()) + (KEEPALIVE if seen.get("serveraliveinterval", "") in unset else ())


class SshTransport(_Base):
    def __init__(self, host: str, python: str, ssh_config: str = "", options: tuple[str, ...] = (), share: bool = True) -> None:
        super().__init__(python)
        self.host = host
        self.label = host
        self.ssh_config = ssh_config
        self.options = options
        self.share = share

    def _base(self) -> list[str]:
        """ssh, the options it always gets, and the operator's configuration: also the key of
        the host's shared connection (the time limits, ``ssh_defaults``, follow from it)."""
        return ["ssh", *SSH_OPTIONS, *(["-F", self.ssh_config] if self.ssh_config else []), *self.options]

    def ssh_argv(self) -> list[str]:
        base = self._base()
        argv = [*base, *ssh_defaults(tuple(base), self.host)]
        if self.share:
            argv += SHARED.options(base, self.host)
        return argv

    def connect_soon(self, gate: threading.Semaphore | None = None) -> None:
        """Start opening this host's shared connection (the first call waits for it)."""
        if self.share:
            SHARED.open_soon(self._base(), self.host, gate)

    def ready(self) -> None:
        """The shared connection is up, opened now if it is not (for ``ssh -O`` requests such
        as a forward); exit 1 naming the host when it cannot be."""
        if not self.share:
            return
        base = self._base()
        why = SHARED.wait(base, self.host) or SHARED.open_now(base, self.host)
        if why:
            raise self._cannot_connect(why)

    def agent(self, op: str, request: Mapping[str, object], *, stdin: BinaryIO | None = None, timeout: float | None = None) -> dict[str, Any]:
        why = SHARED.wait(self._base(), self.host) if self.share else ""
        if why and any(m in why for m in NEVER_CONNECTED):  # it never got in: the op was not started
            raise self._cannot_connect(why)
        return super().agent(op, request, stdin=stdin, timeout=timeout)

    def _cannot_connect(self, err: str) -> ReleaseError:
        return ReleaseError(
            f"cannot connect to SSH host {self.host}",
            detail=err,
            hint="check target.host, your ssh_config/target.ssh_config, keys/agent and known_hosts (batch mode: no prompts)",
        )

    def argv(self, op: str, request: Mapping[str, object]) -> list[str]:
        import shlex

        remote = shlex.join([self.python, *AGENT_FLAGS, "-c", agent_program()[0], op, json.dumps(request)])
        return [*self.ssh_argv(), "--", self.host, remote]

    def _no_answer(self, op: str, code: int, err: str) -> ReleaseError:
        if code == 255 and op in CHANGING_OPS and not any(m in err for m in NEVER_CONNECTED):
            return _unknown(op, self.label, "the SSH connection was lost", err)
        if code == 255:
            return self._cannot_connect(err)
        return super()._no_answer(op, code, err)


def for_config(cfg: Config) -> Transport:
    if cfg.is_local:
        return LocalTransport(cfg.python)
    ssh_config = cfg.ssh_config
    if ssh_config and not Path(ssh_config).is_file():
        from .errors import ConfigError

        raise ConfigError(f"target.ssh_config not found: {ssh_config}", hint="fix target.ssh_config")
    return SshTransport(cfg.host, cfg.python, ssh_config, cfg.ssh_options)
