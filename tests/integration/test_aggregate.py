"""Job_AggregateGIM on real pipeline data: simulator -> Job_ExtractICON -> Job_TransformGIM -> aggregates.

Correctness is checked against queries written here independently of the generated SQL: totals per
dimension from the facts equal the totals of every level of every hierarchy; every level equals the
sum (max) of the level below; an interval-based measure per 15-minute interval equals an overlap
join on date_time. Incremental runs recompute only changed intervals and give the same tables as a
rebuild from scratch.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest

from gim_jobs.aggregation.hierarchies import HIERARCHIES, LEVELS, NAMES
from gim_jobs.aggregation.params import BadRequest, parse
from gim_jobs.control import JobRefused, JobStopped, request_stop, run_job
from gim_jobs.db.connect import DataSource
from gim_jobs.jobs.aggregate import Aggregator, period_key, submit_request
from gim_jobs.jobs.transform import AGENT_BASE, GROUP_BASE

T0 = 1704103200  # 2024-01-01 10:00 UTC


def q(dsn: str, sql: str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def mart(infomart_dsn, idb_dsn, make_config):
    from gim_jobs.idb import simulate_batch

    cfg = make_config()
    src = [DataSource("idb", idb_dsn)]

    def cycle() -> None:
        for job in ("extract", "transform"):
            assert run_job(job, infomart_dsn=infomart_dsn, sources=src, config_path=cfg).status == "COMPLETED"

    simulate_batch(idb_dsn, interactions=1500, start=T0, span_seconds=6 * 3600)
    cycle()
    return infomart_dsn, idb_dsn, cycle


# --------------------------------------------------------------------------- independent queries
IRF = """FROM interaction_resource_fact f JOIN resource_ r USING (resource_key)
         JOIN technical_descriptor td USING (technical_descriptor_key)"""
AT_START_GROUP = """JOIN resource_group_fact_ g ON g.resource_key = f.resource_key
         AND coalesce(g.start_ts, 0) <= f.start_ts AND (g.end_ts IS NULL OR g.end_ts > f.start_ts)"""
INDEPENDENT = {
    "H_AGENT": ("resource_key", f"""
        SELECT f.resource_key, count(*), count(*) FILTER (WHERE f.talk_count > 0), sum(f.talk_duration),
               sum(f.hold_duration), sum(f.after_call_work_duration),
               count(*) FILTER (WHERE td.technical_result = 'Transferred')
          {IRF} WHERE r.resource_type = 'Agent' GROUP BY 1""",
        ("offered", "accepted", "engage_time", "hold_time", "wrap_time", "transfer_init_agent")),
    "H_AGENT_GRP": ("group_key", f"""
        SELECT g.group_key, count(*), sum(f.talk_duration) {IRF} {AT_START_GROUP}
         WHERE r.resource_type = 'Agent' GROUP BY 1""", ("offered", "engage_time")),
    "H_AGENT_QUEUE": ("queue_resource_key", f"""
        SELECT coalesce(f.last_queue_resource_key, -1), count(*), sum(f.after_call_work_duration)
          {IRF} WHERE r.resource_type = 'Agent' GROUP BY 1""", ("offered", "wrap_time")),
    "H_QUEUE": ("resource_key", f"""
        SELECT f.resource_key, count(*), count(*) FILTER (WHERE td.technical_result = 'Diverted'),
               count(*) FILTER (WHERE td.result_reason = 'AbandonedWhileQueued'), sum(f.mediation_duration)
          {IRF} WHERE r.resource_type = 'Queue' GROUP BY 1""",
        ("entered", "accepted_agent", "abandoned", "mediation_time")),
    "H_QUEUE_GRP": ("group_key", f"""
        SELECT g.group_key, count(*), sum(f.mediation_duration) {IRF} {AT_START_GROUP}
         WHERE r.resource_type = 'Queue' GROUP BY 1""", ("entered", "mediation_time")),
    "H_QUEUE_ABN": ("resource_key", f"""
        SELECT f.resource_key, count(*), count(*) FILTER (WHERE f.mediation_duration < 5),
               count(*) FILTER (WHERE f.mediation_duration >= 120)
          {IRF} WHERE r.resource_type = 'Queue' AND td.result_reason = 'AbandonedWhileQueued' GROUP BY 1""",
        ("abandoned", "abn_0_5", "abn_120_plus")),
    "H_QUEUE_ACC_AGENT": ("resource_key", f"""
        SELECT f.resource_key, count(*), count(*) FILTER (WHERE f.mediation_duration BETWEEN 10 AND 14),
               sum(f.mediation_duration)
          {IRF} WHERE r.resource_type = 'Queue' AND td.technical_result = 'Diverted' GROUP BY 1""",
        ("accepted_agent", "acc_10_15", "accepted_time")),
    "H_ID": ("media_type_key", """
        SELECT i.media_type_key, count(*), count(*) FILTER (WHERE i.end_ts IS NOT NULL),
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM interaction_resource_fact x JOIN resource_ r
                     USING (resource_key) WHERE x.interaction_id = i.interaction_id AND r.resource_type = 'Agent'
                     AND x.consult_flag = 0 AND x.talk_count > 0))
          FROM interaction_fact i GROUP BY 1""", ("entered", "ended", "accepted")),
    "H_I_AGENT": ("resource_key", f"""
        SELECT f.resource_key, count(*), sum(f.end_ts - f.start_ts)
          {IRF} WHERE r.resource_type = 'Agent' AND f.end_ts IS NOT NULL GROUP BY 1""", ("started", "active_time")),
    "H_I_SESS_STATE": ("resource_key", """
        SELECT resource_key, sum(l), sum(lt), sum(b), sum(nr) FROM (
            SELECT resource_key, 1 AS l, end_ts - start_ts AS lt, 0 AS b, 0 AS nr
              FROM sm_res_session_fact WHERE end_ts IS NOT NULL
            UNION ALL
            SELECT resource_key, 0, 0, CASE WHEN resource_state_key = 3 THEN end_ts - start_ts ELSE 0 END,
                   CASE WHEN resource_state_key = 2 THEN end_ts - start_ts ELSE 0 END
              FROM sm_res_state_fact WHERE end_ts IS NOT NULL) u GROUP BY 1""",
        ("logins", "login_time", "busy_time", "not_ready_time")),
    "H_I_STATE_RSN": ("resource_state_reason_key", """
        SELECT coalesce(resource_state_reason_key, -1), count(*), sum(end_ts - start_ts)
          FROM sm_res_state_fact WHERE end_ts IS NOT NULL GROUP BY 1""", ("state_count", "state_time")),
    # outbound: the simulator dials by default (gim_jobs.idb.outbound)
    "H_CAMPAIGN": ("campaign_key", """
        SELECT campaign_key, count(*), count(*) FILTER (WHERE call_result_code = 'ANSWER'), sum(talk_duration)
          FROM contact_attempt_fact GROUP BY 1""", ("attempts", "connected", "engage_time")),
    "H_AGENT_CAMPAIGN": ("resource_key", """
        SELECT coalesce(resource_key, -1), count(*), count(*) FILTER (WHERE call_result_code = 'ANSWER'),
               sum(talk_duration) FROM contact_attempt_fact GROUP BY 1""", ("attempts", "connected", "engage_time")),
}


def level_totals(dsn: str, h: str, level: str, dim: str, measures: tuple[str, ...]) -> dict:
    t = HIERARCHIES[h].table(level)
    rows = q(dsn, f"SELECT {dim}, {', '.join(f'sum({m})' for m in measures)} FROM {t} GROUP BY 1")
    return {r[0]: tuple(int(v) for v in r[1:]) for r in rows if any(r[1:])}


def independent(dsn: str, h: str) -> dict:
    _dim, sql, _m = INDEPENDENT[h]
    return {r[0]: tuple(int(v or 0) for v in r[1:]) for r in q(dsn, sql) if any(r[1:])}


def assert_consistent(dsn: str) -> None:
    for h, (dim, _sql, measures) in INDEPENDENT.items():
        want = independent(dsn, h)
        assert want, h
        for level in LEVELS:
            assert level_totals(dsn, h, level, dim, measures) == want, (h, level)
    for name in NAMES:
        hh = HIERARCHIES[name]
        dims = ", ".join(hh.dims)
        for below, level in zip(LEVELS, LEVELS[1:], strict=False):
            aggs = ", ".join(f"{m.agg}({m.name})" for m in hh.measures)
            rolled = q(dsn, f"SELECT gim_agg_period_key(date_time_key, '{level}'), {dims}, {aggs} "
                            f"FROM {hh.table(below)} GROUP BY 1, {dims} ORDER BY 1, {dims}")
            have = q(dsn, f"SELECT date_time_key, {dims}, {', '.join(m.name for m in hh.measures)} "
                          f"FROM {hh.table(level)} ORDER BY 1, {dims}")
            assert have == rolled, (name, level)


def table_dump(dsn: str) -> dict:
    out = {}
    for name in NAMES:
        for level in LEVELS:
            t = HIERARCHIES[name].table(level)
            out[t] = sorted(q(dsn, f"SELECT * FROM {t}"))
    return out


def assert_equals_rebuild(dsn: str) -> None:
    """The aggregates as they are equal a rebuild from scratch (definitions "changed": every
    hierarchy dropped, recreated and rebuilt from the facts)."""
    incremental = table_dump(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ctl_aggregate_hierarchy")
    with Aggregator(dsn, 15) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
    assert table_dump(dsn) == incremental


def test_every_hierarchy_and_level_equals_the_facts_and_the_level_below(mart):
    dsn, _idb, _cycle = mart
    with Aggregator(dsn, 15) as agg:
        created = agg.ensure_tables()
        assert created == list(NAMES)
        stats = agg.run_until_idle()
    assert stats["intervals"] > 0
    assert_consistent(dsn)
    # the campaign hierarchies have outbound data (checked in INDEPENDENT too)
    for name in ("H_CAMPAIGN", "H_AGENT_CAMPAIGN"):
        assert q(dsn, f"SELECT count(*) > 0 FROM {HIERARCHIES[name].table('DAY')}") == [(True,)]
    # views: every level, week included
    views = {r[0] for r in q(dsn, "SELECT viewname FROM pg_views WHERE viewname LIKE 'ag2_%%'")}
    assert {"ag2_agent_subhr", "ag2_agent_week", "ag2_queue_quarter", "ag2_i_sess_state_year"} <= views
    assert len(views) == 13 * 7
    wk = q(dsn, "SELECT sum(offered) FROM ag2_agent_week")[0][0]
    assert wk == q(dsn, "SELECT sum(offered) FROM agt_agent_day")[0][0] > 0


def test_interval_based_measure_per_quarter_hour_matches_an_overlap_join(mart):
    dsn, _idb, _cycle = mart
    with Aggregator(dsn, 15) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
    want = q(dsn, """
        SELECT d.date_time_key, f.resource_key,
               sum(least(f.end_ts, d.date_time_key + 900) - greatest(f.start_ts, d.date_time_key))
          FROM sm_res_session_fact f JOIN date_time d
            ON d.date_time_key < f.end_ts AND d.date_time_key + 900 > f.start_ts
         WHERE f.end_ts IS NOT NULL GROUP BY 1, 2 HAVING sum(least(f.end_ts, d.date_time_key + 900)
               - greatest(f.start_ts, d.date_time_key)) > 0 ORDER BY 1, 2""")
    have = q(dsn, """SELECT date_time_key, resource_key, sum(login_time) FROM agt_i_sess_state_subhr
                      GROUP BY 1, 2 HAVING sum(login_time) > 0 ORDER BY 1, 2""")
    assert have == want and len(want) > 50


def test_sub_hour_interval_30(mart):
    dsn, _idb, _cycle = mart
    with Aggregator(dsn, 30) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
    assert q(dsn, "SELECT count(*) FROM agt_agent_subhr WHERE mod(date_time_key, 1800) <> 0") == [(0,)]
    assert_consistent(dsn)


@pytest.mark.parametrize("touched_max", [0, 10**6], ids=["whole-periods", "changed-groups"])
def test_incremental_recomputes_only_changed_intervals_and_equals_a_rebuild(mart, monkeypatch, touched_max):
    import gim_jobs.jobs.aggregate as agg_mod
    from gim_jobs.idb import simulate_batch

    monkeypatch.setattr(agg_mod, "TOUCHED_MAX_KEYS", touched_max)
    dsn, idb, cycle = mart
    with Aggregator(dsn, 15) as agg:
        agg.ensure_tables()
        first = agg.run_until_idle()
        assert agg.run_until_idle()["intervals"] == 0  # nothing changed: nothing recomputed
        simulate_batch(idb, interactions=300, start=T0 + 6 * 3600, span_seconds=3600)
        cycle()
        hwm = q(dsn, "SELECT audit_key_hwm FROM ctl_aggregate_hwm")[0][0]
        queued = agg.queue_changes()
        pending = {r[0] for r in q(dsn, "SELECT start_ts FROM ctl_aggregate_pending WHERE source = 'facts'")}
        # the simulator hired agents into groups at the batch start: the group hierarchies are
        # queued from then on (see the membership test below)
        groups = q(dsn, "SELECT hierarchy, start_ts, end_ts FROM ctl_aggregate_pending WHERE source = 'groups'")
        new_members = q(dsn, "SELECT min(start_ts) FROM resource_group_fact_ WHERE create_audit_key > %s", (hwm,))[0][0]
        assert [(h, a) for h, a, _b in groups] == ([("H_QUEUE_GRP,H_AGENT_GRP", new_members - new_members % 900)]
                                                   if new_members else [])
        group_keys = sum(len(range(a, b, 900)) for _h, a, b in groups)
        second = agg.run_until_idle()
    assert first["intervals"] > 0 and queued == len(pending) + len(groups)
    assert second["intervals"] == len(pending) + group_keys
    # exactly the quarter-hours the changed facts span (computed here from the facts), nothing else
    changed = q(dsn, """
        SELECT start_ts, coalesce(end_ts, start_ts) FROM interaction_resource_fact WHERE update_audit_key > %s
        UNION ALL SELECT start_ts, coalesce(end_ts, start_ts) FROM sm_res_state_fact WHERE update_audit_key > %s
        UNION ALL SELECT start_ts, coalesce(end_ts, start_ts) FROM sm_res_session_fact WHERE update_audit_key > %s
        UNION ALL SELECT start_ts, start_ts FROM interaction_fact WHERE update_audit_key > %s
        UNION ALL SELECT i.start_ts, i.start_ts FROM interaction_resource_fact f JOIN interaction_fact i
               USING (interaction_id) WHERE f.update_audit_key > %s""", (hwm,) * 5)
    expect = {k for a, b in changed for k in range(a - a % 900, b - b % 900 + 1, 900)}
    assert pending == expect
    assert q(dsn, "SELECT count(*) FROM interaction_fact WHERE update_audit_key <= %s", (hwm,))[0][0] > 0
    assert_consistent(dsn)
    assert_equals_rebuild(dsn)


@pytest.mark.parametrize("touched_max", [0, 10**6], ids=["whole-periods", "changed-groups"])
def test_reaggregation_request_deletes_and_recomputes_its_range_set_and_flavor(mart, monkeypatch, touched_max):
    import gim_jobs.jobs.aggregate as agg_mod

    monkeypatch.setattr(agg_mod, "TOUCHED_MAX_KEYS", touched_max)
    dsn, _idb, _cycle = mart
    with Aggregator(dsn, 15) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
        good = table_dump(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE agt_agent_hour SET offered = offered + 1000")
            conn.execute("UPDATE agt_queue_day SET entered = entered + 1000")
            conn.execute("INSERT INTO agt_agent_subhr (date_time_key, resource_key, media_type_key, "
                         "interaction_type_key, offered) VALUES (%s, -7, 1, 1, 5)", (T0,))
        # Offline flavor of H_AGENT from HOUR: only offline media rows at HOUR and above are redone
        submit_request(dsn, parse("H_AGENT-HOUR.Offline:2024-01-01:2024-01-01"))
        agg.run_until_idle()
        online_left = q(dsn, "SELECT count(*) FROM agt_agent_hour a JOIN media_type m USING (media_type_key) "
                             "WHERE m.is_online = 1 AND a.offered >= 1000")[0][0]
        assert online_left > 0
        assert q(dsn, "SELECT count(*) FROM agt_agent_hour a JOIN media_type m USING (media_type_key) "
                      "WHERE m.is_online = 0 AND a.offered >= 1000") == [(0,)]
        submit_request(dsn, parse("H_AGENT,H_QUEUE-SUBHOUR:2024-01-01:2024-01-01"))
        agg.run_until_idle()
    assert table_dump(dsn) == good
    assert q(dsn, "SELECT count(*) FROM ctl_aggregate_pending") == [(0,)]


def test_group_membership_change_reaggregates_the_group_hierarchies_from_its_time_on(mart):
    """An agent leaves a group in the IDB at T0 + 3 h: after the next ETL cycle the group hierarchies
    (membership at the offer time) are recomputed from then on, and only they: the tables equal the
    independent queries and a rebuild."""
    from gim_jobs.jobs.aggregate import GROUP_HIERARCHIES

    dsn, idb, cycle = mart
    with Aggregator(dsn, 15) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
        # the agent group member with the most offers after the change time
        group_id, agent_id = q(dsn, """
            SELECT g.group_key - %s, r.resource_key - %s FROM interaction_resource_fact f
              JOIN resource_ r USING (resource_key) JOIN resource_group_fact_ g ON g.resource_key = f.resource_key
             WHERE r.resource_type = 'Agent' AND f.start_ts >= %s AND g.end_ts IS NULL
             GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1""", (GROUP_BASE, AGENT_BASE, T0 + 3 * 3600))[0]
        before = independent(dsn, "H_AGENT_GRP")
        with psycopg.connect(idb, autocommit=True) as conn:
            assert conn.execute("UPDATE gcx_group_agent SET deleted_ts = %s WHERE group_id = %s AND agent_id = %s",
                                (T0 + 3 * 3600, group_id, agent_id)).rowcount == 1
        cycle()
        assert agg.queue_changes() == 1  # no fact changed: only the membership
        pend = q(dsn, "SELECT hierarchy, start_ts, end_ts, source FROM ctl_aggregate_pending")
        assert len(pend) == 1 and pend[0][0].split(",") == list(GROUP_HIERARCHIES) and pend[0][3] == "groups"
        assert pend[0][1] == T0 + 3 * 3600
        agg.run_until_idle()
    after = independent(dsn, "H_AGENT_GRP")
    assert after != before  # the change matters to the measures
    assert_consistent(dsn)
    assert_equals_rebuild(dsn)


def test_facts_deleted_by_the_transform_are_taken_out_of_the_aggregates(mart):
    """Interactions found malformed after they were aggregated lose their facts in the next ETL
    cycle; the intervals those facts counted in are re-aggregated (ctl_fact_deleted), so every
    level again equals the facts and a rebuild."""
    dsn, idb, cycle = mart
    with Aggregator(dsn, 15) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
        victims = [r[0] for r in q(dsn, """SELECT party_guid FROM interaction_resource_fact f JOIN resource_ r
                                            USING (resource_key) WHERE r.resource_type = 'Agent' AND f.end_ts IS NOT NULL
                                            ORDER BY f.start_ts LIMIT 5""")]
        offered = q(dsn, "SELECT sum(offered) FROM agt_agent_day")[0][0]
        with psycopg.connect(idb, autocommit=True) as conn:
            conn.execute("UPDATE g_party SET terminated_ts = created_ts - 60 WHERE partyid = ANY(%s)", (victims,))
        cycle()
        assert q(dsn, "SELECT count(*) FROM interaction_resource_fact WHERE party_guid = ANY(%s)", (victims,)) == [(0,)]
        agg.run_until_idle()
    assert q(dsn, "SELECT sum(offered) FROM agt_agent_day")[0][0] < offered
    assert_consistent(dsn)
    assert_equals_rebuild(dsn)


def test_reaggregation_refuses_days_outside_date_time_and_purged_facts(mart):
    dsn, _idb, _cycle = mart
    with pytest.raises(BadRequest, match="not in the date_time calendar"):
        submit_request(dsn, parse("ALLSETS:1990-01-01:1990-01-02"))
    if q(dsn, "SELECT to_regclass('ctl_purge_history') IS NOT NULL")[0][0]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("""INSERT INTO ctl_purge_history (job_id, table_name, option_name, days_to_keep, cutoff,
                                rows_deleted, completed, started)
                            VALUES ('t', 'interaction_fact', 'days-to-keep-gim-facts', 1,
                                    '2024-01-01 12:00+00', 10, true, now())""")
        with pytest.raises(BadRequest, match="purged"):
            submit_request(dsn, parse("-HOUR:2024-01-01:2024-01-01"))
    assert q(dsn, "SELECT count(*) FROM ctl_aggregate_pending WHERE source = 'insertPendingAgg'") == [(0,)]


def _now_window(make_config, run_aggregates: str, minutes_from_now: int = 0, duration: str = "00:05"):
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes_from_now)
    return make_config({"schedule": {"run-aggregates": run_aggregates, "aggregate-schedule": f"{at.minute} {at.hour}",
                                     "aggregate-duration": duration, "timezone": "GMT"}})


def test_r16_manual_run_refused_while_run_aggregates_true_or_outside_the_window(mart, make_config):
    dsn, _idb, _cycle = mart
    cfg = _now_window(make_config, "true")
    with pytest.raises(JobRefused, match="run-aggregates = true.*R16"):
        run_job("aggregate", run_type="manual", infomart_dsn=dsn, config_path=cfg)
    cfg = _now_window(make_config, "false", minutes_from_now=120)
    with pytest.raises(JobRefused, match="outside the aggregation window.*R16"):
        run_job("aggregate", run_type="cli", infomart_dsn=dsn, config_path=cfg)
    # a scheduled run outside the window does nothing
    out = run_job("aggregate", run_type="scheduled", infomart_dsn=dsn, config_path=cfg)
    assert "outside" in out.message
    # R19 again in the task: a malformed parameter is refused before anything changes
    with pytest.raises(JobRefused, match="R19"):
        run_job("aggregate", run_type="cli", infomart_dsn=dsn, config_path=cfg,
                params={"insertPendingAgg": "H_NOPE-DAY:2024-01-01:2024-01-01"})


def test_job_runs_continuously_in_its_window_and_reaggregation_goes_to_it(mart, make_config, caplog):
    import gim_jobs.jobs.aggregate as agg_mod

    dsn, _idb, _cycle = mart
    agg_mod.POLL_SECONDS = 0.5
    cfg = _now_window(make_config, "false")
    errors: list[BaseException] = []

    def go() -> None:
        try:
            run_job("aggregate", run_type="manual", infomart_dsn=dsn, config_path=cfg,
                    params={"insertPendingAgg": "ALLSETS:2024-01-01:2024-01-01"})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    th = threading.Thread(target=go)
    th.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if q(dsn, "SELECT to_regclass('agt_agent_day') IS NOT NULL")[0][0] and \
                q(dsn, "SELECT count(*) FROM ctl_aggregate_pending")[0][0] == 0 and \
                q(dsn, "SELECT count(*) FROM agt_agent_day")[0][0] > 0:
            break
        time.sleep(0.3)
    assert th.is_alive(), errors  # still running: continuous inside the window
    assert "ignores insertPendingAgg" in caplog.text  # R20: it was not running, so the parameter was ignored
    assert q(dsn, "SELECT count(*) FROM ctl_aggregate_pending WHERE source = 'insertPendingAgg'") == [(0,)]
    assert_consistent(dsn)
    assert request_stop(dsn, "Job_AggregateGIM", "test stop")
    th.join(30)
    assert not th.is_alive() and isinstance(errors[0], JobStopped)


def test_period_keys():
    k = T0 + 17 * 60
    assert period_key(k, "SUBHOUR", 900) == T0 + 900
    assert period_key(k, "SUBHOUR", 1800) == T0
    assert period_key(k, "MONTH", 900) == 1704067200
    assert period_key(1719792000 + 5, "QUARTER", 900) == 1719792000  # 2024-07-01
    assert period_key(1719792000 + 5, "YEAR", 900) == 1704067200


def test_r24_subhour_aggregates_report_local_days_through_a_custom_calendar(mart, make_config):
    """The aggregates are keyed by the GMT 15-minute date_time_key that every calendar table shares:
    joining agt_*_subhr to a custom calendar groups them by local day. Here Asia/Tokyo, whose
    midnight (15:00 UTC) cuts the simulated 10:00-16:00 UTC span, one GMT day, into two local days;
    the totals equal the facts grouped by their Tokyo day."""
    dsn, _idb, _cycle = mart
    cfg = make_config({"date-time-tokyo": {"date-time-tz": "Asia/Tokyo", "date-time-table-name": "date_time_tokyo",
                                        "date-time-start-year": "2023", "date-time-max-days-ahead": "1",
                                        "date-time-min-days-ahead": "0"}})
    assert run_job("maintain", infomart_dsn=dsn, config_path=cfg, params={"steps": "calendars"}).status == "COMPLETED"
    with Aggregator(dsn, 15) as agg:
        agg.ensure_tables()
        agg.run_until_idle()
    by_local_day = q(dsn, """SELECT c.cal_date, sum(a.offered) FROM agt_agent_subhr a
                               JOIN date_time_tokyo c ON c.date_time_key = a.date_time_key GROUP BY 1 ORDER BY 1""")
    facts = q(dsn, """SELECT (to_timestamp(f.start_ts) AT TIME ZONE 'Asia/Tokyo')::date, count(*)
                        FROM interaction_resource_fact f JOIN resource_ r USING (resource_key)
                       WHERE r.resource_type = 'Agent' GROUP BY 1 ORDER BY 1""")
    assert by_local_day == facts and len(by_local_day) == 2
