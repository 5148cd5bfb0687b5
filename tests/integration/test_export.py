"""Job_ExportGIM on a real PostgreSQL (R12, R15, R22).

Most tests hand-insert facts and dimensions with their own ctl_audit_log rows into the tables the
migrations create; one runs the real pipeline (simulator -> extract -> transform -> export).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gim_jobs.control import JobError, JobRefused, run_job
from gim_jobs.jobs import export as export_job
from gim_jobs.jobs.export import complete_folders, parse_folder_name, verify_folder

T0 = 1_704_103_200  # 2024-01-01 10:00:00 UTC
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ data

def audit(conn: psycopg.Connection) -> int:
    return conn.execute("INSERT INTO ctl_audit_log (job_id) VALUES ('test') RETURNING audit_key").fetchone()[0]


def agent(conn: psycopg.Connection, key: int, name: str, a: int, first: str | None = None) -> None:
    conn.execute(
        """INSERT INTO resource_ (resource_key, resource_type, resource_type_code, resource_subtype, resource_name,
                                  agent_first_name, icon_dbid, resource_cfg_type_id, create_audit_key, update_audit_key)
           VALUES (%s, 'Agent', 'AGENT', 'Agent', %s, %s, %s, 1, %s, %s)
           ON CONFLICT (resource_key) DO UPDATE SET resource_name = excluded.resource_name,
                  agent_first_name = excluded.agent_first_name, update_audit_key = excluded.update_audit_key""",
        (key, name, first, key, a, a),
    )


def ixn(conn: psycopg.Connection, iid: int, start: int, a: int, *, end: int | None = None,
        subject: str | None = None, parties: int = 1) -> None:
    conn.execute(
        """INSERT INTO interaction_fact (interaction_id, data_source_key, media_type_key, interaction_type_key,
                  media_server_ixn_guid, media_server_root_ixn_guid, subject, start_ts, end_ts, start_date_time_key,
                  end_date_time_key, active_flag, create_audit_key, update_audit_key)
           VALUES (%(i)s, 1, 1, 1, 'g' || %(i)s, 'g' || %(i)s, %(subj)s, %(s)s, %(e)s::bigint,
                   %(s)s - %(s)s %% 900, %(e)s::bigint - %(e)s::bigint %% 900, (%(e)s::bigint IS NULL)::int,
                   %(a)s, %(a)s)""",
        {"i": iid, "s": start, "e": end, "a": a, "subj": subject},
    )
    for p in range(parties):
        conn.execute(
            """INSERT INTO interaction_resource_fact (interaction_resource_id, interaction_id, data_source_key,
                      media_type_key, interaction_type_key, resource_key, technical_descriptor_key, party_guid,
                      media_server_ixn_guid, start_ts, end_ts, start_date_time_key, end_date_time_key, talk_duration,
                      active_flag, create_audit_key, update_audit_key)
               VALUES (%(r)s, %(i)s, 1, 1, 1, 1, 2, 'p' || %(r)s, 'g' || %(i)s, %(s)s, %(e)s::bigint,
                       %(s)s - %(s)s %% 900, %(e)s::bigint - %(e)s::bigint %% 900, 30, 0, %(a)s, %(a)s)""",
            {"r": iid * 10 + p, "i": iid, "s": start + p, "e": end, "a": a},
        )


def batch(dsn: str, starts: list[int], *, first_id: int, end_after: int | None = 60) -> int:
    """One committed audit key holding one interaction (2 parties) per start time; returns the key."""
    with psycopg.connect(dsn) as conn:
        a = audit(conn)
        for n, s in enumerate(starts):
            ixn(conn, first_id + n, s, a, end=None if end_after is None else s + end_after, parties=2)
        return a


def seed(dsn: str) -> None:
    """Agents (non-ASCII names, an empty string and NULLs), a calendar, interactions with awkward text."""
    with psycopg.connect(dsn) as conn:
        a = audit(conn)
        agent(conn, 1, "Zoë Ångström", a, first="Zoë")
        agent(conn, 2, "", a)  # empty string and NULL must export the same way
        conn.execute("SELECT gim_fill_calendar('date_time', 'GMT', %s, %s)", (T0, T0 + 86400))
        ixn(conn, 100, T0, a, end=T0 + 125, subject='comma, "quotes" and\na newline\r\nand CRLF', parties=2)
        ixn(conn, 101, T0 + 1000, a, end=None, subject="", parties=1)
        ixn(conn, 102, T0 + 2000, a, end=T0 + 2300, subject=None, parties=3)


def export(dsn: str, cfg: Path, **kw: Any) -> Any:
    return run_job("export", run_type="scheduled", infomart_dsn=dsn, sources=[], config_path=cfg, **kw)


def q(dsn: str, text: str, params: Any = None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(text, params).fetchall()


# ------------------------------------------------------------------------------------------ output

def load(folder: Path) -> dict[str, tuple[list[str], list[tuple[str, ...]]]]:
    """{table: (header, rows)} of an export folder's zip, decoded with the manifest's encoding."""
    f = next(f for f in complete_folders(folder.parent) if f.path == folder)
    manifest = verify_folder(f)
    out = {}
    with zipfile.ZipFile(f.zip_path) as zf:
        for name in zf.namelist():
            with zf.open(name) as raw:
                rows = list(csv.reader(io.TextIOWrapper(raw, encoding=manifest["encoding"], newline="")))
            out[name.removesuffix(".csv")] = (rows[0], [tuple(r) for r in rows[1:]])
    return out


def as_csv(v: Any) -> str:
    return "" if v is None else str(v)


def table_rows(dsn: str, table: str, cols: list[str], where: str = "true") -> list[tuple[str, ...]]:
    col_list = ", ".join(cols)
    return sorted(tuple(as_csv(v) for v in r) for r in q(dsn, f"SELECT {col_list} FROM {table} WHERE {where}"))


def exported_tables(dsn: str) -> set[str]:
    return {r[0] for r in q(dsn, "SELECT table_name FROM gim_export_relations(false)")}


def merged(dirpath: Path) -> dict[str, dict[str, tuple[str, ...]]]:
    """Every folder of a directory applied in HWM order: {table: {first column: row}} (latest wins)."""
    state: dict[str, dict[str, tuple[str, ...]]] = {}
    for f in complete_folders(dirpath):
        for table, (_, rows) in load(f.path).items():
            for r in rows:
                state.setdefault(table, {})[r[0]] = r
    return state


# ------------------------------------------------------------------------------------------ tests

def test_r22_round_trip_every_table_rfc4180_sha1(infomart_dsn, make_config, tmp_path) -> None:
    seed(infomart_dsn)
    with psycopg.connect(infomart_dsn) as conn:  # neither aggregates nor staging are ever exported
        conn.execute("CREATE TABLE agt_test_hour (k int, create_audit_key bigint, update_audit_key bigint)")
        conn.execute("INSERT INTO agt_test_hour VALUES (1, 1, 1)")
        conn.execute("INSERT INTO gidb_gc_tenant (data_source_key, id, gsys_useq, stg_id, stg_seq) VALUES (1,1,1,1,1)")
    out = export(infomart_dsn, make_config())
    assert out.status == "COMPLETED"
    [info] = out.details["folders"]
    folder = tmp_path / "export" / info["folder"]
    assert parse_folder_name(folder.name) == (info["audit_key_hwm"], T0 + 2300)  # newest fact end time, GMT
    assert folder.name == "export_1_2024_01_01_10_38_20"
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"{folder.name}.zip", f"{folder.name}.zip.sha1"]
    sha1_text = (folder / f"{folder.name}.zip.sha1").read_text()
    assert sha1_text == f"{hashlib.sha1((folder / f'{folder.name}.zip').read_bytes()).hexdigest()}  {folder.name}.zip\n"

    data = load(folder)
    assert set(data) == exported_tables(infomart_dsn)
    assert not any(t.startswith(("agt_", "gidb_", "ctl_", "stg_", "ag2_")) for t in data)
    for table, (header, rows) in data.items():
        where = "true"
        if table == "date_time":  # the 15-minute rows the exported facts span
            where = f"date_time_key BETWEEN {T0} AND {T0 + 2300 - 2300 % 900}"
        assert sorted(rows) == table_rows(infomart_dsn, table, header, where), table
    assert len(data["date_time"][1]) == 3 and len(data["interaction_resource_fact"][1]) == 6
    assert len(data["technical_descriptor"][1]) > 0  # seeded code dimensions (audit key 0) come first time

    with zipfile.ZipFile(folder / f"{folder.name}.zip") as zf:
        raw = zf.read("interaction_fact.csv")
        manifest = json.loads(zf.comment)
    assert raw.startswith(b"interaction_id,data_source_key,") and raw.endswith(b"\r\n")
    assert raw.count(b"\r\n") == 4 + 1  # header + 3 records + the CRLF inside the quoted subject
    assert b'"comma, ""quotes"" and\na newline\r\nand CRLF"' in raw  # values are kept byte for byte
    assert b",,,," in raw and b'""' not in raw.replace(b'""quotes""', b"")  # '' and NULL: both empty
    assert manifest["audit_key_from"] == -1 and manifest["tables"]["interaction_fact"] == 3
    hist = q(infomart_dsn, "SELECT folder, audit_key_hwm, row_count, sha1 FROM ctl_export_history")
    assert hist == [(folder.name, 1, info["rows"], sha1_text.split()[0])]


def test_r22_incremental_runs_are_disjoint_and_complete(infomart_dsn, make_config, tmp_path) -> None:
    cfg = make_config()
    seed(infomart_dsn)
    first = export(infomart_dsn, cfg).details["folders"]
    with psycopg.connect(infomart_dsn) as conn:
        a = audit(conn)
        ixn(conn, 200, T0 + 3000, a, end=T0 + 3100)
        conn.execute("UPDATE interaction_fact SET end_ts = %s, active_flag = 0, update_audit_key = %s "
                     "WHERE interaction_id = 101", (T0 + 1500, a))
        agent(conn, 2, "Bob", a)
    second = export(infomart_dsn, cfg).details["folders"]
    assert [f["audit_key_from"] for f in second] == [first[-1]["audit_key_hwm"]]
    d2 = load(tmp_path / "export" / second[0]["folder"])
    assert sorted(r[0] for r in d2["interaction_fact"][1]) == ["101", "200"]
    assert [r[0] for r in d2["resource_"][1]] == ["2"] and d2["technical_descriptor"][1] == []
    assert export(infomart_dsn, cfg).details["folders"] == []  # nothing changed: no folder

    state = merged(tmp_path / "export")
    for table in ("interaction_fact", "interaction_resource_fact", "resource_", "media_type"):
        header = load(tmp_path / "export" / second[0]["folder"])[table][0]
        assert sorted(state.get(table, {}).values()) == table_rows(infomart_dsn, table, header), table
    names = [f.name for f in complete_folders(tmp_path / "export")]
    assert names == [first[0]["folder"], second[0]["folder"]]
    assert parse_folder_name(names[1])[1] == T0 + 3100


def test_r22_hwm_waits_for_a_lower_audit_key_still_in_flight(infomart_dsn, make_config, tmp_path) -> None:
    """Audit keys commit out of order: key k1 is taken, k2 commits, k1 commits later. The export
    must not move its HWM past k1 before k1 is settled, else k1's rows would be skipped for good."""
    cfg = make_config()
    slow = psycopg.connect(infomart_dsn)
    k1 = audit(slow)
    ixn(slow, 1, T0, k1, end=T0 + 10)
    k2 = batch(infomart_dsn, [T0 + 20], first_id=2)
    with psycopg.connect(infomart_dsn) as conn:  # a rolled-back key leaves a hole that never fills
        audit(conn)
        conn.rollback()
    k4 = batch(infomart_dsn, [T0 + 30], first_id=4)
    assert k1 < k2 < k4
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.setdefault("out", export(infomart_dsn, cfg)))
    t.start()
    time.sleep(1.0)
    assert t.is_alive(), "the export must wait for the transaction holding audit key k1"
    slow.commit()
    slow.close()
    t.join(30)
    [f] = result["out"].details["folders"]
    assert f["audit_key_hwm"] == k4
    ids = [r[0] for r in load(tmp_path / "export" / f["folder"])["interaction_fact"][1]]
    assert ids == ["1", "2", "4"]


def test_r22_chunk_size_seconds_splits_a_backlog_into_ordered_folders(infomart_dsn, make_config, tmp_path) -> None:
    """Folders are cut at audit keys, by the keys' data time (earliest fact start) in windows of
    chunk-size-seconds (aligned: here the hours 10, 11, 12 GMT); late data rides along."""
    cfg = make_config({"gim-export": {"chunk-size-seconds": "3600"}})
    k1 = batch(infomart_dsn, [T0, T0 + 1000], first_id=10)
    k2 = batch(infomart_dsn, [T0 + 2000], first_id=20)  # still hour 10
    with psycopg.connect(infomart_dsn) as conn:  # dimension-only key: joins the current folder
        kd = audit(conn)
        agent(conn, 7, "Dim", kd)
    k3 = batch(infomart_dsn, [T0 + 4000], first_id=30)  # hour 11
    kl = batch(infomart_dsn, [T0 + 500], first_id=50)  # late data of hour 10, written after hour 11's
    k4 = batch(infomart_dsn, [T0 + 9000, T0 + 9500], first_id=40)  # hour 12
    folders = export(infomart_dsn, cfg).details["folders"]
    assert [(f["audit_key_from"], f["audit_key_hwm"]) for f in folders] == [(-1, kd), (kd, kl), (kl, k4)]
    assert k1 < k2 < kd < k3 < kl
    ts = [parse_folder_name(f["folder"])[1] for f in folders]
    assert ts == [T0 + 2060, T0 + 4060, T0 + 9560]  # the newest start/end time exported so far
    ids = [sorted(int(r[0]) for r in load(tmp_path / "export" / f["folder"])["interaction_fact"][1]) for f in folders]
    assert ids == [[10, 11, 20], [30, 50], [40, 41]]
    assert [r[0] for r in load(tmp_path / "export" / folders[0]["folder"])["resource_"][1]] == ["7"]


def test_r22_start_date_applies_only_to_an_empty_directory(infomart_dsn, make_config, tmp_path) -> None:
    start = "2024-01-01 10:30:00"  # T0 + 1800
    cfg = make_config({"gim-export": {"start-date": start}})
    seed(infomart_dsn)
    [f1] = export(infomart_dsn, cfg).details["folders"]
    d1 = load(tmp_path / "export" / f1["folder"])
    assert [r[0] for r in d1["interaction_fact"][1]] == ["102"]  # starts before 10:30 are left out
    assert len(d1["resource_"][1]) == 2  # dimensions are not filtered
    # the directory is no longer empty: a changed start-date changes nothing, the stream keeps its own
    cfg2 = make_config({"gim-export": {"start-date": "2023-01-01 00:00:00"}}, name="later.ini")
    batch(infomart_dsn, [T0 + 100, T0 + 5000], first_id=300)
    [f2] = export(infomart_dsn, cfg2).details["folders"]
    assert [r[0] for r in load(tmp_path / "export" / f2["folder"])["interaction_fact"][1]] == ["301"]
    # an emptied directory starts a new stream, with the start-date in force now
    for f in complete_folders(tmp_path / "export"):
        for p in f.path.iterdir():
            p.unlink()
        f.path.rmdir()
    [f3] = export(infomart_dsn, cfg2).details["folders"]
    assert f3["audit_key_from"] == -1
    assert len(load(tmp_path / "export" / f3["folder"])["interaction_fact"][1]) == 5


@pytest.mark.parametrize("encoding", ["latin1", "utf8"])
def test_r22_output_files_encoding_with_non_ascii_agent_names(infomart_dsn, make_config, tmp_path,
                                                               encoding) -> None:
    seed(infomart_dsn)
    cfg = make_config({"gim-export": {"output-files-encoding": encoding}})
    [f] = export(infomart_dsn, cfg).details["folders"]
    folder = tmp_path / "export" / f["folder"]
    with zipfile.ZipFile(folder / f"{folder.name}.zip") as zf:
        raw = zf.read("resource_.csv")
    assert "Zoë Ångström,Zoë".encode(encoding) in raw
    if encoding == "latin1":
        assert b"Zo\xeb \xc5ngstr\xf6m" in raw
        with psycopg.connect(infomart_dsn) as conn:
            a = audit(conn)
            agent(conn, 3, "王 Wei", a)
        with pytest.raises(JobError, match=r"resource_\.csv line 2 \(row with resource_key = 3\).*U\+738B.*latin1"):
            export(infomart_dsn, cfg)
        assert [p.name for p in (tmp_path / "export").iterdir() if p.name.startswith(".tmp")] == []
        assert len(complete_folders(tmp_path / "export")) == 1  # the failed run left nothing
        # and the data is not lost: with utf8 the next run exports it
        [f2] = export(infomart_dsn, make_config({"gim-export": {"output-files-encoding": "UTF-8"}},
                                                name="u.ini")).details["folders"]
        assert [r[5] for r in load(tmp_path / "export" / f2["folder"])["resource_"][1]] == ["王 Wei"]


def test_r22_retention_deletes_old_folders_never_the_newest(infomart_dsn, make_config, tmp_path) -> None:
    cfg = make_config({"gim-export": {"days-to-keep-output-files": "2"}})
    for n in range(3):
        batch(infomart_dsn, [T0 + n * 100], first_id=10 * (n + 1))
        export(infomart_dsn, cfg)
    folders = complete_folders(tmp_path / "export")
    assert len(folders) == 3
    old = time.time() - 3 * 86400
    for f in folders:
        os.utime(f.path, (old, old))
    out = export(infomart_dsn, cfg)  # nothing new to export: retention still runs
    assert out.details["removed"] == [folders[0].name, folders[1].name]
    assert [f.name for f in complete_folders(tmp_path / "export")] == [folders[2].name]
    removed = q(infomart_dsn, "SELECT folder FROM ctl_export_history WHERE removed IS NOT NULL ORDER BY id")
    assert [r[0] for r in removed] == [folders[0].name, folders[1].name]
    batch(infomart_dsn, [T0 + 900], first_id=99)  # the stream continues from the newest folder
    [f] = export(infomart_dsn, cfg).details["folders"]
    assert f["audit_key_from"] == folders[2].hwm


def test_r22_reconcile_adopts_unrecorded_folder_and_refuses_disagreement(infomart_dsn, make_config,
                                                                         tmp_path) -> None:
    cfg = make_config()
    outdir = tmp_path / "export"
    batch(infomart_dsn, [T0], first_id=1)
    [f1] = export(infomart_dsn, cfg).details["folders"]
    # a run killed after renaming its folder, before recording it: the folder is verified and adopted
    q(infomart_dsn, "DELETE FROM ctl_export_history RETURNING id")
    (outdir / ".tmp_export_9_dead").mkdir()
    (outdir / ".tmp_export_9_dead" / "half.zip").write_bytes(b"PK")
    k2 = batch(infomart_dsn, [T0 + 100], first_id=2)
    out = export(infomart_dsn, cfg)
    assert out.details["adopted"] == [f1["folder"]]
    assert [f["audit_key_from"] for f in out.details["folders"]] == [f1["audit_key_hwm"]]
    assert not (outdir / ".tmp_export_9_dead").exists()
    assert q(infomart_dsn, "SELECT folder, adopted FROM ctl_export_history ORDER BY id") == [
        (f1["folder"], True), (out.details["folders"][0]["folder"], False)]

    # the newest folder vanished: the directory and the control table disagree -> a clear failure
    newest = complete_folders(outdir)[-1]
    moved = tmp_path / "moved"
    newest.path.rename(moved)
    batch(infomart_dsn, [T0 + 200], first_id=3)
    with pytest.raises(JobError, match=rf"disagree: the newest complete export folder is {f1['folder']}.*HWM {k2}"):
        export(infomart_dsn, cfg)
    # an unrecorded folder whose zip does not match its .sha1 is not adopted
    moved.rename(newest.path)
    q(infomart_dsn, "DELETE FROM ctl_export_history WHERE folder = %s RETURNING id", (newest.name,))
    with newest.zip_path.open("r+b") as fh:
        fh.seek(40)
        fh.write(b"XX")
    with pytest.raises(JobError, match="is damaged: its zip's SHA-1"):
        export(infomart_dsn, cfg)


def test_r22_use_export_views_freeze_the_columns(infomart_dsn, make_config, tmp_path) -> None:
    batch(infomart_dsn, [T0], first_id=1)
    with psycopg.connect(infomart_dsn) as conn:  # a later schema change
        conn.execute("ALTER TABLE interaction_fact ADD COLUMN later_column text")
    views = make_config({"gim-export": {"use-export-views": "true", "output-directory": str(tmp_path / "v")}},
                        name="v.ini")
    tables = make_config({"gim-export": {"output-directory": str(tmp_path / "t")}}, name="t.ini")
    [fv] = export(infomart_dsn, views).details["folders"]
    [ft] = export(infomart_dsn, tables).details["folders"]
    hv = load(tmp_path / "v" / fv["folder"])["interaction_fact"][0]
    ht = load(tmp_path / "t" / ft["folder"])["interaction_fact"][0]
    assert "later_column" not in hv and ht == [*hv, "later_column"]
    assert set(load(tmp_path / "v" / fv["folder"])) == exported_tables(infomart_dsn)


def test_r22_transient_errors_are_retried_logic_errors_are_not(infomart_dsn, make_config, monkeypatch) -> None:
    batch(infomart_dsn, [T0], first_id=1)
    real = export_job._Export.safe_hwm
    failures = iter([True])

    def flaky(conn: psycopg.Connection) -> int:
        if next(failures, False):
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(conn)

    monkeypatch.setattr(export_job._Export, "safe_hwm", staticmethod(flaky))
    cfg = make_config({"gim-export": {"max-retries": "1", "retry-delay-seconds": "0"}})
    out = export(infomart_dsn, cfg)
    assert out.details["retries"] == 1 and len(out.details["folders"]) == 1

    failures = iter([True, True])
    batch(infomart_dsn, [T0 + 10], first_id=2)
    with pytest.raises(psycopg.OperationalError):
        export(infomart_dsn, cfg)

    calls = []

    def broken(conn: psycopg.Connection) -> int:
        calls.append(1)
        raise ValueError("a bug")

    monkeypatch.setattr(export_job._Export, "safe_hwm", staticmethod(broken))
    with pytest.raises(ValueError):
        export(infomart_dsn, cfg)
    assert calls == [1]


KILL_SCRIPT = """
import sys
from gim_jobs.control import run_job
run_job("export", run_type="scheduled", infomart_dsn=sys.argv[1], sources=[], config_path=sys.argv[2])
"""


def test_r22_killed_export_leaves_no_half_folder_and_rerun_equals_uninterrupted(
        infomart_dsn, make_config, tmp_path) -> None:
    for n in range(4):  # four folders of one hour each
        batch(infomart_dsn, [T0 + n * 3600, T0 + n * 3600 + 600], first_id=10 * (n + 1))
    opts = {"chunk-size-seconds": "3600", "thread-pool-size": "3"}
    slow = make_config({"gim-export": opts, "gim-etl": {"job-test-delay-seconds": "0.1"}}, name="slow.ini")
    outdir = tmp_path / "export"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, infomart_dsn, str(slow)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:  # kill while a second folder is half written
            tmp = list(outdir.glob(".tmp_export_*/*.zip")) if outdir.exists() else []
            if tmp and complete_folders(outdir):
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = complete_folders(outdir)
    assert 1 <= len(done) < 4 and list(outdir.glob(".tmp_export_*"))
    for f in done:
        verify_folder(f)  # whatever carries a final name is complete

    out = export(infomart_dsn, make_config({"gim-export": opts}, name="fast.ini"), wait_seconds=10)
    assert out.details["folders"][0]["audit_key_from"] == done[-1].hwm  # continues, skips nothing
    assert not list(outdir.glob(".tmp_export_*"))
    ref_dir = tmp_path / "reference"
    export(infomart_dsn, make_config({"gim-export": {**opts, "output-directory": str(ref_dir)}}, name="ref.ini"))
    got = [(f.name, f.sha1_path.read_text().split()[0]) for f in complete_folders(outdir)]
    want = [(f.name, f.sha1_path.read_text().split()[0]) for f in complete_folders(ref_dir)]
    assert len(want) == 4 and got == want  # deterministic zips: byte for byte the same folders
    assert q(infomart_dsn, "SELECT status FROM ctl_etl_history WHERE job_name = 'Job_ExportGIM' ORDER BY id")[0] == (
        "FAILED",)


def test_r22_real_pipeline_extract_transform_export_round_trip(infomart_dsn, idb_dsn, make_config,
                                                               tmp_path) -> None:
    from gim_jobs.db.connect import DataSource
    from gim_jobs.idb import simulate_batch

    cfg = make_config({"gim-export": {"chunk-size-seconds": "3600"}})
    src = [DataSource("idb", idb_dsn)]

    def cycle() -> None:
        for job in ("extract", "transform"):
            assert run_job(job, infomart_dsn=infomart_dsn, sources=src, config_path=cfg).status == "COMPLETED"

    simulate_batch(idb_dsn, interactions=200, start=T0, span_seconds=3 * 3600)
    cycle()
    first = export(infomart_dsn, cfg).details["folders"]
    simulate_batch(idb_dsn, interactions=50, start=T0 + 3 * 3600, span_seconds=3600)  # ends what was active
    cycle()
    second = export(infomart_dsn, cfg).details["folders"]
    assert first and second and second[0]["audit_key_from"] == first[-1]["audit_key_hwm"]
    state = merged(tmp_path / "export")
    last = load(tmp_path / "export" / second[-1]["folder"])
    for table in ("interaction_fact", "interaction_resource_fact", "sm_res_state_fact", "sm_res_session_fact",
                  "resource_", "group_", "resource_group_fact_"):
        header = last[table][0]
        assert sorted(state.get(table, {}).values()) == table_rows(infomart_dsn, table, header), table
    assert len(state["interaction_fact"]) >= 200


def test_r15_export_refuses_manual_runs(infomart_dsn, make_config) -> None:
    for run_type in ("manual", "cli"):
        with pytest.raises(JobRefused, match="R15"):
            run_job("export", run_type=run_type, infomart_dsn=infomart_dsn, sources=[], config_path=make_config())


def test_r05_one_export_at_a_time(infomart_dsn, make_config) -> None:
    batch(infomart_dsn, [T0, T0 + 7200], first_id=1)
    cfg = make_config({"gim-export": {"chunk-size-seconds": "3600"}, "gim-etl": {"job-test-delay-seconds": "0.05"}})
    t = threading.Thread(target=lambda: export(infomart_dsn, cfg))
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not q(infomart_dsn, "SELECT 1 FROM ctl_job_lease WHERE job_name = 'Job_ExportGIM'"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(JobRefused, match="R5"):
            export(infomart_dsn, cfg)
    finally:
        t.join(30)


def test_r18_stopped_export_leaves_no_half_folder_and_rerun_completes(infomart_dsn, make_config, tmp_path) -> None:
    from gim_jobs.control import JobStopped, request_stop

    for n in range(3):
        batch(infomart_dsn, [T0 + n * 3600], first_id=10 * (n + 1))
    opts = {"chunk-size-seconds": "3600"}
    cfg = make_config({"gim-export": opts, "gim-etl": {"job-test-delay-seconds": "0.1"}})
    outdir = tmp_path / "export"
    errors: list[BaseException] = []

    def slow_export() -> None:
        try:
            export(infomart_dsn, cfg)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    t = threading.Thread(target=slow_export)
    t.start()
    deadline = time.monotonic() + 20
    while not (complete_folders(outdir) and list(outdir.glob(".tmp_export_*"))):
        assert time.monotonic() < deadline and t.is_alive()
        time.sleep(0.02)
    assert request_stop(infomart_dsn, "Job_ExportGIM", "operator stop")
    t.join(20)
    assert [type(e) for e in errors] == [JobStopped]
    assert not list(outdir.glob(".tmp_export_*"))
    done = complete_folders(outdir)
    assert 1 <= len(done) < 3
    out = export(infomart_dsn, make_config({"gim-export": opts}, name="fast.ini"))
    assert out.details["folders"][0]["audit_key_from"] == done[-1].hwm
    assert len(complete_folders(outdir)) == 3


def test_r08_r12_dag_schedule_and_scheduled_launch_rules(infomart_dsn, make_config, monkeypatch) -> None:
    """The DAG runs on export-schedule; a scheduled launch skips when run-export = false (R12) and
    while scheduled Job_MaintainGIM runs (R8)."""
    from dataclasses import replace

    from airflow.dag_processing.dagbag import DagBag

    from gim_jobs.config import load_config
    from gim_jobs.registry import JOBS

    monkeypatch.syspath_prepend(str(REPO / "plugins"))
    monkeypatch.setenv("GIM_CONFIG", str(make_config({"schedule": {"export-schedule": "5 1/12"}}, name="s.ini")))
    from gim_operators import GimJobOperator, scheduled_launch_refusal

    bag = DagBag(dag_folder=str(REPO / "dags" / "gim_export.py"), bundle_path=REPO / "dags",
                 bundle_name="dags-folder")
    assert bag.import_errors == {}
    dag = bag.dags["gim_export"]
    assert (dag.dag_id, dag.dag_display_name, dag.max_active_runs) == ("gim_export", "Job_ExportGIM", 1)
    assert [(t.task_id, t.pool) for t in dag.tasks] == [("export", "gim_export")]
    assert dag.timetable.summary.startswith("5 1/12"), dag.timetable.summary

    off = load_config(make_config({"schedule": {"run-export": "false", "run-scheduler": "true"}}, name="off.ini"))
    assert "run-export = false" in scheduled_launch_refusal("export", {}, off)
    on = load_config(make_config({"schedule": {"run-export": "true", "run-scheduler": "true"}}, name="on.ini"))
    assert scheduled_launch_refusal("export", {}, on) is None

    cfg = make_config()
    sleepy = replace(JOBS["maintain"], module="tests.integration.sleepy_job")
    t = threading.Thread(target=lambda: run_job(sleepy, infomart_dsn=infomart_dsn, sources=[], config_path=cfg,
                                                run_type="scheduled", params={"steps": 10, "step_seconds": 0.1}))
    t.start()
    try:
        while not q(infomart_dsn, "SELECT 1 FROM ctl_job_lease WHERE job_name = 'Job_MaintainGIM'"):
            time.sleep(0.05)
        reason = GimJobOperator(job="export")._apply_maintenance_rules({}, infomart_dsn)
        assert reason and "(R8)" in reason
    finally:
        t.join()
    assert GimJobOperator(job="export")._apply_maintenance_rules({}, infomart_dsn) is None


def test_r22_encrypt_certificate_is_refused_rather_than_ignored(infomart_dsn, make_config, tmp_path) -> None:
    batch(infomart_dsn, [T0], first_id=1)
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = make_config({"gim-export": {"encrypt-certificate": str(tmp_path / "cert.pem")}})
    with pytest.raises(JobError, match="cannot encrypt export zips; nothing was exported"):
        export(infomart_dsn, cfg)
    assert not (tmp_path / "export").exists() or complete_folders(tmp_path / "export") == []
