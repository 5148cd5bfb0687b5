"""plugins/gim_timetables.py: the Airflow timetables (R2, R3, R13), driven directly, no DB.

The plugin is imported the way Airflow imports it: ``plugins/`` on ``sys.path``, module name =
file stem (``gim_timetables``), which is also how DAG files must import it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import pendulum
import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.append(str(PLUGINS))

import gim_timetables  # noqa: E402
from airflow.exceptions import AirflowTimetableInvalid  # noqa: E402
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction  # noqa: E402
from gim_timetables import Cron2Timetable, EtlWindowTimetable, GimTimetablesPlugin  # noqa: E402

from gim_jobs import schedule as S  # noqa: E402

NY, BERLIN = "America/New_York", "Europe/Berlin"
EARLIEST = pendulum.datetime(2026, 1, 1, tz="UTC")


def utc(*args):
    return pendulum.datetime(*args, tz="UTC")


@pytest.fixture
def clock(monkeypatch):
    """Set the timetable's 'now': ``clock(utc(...))``."""

    def set_now(now):
        monkeypatch.setattr(gim_timetables, "_now", lambda: now)

    return set_now


@pytest.fixture
def sample():
    return EtlWindowTimetable(start="06:30", end="00:30", every_minutes=30, timezone="GMT")


def nxt(tt, last=None, *, earliest=EARLIEST, latest=None, catchup=False):
    info = tt.next_dagrun_info(
        last_automated_data_interval=None if last is None else DataInterval.exact(last),
        restriction=TimeRestriction(earliest, latest, catchup),
    )
    if info is not None:  # logical_date == run_after == the slot
        assert info == DagRunInfo.exact(info.run_after)
        assert info.logical_date == info.run_after
        assert info.run_after.tzinfo is not None and info.run_after.utcoffset() == dt.timedelta(0)
    return None if info is None else info.run_after


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------


def test_plugin_module_name_is_file_stem():
    assert EtlWindowTimetable.__module__ == "gim_timetables"
    assert Cron2Timetable.__module__ == "gim_timetables"
    assert GimTimetablesPlugin.name == "gim_timetables"
    assert GimTimetablesPlugin.timetables[:2] == [EtlWindowTimetable, Cron2Timetable]
    assert [t.__name__ for t in GimTimetablesPlugin.timetables[2:]] == ["AggregateWindowTimetable"]
    assert all(t.__module__ == "gim_timetables" for t in GimTimetablesPlugin.timetables)


def test_plugin_loaded_by_airflow_loader_and_round_trips_through_dag_serialization(tmp_path, monkeypatch):
    """Airflow's own directory loader registers ``gim_timetables.EtlWindowTimetable``, and the DAG
    serializer encodes/decodes our timetable through that registry."""
    from airflow import plugins_manager
    from airflow._shared.module_loading import qualname
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    shutil.copy(PLUGINS / "gim_timetables.py", tmp_path / "gim_timetables.py")
    monkeypatch.setitem(sys.modules, "gim_timetables", sys.modules["gim_timetables"])  # restored after
    plugins, errors = _load_plugins_from_plugin_directory(plugins_folder=str(tmp_path))
    assert errors == {}
    (plugin,) = plugins
    registry = {qualname(c): c for c in plugin.timetables}
    assert set(registry) == {"gim_timetables.EtlWindowTimetable", "gim_timetables.Cron2Timetable",
                             "gim_timetables.AggregateWindowTimetable"}
    monkeypatch.setattr(plugins_manager, "get_timetables_plugins", lambda: registry)

    # the DAG file's class (imported as `from gim_timetables import ...`) has the registered name
    for tt in (EtlWindowTimetable("06:30", "00:30", 30, "GMT"), Cron2Timetable("20 0/8", BERLIN)):
        enc = encode_timetable(tt)
        assert enc["__type"] == f"gim_timetables.{type(tt).__name__}"
        back = decode_timetable(enc)
        # a different class object (the loader re-executes the file): compare by name and data
        assert qualname(type(back)) == qualname(type(tt))
        assert back.serialize() == tt.serialize()
        assert back.summary == tt.summary


def test_serialize_round_trip_and_equality(sample):
    data = sample.serialize()
    assert data == {"start": "06:30", "end": "00:30", "every_minutes": 30, "timezone": "GMT"}
    back = EtlWindowTimetable.deserialize(data)
    assert back == sample and hash(back) == hash(sample)
    assert back != EtlWindowTimetable("06:30", "00:30", 15, "GMT")
    assert len({sample, back, EtlWindowTimetable("06:30", "00:30", 15, "GMT")}) == 2
    c = Cron2Timetable("0/10 *", "GMT")
    assert Cron2Timetable.deserialize(c.serialize()) == c
    assert c != sample
    assert "EtlWindowTimetable(start='06:30'" in repr(sample)


def test_summary_and_description(sample):
    assert sample.summary == "06:30-00:30/30m GMT"
    assert sample.description == (
        "ETL cycle every 30 minutes from 06:30 to 00:30 the next day (GMT wall clock); "
        "the last cycle of a window starts at or before 00:30"
    )
    assert (
        "from 08:00 to 18:00 (Europe/Berlin" in EtlWindowTimetable("08:00", "18:00", 60, BERLIN).description
    )
    assert Cron2Timetable("20 0/8", "GMT").summary == "20 0/8 GMT"
    assert Cron2Timetable("20 0/8", "GMT").description == "At 00:20, 08:20, 16:20 every day (GMT wall clock)"
    assert Cron2Timetable("0/10 *", "GMT").description.startswith("144 times a day")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("25:00", "00:30", 30, "GMT"), "start: '25:00': hours must be 00-23"),
        (("06:30", "0:3", 30, "GMT"), "end"),
        (("06:30", "00:30", 0, "GMT"), "every_minutes must be an integer 1-1440"),
        (("06:30", "00:30", "30", "GMT"), "every_minutes"),
        (("06:30", "00:30", 30, "Mars/Base"), "unknown time zone"),
    ],
)
def test_validate_rejects_bad_values(args, reason):
    tt = EtlWindowTimetable(*args)  # constructing never raises: Airflow calls validate()
    with pytest.raises(AirflowTimetableInvalid, match=reason):
        tt.validate()
    with pytest.raises(AirflowTimetableInvalid):
        nxt(tt)
    assert tt.description.startswith("Invalid")


def test_validate_rejects_bad_cron():
    with pytest.raises(AirflowTimetableInvalid, match="minute must be 0-59"):
        Cron2Timetable("60 *", "GMT").validate()
    with pytest.raises(AirflowTimetableInvalid, match="IANA"):
        Cron2Timetable("0 1", "nowhere").validate()
    Cron2Timetable("20 0/8", "GMT").validate()


def test_manual_run_is_exact(sample):
    at = utc(2026, 5, 4, 3, 17)
    assert sample.infer_manual_data_interval(run_after=at) == DataInterval(at, at)


# ------------------------------------------------------------------------------------------------
# R2: slots
# ------------------------------------------------------------------------------------------------


def test_r02_first_run_waits_for_next_slot_without_start_date(sample, clock):
    clock(utc(2026, 5, 4, 7, 10))
    assert nxt(sample, earliest=None) == utc(2026, 5, 4, 7, 30)
    clock(utc(2026, 5, 4, 7, 30))
    assert nxt(sample, earliest=None) == utc(2026, 5, 4, 7, 30)  # due now


def test_r02_first_run_with_future_start_date(sample, clock):
    clock(utc(2026, 5, 4, 7, 10))
    assert nxt(sample, earliest=utc(2026, 6, 1, 3, 0)) == utc(2026, 6, 1, 6, 30)
    assert nxt(sample, earliest=utc(2026, 6, 1, 3, 0), catchup=True) == utc(2026, 6, 1, 6, 30)
    # 00:00 on 06-01 is a slot (the tail of the 05-31 window)
    assert nxt(sample, earliest=utc(2026, 6, 1, 0, 0)) == utc(2026, 6, 1, 0, 0)


def test_r02_next_after_a_run(sample, clock):
    clock(utc(2026, 5, 4, 7, 5))  # the 07:00 cycle was created; the next is 07:30
    assert nxt(sample, utc(2026, 5, 4, 7, 0)) == utc(2026, 5, 4, 7, 30)


def test_r02_window_across_midnight(sample, clock):
    clock(utc(2026, 5, 4, 23, 31))
    assert nxt(sample, utc(2026, 5, 4, 23, 30)) == utc(2026, 5, 5, 0, 0)
    clock(utc(2026, 5, 5, 0, 1))
    assert nxt(sample, utc(2026, 5, 5, 0, 0)) == utc(2026, 5, 5, 0, 30)
    clock(utc(2026, 5, 5, 0, 31))  # 00:30 was the last of the window: next morning 06:30
    assert nxt(sample, utc(2026, 5, 5, 0, 30)) == utc(2026, 5, 5, 6, 30)


def test_r02_scheduler_sequence_matches_gim_schedule(sample, clock):
    """Walking the timetable over a day gives exactly `gim schedule`'s ETL starts (in real time)."""
    day = dt.date(2026, 5, 4)
    expected = S.etl_starts_on(day, 390, 30, 30, "GMT")
    got, last = [], utc(2026, 5, 3, 23, 59)
    while True:
        clock(last + dt.timedelta(seconds=1))  # the scheduler asks right after creating a run
        t = nxt(sample, last)
        if t.date() != day:
            break
        got.append(t)
        last = t
    # the first call used `last` = 23:59 (not a slot): fine, next slot after it is 00:00
    assert got == expected and len(got) == 37


def test_r02_latest_restriction(sample, clock):
    clock(utc(2026, 5, 4, 7, 5))
    assert nxt(sample, utc(2026, 5, 4, 7, 0), latest=utc(2026, 5, 4, 7, 29)) is None
    assert nxt(sample, utc(2026, 5, 4, 7, 0), latest=utc(2026, 5, 4, 7, 30)) == utc(2026, 5, 4, 7, 30)


# ------------------------------------------------------------------------------------------------
# R3: long cycles, at most one late cycle, no backlog
# ------------------------------------------------------------------------------------------------


def test_r03_long_cycle_runs_latest_due_slot_once(sample, clock):
    # the 07:00 cycle ran until 08:47: 07:30 and 08:00 are dropped, 08:30 runs at once
    clock(utc(2026, 5, 4, 8, 47))
    assert nxt(sample, utc(2026, 5, 4, 7, 0)) == utc(2026, 5, 4, 8, 30)
    # and after that late 08:30 cycle the schedule is back on time
    clock(utc(2026, 5, 4, 8, 50))
    assert nxt(sample, utc(2026, 5, 4, 8, 30)) == utc(2026, 5, 4, 9, 0)


def test_r03_short_overrun_makes_next_start_when_it_ends(sample, clock):
    clock(utc(2026, 5, 4, 7, 35))  # 07:00 cycle took 35 min: the 07:30 slot is due, runs now
    assert nxt(sample, utc(2026, 5, 4, 7, 0)) == utc(2026, 5, 4, 7, 30)


def test_r03_last_run_far_in_the_past_no_backlog(sample, clock):
    clock(utc(2026, 5, 4, 12, 10))
    assert nxt(sample, utc(2026, 4, 1, 9, 0)) == utc(2026, 5, 4, 12, 0)  # not 2026-04-01 09:30
    # first deployment with an old start_date: the latest due slot once, not the oldest
    assert nxt(sample, None, earliest=utc(2025, 1, 1)) == utc(2026, 5, 4, 12, 0)


def test_r03_missed_slots_while_window_closed_wait_for_next_window(sample, clock):
    clock(utc(2026, 5, 5, 5, 0))  # last cycle was the window's last (00:30): nothing is due
    assert nxt(sample, utc(2026, 5, 5, 0, 30)) == utc(2026, 5, 5, 6, 30)
    # a cycle that overran the window's end still gets its one late successor (the 00:30 slot)
    clock(utc(2026, 5, 5, 0, 50))
    assert nxt(sample, utc(2026, 5, 5, 0, 0)) == utc(2026, 5, 5, 0, 30)


def test_r03_catchup_true_runs_every_slot_in_order(sample, clock):
    clock(utc(2026, 5, 4, 12, 10))
    assert nxt(sample, utc(2026, 5, 4, 7, 0), catchup=True) == utc(2026, 5, 4, 7, 30)
    assert nxt(sample, utc(2026, 5, 5, 0, 30), catchup=True) == utc(2026, 5, 5, 6, 30)
    assert nxt(sample, None, earliest=utc(2026, 5, 1, 2, 0), catchup=True) == utc(2026, 5, 1, 6, 30)
    assert nxt(sample, None, earliest=utc(2026, 5, 1, 6, 30), catchup=True) == utc(2026, 5, 1, 6, 30)


# ------------------------------------------------------------------------------------------------
# DST
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        (NY, dt.date(2026, 3, 8)),
        (NY, dt.date(2026, 11, 1)),
        (BERLIN, dt.date(2026, 3, 29)),
        (BERLIN, dt.date(2026, 10, 25)),
    ],
)
def test_r02_dst_days_timetable_walk_equals_schedule(tz, day, clock):
    tt = EtlWindowTimetable("01:00", "04:00", 30, tz)
    clock(utc(2030, 1, 1))  # catchup=True walk: 'now' plays no part
    earliest = pendulum.datetime(day.year, day.month, day.day, tz=tz).in_timezone("UTC")
    got, last = [], None
    for _ in range(10):
        t = nxt(tt, last, earliest=earliest, catchup=True)
        if S.to_local(t, tz).date() != day:
            break
        got.append(t)
        last = t
    assert got == S.etl_slots(day, 60, 240, 30, tz)
    local = [S.fmt_local(t, tz) for t in got]
    if day.month == 3:
        assert local == ["01:00", "01:30", "03:00", "03:30", "04:00"]
    else:
        assert local == ["01:00", "01:30", "02:00", "02:30", "03:00", "03:30", "04:00"]


def test_r03_dst_fold_no_second_pass_late_run(clock):
    """NY fall-back: at 01:40 EST (the repeated hour) the last slot run is 01:30 EDT; nothing is
    due again until 02:00 EST."""
    tt = EtlWindowTimetable("01:00", "04:00", 30, NY)
    first_0130 = utc(2026, 11, 1, 5, 30)
    clock(utc(2026, 11, 1, 6, 40))  # 01:40 EST
    assert nxt(tt, first_0130) == utc(2026, 11, 1, 7, 0)  # 02:00 EST


# ------------------------------------------------------------------------------------------------
# Cron2Timetable (R10, R12, R13)
# ------------------------------------------------------------------------------------------------


def test_r12_cron2_timetable_export_times(clock):
    tt = Cron2Timetable("20 0/8", "GMT")
    clock(utc(2026, 5, 4, 0, 21))
    assert nxt(tt, utc(2026, 5, 4, 0, 20)) == utc(2026, 5, 4, 8, 20)
    clock(utc(2026, 5, 4, 17, 0))  # the 08:20 export ran long: 16:20 once, no backlog
    assert nxt(tt, utc(2026, 5, 4, 0, 20)) == utc(2026, 5, 4, 16, 20)
    assert nxt(tt, utc(2026, 5, 4, 0, 20), catchup=True) == utc(2026, 5, 4, 8, 20)


def _walk(tt, start, n, clock):
    clock(utc(2030, 1, 1))
    out, last = [], None
    for _ in range(n):
        t = nxt(tt, last, earliest=start, catchup=True)
        out.append(t)
        last = t
    return out


def test_r13_cron2_timetable_agrees_with_cron_trigger_on_ordinary_days(clock):
    from airflow.timetables.trigger import CronTriggerTimetable

    for text in ("0/10 *", "20 0/8", "0,30,45 *", "5-10 1"):
        c = S.Cron2(text)
        ours = _walk(Cron2Timetable(text, BERLIN), utc(2026, 5, 3, 22, 0), 20, clock)
        theirs = _walk(CronTriggerTimetable(c.to_cron5(), timezone=BERLIN), utc(2026, 5, 3, 22, 0), 20, clock)
        assert ours == theirs, text


def test_r13_cron2_timetable_fall_back_differs_from_cron_trigger(clock):
    """Documents why Cron2Timetable exists: on the NY fall-back day CronTriggerTimetable fires
    ``30 1`` at the second 01:30 (EST) and ``0/30 *`` in both passes of the repeated hour;
    ours fires once, at the first 01:30 (EDT), like `gim schedule`."""
    from airflow.timetables.trigger import CronTriggerTimetable

    start = utc(2026, 11, 1, 4, 0)  # 00:00 EDT
    ours = _walk(Cron2Timetable("30 1", NY), start, 1, clock)
    theirs = _walk(CronTriggerTimetable("30 1 * * *", timezone=NY), start, 1, clock)
    assert [S.to_local(t, NY).strftime("%H:%M%z") for t in ours] == ["01:30-0400"]
    assert [S.to_local(t, NY).strftime("%H:%M%z") for t in theirs] == ["01:30-0500"]
    assert ours == S.cron2_times_on(dt.date(2026, 11, 1), "30 1", NY)

    ours = _walk(Cron2Timetable("0/30 *", NY), start, 5, clock)
    theirs = _walk(CronTriggerTimetable("0-59/30 * * * *", timezone=NY), start, 5, clock)
    fmt = [S.to_local(t, NY).strftime("%H:%M%z") for t in ours]
    assert fmt == ["00:00-0400", "00:30-0400", "01:00-0400", "01:30-0400", "02:00-0500"]
    assert [S.to_local(t, NY).strftime("%H:%M%z") for t in theirs] == [
        "00:00-0400",
        "00:30-0400",
        "01:00-0400",
        "01:30-0400",
        "01:00-0500",
    ]
