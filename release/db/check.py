"""The G6 smoke: a provably read-only PostgreSQL dry run (psycopg 3).

Three independent layers and a proof:
1. every statement parsed with pglast (``sqlguard``) before anything is sent;
2. ``BEGIN READ ONLY`` ... ``ROLLBACK`` around every statement, sent as a prepared
   statement (two statements in one string are rejected by the protocol), and after
   each one a check that the transaction is still open and still read-only;
3. the role: not superuser, no BYPASSRLS, no CREATEROLE, and its grant matrix (from the
   ``has_*_privilege`` functions, so PUBLIC and predefined-role grants count) hashed and
   compared with ``expected_grant_matrix_sha``.
Proof, taken inside each transaction before ROLLBACK: no transaction id assigned and
zero inserted/updated/deleted tuples in ``pg_stat_xact_all_tables``. Row counts of
``count_tables`` are taken before and after and must be equal.

The DSN comes only from the environment (or PGPASSFILE); it is never printed or stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..config import Check
from ..errors import ConfigError, RefusedError, ReleaseError
from ..redact import redact, register_secret
from .sqlguard import check as guard
from .sqlguard import check_catalog, check_plan

MATRIX_SQL = """
select 'table' as kind, n.nspname || '.' || c.relname as obj, p.priv,
       has_table_privilege(current_user, c.oid, p.priv) as ok
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 cross join (values ('SELECT'), ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'), ('REFERENCES'), ('TRIGGER')) p(priv)
 where c.relkind in ('r', 'v', 'm', 'p', 'f') and n.nspname <> 'information_schema'
   and n.nspname not like 'pg\\_%'
union all
select 'sequence', n.nspname || '.' || c.relname, p.priv, has_sequence_privilege(current_user, c.oid, p.priv)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 cross join (values ('USAGE'), ('SELECT'), ('UPDATE')) p(priv)
 where c.relkind = 'S' and n.nspname <> 'information_schema' and n.nspname not like 'pg\\_%'
union all
select 'function', n.nspname || '.' || f.proname || '(' || pg_get_function_identity_arguments(f.oid) || ')', 'EXECUTE',
       has_function_privilege(current_user, f.oid, 'EXECUTE')
  from pg_proc f join pg_namespace n on n.oid = f.pronamespace
 where n.nspname <> 'information_schema' and n.nspname not like 'pg\\_%'
union all
select 'schema', n.nspname, p.priv, has_schema_privilege(current_user, n.oid, p.priv)
  from pg_namespace n cross join (values ('USAGE'), ('CREATE')) p(priv)
 where n.nspname <> 'information_schema' and n.nspname not like 'pg\\_%'
union all
select 'database', current_database(), p.priv, has_database_privilege(current_user, current_database(), p.priv)
  from (values ('CREATE'), ('TEMPORARY'), ('CONNECT')) p(priv)
union all
select 'member', r.rolname, 'MEMBER', true
  from pg_roles r where r.rolname <> current_user and pg_has_role(current_user, r.oid, 'MEMBER')
"""

# what the role (or any role it is a member of, inherited or by SET ROLE) may write or
# create: a read-only proof is only as good as a role that cannot write at all
WRITES_SQL = """
with roles as (select r.oid, r.rolname from pg_roles r where pg_has_role(current_user, r.oid, 'MEMBER'))
select ro.rolname, 'table ' || n.nspname || '.' || c.relname, p.priv
  from roles ro cross join pg_class c join pg_namespace n on n.oid = c.relnamespace
 cross join (values ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'), ('TRIGGER')) p(priv)
 where c.relkind in ('r', 'v', 'm', 'p', 'f') and n.nspname <> 'information_schema' and n.nspname not like 'pg\\_%'
   and has_table_privilege(ro.oid, c.oid, p.priv)
union all
select ro.rolname, 'sequence ' || n.nspname || '.' || c.relname, p.priv
  from roles ro cross join pg_class c join pg_namespace n on n.oid = c.relnamespace
 cross join (values ('USAGE'), ('UPDATE')) p(priv)
 where c.relkind = 'S' and n.nspname <> 'information_schema' and n.nspname not like 'pg\\_%'
   and has_sequence_privilege(ro.oid, c.oid, p.priv)
union all
select ro.rolname, 'schema ' || n.nspname, 'CREATE'
  from roles ro cross join pg_namespace n
 where n.nspname <> 'information_schema' and n.nspname not like 'pg\\_%' and has_schema_privilege(ro.oid, n.oid, 'CREATE')
union all
select ro.rolname, 'database ' || current_database(), 'CREATE' from roles ro where has_database_privilege(ro.oid, current_database(), 'CREATE')
union all
select ro.rolname, 'owner of ' || c.oid::regclass::text, 'OWNER'
  from roles ro join pg_class c on c.relowner = ro.oid join pg_namespace n on n.oid = c.relnamespace
 where n.nspname <> 'information_schema' and n.nspname not like 'pg\\_%'
 order by 1, 2, 3
"""

PROOF_SQL = """
select pg_current_xact_id_if_assigned() is null as no_xid,
       coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint as tuples_written
  from pg_stat_xact_all_tables
"""


def dsn_from_env(check: Check) -> str | None:
    """The DSN from its variable (taken out of the environment at start, see ``secretenv``);
    a ``PGPASSWORD`` taken the same way is added to it as the password."""
    from .. import secretenv

    name = str(check.options["dsn_env"])
    dsn = secretenv.get(name)
    if not dsn:
        return None
    redact(dsn)  # remembers any password it holds, so it is masked everywhere
    password = secretenv.get("PGPASSWORD")
    if password:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        try:
            has_password = bool(conninfo_to_dict(dsn).get("password"))
        except Exception:  # a malformed DSN is reported (withheld) when it is used
            has_password = True
        if not has_password:
            dsn = make_conninfo(dsn, password=password)
    return dsn


def validate_queries(check: Check) -> None:
    """Layer 1 for every query of the check, before anything connects (exit 4 if forbidden)."""
    for q in check.options.get("queries", []):
        guard(q, check.options.get("forbid_functions", []))


@contextmanager
def _connect(dsn: str, timeout_s: int) -> Iterator[Any]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        raise ConfigError(
            "the DSN is malformed (psycopg could not parse it); its text is withheld because it may hold a password",
            hint="fix the value of the DSN environment variable",
        ) from None
    if params.get("password"):
        register_secret(str(params["password"]))
    try:
        conn = psycopg.connect(dsn, autocommit=False, connect_timeout=10, options=f"-c statement_timeout={timeout_s * 1000}")
    except psycopg.Error as exc:
        raise ReleaseError(f"cannot connect to the database: {redact(str(exc)).strip()}", hint="check the DSN variable, the server and the role") from None
    try:
        conn.read_only = True
        yield conn
    finally:
        conn.close()


def refuse_writer(user: str, writes: list[tuple[Any, ...]]) -> None:
    """A role that may write (or create, or owns objects), itself or through a role it is a
    member of, is refused whatever the config says: exit 4, naming what it may write."""
    if not writes:
        return
    shown = [f"{priv} on {obj}" + (f" (through {role})" if role != user else "") for role, obj, priv in writes[:8]]
    more = f" and {len(writes) - 8} more" if len(writes) > 8 else ""
    raise RefusedError(
        f"role {user!r} can write: {', '.join(shown)}{more}; a read-only smoke runs only as a role that cannot; nothing was run",
        hint="smoke with a role that has SELECT only (revoke the rest, or use a dedicated read-only role)",
    )


def matrix_lines(rows: list[tuple[Any, ...]]) -> list[str]:
    return sorted(f"{k}\t{o}\t{p}\t{'yes' if ok else 'no'}" for k, o, p, ok in rows)


def matrix_sha(lines: list[str]) -> str:
    return hashlib.sha256("".join(x + "\n" for x in lines).encode()).hexdigest()


def run(check: Check, dsn: str, *, baseline: Callable[[str], list[str] | None] = lambda sha: None) -> dict[str, Any]:
    """Run one db-readonly check; returns the report's ``data`` (raises on refusal/failure)."""
    import psycopg
    from psycopg import pq, sql

    opts = check.options
    validate_queries(check)
    data: dict[str, Any] = {"mode": "DRYRUN", "statements": []}
    problems: list[str] = []
    try:
        with _connect(dsn, check.timeout) as conn:
            with conn.transaction(force_rollback=True):
                row = conn.execute("select current_user, r.rolsuper, r.rolbypassrls, r.rolcreaterole from pg_roles r where r.rolname = current_user").fetchone()
                matrix = matrix_lines(conn.execute(MATRIX_SQL).fetchall())
                writes = conn.execute(WRITES_SQL).fetchall()
            user, superuser, bypass, createrole = row
            data["role"] = user
            want_role = opts.get("role")
            if want_role and user != want_role:
                raise RefusedError(f"connected as role {user!r}, the check expects {want_role!r}", hint="use the read-only role's DSN")
            unsafe = [n for n, v in (("SUPERUSER", superuser), ("BYPASSRLS", bypass), ("CREATEROLE", createrole)) if v]
            if unsafe:
                raise RefusedError(
                    f"role {user!r} has {', '.join(unsafe)}: not a read-only role; nothing was run",
                    hint="smoke with a role without these attributes",
                )
            refuse_writer(user, writes)
            sha = matrix_sha(matrix)
            data["grant_matrix_sha256"] = sha
            data["grants"] = [x for x in matrix if x.endswith("\tyes")]
            expected = opts.get("expected_grant_matrix_sha")
            if expected and expected != sha:
                base = baseline(expected)
                if base is not None:
                    granted = data["grants"]
                    diff = sorted(set(granted) ^ set(base))
                    data["grant_matrix_diff"] = [("+ " if x in granted else "- ") + x for x in diff]
                shown = data.get("grant_matrix_diff") or [f"  {x}" for x in data["grants"]]
                problems.append(f"grant matrix sha256 {sha} differs from expected {expected}:\n" + "\n".join(shown))

            def counts() -> dict[str, int]:
                out: dict[str, int] = {}
                with conn.transaction(force_rollback=True):
                    for t in opts.get("count_tables", []):
                        ident = sql.Identifier(*t.split("."))
                        # a "table" may be a view: its definition passes the same two layers
                        count_sql = sql.SQL("select count(*) from {}").format(ident).as_string(conn)
                        check_catalog(conn, guard(count_sql), opts.get("allow_functions", []))
                        check_plan(conn, count_sql, opts.get("allow_functions", []), bool(opts.get("allow_foreign", False)))
                        out[t] = conn.execute(sql.SQL("select count(*) from {}").format(ident), prepare=True).fetchone()[0]
                return out

            before = counts()
            for q in opts.get("queries", []):
                with conn.transaction(force_rollback=True):
                    # layer 1b: the server's catalog decides what the statement may call
                    check_catalog(conn, guard(q, opts.get("forbid_functions", [])), opts.get("allow_functions", []), opts.get("forbid_functions", []))
                    # layer 1c: what the server would execute, every function by oid, every relation by kind
                    check_plan(conn, q, opts.get("allow_functions", []), bool(opts.get("allow_foreign", False)))
                    cur = conn.execute(q, prepare=True)
                    rows = cur.fetchall() if cur.description else []
                    still_open = conn.info.transaction_status == pq.TransactionStatus.INTRANS
                    ro = conn.execute("select current_setting('transaction_read_only')").fetchone()[0]
                    no_xid, written = conn.execute(PROOF_SQL).fetchone()
                ok = still_open and ro == "on" and no_xid and written == 0
                data["statements"].append(
                    {
                        "sql": q,
                        "rows": len(rows),
                        "transaction_open": still_open,
                        "read_only": ro == "on",
                        "no_xid": bool(no_xid),
                        "tuples_written": int(written),
                    }
                )
                if not ok:
                    problems.append(f"read-only proof failed for {q!r}: open={still_open} read_only={ro} no_xid={no_xid} written={written}")
            after = counts()
            data["counts_before"], data["counts_after"] = before, after
            if before != after:
                problems.append(f"row counts changed: before {before}, after {after}")
    except psycopg.Error as exc:
        raise ReleaseError(f"database error: {redact(str(exc)).strip()}") from None
    if problems:
        raise CheckFailed("; ".join(problems), data)
    return data


class CheckFailed(ReleaseError):
    """A check ran and failed; carries the data gathered so far for the report."""

    def __init__(self, message: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.data = data
