"""gim_jobs.schedule: pure schedule math (R1, R2, R6, R10-R13). No Airflow, no database."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pendulum
import pytest

from gim_jobs import schedule as S
from gim_jobs.schedule import Cron2, parse_hhmm

NY, BERLIN = "America/New_York", "Europe/Berlin"
DAY = dt.date(2026, 5, 4)  # an ordinary Monday


def hm(times, tz):
    """Local HH:MM of UTC instants."""
    return [S.fmt_local(t, tz) for t in times]


def hmz(times, tz):
    """Local HH:MM+offset, to tell the two passes of a repeated hour apart."""
    return [S.to_local(t, tz).strftime("%H:%M%z") for t in times]


def utc(*args):
    return pendulum.datetime(*args, tz="UTC")


def _m(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)  # "24:30" allowed here: half past midnight the next day


def grid(first: str, last: str, every: int) -> list[str]:
    """Wall-clock HH:MM from first to last (inclusive) every ``every`` minutes."""
    a, b = _m(first), _m(last)
    return [S.format_hhmm(m % 1440) for m in range(a, b + 1, every)]


def assert_clean(times):
    """Sorted, no duplicates, all UTC."""
    assert times == sorted(set(times))
    assert all(t.tzinfo is not None and t.utcoffset() == dt.timedelta(0) for t in times)


# ------------------------------------------------------------------------------------------------
# R1: HH:mm
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("00:00", 0), ("06:30", 390), ("5:00", 300), ("23:59", 1439), (" 00:30 ", 30), ("09:05", 545)],
)
def test_r01_parse_hhmm_valid(text, minutes):
    assert parse_hhmm(text) == minutes


def test_r01_parse_hhmm_24_only_when_allowed():
    assert parse_hhmm("24:00", allow_24=True) == 1440
    assert parse_hhmm("23:00", allow_24=True) == 1380
    with pytest.raises(ValueError, match="hours must be 00-23"):
        parse_hhmm("24:00")
    with pytest.raises(ValueError, match="24 is only allowed as 24:00"):
        parse_hhmm("24:30", allow_24=True)
    with pytest.raises(ValueError, match="hours must be 00-24"):
        parse_hhmm("25:00", allow_24=True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("24:00", "hours must be 00-23"),
        ("7:60", "minutes must be 00-59"),
        ("6:5", "not a time as HH:mm"),
        ("0630", "not a time as HH:mm"),
        ("", "not a time as HH:mm"),
        ("ab:cd", "not a time as HH:mm"),
        ("-1:00", "not a time as HH:mm"),
        ("123:00", "not a time as HH:mm"),
        ("06:30:00", "not a time as HH:mm"),
    ],
)
def test_r01_parse_hhmm_invalid(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_hhmm(text)


def test_r01_parse_hhmm_rejects_non_string():
    with pytest.raises(ValueError):
        parse_hhmm(630)  # type: ignore[arg-type]


def test_r01_format_hhmm_round_trip():
    assert [S.format_hhmm(parse_hhmm(t, allow_24=True)) for t in ("00:00", "06:30", "24:00")] == [
        "00:00",
        "06:30",
        "24:00",
    ]


# ------------------------------------------------------------------------------------------------
# R13: 2-field cron
# ------------------------------------------------------------------------------------------------


def test_r13_every_10_minutes_all_day():
    c = Cron2.parse("0/10 *")
    assert c.minutes == (0, 10, 20, 30, 40, 50)
    assert c.hours == tuple(range(24))
    assert c.to_cron5() == "0-59/10 * * * *"
    times = S.cron2_times_on(DAY, c, "GMT")
    assert len(times) == 144
    assert hm(times, "GMT")[:4] == ["00:00", "00:10", "00:20", "00:30"]
    assert hm(times, "GMT")[-1] == "23:50"


def test_r13_export_default_from_0_every_8_hours():
    c = Cron2.parse("20 0/8")
    assert (c.minutes, c.hours) == ((20,), (0, 8, 16))
    assert c.to_cron5() == "20 0-23/8 * * *"
    assert hm(S.cron2_times_on(DAY, c, "GMT"), "GMT") == ["00:20", "08:20", "16:20"]


def test_r13_list():
    c = Cron2.parse("0,30,45 *")
    assert c.minutes == (0, 30, 45)
    assert c.to_cron5() == "0,30,45 * * * *"
    assert len(S.cron2_times_on(DAY, c, "GMT")) == 72


def test_r13_range():
    c = Cron2.parse("5-10 1")
    assert (c.minutes, c.hours) == ((5, 6, 7, 8, 9, 10), (1,))
    assert hm(S.cron2_times_on(DAY, c, "GMT"), "GMT") == [f"01:{m:02d}" for m in range(5, 11)]


@pytest.mark.parametrize(
    ("text", "cron5", "count"),
    [
        ("*/15 1-3", "*/15 1-3 * * *", 12),
        ("0 1", "0 1 * * *", 1),
        ("5/20 2-10/3", "5-59/20 2-10/3 * * *", 9),
        ("  0   4 ", "0 4 * * *", 1),
        ("59 23", "59 23 * * *", 1),
        ("0,15-20/5 0/12", "0,15-20/5 0-23/12 * * *", 6),
    ],
)
def test_r13_more_forms(text, cron5, count):
    from croniter import croniter

    c = Cron2(text)
    assert c == Cron2.parse(text)
    assert c.text == text
    assert c.to_cron5() == cron5 and croniter.is_valid(cron5)
    assert len(c.times_of_day()) == count == len(S.cron2_times_on(DAY, c, "GMT"))


def test_r13_cron5_agrees_with_croniter():
    """What we hand to Airflow (croniter) fires at exactly our times on an ordinary day."""
    from croniter import croniter

    for text in ("0/10 *", "20 0/8", "0,30,45 *", "5-10 1", "5/20 2-10/3", "0 4"):
        c = Cron2(text)
        it = croniter(c.to_cron5(), dt.datetime(2026, 5, 4, 0, 0) - dt.timedelta(seconds=1))
        ours = [dt.datetime(2026, 5, 4) + dt.timedelta(minutes=m) for m in c.times_of_day()]
        theirs = [it.get_next(dt.datetime) for _ in ours]
        assert theirs == ours, text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0", "exactly two fields"),
        ("0 1 * * *", "exactly two fields"),
        ("", "exactly two fields"),
        ("60 *", "minute field '60': 60 is out of range; minute must be 0-59"),
        ("0 24", "hour field '24': 24 is out of range; hour must be 0-23"),
        ("a *", "minute field 'a'"),
        ("10-5 *", "runs backwards"),
        ("0/0 *", "step 0 is out of range"),
        ("0 0/25", "step 25 is out of range"),
        ("*/ *", "minute field"),
        ("0,,1 *", "minute field"),
        ("0 ?", "hour field"),
        ("0 L", "hour field"),
        ("-1 *", "minute field"),
    ],
)
def test_r13_invalid(text, reason):
    with pytest.raises(ValueError, match=reason):
        Cron2.parse(text)


def test_r13_cron2_is_hashable_and_frozen():
    c = Cron2("20 0/8")
    assert {c, Cron2("20 0/8")} == {c}
    with pytest.raises(AttributeError):
        c.text = "0 1"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# R1/R2: ETL window and slots
# ------------------------------------------------------------------------------------------------

SAMPLE = (parse_hhmm("06:30"), parse_hhmm("00:30"), 30)  # the Operations Guide's sample

SAMPLE_DAY = ["00:00", "00:30"] + grid("06:30", "23:30", 30)


def test_r02_sample_schedule_starts_per_day_exact_list():
    starts = S.etl_starts_on(DAY, *SAMPLE, "GMT")
    assert len(SAMPLE_DAY) == 37
    assert hm(starts, "GMT") == SAMPLE_DAY
    assert all(S.to_local(t, "GMT").date() == DAY for t in starts)
    assert_clean(starts)


def test_r01_window_across_midnight():
    opens, closes = S.etl_window(DAY, *SAMPLE[:2], "GMT")
    assert (opens, closes) == (utc(2026, 5, 4, 6, 30), utc(2026, 5, 5, 0, 30))
    slots = S.etl_slots(DAY, *SAMPLE, "GMT")
    assert len(slots) == 37
    assert slots[0] == opens and slots[-1] == closes
    assert hm(slots[-3:], "GMT") == ["23:30", "00:00", "00:30"]


def test_r01_window_in_other_zone_is_local_wall_clock():
    opens, closes = S.etl_window(DAY, *SAMPLE[:2], BERLIN)  # CEST = UTC+2
    assert (opens, closes) == (utc(2026, 5, 4, 4, 30), utc(2026, 5, 4, 22, 30))
    assert hm(S.etl_starts_on(DAY, *SAMPLE, BERLIN), BERLIN) == SAMPLE_DAY


def test_r02_frequency_not_dividing_window():
    slots = S.etl_slots(DAY, parse_hhmm("06:30"), parse_hhmm("00:30"), 45, "GMT")
    # 06:30 .. 00:30 is 1080 min = 24 * 45: 00:30 itself is a slot
    assert hm(slots, "GMT") == grid("06:30", "24:30", 45)
    assert hm(slots[-2:], "GMT") == ["23:45", "00:30"]
    slots = S.etl_slots(DAY, parse_hhmm("06:30"), parse_hhmm("00:30"), 50, "GMT")
    last = S.to_local(slots[-1], "GMT")
    assert (last.date(), last.strftime("%H:%M")) == (DAY + dt.timedelta(days=1), "00:00")
    assert slots[-1] <= S.etl_window(DAY, 390, 30, "GMT")[1] < slots[-1] + dt.timedelta(minutes=50)
    assert len(slots) == 22


def test_r02_window_not_spanning_midnight():
    args = (parse_hhmm("08:00"), parse_hhmm("18:00"), 60, "GMT")
    assert hm(S.etl_slots(DAY, *args), "GMT") == grid("08:00", "18:00", 60)
    assert hm(S.etl_starts_on(DAY, *args), "GMT") == grid("08:00", "18:00", 60)
    assert S.next_etl_slot(utc(2026, 5, 4, 18, 0), *args) == utc(2026, 5, 5, 8, 0)
    assert not S.in_etl_window(utc(2026, 5, 4, 18, 1), *args[:2], "GMT")
    assert S.in_etl_window(utc(2026, 5, 4, 18, 0), *args[:2], "GMT")


def test_r01_start_equals_end_is_24_hour_window():
    opens, closes = S.etl_window(DAY, 360, 360, "GMT")
    assert closes - opens == dt.timedelta(hours=24)
    starts = S.etl_starts_on(DAY, 360, 360, 60, "GMT")
    assert hm(starts, "GMT") == grid("00:00", "23:00", 60)  # 06:00 once, not twice
    assert all(S.in_etl_window(utc(2026, 5, 4, h, 17), 360, 360, "GMT") for h in range(24))


def test_r02_next_slot_and_window_membership():
    a = (*SAMPLE, "GMT")
    assert S.next_etl_slot(utc(2026, 5, 4, 3, 0), *a) == utc(2026, 5, 4, 6, 30)
    assert S.next_etl_slot(utc(2026, 5, 4, 6, 30), *a) == utc(2026, 5, 4, 7, 0)
    assert S.next_etl_slot(utc(2026, 5, 4, 6, 30), *a, inclusive=True) == utc(2026, 5, 4, 6, 30)
    assert S.next_etl_slot(utc(2026, 5, 4, 23, 40), *a) == utc(2026, 5, 5, 0, 0)
    assert S.next_etl_slot(utc(2026, 5, 5, 0, 30), *a) == utc(2026, 5, 5, 6, 30)
    assert S.prev_etl_slot(utc(2026, 5, 5, 3, 0), *a) == utc(2026, 5, 5, 0, 30)
    assert S.prev_etl_slot(utc(2026, 5, 4, 7, 0), *a) == utc(2026, 5, 4, 7, 0)
    assert S.prev_etl_slot(utc(2026, 5, 4, 7, 0), *a, inclusive=False) == utc(2026, 5, 4, 6, 30)
    # a stdlib aware datetime in another zone works too
    assert S.next_etl_slot(
        dt.datetime(2026, 5, 4, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), *a
    ) == utc(2026, 5, 4, 6, 30)
    w = SAMPLE[:2]
    assert S.in_etl_window(utc(2026, 5, 5, 0, 15), *w, "GMT")  # yesterday's window, after midnight
    assert S.in_etl_window(utc(2026, 5, 5, 0, 30), *w, "GMT")  # closed interval
    assert not S.in_etl_window(utc(2026, 5, 5, 0, 31), *w, "GMT")
    assert not S.in_etl_window(utc(2026, 5, 4, 3, 0), *w, "GMT")  # the maintenance hour
    assert S.in_etl_window(utc(2026, 5, 4, 6, 30), *w, "GMT")


def test_r02_next_slot_rejects_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        S.next_etl_slot(dt.datetime(2026, 5, 4, 3, 0), *SAMPLE, "GMT")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((390, 30, 0, "GMT"), "frequency must be 1-1440"),
        ((390, 30, 30, "Mars/Olympus"), "unknown time zone"),
        ((-1, 30, 30, "GMT"), "start must be minutes"),
        ((390, 2000, 30, "GMT"), "end must be minutes"),
    ],
)
def test_r02_bad_arguments(args, reason):
    with pytest.raises(ValueError, match=reason):
        S.etl_slots(DAY, *args)


def test_r01_check_timezone():
    assert S.check_timezone("GMT") == "GMT"
    assert S.check_timezone(" Europe/Berlin ") == "Europe/Berlin"
    for bad in ("", "Nowhere/City", "../etc/passwd"):
        with pytest.raises(ValueError, match="IANA"):
            S.check_timezone(bad)


# ------------------------------------------------------------------------------------------------
# DST (spring-forward gap, fall-back fold)
# ------------------------------------------------------------------------------------------------

NIGHT = (parse_hhmm("01:00"), parse_hhmm("04:00"))  # a window covering the change


@pytest.mark.parametrize(("tz", "day"), [(NY, dt.date(2026, 3, 8)), (BERLIN, dt.date(2026, 3, 29))])
def test_r02_dst_spring_forward_window(tz, day):
    slots = S.etl_slots(day, *NIGHT, 30, tz)
    # 02:00 and 02:30 do not exist: they fire when the clock jumps (03:00), which is a slot anyway
    assert hm(slots, tz) == ["01:00", "01:30", "03:00", "03:30", "04:00"]
    assert_clean(slots)
    opens, closes = S.etl_window(day, *NIGHT, tz)
    assert closes - opens == dt.timedelta(hours=2)  # the night is an hour short
    assert slots[0] == opens and slots[-1] == closes
    assert all(opens <= t <= closes for t in slots)
    # a grid that does not land on the hour: 02:15 fires at 03:00, no extra off-grid slot
    slots45 = S.etl_slots(day, parse_hhmm("00:45"), parse_hhmm("04:00"), 45, tz)
    assert hm(slots45, tz) == ["00:45", "01:30", "03:00", "03:45"]
    assert_clean(slots45)


@pytest.mark.parametrize(
    ("tz", "day", "first", "second"),
    [(NY, dt.date(2026, 11, 1), "-0400", "-0500"), (BERLIN, dt.date(2026, 10, 25), "+0200", "+0100")],
)
def test_r02_dst_fall_back_window(tz, day, first, second):
    slots = S.etl_slots(day, *NIGHT, 30, tz)
    assert hm(slots, tz) == ["01:00", "01:30", "02:00", "02:30", "03:00", "03:30", "04:00"]
    assert_clean(slots)
    local = hmz(slots, tz)
    assert len(set(hm(slots, tz))) == len(slots)  # every wall time once
    # the repeated hour (NY 01:xx, Berlin 02:xx) fires in its first pass only
    repeated = "01" if tz == NY else "02"
    assert [x for x in local if x.startswith(repeated)] == [f"{repeated}:00{first}", f"{repeated}:30{first}"]
    assert local[-1] == "04:00" + second
    opens, closes = S.etl_window(day, *NIGHT, tz)
    assert closes - opens == dt.timedelta(hours=4)


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        (NY, dt.date(2026, 3, 8)),
        (NY, dt.date(2026, 11, 1)),
        (BERLIN, dt.date(2026, 3, 29)),
        (BERLIN, dt.date(2026, 10, 25)),
    ],
)
def test_r02_dst_days_sample_schedule_unaffected(tz, day):
    """The sample window (06:30-00:30) does not touch the change: the usual 37 starts."""
    starts = S.etl_starts_on(day, *SAMPLE, tz)
    assert hm(starts, tz) == SAMPLE_DAY
    assert_clean(starts)


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        (NY, dt.date(2026, 3, 8)),
        (NY, dt.date(2026, 11, 1)),
        (BERLIN, dt.date(2026, 3, 29)),
        (BERLIN, dt.date(2026, 10, 25)),
    ],
)
def test_r02_dst_round_the_clock_every_15(tz, day):
    starts = S.etl_starts_on(day, 0, 0, 15, tz)
    spring = day.month == 3
    assert len(starts) == (92 if spring else 96)  # 4 wall-clock quarter hours vanish / none repeat
    assert_clean(starts)
    assert len(set(hm(starts, tz))) == len(starts)
    gaps = {(b - a).as_timedelta() for a, b in zip(starts, starts[1:], strict=False)}
    assert gaps == (
        {dt.timedelta(minutes=15)} if spring else {dt.timedelta(minutes=15), dt.timedelta(minutes=75)}
    )


def test_r02_dst_next_slot_across_gap_and_fold():
    a = (*NIGHT, 30, NY)
    t = S.next_etl_slot(pendulum.datetime(2026, 3, 8, 1, 30, tz=NY), *a)
    assert S.to_local(t, NY).strftime("%H:%M%z") == "03:00-0400"
    first_0130 = pendulum.datetime(2026, 11, 1, 5, 30, tz="UTC")  # 01:30 EDT
    second_0100 = pendulum.datetime(2026, 11, 1, 6, 0, tz="UTC")  # 01:00 EST
    nxt = S.next_etl_slot(first_0130, *a)
    assert S.to_local(nxt, NY).strftime("%H:%M%z") == "02:00-0500"
    assert S.next_etl_slot(second_0100, *a) == nxt  # no slot in the repeated pass
    assert S.in_etl_window(second_0100, *NIGHT, NY)


def test_r01_window_start_or_end_inside_gap():
    day = dt.date(2026, 3, 8)
    opens, closes = S.etl_window(day, parse_hhmm("02:30"), parse_hhmm("05:00"), NY)
    assert S.to_local(opens, NY).strftime("%H:%M%z") == "03:00-0400"
    slots = S.etl_slots(day, parse_hhmm("02:30"), parse_hhmm("05:00"), 30, NY)
    assert hm(slots, NY) == ["03:00", "03:30", "04:00", "04:30", "05:00"]
    assert slots[0] == opens
    slots = S.etl_slots(day - dt.timedelta(days=1), parse_hhmm("22:00"), parse_hhmm("02:30"), 30, NY)
    assert hm(slots[-3:], NY) == ["01:00", "01:30", "03:00"]
    assert slots[-1] == S.etl_window(day - dt.timedelta(days=1), 1320, 150, NY)[1]


def test_r01_whole_day_skipped_by_time_zone():
    """Samoa skipped 2011-12-30 entirely: nothing starts on that local date."""
    assert S.etl_starts_on(dt.date(2011, 12, 30), *SAMPLE, "Pacific/Apia") == []
    assert S.cron2_times_on(dt.date(2011, 12, 30), Cron2("0 4"), "Pacific/Apia") == []


@pytest.mark.parametrize(("tz", "day"), [(NY, dt.date(2026, 3, 8)), (BERLIN, dt.date(2026, 3, 29))])
def test_r13_cron2_dst_spring_forward(tz, day):
    assert len(S.cron2_times_on(day, Cron2("0/10 *"), tz)) == 138  # the six :x0 of the lost hour
    gap_hour = "02"
    assert hm(S.cron2_times_on(day, Cron2(f"30 {gap_hour}"), tz), tz) == ["03:00"]  # once, at the jump
    times = S.cron2_times_on(day, Cron2("0,30 1-3"), tz)
    assert hm(times, tz) == ["01:00", "01:30", "03:00", "03:30"]
    assert_clean(times)


@pytest.mark.parametrize(
    ("tz", "day", "hour"), [(NY, dt.date(2026, 11, 1), 1), (BERLIN, dt.date(2026, 10, 25), 2)]
)
def test_r13_cron2_dst_fall_back(tz, day, hour):
    every10 = S.cron2_times_on(day, Cron2("0/10 *"), tz)
    assert len(every10) == 144  # the repeated hour fires once
    assert_clean(every10)
    once = S.cron2_times_on(day, Cron2(f"30 {hour}"), tz)
    assert len(once) == 1
    # first occurrence: the earlier of the two instants showing that wall time
    naive = dt.datetime.combine(day, dt.time(hour, 30))
    first = naive.replace(tzinfo=S._zone(tz), fold=0).astimezone(dt.UTC)
    second = naive.replace(tzinfo=S._zone(tz), fold=1).astimezone(dt.UTC)
    assert first < second and once[0] == first
    assert (
        S.next_cron2(once[0], Cron2(f"30 {hour}"), tz)
        == S.cron2_times_on(day + dt.timedelta(days=1), Cron2(f"30 {hour}"), tz)[0]
    )


def test_r13_next_and_prev_cron2():
    c = Cron2("20 0/8")
    assert S.next_cron2(utc(2026, 5, 4, 0, 20), c, "GMT") == utc(2026, 5, 4, 8, 20)
    assert S.next_cron2(utc(2026, 5, 4, 0, 20), c, "GMT", inclusive=True) == utc(2026, 5, 4, 0, 20)
    assert S.next_cron2(utc(2026, 5, 4, 16, 21), c, "GMT") == utc(2026, 5, 5, 0, 20)
    assert S.next_cron2(utc(2026, 5, 4, 16, 21), "20 0/8", "GMT") == utc(2026, 5, 5, 0, 20)
    assert S.prev_cron2(utc(2026, 5, 4, 0, 19), c, "GMT") == utc(2026, 5, 3, 16, 20)
    assert S.prev_cron2(utc(2026, 5, 4, 8, 20), c, "GMT", inclusive=False) == utc(2026, 5, 4, 0, 20)


# ------------------------------------------------------------------------------------------------
# R11: aggregation windows
# ------------------------------------------------------------------------------------------------


def test_r11_aggregate_window_spanning_midnight():
    wins = S.aggregate_windows_on(DAY, Cron2("0 4"), parse_hhmm("23:00", allow_24=True), "GMT")
    assert wins == [(utc(2026, 5, 4, 4, 0), utc(2026, 5, 5, 3, 0))]


def test_r11_aggregate_window_still_open_from_previous_day():
    c, dur = Cron2("0 4"), parse_hhmm("23:00", allow_24=True)
    assert S.aggregate_window_at(utc(2026, 5, 5, 2, 0), c, dur, "GMT") == (
        utc(2026, 5, 4, 4, 0),
        utc(2026, 5, 5, 3, 0),
    )
    assert S.aggregate_window_at(utc(2026, 5, 5, 3, 0), c, dur, "GMT") is None  # half-open: ended
    assert S.aggregate_window_at(utc(2026, 5, 5, 3, 59), c, dur, "GMT") is None  # the maintenance hour
    assert S.aggregate_window_at(utc(2026, 5, 5, 4, 0), c, dur, "GMT") == (
        utc(2026, 5, 5, 4, 0),
        utc(2026, 5, 6, 3, 0),
    )


def test_r11_aggregate_default_schedule():
    c, dur = Cron2("0 1"), parse_hhmm("5:00")
    assert S.aggregate_windows_on(DAY, c, dur, BERLIN) == [(utc(2026, 5, 3, 23, 0), utc(2026, 5, 4, 4, 0))]
    assert S.aggregate_window_at(utc(2026, 5, 4, 12, 0), c, dur, BERLIN) is None


def test_r11_overlapping_windows_merge():
    c = Cron2("0 0/6")  # 00:00 06:00 12:00 18:00, each for 7 h: one continuous run
    wins = S.aggregate_windows_on(DAY, c, 7 * 60, "GMT")
    assert wins == [(utc(2026, 5, 4, 0, 0), utc(2026, 5, 5, 1, 0))]
    c = Cron2("0 1,3,20")  # 01:00-03:00 and 03:00-05:00 touch; 20:00-22:00 apart
    wins = S.aggregate_windows_on(DAY, c, 120, "GMT")
    assert wins == [(utc(2026, 5, 4, 1), utc(2026, 5, 4, 5)), (utc(2026, 5, 4, 20), utc(2026, 5, 4, 22))]
    # yesterday's 20:00-02:00 window runs into today's 01:00 one: aggregate_window_at sees the chain
    wins_at = S.aggregate_window_at(utc(2026, 5, 4, 1, 30), Cron2("0 1,20"), 6 * 60, "GMT")
    assert wins_at == (utc(2026, 5, 3, 20, 0), utc(2026, 5, 4, 7, 0))


def test_r11_aggregate_continuous_chain_is_bounded():
    # 24 h windows every day at 04:00 touch: one never-ending chain, cut a few days out
    w = S.aggregate_window_at(utc(2026, 5, 4, 12, 0), Cron2("0 4"), 1440, "GMT")
    assert w is not None
    start, end = w
    assert start <= utc(2026, 5, 4, 12, 0) < end
    assert end - start <= dt.timedelta(days=5)


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [(NY, dt.date(2026, 3, 7), 22), (NY, dt.date(2026, 10, 31), 24), (BERLIN, dt.date(2026, 3, 28), 22)],
)
def test_r11_aggregate_duration_on_wall_clock_across_dst(tz, day, hours):
    """``0 4`` for 23:00 always ends at 03:00 local, where the 03:00 maintenance starts."""
    ((start, end),) = S.aggregate_windows_on(day, Cron2("0 4"), 23 * 60, tz)
    assert S.fmt_local(start, tz) == "04:00" and S.fmt_local(end, tz) == "03:00"
    assert end - start == dt.timedelta(hours=hours)


def test_r11_bad_duration():
    with pytest.raises(ValueError, match="at least 1 minute"):
        S.aggregate_windows_on(DAY, Cron2("0 4"), 0, "GMT")


# ------------------------------------------------------------------------------------------------
# R6: maintenance; the day plan
# ------------------------------------------------------------------------------------------------


def test_r06_maintain_start():
    assert S.maintain_start_on(DAY, parse_hhmm("03:00"), "GMT") == utc(2026, 5, 4, 3, 0)
    assert S.maintain_start_on(DAY, parse_hhmm("03:00"), BERLIN) == utc(2026, 5, 4, 1, 0)
    t = S.maintain_start_on(dt.date(2026, 3, 8), parse_hhmm("02:30"), NY)
    assert S.to_local(t, NY).strftime("%H:%M%z") == "03:00-0400"


def sample_settings(**over):
    s = SimpleNamespace(
        run_scheduler=True,
        timezone="GMT",
        etl_start_time=parse_hhmm("06:30"),
        etl_end_time=parse_hhmm("00:30"),
        etl_frequency=30,
        run_maintain=True,
        maintain_start_time=parse_hhmm("03:00"),
        run_update_stats=True,
        update_stats_schedule=Cron2("0/10 *"),
        run_aggregates=True,
        aggregate_schedule=Cron2("0 4"),
        aggregate_duration=parse_hhmm("23:00", allow_24=True),
        run_export=True,
        export_schedule=Cron2("20 0/8"),
    )
    for k, v in over.items():
        setattr(s, k, v)
    return s


def test_r02_r06_r10_r11_r12_plan_day_sample():
    plan = S.plan_day(DAY, sample_settings())
    by_job: dict[str, list] = {}
    for p in plan:
        by_job.setdefault(p.job, []).append(p)
    assert {k: len(v) for k, v in by_job.items()} == {
        "ETL cycle": 37,
        "Job_MaintainGIM": 1,
        "Job_AggregateGIM": 1,
        "Job_UpdateStats": 144,
        "Job_ExportGIM": 3,
    }
    assert len(plan) == 186
    assert [p.start for p in plan] == sorted(p.start for p in plan)
    assert hm([p.start for p in by_job["ETL cycle"]], "GMT") == SAMPLE_DAY
    assert {p.dag_id for p in by_job["ETL cycle"]} == {"gim_etl_cycle"}
    (m,) = by_job["Job_MaintainGIM"]
    assert (m.dag_id, m.start, m.end) == ("gim_maintain", utc(2026, 5, 4, 3, 0), None)
    assert "06:30" in m.note
    (a,) = by_job["Job_AggregateGIM"]
    assert (a.dag_id, a.start, a.end) == ("gim_aggregate", utc(2026, 5, 4, 4, 0), utc(2026, 5, 5, 3, 0))
    assert "2026-05-05 03:00" in a.note
    assert hm([p.start for p in by_job["Job_ExportGIM"]], "GMT") == ["00:20", "08:20", "16:20"]
    assert {p.dag_id for p in by_job["Job_ExportGIM"]} == {"gim_export"}
    us = by_job["Job_UpdateStats"]
    assert {p.dag_id for p in us} == {"gim_update_stats"}
    suspended = [S.fmt_local(p.start, "GMT") for p in us if "suspended" in p.note]
    assert suspended == grid("03:00", "06:20", 10)  # from maintenance start to the next ETL slot
    # at 00:00 the ETL cycle comes first, then update-stats
    assert [(p.job, S.fmt_local(p.start, "GMT")) for p in plan[:3]] == [
        ("ETL cycle", "00:00"),
        ("Job_UpdateStats", "00:00"),
        ("Job_UpdateStats", "00:10"),
    ]


def test_r04_plan_day_run_scheduler_false():
    assert S.plan_day(DAY, sample_settings(run_scheduler=False)) == []


def test_plan_day_jobs_switched_off():
    plan = S.plan_day(
        DAY,
        sample_settings(run_maintain=False, run_update_stats=False, run_aggregates=False, run_export=False),
    )
    assert {p.job for p in plan} == {"ETL cycle"} and len(plan) == 37


def test_r11_plan_notes_window_open_since_previous_day():
    s = sample_settings(aggregate_schedule=Cron2("0 1,20"), aggregate_duration=6 * 60)
    aggs = [p for p in S.plan_day(DAY, s) if p.job == "Job_AggregateGIM"]
    assert [(S.fmt_local(p.start, "GMT"), S.fmt_local(p.end, "GMT")) for p in aggs] == [
        ("01:00", "07:00"),
        ("20:00", "02:00"),
    ]
    assert "already running since 2026-05-03 20:00" in aggs[0].note


def test_plan_to_json_local_times():
    s = sample_settings(timezone=BERLIN)
    plan = S.plan_day(DAY, s)
    rows = S.plan_to_json(plan, BERLIN)
    json.dumps(rows)  # JSON-able
    agg = next(r for r in rows if r["job"] == "Job_AggregateGIM")
    assert agg == {
        "job": "Job_AggregateGIM",
        "dag_id": "gim_aggregate",
        "start": "2026-05-04T04:00:00+02:00",
        "end": "2026-05-05T03:00:00+02:00",
        "start_utc": "2026-05-04T02:00:00+00:00",
        "end_utc": "2026-05-05T01:00:00+00:00",
        "note": agg["note"],
    }
    assert rows[0]["start"] == "2026-05-04T00:00:00+02:00" and rows[0]["end"] is None
    assert [r["start"][11:16] for r in rows if r["job"] == "ETL cycle"] == SAMPLE_DAY


def test_plan_day_dst_day_is_clean():
    for tz, day in ((NY, dt.date(2026, 3, 8)), (NY, dt.date(2026, 11, 1))):
        plan = S.plan_day(day, sample_settings(timezone=tz))
        starts = [p.start for p in plan]
        assert starts == sorted(starts)
        keys = [(p.job, p.start) for p in plan]
        assert len(keys) == len(set(keys))
        assert all(S.to_local(t, tz).date() == day for t in starts)
