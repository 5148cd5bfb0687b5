"""Schema migrations: idempotent, and an older database upgrades to the current one."""

from __future__ import annotations

import psycopg

from gim_jobs.db.migrate import current_version, migrate, migrations


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def _columns(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT table_name, column_name, data_type, is_nullable, column_default
                 FROM information_schema.columns WHERE table_schema = 'public'
                ORDER BY table_name, ordinal_position"""
        ).fetchall()


def test_init_db_twice_is_a_noop(infomart_dsn: str, idb_dsn: str) -> None:
    before_im, before_idb = _columns(infomart_dsn), _columns(idb_dsn)
    assert migrate(infomart_dsn, "infomart") == []
    assert migrate(idb_dsn, "idb") == []
    assert _columns(infomart_dsn) == before_im
    assert _columns(idb_dsn) == before_idb


def test_upgrade_from_previous_version_equals_fresh(new_database, infomart_dsn: str) -> None:
    for kind in ("infomart", "idb"):
        migs = migrations(kind)
        fresh = new_database("fresh")
        migrate(fresh, kind)
        old = new_database("old")
        previous = migs[-2].version if len(migs) > 1 else 0
        if previous:
            migrate(old, kind, target=previous)
            with psycopg.connect(old) as conn:
                assert current_version(conn, kind) == previous
        applied = migrate(old, kind)
        assert applied == [m.version for m in migs if m.version > previous]
        assert _columns(old) == _columns(fresh)


def test_control_tables_exist(infomart_dsn: str) -> None:
    assert {"ctl_etl_history", "ctl_audit_log", "ctl_job_lease", "ctl_data_source"} <= _tables(infomart_dsn)


def test_idb_useq_advances_on_update(idb_dsn: str) -> None:
    with psycopg.connect(idb_dsn) as conn:
        conn.execute(
            "INSERT INTO gc_agent (id, employee_id, user_name, created_ts) VALUES (1, 'E1', 'a1', 0)"
        )
        seq, useq = conn.execute("SELECT gsys_seq, gsys_useq FROM gc_agent").fetchone()
        assert seq == useq
        conn.execute("UPDATE gc_agent SET deleted_ts = 10 WHERE id = 1")
        seq2, useq2 = conn.execute("SELECT gsys_seq, gsys_useq FROM gc_agent").fetchone()
        assert seq2 == seq and useq2 > useq
