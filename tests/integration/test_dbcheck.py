"""G6 against a real PostgreSQL: forbidden SQL never sent, writes caught by the proof."""

from __future__ import annotations

import pytest

from release.config import Check
from release.db import check as dbcheck
from release.db import sqlguard
from release.errors import ConfigError, RefusedError, ReleaseError


def table_rows(admin: str) -> dict[str, list[tuple[object, ...]]]:
    import psycopg

    with psycopg.connect(admin) as conn:
        return {t: conn.execute(f"select * from {t} order by id").fetchall() for t in ("iu", "review_decision")}


def make_check(role: str, queries: list[str], forbid: tuple[str, ...] = ("fn_iu_create", "fn_iu_enact"), **extra: object) -> Check:
    opts = {
        "dsn_env": "TEST_DSN",
        "role": role,
        "queries": queries,
        "count_tables": ["iu", "review_decision"],
        "forbid_functions": list(forbid),
        **extra,
    }
    return Check(kind="db-readonly", name="db", timeout=30, options=opts)


FORBIDDEN = [
    "insert into iu (doc, idx, body) values ('x', 0, 'y')",
    "update iu set body = 'x'",
    "delete from iu",
    "with gone as (delete from iu returning *) select count(*) from gone",
    "select * into stolen from iu",
    "select * from iu for update",
    "select 1; commit; delete from iu",
    "set transaction read write",
    "select fn_iu_create('d', 'b')",
    "select \"fn_iu_create\"('d', 'b')",
    "select public.fn_iu_enact(1)",
    'select "public"."fn_iu_enact"(1)',
    "select * from public.fn_iu_create('d', 'b')",
    "select nextval('iu_id_seq')",
    "select lo_create(0)",
    "select lo_from_bytea(0, 'x')",
    "select pg_advisory_lock(1)",
    "select set_config('x.y', 'z', false)",
]


@pytest.mark.parametrize("sql", FORBIDDEN)
def test_forbidden_sql_is_refused_before_sending_and_tables_unchanged(app_db, sql: str) -> None:  # type: ignore[no-untyped-def]
    before = table_rows(app_db["admin"])
    with pytest.raises(RefusedError) as e:
        dbcheck.run(make_check(app_db["role"], [sql]), app_db["dsn"])
    assert e.value.exit_code == 4 and "forbidden SQL" in e.value.message
    assert table_rows(app_db["admin"]) == before


def test_read_only_pass_reports_proof_and_counts(app_db) -> None:  # type: ignore[no-untyped-def]
    data = dbcheck.run(make_check(app_db["role"], ["select count(*) from iu", "select * from review_decision"]), app_db["dsn"])
    assert data["counts_before"] == data["counts_after"] == {"iu": 3, "review_decision": 1}
    assert all(s["no_xid"] and s["read_only"] and s["transaction_open"] and s["tuples_written"] == 0 for s in data["statements"])
    assert len(data["grant_matrix_sha256"]) == 64
    assert "table\tpublic.iu\tSELECT\tyes" in data["grants"]


def test_layer_two_catches_a_write_the_parser_was_not_told_about(app_db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Without forbid_functions, a writing function passes the parser: the catalog layer
    refuses it (VOLATILE); with that layer off, the plan layer (the function's oid in the
    server's plan); with both off, the read-only transaction still stops it: each layer
    holds on its own. The role may execute the function but write nothing itself."""
    import psycopg

    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        conn.execute(f"grant execute on function fn_iu_create(text, text) to {app_db['role']}")
    before = table_rows(app_db["admin"])
    with pytest.raises(RefusedError) as refused:
        dbcheck.run(make_check(app_db["role"], ["select fn_iu_create('d', 'b')"], forbid=()), app_db["dsn"])
    assert "VOLATILE" in refused.value.message and "fn_iu_create" in refused.value.message
    monkeypatch.setattr(dbcheck, "check_catalog", lambda *a, **k: None)
    with pytest.raises(RefusedError) as planned:
        dbcheck.run(make_check(app_db["role"], ["select fn_iu_create('d', 'b')"], forbid=()), app_db["dsn"])
    assert "by the server's plan" in planned.value.message and "fn_iu_create(text,text) is VOLATILE" in planned.value.message
    monkeypatch.setattr(dbcheck, "check_plan", lambda *a, **k: None)
    with pytest.raises(ReleaseError) as e:
        dbcheck.run(make_check(app_db["role"], ["select fn_iu_create('d', 'b')"], forbid=()), app_db["dsn"])
    assert "read-only transaction" in e.value.message
    assert table_rows(app_db["admin"]) == before


def test_extra_grant_changes_the_matrix_hash_and_fails(app_db) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    base = dbcheck.run(make_check(app_db["role"], ["select 1"]), app_db["dsn"])
    sha = base["grant_matrix_sha256"]
    assert dbcheck.run(make_check(app_db["role"], ["select 1"], expected_grant_matrix_sha=sha), app_db["dsn"])["grant_matrix_sha256"] == sha
    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        conn.execute("create table extra_view_of_things (id int)")
        conn.execute(f"grant select on extra_view_of_things to {app_db['role']}")
    with pytest.raises(dbcheck.CheckFailed) as e:
        dbcheck.run(
            make_check(app_db["role"], ["select 1"], expected_grant_matrix_sha=sha),
            app_db["dsn"],
            baseline=lambda s: base["grants"] if s == sha else None,
        )
    assert "differs from expected" in e.value.message
    assert "+ table\tpublic.extra_view_of_things\tSELECT\tyes" in e.value.data["grant_matrix_diff"]


@pytest.mark.parametrize(
    "grant",
    [
        "grant update on review_decision to {role}",
        "grant insert on iu to {role}",
        "grant truncate on iu to {role}",
        "grant trigger on iu to {role}",
        "grant usage on sequence iu_id_seq to {role}",
        "grant create on schema public to {role}",
        "grant create on database {db} to {role}",
        "grant pg_write_all_data to {role}",
        "create role writer_{role} nologin; grant delete on iu to writer_{role}; grant writer_{role} to {role}",
        "create role noinherit_{role} nologin; grant insert on iu to noinherit_{role}; alter role {role} noinherit; grant noinherit_{role} to {role}",
        "create table owned_{role} (id int); alter table owned_{role} owner to {role}",
    ],
    ids=[
        "update",
        "insert",
        "truncate",
        "trigger",
        "sequence",
        "schema-create",
        "db-create",
        "pg_write_all_data",
        "member-of-writer",
        "noinherit-member",
        "owner",
    ],
)
def test_a_role_that_can_write_is_refused_whatever_the_config_says(app_db, grant: str) -> None:  # type: ignore[no-untyped-def]
    """Without an expected grant hash the matrix proves nothing: a role that may write,
    create, owns a table, or is a member of a role that may (inherited or not), is exit 4
    before any query runs."""
    import psycopg

    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        for stmt in grant.format(role=app_db["role"], db=app_db["db"]).split("; "):
            conn.execute(stmt)
    try:
        with pytest.raises(RefusedError) as e:
            dbcheck.run(make_check(app_db["role"], ["select count(*) from iu"]), app_db["dsn"])
        assert e.value.exit_code == 4 and "can write" in e.value.message, e.value.message
    finally:
        with psycopg.connect(app_db["admin"], autocommit=True) as conn:  # roles outlive the test's database
            for extra in (f"writer_{app_db['role']}", f"noinherit_{app_db['role']}"):
                if conn.execute("select 1 from pg_roles where rolname = %s", [extra]).fetchone():
                    conn.execute(f"drop owned by {extra}")
                    conn.execute(f"drop role {extra}")


@pytest.mark.parametrize("attr", ["SUPERUSER", "BYPASSRLS", "CREATEROLE"])
def test_unsafe_role_is_refused(app_db, attr: str) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        conn.execute(f"alter role {app_db['role']} {attr}")
    try:
        with pytest.raises(RefusedError) as e:
            dbcheck.run(make_check(app_db["role"], ["select 1"]), app_db["dsn"])
        assert attr in e.value.message
    finally:
        with psycopg.connect(app_db["admin"], autocommit=True) as conn:
            conn.execute(f"alter role {app_db['role']} NO{attr}")


def test_wrong_role_is_refused(app_db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RefusedError):
        dbcheck.run(make_check("someone_else", ["select 1"]), app_db["dsn"])


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://ro:Sup3rSecretPw@localhost:notaport/db",
        "postgresql://ro:Sup3rSecretPw@[::1/db",
        "host=localhost password=Sup3rSecretPw port=",
        "host=localhost password='Sup3rSecretPw",
    ],
)
def test_malformed_dsn_never_shows_the_password(dsn: str) -> None:
    with pytest.raises((ConfigError, ReleaseError)) as e:
        dbcheck.run(make_check("ro", ["select 1"]), dsn)
    text = e.value.message + e.value.hint + e.value.detail + str(e.value)
    assert "Sup3rSecretPw" not in text


def test_wrong_password_error_is_redacted(app_db) -> None:  # type: ignore[no-untyped-def]
    bad = app_db["dsn"].replace(app_db["password"], "Wr0ngPassw0rd")
    with pytest.raises(ReleaseError) as e:
        dbcheck.run(make_check(app_db["role"], ["select 1"]), bad)
    assert "Wr0ngPassw0rd" not in str(e.value) + e.value.detail
    assert "password authentication failed" in e.value.message


# ----------------------------------------------------------------------------- SQL that runs SQL


SQL_TEXT_ATTACKS = [
    "select * from ts_stat('select to_tsvector(''x'') from (select pg_terminate_backend(pid) from pg_stat_activity) s')",
    "select ts_stat('select fn_iu_create(''a'', ''b'')')",
    "select ts_rewrite('a'::tsquery, 'select ''a''::tsquery, ''b''::tsquery')",
    "select query_to_xml('select pg_terminate_backend(1)', true, false, '')",
    "select cursor_to_xml('c', 1, true, false, '')",
    "select iu.fn_iu_create from iu",
    "select iu.pg_terminate_backend from iu",
]


@pytest.mark.parametrize("sql", SQL_TEXT_ATTACKS)
def test_sql_that_runs_sql_is_refused_before_sending(sql: str) -> None:
    with pytest.raises(RefusedError):
        sqlguard.check(sql, ["fn_iu_create"])


def test_ts_stat_cannot_kill_another_session(app_db) -> None:  # type: ignore[no-untyped-def]
    """The attack of the review: ts_stat running pg_terminate_backend of the role's other session."""
    import psycopg

    victim = psycopg.connect(app_db["dsn"], autocommit=True)
    try:
        pid = victim.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        attack = f"select * from ts_stat('select to_tsvector(''x'') from (select pg_terminate_backend({pid})) s')"
        with pytest.raises(RefusedError):
            dbcheck.run(make_check(app_db["role"], [attack]), app_db["dsn"])
        assert victim.execute("select 1").fetchone() == (1,), "the other session is alive"
    finally:
        victim.close()


def _refused_each(app_db: dict[str, str], cases: dict[str, str]) -> None:
    """Each query is refused (before it is sent) with its reason in the message."""
    for sql, why in cases.items():
        with pytest.raises(RefusedError) as e:
            dbcheck.run(make_check(app_db["role"], [sql], count_tables=[]), app_db["dsn"])
        assert why in e.value.message, (sql, e.value.message)


def test_catalog_layer_refuses_column_style_user_function_and_views_hiding_volatile_calls(app_db) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        conn.execute("create function stamp_row(iu) returns text language sql stable as 'select ''x''::text'")
        conn.execute("create view iu_killer as select pg_terminate_backend(pg_backend_pid()) as k from iu")
        conn.execute("create function my_plus(int, int) returns int language sql volatile as 'select $1 + $2'")
        conn.execute("create operator ##+ (leftarg = int, rightarg = int, function = my_plus)")
        conn.execute("create view iu_sleeper as select clock_timestamp() as s from iu")
        conn.execute(f"grant select on iu_killer, iu_sleeper to {app_db['role']}")
        conn.execute(f"grant execute on function stamp_row(iu) to {app_db['role']}")
    cases = {
        "select iu.stamp_row from iu": "not a built-in",
        "select count(*) from iu_killer": "view iu_killer",
        "select count(*) from iu_sleeper": "VOLATILE",
        "select 1 ##+ 2": "VOLATILE",
        "select random()": "VOLATILE",
    }
    _refused_each(app_db, cases)
    # reviewed and listed, a stable user function is allowed
    data = dbcheck.run(make_check(app_db["role"], ["select iu.stamp_row from iu"], count_tables=[], allow_functions=["stamp_row"]), app_db["dsn"])
    assert data["statements"][0]["no_xid"] is True
    # a view given as a count table passes the same layers
    with pytest.raises(RefusedError):
        dbcheck.run(make_check(app_db["role"], ["select 1"], count_tables=["iu_killer"]), app_db["dsn"])


def test_catalog_layer_refuses_casts_to_domains_and_tables_whose_policies_call_volatile_functions(app_db) -> None:  # type: ignore[no-untyped-def]
    """What reading and casting run without being named: a domain's CHECK expression, a
    user type's input, and a row-level security policy's expression. Each may call any
    function; each is refused before the statement is sent. Built-in types and enums pass."""
    import psycopg

    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        conn.execute("create function tattle(int) returns bool language plpgsql volatile as $$ begin raise notice 'ran'; return true; end $$")
        conn.execute("create domain checked_int as int check (tattle(value))")
        conn.execute("create type mood as enum ('ok', 'bad')")
        conn.execute("create type pair as (a int, b checked_int)")
        conn.execute("create table watched (id int)")
        conn.execute("insert into watched values (1)")
        conn.execute("alter table watched enable row level security")
        conn.execute("create policy peek on watched for select using (tattle(id))")
        conn.execute(f"grant select on watched to {app_db['role']}")
        conn.execute(f"grant usage on type checked_int, mood, pair to {app_db['role']}")
        conn.execute(f"grant execute on function tattle(int) to {app_db['role']}")
    cases = {
        "select 1::checked_int": "domain",
        "select cast(2 as public.checked_int)": "domain",
        "select array[1]::checked_int[]": "domain",
        "select '(1,2)'::pair": "composite",
        "select count(*) from watched": "row-level security policy peek on watched",
    }
    _refused_each(app_db, cases)
    data = dbcheck.run(make_check(app_db["role"], ["select 'ok'::mood, 1::text, '2026-01-01'::date, '{1}'::int[]"], count_tables=[]), app_db["dsn"])
    assert data["statements"][0]["no_xid"] is True


def test_catalog_layer_refuses_user_cast_functions_that_would_run_unnamed(app_db) -> None:  # type: ignore[no-untyped-def]
    """A cast runs its function where the query names none: an implicit cast of a column's
    value into a function's argument (upper(m) on an enum column with a user cast to text),
    or an explicit cast whose target type passes (text to an enum, through a user function).
    Refused before the statement is sent; the same enum without a user cast passes."""
    import psycopg

    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        conn.execute("create function blab(int) returns bool language plpgsql volatile as $$ begin raise notice 'ran'; return true; end $$")
        conn.execute("create type feeling as enum ('ok', 'bad')")
        conn.execute("create function feeling_text(feeling) returns text language plpgsql volatile as $$ begin perform blab(1); return 'x'; end $$")
        conn.execute("create cast (feeling as text) with function feeling_text(feeling) as implicit")
        conn.execute("create type plain_mood as enum ('calm')")
        conn.execute("create type loud_mood as enum ('loud')")
        conn.execute("create function to_loud(text) returns loud_mood language plpgsql volatile as $$ begin perform blab(2); return 'loud'; end $$")
        conn.execute("create cast (text as loud_mood) with function to_loud(text)")
        conn.execute("create table feelings (id int, f feeling, p plain_mood)")
        conn.execute("insert into feelings values (1, 'ok', 'calm')")
        conn.execute(f"grant select on feelings to {app_db['role']}")
        conn.execute(f"grant usage on type feeling, plain_mood, loud_mood to {app_db['role']}")
        conn.execute(f"grant execute on function blab(int), feeling_text(feeling), to_loud(text) to {app_db['role']}")
    _refused_each(
        app_db,
        {
            "select upper(f) from feelings": "the cast feeling -> text: feeling_text(feeling) is VOLATILE",
            "select f::text from feelings": "the cast feeling -> text: feeling_text(feeling) is VOLATILE",
            "select 'loud'::text::loud_mood": "the cast text -> loud_mood: to_loud(text) is VOLATILE",
            # conservative: a table read holds a column whose implicit cast may run
            "select id from feelings": "the cast feeling -> text",
        },
    )
    # not refused for casts that cannot run: the same types with no user cast, or a user
    # cast from a type the query never touches
    passing = ["select 'calm'::plain_mood", "select count(*) from public.iu", "select 'x'::text"]
    data = dbcheck.run(make_check(app_db["role"], passing, count_tables=[]), app_db["dsn"])
    assert all(s["no_xid"] for s in data["statements"])


def test_operators_and_calls_the_parse_tree_hides_are_refused_and_never_run(app_db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The attack of the last round: a volatile user function that terminates the role's
    other session, reached through forms the catalog layer never saw: an operator in
    `x OP ANY/ALL (subquery)`, `x IN (subquery)`, `CASE x WHEN`, and a column-style call
    through a table alias `(i).fn`. Each is refused by the static layer, and with that
    layer off, by the server's plan (the function's oid); the other session lives."""
    import psycopg

    killer_body = "begin perform pg_terminate_backend(pid) from pg_stat_activity where usename = current_user and pid <> pg_backend_pid(); return true; end"
    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        conn.execute(f"create function zap(iu) returns bool language plpgsql volatile as $$ {killer_body} $$")
        conn.execute(f"create function zap_eq(int, int) returns bool language plpgsql volatile as $$ {killer_body} $$")
        conn.execute(f"create function zap_text(int, text) returns bool language plpgsql volatile as $$ {killer_body} $$")
        conn.execute("create operator === (leftarg = int, rightarg = int, function = zap_eq)")
        conn.execute("create operator = (leftarg = int, rightarg = text, function = zap_text)")
        conn.execute(f"grant execute on function zap(iu), zap_eq(int, int), zap_text(int, text) to {app_db['role']}")
    attacks = [
        "select 1 === any (select idx from iu)",
        "select 2 === all (select idx from iu)",
        "select count(*) from iu where id = any (select 1) or idx = 0",
        "select case idx when 'x'::text then 1 else 0 end from iu",
        "select (i).zap from iu i",
        "select (i).zap, 1 from iu as i where (i).zap",
    ]
    victim = psycopg.connect(app_db["dsn"], autocommit=True)
    try:
        for sql in attacks:
            with pytest.raises(RefusedError) as e:
                dbcheck.run(make_check(app_db["role"], [sql], count_tables=[]), app_db["dsn"])
            assert "forbidden SQL" in e.value.message, (sql, e.value.message)
        monkeypatch.setattr(dbcheck, "check_catalog", lambda *a, **k: None)
        monkeypatch.setattr(dbcheck, "guard", lambda *a, **k: sqlguard.Refs())
        for sql in [a for a in attacks if "id = any" not in a]:
            with pytest.raises(RefusedError) as e:
                dbcheck.run(make_check(app_db["role"], [sql], count_tables=[]), app_db["dsn"])
            assert "by the server's plan" in e.value.message and "VOLATILE" in e.value.message, (sql, e.value.message)
        assert victim.execute("select 1").fetchone() == (1,), "the other session is alive"
    finally:
        victim.close()


def test_a_foreign_table_is_refused_unless_allowed_and_its_program_never_runs(app_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """file_fdw with `program`: reading the foreign table runs a program on the database
    server. Refused from the plan (the relation's kind) before the statement is sent."""
    import psycopg

    marker = tmp_path / "fdw-ran"
    with psycopg.connect(app_db["admin"], autocommit=True) as conn:
        try:
            conn.execute("create extension if not exists file_fdw")
        except psycopg.Error as exc:
            pytest.skip(f"file_fdw is not installed with this PostgreSQL: {exc}")
        conn.execute("create server files foreign data wrapper file_fdw")
        conn.execute(f"create foreign table outside (line text) server files options (program 'touch {marker}; echo hi')")
        conn.execute(f"grant select on outside to {app_db['role']}")
    for sql in ("select * from outside", "select count(*) from iu where exists (select 1 from outside)"):
        with pytest.raises(RefusedError) as e:
            dbcheck.run(make_check(app_db["role"], [sql], count_tables=[]), app_db["dsn"])
        assert "foreign table public.outside" in e.value.message or "foreign table outside" in e.value.message, e.value.message
    with pytest.raises(RefusedError):
        dbcheck.run(make_check(app_db["role"], ["select 1"], count_tables=["outside"]), app_db["dsn"])
    assert not marker.exists(), "the foreign table's program ran"
