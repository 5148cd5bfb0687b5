"""R19: every valid and invalid form of -insertPendingAgg, the same regex the trigger form uses, and
the aggregation-window timetable (R11)."""

from __future__ import annotations

import datetime as dt
import re

import pendulum
import pytest

from gim_jobs.aggregation.hierarchies import LEVELS, NAMES
from gim_jobs.aggregation.params import PATTERN, BadRequest, parse

VALID = [
    ("ALLSETS:2024-01-01:2024-01-31", NAMES, "SUBHOUR", ""),
    ("-insertPendingAgg ALLSETS:2024-01-01:2024-01-01", NAMES, "SUBHOUR", ""),
    ("H_AGENT-DAY:2024-01-01:2024-01-02", ("H_AGENT",), "DAY", ""),
    ("H_AGENT,H_QUEUE-HOUR.Online:2024-02-29:2024-03-01", ("H_AGENT", "H_QUEUE"), "HOUR", "Online"),
    ("-YEAR.Offline:2023-12-31:2024-01-01", NAMES, "YEAR", "Offline"),
    ("-SUBHOUR:2024-01-01:2024-01-01", NAMES, "SUBHOUR", ""),
    ("H_AGENT_GRP,H_AGENT-MONTH:2024-01-01:2024-01-01", ("H_AGENT_GRP", "H_AGENT"), "MONTH", ""),
    ("H_AGENT,H_AGENT-QUARTER:2024-01-01:2024-01-01", ("H_AGENT",), "QUARTER", ""),
]
VALID += [(f"{h}-{lv}:2024-01-01:2024-01-01", (h,), lv, "") for h in NAMES for lv in LEVELS]

INVALID_REGEX = [
    ("H_NOPE-DAY:2024-01-01:2024-01-01", "unknown hierarchy"),
    ("h_agent-DAY:2024-01-01:2024-01-01", "unknown hierarchy"),
    ("H_AGENT-WEEK:2024-01-01:2024-01-01", "unknown level"),
    ("H_AGENT-SUBHR:2024-01-01:2024-01-01", "unknown level"),
    ("H_AGENT-DAY.online:2024-01-01:2024-01-01", "unknown flavor"),
    ("H_AGENT-DAY.Both:2024-01-01:2024-01-01", "unknown flavor"),
    ("H_AGENT:2024-01-01:2024-01-01", "lacks -<LEVEL>"),
    ("H_AGENT-DAY:2024-01-01", "three parts"),
    ("H_AGENT-DAY:2024-01-01:2024-01-01:x", "three parts"),
    ("H_AGENT-DAY:2024-1-01:2024-01-01", "not a day"),
    ("H_AGENT-DAY:2024-13-01:2024-01-01", "not a day"),
    ("H_AGENT-DAY:2024-01-01:20240102", "not a day"),
    ("H_AGENT,,H_QUEUE-DAY:2024-01-01:2024-01-01", "empty name"),
    ("H_AGENT, H_QUEUE-DAY:2024-01-01:2024-01-01", "unknown hierarchy"),
    ("ALLSETS-DAY:2024-01-01:2024-01-01", "unknown hierarchy"),
    ("ALLSETS.Online:2024-01-01:2024-01-01", "lacks -<LEVEL>"),
    ("insertPendingAgg ALLSETS:2024-01-01:2024-01-01", "lacks -<LEVEL>"),
]
INVALID_SEMANTIC = [
    ("H_AGENT-DAY:2024-02-30:2024-03-01", "real days"),
    ("H_AGENT-DAY:2023-02-29:2023-03-01", "real days"),
    ("H_AGENT-DAY:2024-01-02:2024-01-01", "after END"),
]


@pytest.mark.parametrize(("text", "hs", "level", "flavor"), VALID)
def test_valid_forms(text, hs, level, flavor):
    assert re.match(PATTERN, text)
    r = parse(text)
    assert (r.hierarchies, r.level, r.flavor) == (tuple(hs), level, flavor)
    assert r.start_ts < r.end_ts and (r.end_ts - r.start_ts) % 86400 == 0


@pytest.mark.parametrize(("text", "why"), INVALID_REGEX)
def test_malformed_forms_fail_the_trigger_pattern_and_the_task_check(text, why):
    assert not re.match(PATTERN, text)  # trigger form / REST API: 400
    with pytest.raises(BadRequest, match=re.escape(why)):
        parse(text)


@pytest.mark.parametrize(("text", "why"), INVALID_SEMANTIC)
def test_semantic_errors_pass_the_pattern_but_fail_in_the_task(text, why):
    assert re.match(PATTERN, text)
    with pytest.raises(BadRequest, match=why):
        parse(text)


def test_empty_means_no_request():
    assert re.match(PATTERN, "") and parse("") is None and parse(None) is None and parse("  ") is None


def test_range_covers_whole_gmt_days():
    r = parse("-DAY:2024-01-01:2024-01-02")
    assert r.start_ts == 1704067200 and r.end_ts == 1704067200 + 2 * 86400


# --------------------------------------------------------------------------- timetable (R11)
@pytest.fixture
def tt_module(monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    import gim_timetables

    return gim_timetables


def _info(mod, monkeypatch, now, last=None, restart=True):
    from airflow.timetables.base import DataInterval, TimeRestriction

    monkeypatch.setattr(mod, "_now", lambda: pendulum.instance(now))
    tt = mod.AggregateWindowTimetable("0 4", 23 * 60, timezone="GMT", restart=restart)
    li = None if last is None else DataInterval.exact(pendulum.instance(last))
    return tt.next_dagrun_info(last_automated_data_interval=li,
                               restriction=TimeRestriction(earliest=None, latest=None, catchup=False))


def U(*a):
    return dt.datetime(*a, tzinfo=dt.UTC)


def test_timetable_window_start_then_restart_slot_inside_the_window(tt_module, monkeypatch):
    m = tt_module
    # before the window: the window start
    assert _info(m, monkeypatch, U(2024, 1, 1, 3, 0)).logical_date == U(2024, 1, 1, 4, 0)
    # inside a window without a run yet (scheduler was down): the window start, due at once
    assert _info(m, monkeypatch, U(2024, 1, 1, 9, 0), last=U(2023, 12, 31, 4, 0)).logical_date == U(2024, 1, 1, 4, 0)
    # inside the window with its run: a restart slot, due now (blocked while the run lives)
    assert _info(m, monkeypatch, U(2024, 1, 1, 9, 0), last=U(2024, 1, 1, 4, 0)).logical_date == U(2024, 1, 1, 9, 0)
    assert _info(m, monkeypatch, U(2024, 1, 1, 4, 0, 3), last=U(2024, 1, 1, 4, 0)).logical_date == \
        U(2024, 1, 1, 4, 0, 10)
    # run-aggregates = false: no restart, the next window
    assert _info(m, monkeypatch, U(2024, 1, 1, 9, 0), last=U(2024, 1, 1, 4, 0), restart=False).logical_date == \
        U(2024, 1, 2, 4, 0)
    # the last minute of the window: the next window, so a normal end is not followed by an idle run
    assert _info(m, monkeypatch, U(2024, 1, 2, 2, 59, 30), last=U(2024, 1, 1, 4, 0)).logical_date == \
        U(2024, 1, 2, 4, 0)


def test_timetable_serializes(tt_module):
    tt = tt_module.AggregateWindowTimetable("0 0,3/2", 90, timezone="Europe/Berlin")
    assert type(tt).deserialize(tt.serialize()) == tt
    assert "0 0,3/2" in tt.summary
    tt.validate()
    with pytest.raises(Exception, match="duration"):
        tt_module.AggregateWindowTimetable("0 4", 0).validate()


def test_measures_doc_is_generated_from_the_definitions():
    from pathlib import Path

    from gim_jobs.aggregation.hierarchies import measures_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "measures.md"
    assert doc.read_text(encoding="utf-8") == measures_markdown(), "run python -m gim_jobs.aggregation.docs"
