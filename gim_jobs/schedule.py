"""Pure schedule math for the Genesys Info Mart scheduler (no Airflow, no database).

Rules (``spec/rules.md``): R1 ``HH:mm`` wall-clock times in an IANA zone, a window whose end is not
after its start spans midnight; R2 ETL slots ``start, start+every, ...`` up to and including the
window end; R6 daily maintenance; R10-R12 2-field-cron jobs; R13 the 2-field cron ``minute hour``.

Every result is a timezone-aware ``pendulum.DateTime`` in **UTC**; ``to_local``/``fmt_local`` show
it on the configured clock. Inputs are minute-of-day ints (from ``parse_hhmm``), minutes, and an
IANA zone name (``GMT``, ``Europe/Berlin``, ...).

Time-zone decisions (one rule for everything here):

* **Wall clock, not elapsed time.** Every time an admin configures is a reading of the local clock:
  ETL slots are ``start + k*every`` on the wall clock (a ``06:30/30`` schedule fires at :00 and :30
  on every day of the year, DST days included, and ``gim schedule`` shows the same clock times each
  day); the aggregate window ``0 4`` for ``23:00`` always ends at 03:00 local, right where the
  03:00 maintenance starts. Elapsed-time steps would shift a 45-minute grid by the DST offset for
  the rest of the window and make a window end an hour early/late on the clock.
* **Nonexistent wall time** (spring-forward gap): fires at the first instant after the gap, the
  moment the clock jumps (America/New_York 2026-03-08: 02:00, 02:30 -> 03:00 EDT). Instants that
  coincide are kept once; every list is sorted and free of duplicates. This keeps the wall-clock ->
  instant mapping monotonic, so slots stay in wall-clock order and inside their window, and a gap
  never adds an off-grid slot (pendulum's default, shifting by the gap length -> 02:15 fires at
  03:15, would put a 45-minute grid's 02:15 *after* the real 03:00 slot).
* **Repeated wall time** (fall-back fold): fires once, at the **first** occurrence (``fold=0``,
  e.g. 01:30 EDT, not 01:30 EST); the second pass of that hour has no slots.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pendulum
from croniter import croniter
from pendulum import DateTime

__all__ = [
    "Cron2",
    "PlannedLaunch",
    "aggregate_window_at",
    "aggregate_windows_on",
    "check_timezone",
    "cron2_times_on",
    "etl_slots",
    "etl_starts_on",
    "etl_window",
    "fmt_local",
    "format_hhmm",
    "in_etl_window",
    "local_time",
    "maintain_start_on",
    "next_cron2",
    "next_etl_slot",
    "parse_hhmm",
    "plan_day",
    "plan_to_json",
    "prev_cron2",
    "prev_etl_slot",
    "to_local",
]

MINUTES_PER_DAY = 1440

_HHMM_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_hhmm(value: str, *, allow_24: bool = False) -> int:
    """``"HH:mm"`` (one-digit hour allowed: ``"5:00"``) -> minutes since midnight.

    Hours 00-23 (00-24 with ``allow_24``; 24 only as ``24:00``), minutes 00-59.
    Raises ``ValueError`` with a readable reason.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a time as HH:mm, got {value!r}")
    text = value.strip()
    m = _HHMM_RE.match(text)
    if not m:
        raise ValueError(f"{value!r} is not a time as HH:mm (e.g. 06:30)")
    hours, minutes = int(m.group(1)), int(m.group(2))
    max_h = 24 if allow_24 else 23
    if hours > max_h:
        raise ValueError(f"{value!r}: hours must be 00-{max_h:02d}")
    if minutes > 59:
        raise ValueError(f"{value!r}: minutes must be 00-59")
    if hours == 24 and minutes != 0:
        raise ValueError(f"{value!r}: 24 is only allowed as 24:00")
    return hours * 60 + minutes


def format_hhmm(minutes: int) -> str:
    """Minutes since midnight -> ``"HH:mm"`` (1440 -> ``"24:00"``)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ---------------------------------------------------------------------------------------------
# R13: 2-field cron
# ---------------------------------------------------------------------------------------------

_NUM = r"\d{1,2}"
_ITEM_RE = re.compile(rf"^(?:(\*)|({_NUM})(?:-({_NUM}))?)(?:/(\d{{1,3}}))?$")


def _parse_field(text: str, name: str, lo: int, hi: int) -> tuple[tuple[int, ...], str]:
    """Parse one cron field; returns (sorted values, explicit standard-cron spelling)."""
    valid = (
        f"{name} must be '*', a number {lo}-{hi}, a list 'a,b', a range 'a-b', "
        f"or a step 'a/b' (from a every b), '*/b' or 'a-b/c'"
    )
    if not text:
        raise ValueError(f"{name} field is empty; {valid}")
    values: set[int] = set()
    parts: list[str] = []
    for item in text.split(","):
        m = _ITEM_RE.match(item)
        if not m:
            raise ValueError(f"{name} field {text!r}: {item!r} is not valid; {valid}")
        star, a_s, b_s, step_s = m.groups()
        if star:
            a, b = lo, hi
        else:
            a = int(a_s)
            if step_s is not None and b_s is None:
                b = hi  # Quartz: a/b = from a every b
            else:
                b = int(b_s) if b_s is not None else a
        for v in (a, b):
            if not lo <= v <= hi:
                raise ValueError(f"{name} field {text!r}: {v} is out of range; {name} must be {lo}-{hi}")
        if a > b:
            raise ValueError(
                f"{name} field {text!r}: range {a}-{b} runs backwards; write the lower bound first"
            )
        step = 1
        if step_s is not None:
            step = int(step_s)
            if not 1 <= step <= hi - lo + 1:
                raise ValueError(
                    f"{name} field {text!r}: step {step} is out of range; it must be 1-{hi - lo + 1}"
                )
        values.update(range(a, b + 1, step))
        if star:
            parts.append("*" if step == 1 else f"*/{step}")
        elif a == b and step_s is None:
            parts.append(str(a))
        else:
            parts.append(f"{a}-{b}" + (f"/{step}" if step_s is not None else ""))
    return tuple(sorted(values)), ",".join(parts)


@dataclass(frozen=True)
class Cron2:
    """GIM's 2-field cron ``"minute hour"`` (R13); fires every day, in the configured time zone.

    ``Cron2("20 0/8")`` and ``Cron2.parse("20 0/8")`` are the same; both raise ``ValueError``
    naming the bad field and what is valid. ``a/b`` means "from a every b" (Quartz).
    """

    text: str
    minutes: tuple[int, ...] = field(init=False)
    hours: tuple[int, ...] = field(init=False)
    cron5: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        text = self.text
        if not isinstance(text, str):
            raise ValueError(f"expected a 2-field cron 'minute hour', got {text!r}")
        fields = text.split()
        if len(fields) != 2:
            raise ValueError(
                f"{text!r} must have exactly two fields 'minute hour' (e.g. '0/10 *' or '20 0/8'), "
                f"found {len(fields)}"
            )
        minutes, m5 = _parse_field(fields[0], "minute", 0, 59)
        hours, h5 = _parse_field(fields[1], "hour", 0, 23)
        cron5 = f"{m5} {h5} * * *"
        if not croniter.is_valid(cron5):  # belt and braces: what we hand to Airflow must parse
            raise ValueError(f"{text!r}: expands to {cron5!r}, which croniter rejects")
        object.__setattr__(self, "minutes", minutes)
        object.__setattr__(self, "hours", hours)
        object.__setattr__(self, "cron5", cron5)

    @classmethod
    def parse(cls, text: str) -> Cron2:
        return cls(text)

    def to_cron5(self) -> str:
        """Explicit standard 5-field cron, e.g. ``"20 0/8"`` -> ``"20 0-23/8 * * *"``."""
        return self.cron5

    def times_of_day(self) -> list[int]:
        """Every firing as minutes since midnight, sorted."""
        return [h * 60 + m for h in self.hours for m in self.minutes]

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------------------------------------
# Time zones: wall clock <-> UTC
# ---------------------------------------------------------------------------------------------

_UTC = pendulum.UTC
_ONE_DAY = dt.timedelta(days=1)


@lru_cache(maxsize=64)
def _zone(tz: str) -> zoneinfo.ZoneInfo:
    if not isinstance(tz, str) or not tz.strip():
        raise ValueError(f"time zone must be an IANA name such as GMT or Europe/Berlin, got {tz!r}")
    try:
        return zoneinfo.ZoneInfo(tz.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}; use an IANA name such as GMT or Europe/Berlin") from exc


def check_timezone(tz: str) -> str:
    """Return ``tz`` stripped if it is a known IANA zone name, else raise ``ValueError``."""
    _zone(tz)
    return tz.strip()


def _tzname(tz: Any) -> str:
    """Accept a zone name or a tzinfo with a ``key``/``name`` (pendulum, zoneinfo)."""
    if isinstance(tz, str):
        return tz
    for attr in ("key", "name"):
        value = getattr(tz, attr, None)
        if isinstance(value, str):
            return value
    raise ValueError(f"time zone must be an IANA name such as GMT or Europe/Berlin, got {tz!r}")


def _resolve(naive: dt.datetime, tz: str) -> DateTime:
    """Local wall time -> UTC instant, with the module's DST rule (see the module doc).

    Existing time: its first occurrence (``fold=0``). Nonexistent time (spring-forward gap): the
    first instant after the gap, i.e. the moment the clock jumps (03:00 in New York on 2026-03-08).
    The mapping is monotonic: later wall times never give earlier instants.
    """
    zi = _zone(tz)
    u0 = naive.replace(tzinfo=zi, fold=0).astimezone(dt.UTC)
    if u0.astimezone(zi).replace(tzinfo=None) == naive:
        return _pend_utc(u0)
    # In a gap: fold=0 reads it with the offset before the change, fold=1 with the one after; the
    # transition lies between the two readings. Find it to the second (transitions are on seconds).
    u1 = naive.replace(tzinfo=zi, fold=1).astimezone(dt.UTC)
    lo, hi = int(min(u0, u1).timestamp()), int(max(u0, u1).timestamp())
    after = dt.datetime.fromtimestamp(hi, dt.UTC).astimezone(zi).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, dt.UTC).astimezone(zi).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return _pend_utc(dt.datetime.fromtimestamp(hi, dt.UTC))


def _pend_utc(u: dt.datetime) -> DateTime:
    u = u.astimezone(dt.UTC)
    return pendulum.datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, tz=_UTC)


def _wall(day: dt.date, minute_of_day: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minute_of_day)


def local_time(day: dt.date, minute_of_day: int, tz: str) -> DateTime:
    """The instant (UTC) the local clock in ``tz`` shows ``minute_of_day`` on ``day``."""
    return _resolve(_wall(day, minute_of_day), _tzname(tz))


def _aware(at: dt.datetime, what: str = "time") -> DateTime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {at!r}")
    if isinstance(at, DateTime):
        return at.in_timezone(_UTC)
    return _pend_utc(at)


def to_local(at: dt.datetime, tz: str) -> DateTime:
    """``at`` on the local clock of ``tz`` (pendulum DateTime in that zone)."""
    return _aware(at).in_timezone(_tzname(tz))


def _local_date(at: dt.datetime, tz: str) -> dt.date:
    return to_local(at, tz).date()


def fmt_local(at: dt.datetime | None, tz: str, *, with_date: bool = False) -> str:
    """``"HH:MM"`` (or ``"YYYY-MM-DD HH:MM"``) on the local clock; ``""`` for ``None``."""
    if at is None:
        return ""
    loc = to_local(at, tz)
    return loc.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def _dedupe_sorted(times: list[DateTime]) -> list[DateTime]:
    return sorted(set(times))


# ---------------------------------------------------------------------------------------------
# R1/R2: the ETL window and its slots
# ---------------------------------------------------------------------------------------------


def _window_minutes(start_min: int, end_min: int) -> tuple[int, int]:
    """Window as (start, end) minute offsets from the opening day's midnight (R1)."""
    for name, v in (("start", start_min), ("end", end_min)):
        if not isinstance(v, int) or not 0 <= v <= MINUTES_PER_DAY:
            raise ValueError(f"ETL window {name} must be minutes 0-1440 since midnight, got {v!r}")
    start_min %= MINUTES_PER_DAY
    if end_min <= start_min:  # spans midnight; start == end: a 24-hour window
        end_min += MINUTES_PER_DAY
    return start_min, end_min


def _check_every(every: int) -> int:
    if not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= MINUTES_PER_DAY:
        raise ValueError(f"ETL frequency must be 1-1440 minutes, got {every!r}")
    return every


def etl_window(day: dt.date, start_min: int, end_min: int, tz: str) -> tuple[DateTime, DateTime]:
    """The ETL window that opens on local ``day`` as (open, close) in UTC (R1).

    ``end_min <= start_min`` means the window closes on the next day; ``start == end`` is a
    24-hour window (it closes when the next day's window opens).
    """
    s, e = _window_minutes(start_min, end_min)
    tzn = _tzname(tz)
    return _resolve(_wall(day, s), tzn), _resolve(_wall(day, e), tzn)


@lru_cache(maxsize=512)
def _etl_slots_cached(
    day: dt.date, start_min: int, end_min: int, every: int, tz: str
) -> tuple[DateTime, ...]:
    s, e = _window_minutes(start_min, end_min)
    _check_every(every)
    return tuple(_dedupe_sorted([_resolve(_wall(day, m), tz) for m in range(s, e + 1, every)]))


def etl_slots(day: dt.date, start_min: int, end_min: int, every: int, tz: str) -> list[DateTime]:
    """ETL starts of the window opening on ``day``: start, start+every, ... <= end (R2).

    Steps are taken on the wall clock (see the module doc), then resolved to UTC, sorted and
    deduplicated (a DST gap can map two wall times onto one instant).
    """
    return list(_etl_slots_cached(day, start_min, end_min, every, _tzname(tz)))


def etl_starts_on(day: dt.date, start_min: int, end_min: int, every: int, tz: str) -> list[DateTime]:
    """Every ETL start whose local date is ``day``: the tail of yesterday's window that spans
    midnight plus today's window up to midnight (its tail after midnight belongs to tomorrow)."""
    tzn = _tzname(tz)
    out: set[DateTime] = set()
    for d in (day - _ONE_DAY, day):
        out.update(
            t for t in _etl_slots_cached(d, start_min, end_min, every, tzn) if _local_date(t, tzn) == day
        )
    return sorted(out)


def _etl_candidates(at: DateTime, start_min: int, end_min: int, every: int, tz: str) -> list[DateTime]:
    day = _local_date(at, tz)
    out: set[DateTime] = set()
    for off in (-2, -1, 0, 1, 2):
        out.update(_etl_slots_cached(day + dt.timedelta(days=off), start_min, end_min, every, tz))
    return sorted(out)


def next_etl_slot(
    after: dt.datetime, start_min: int, end_min: int, every: int, tz: str, *, inclusive: bool = False
) -> DateTime:
    """The first ETL slot later than ``after`` (or equal to it with ``inclusive``)."""
    at, tzn = _aware(after, "after"), _tzname(tz)
    for t in _etl_candidates(at, start_min, end_min, every, tzn):
        if t > at or (inclusive and t == at):
            return t
    raise AssertionError("no ETL slot within two days")  # pragma: no cover - every day has a window


def prev_etl_slot(
    at: dt.datetime, start_min: int, end_min: int, every: int, tz: str, *, inclusive: bool = True
) -> DateTime:
    """The latest ETL slot at or before ``at`` (strictly before with ``inclusive=False``)."""
    a, tzn = _aware(at, "at"), _tzname(tz)
    for t in reversed(_etl_candidates(a, start_min, end_min, every, tzn)):
        if t < a or (inclusive and t == a):
            return t
    raise AssertionError("no ETL slot within two days")  # pragma: no cover


def in_etl_window(at: dt.datetime, start_min: int, end_min: int, tz: str) -> bool:
    """Is ``at`` inside some ETL window's closed interval [open, close]?"""
    a, tzn = _aware(at, "at"), _tzname(tz)
    day = _local_date(a, tzn)
    for off in (-1, 0):
        opens, closes = etl_window(day + dt.timedelta(days=off), start_min, end_min, tzn)
        if opens <= a <= closes:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# R10-R12: 2-field cron times
# ---------------------------------------------------------------------------------------------


def _as_cron2(cron: Cron2 | str) -> Cron2:
    return cron if isinstance(cron, Cron2) else Cron2(cron)


@lru_cache(maxsize=512)
def _cron2_cached(day: dt.date, cron: Cron2, tz: str) -> tuple[DateTime, ...]:
    times = [_resolve(_wall(day, m), tz) for m in cron.times_of_day()]
    return tuple(t for t in _dedupe_sorted(times) if _local_date(t, tz) == day)


def cron2_times_on(day: dt.date, cron: Cron2 | str, tz: str) -> list[DateTime]:
    """Every firing of ``cron`` on local ``day`` (UTC, sorted, DST rule of the module doc)."""
    return list(_cron2_cached(day, _as_cron2(cron), _tzname(tz)))


def _cron2_candidates(at: DateTime, cron: Cron2, tz: str) -> list[DateTime]:
    day = _local_date(at, tz)
    out: list[DateTime] = []
    for off in (-1, 0, 1, 2):
        out.extend(_cron2_cached(day + dt.timedelta(days=off), cron, tz))
    return sorted(set(out))


def next_cron2(after: dt.datetime, cron: Cron2 | str, tz: str, inclusive: bool = False) -> DateTime:
    """The first firing of ``cron`` later than ``after`` (or equal with ``inclusive``)."""
    at, c, tzn = _aware(after, "after"), _as_cron2(cron), _tzname(tz)
    for t in _cron2_candidates(at, c, tzn):
        if t > at or (inclusive and t == at):
            return t
    raise AssertionError("no cron firing within two days")  # pragma: no cover - fires daily


def prev_cron2(at: dt.datetime, cron: Cron2 | str, tz: str, inclusive: bool = True) -> DateTime:
    """The latest firing of ``cron`` at or before ``at`` (strictly before without ``inclusive``)."""
    a, c, tzn = _aware(at, "at"), _as_cron2(cron), _tzname(tz)
    for t in reversed(_cron2_candidates(a, c, tzn)):
        if t < a or (inclusive and t == a):
            return t
    raise AssertionError("no cron firing within two days")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# R11: aggregation windows
# ---------------------------------------------------------------------------------------------


def _check_duration(duration_min: int) -> int:
    if not isinstance(duration_min, int) or isinstance(duration_min, bool) or duration_min < 1:
        raise ValueError(f"aggregate duration must be at least 1 minute, got {duration_min!r}")
    return duration_min


def _raw_aggregate_windows(
    day: dt.date, cron: Cron2, duration_min: int, tz: str
) -> list[tuple[DateTime, DateTime]]:
    """One window per firing on ``day``: [start, wall(start) + duration) — duration on the wall clock."""
    out = []
    for m in cron.times_of_day():
        start = _resolve(_wall(day, m), tz)
        if _local_date(start, tz) != day:
            continue
        end = _resolve(_wall(day, m + duration_min), tz)
        out.append((start, max(end, start)))
    return sorted(set(out))


def _merge(windows: list[tuple[DateTime, DateTime]]) -> list[tuple[DateTime, DateTime]]:
    """Merge overlapping or touching windows (aggregation runs on without a stop)."""
    merged: list[tuple[DateTime, DateTime]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def aggregate_windows_on(
    day: dt.date, cron: Cron2 | str, duration_min: int, tz: str
) -> list[tuple[DateTime, DateTime]]:
    """Aggregation windows opened on local ``day`` (R11), as half-open [start, end) in UTC.

    Each ``aggregate-schedule`` firing opens a window of ``aggregate-duration`` (counted on the wall
    clock: ``0 4`` for ``23:00`` ends at 03:00 local every day). Overlapping or touching windows
    opened that day merge into one; a window may end on a later day. Windows opened on earlier days
    are not listed (see ``aggregate_window_at``).
    """
    c, tzn = _as_cron2(cron), _tzname(tz)
    return _merge(_raw_aggregate_windows(day, c, _check_duration(duration_min), tzn))


def aggregate_window_at(
    at: dt.datetime, cron: Cron2 | str, duration_min: int, tz: str
) -> tuple[DateTime, DateTime] | None:
    """The aggregation window containing ``at`` (start <= at < end), or ``None``.

    Windows opened on previous days count (a ``0 4``/``23:00`` window is still open at 02:00 the
    next day). Back-to-back or overlapping windows merge; such a chain is considered from the
    windows opened ``ceil(duration/1 day)+1`` days before ``at`` to those opened the day after, so a
    never-ending chain is cut there (R11 restarts aggregation at once; nothing is lost).
    """
    a, c, tzn = _aware(at, "at"), _as_cron2(cron), _tzname(tz)
    dur = _check_duration(duration_min)
    day = _local_date(a, tzn)
    back = math.ceil(dur / MINUTES_PER_DAY) + 1
    raw: list[tuple[DateTime, DateTime]] = []
    for off in range(-back, 2):
        raw.extend(_raw_aggregate_windows(day + dt.timedelta(days=off), c, dur, tzn))
    for start, end in _merge(raw):
        if start <= a < end:
            return start, end
    return None


# ---------------------------------------------------------------------------------------------
# R6: maintenance
# ---------------------------------------------------------------------------------------------


def maintain_start_on(day: dt.date, maintain_min: int, tz: str) -> DateTime:
    """When Job_MaintainGIM starts on local ``day`` (R6)."""
    if not isinstance(maintain_min, int) or not 0 <= maintain_min < MINUTES_PER_DAY:
        raise ValueError(f"maintain start must be minutes 0-1439 since midnight, got {maintain_min!r}")
    return local_time(day, maintain_min, tz)


# ---------------------------------------------------------------------------------------------
# The day plan (`gim schedule --date`)
# ---------------------------------------------------------------------------------------------


@dataclass
class PlannedLaunch:
    """One launch the scheduler will make. ``start``/``end`` are UTC; ``end`` only for windows."""

    job: str
    dag_id: str
    start: DateTime
    end: DateTime | None
    note: str


_JOB_ORDER = {
    "ETL cycle": 0,
    "Job_MaintainGIM": 1,
    "Job_AggregateGIM": 2,
    "Job_UpdateStats": 3,
    "Job_ExportGIM": 4,
}


def _hhmm_day(at: DateTime, tz: str, day: dt.date) -> str:
    loc = to_local(at, tz)
    return loc.strftime("%H:%M") if loc.date() == day else loc.strftime("%Y-%m-%d %H:%M")


def plan_day(day: dt.date, s: Any) -> list[PlannedLaunch]:
    """What the scheduler starts on local ``day``, sorted by start (then job).

    ``s`` is any object with: run_scheduler, etl_start_time, etl_end_time (minutes),
    etl_frequency, timezone, maintain_start_time, run_maintain, run_update_stats,
    update_stats_schedule (Cron2), run_aggregates, aggregate_schedule (Cron2), aggregate_duration
    (minutes), run_export, export_schedule (Cron2). ``run_scheduler`` false: nothing (R4).
    """
    if not s.run_scheduler:
        return []
    tz = _tzname(s.timezone)
    plan: list[PlannedLaunch] = []
    etl = (s.etl_start_time, s.etl_end_time, s.etl_frequency, tz)

    for t in etl_starts_on(day, *etl):
        plan.append(
            PlannedLaunch("ETL cycle", "gim_etl_cycle", t, None, "Job_ExtractICON then Job_TransformGIM (R3)")
        )

    maint: tuple[DateTime, DateTime] | None = None
    if s.run_maintain:
        m_start = maintain_start_on(day, s.maintain_start_time, tz)
        m_deadline = next_etl_slot(m_start, *etl)
        maint = (m_start, m_deadline)
        plan.append(
            PlannedLaunch(
                "Job_MaintainGIM",
                "gim_maintain",
                m_start,
                None,
                "waits for a running ETL cycle (R7); stopped if still running when the ETL cycle "
                f"of {_hhmm_day(m_deadline, tz, day)} falls due (R9)",
            )
        )

    if s.run_aggregates:
        cron = _as_cron2(s.aggregate_schedule)
        for start, end in aggregate_windows_on(day, cron, s.aggregate_duration, tz):
            note = f"runs continuously until {_hhmm_day(end, tz, day)}; restarted if stopped inside the window (R11)"
            before = aggregate_window_at(start - dt.timedelta(microseconds=1), cron, s.aggregate_duration, tz)
            if before is not None and before[0] < start:
                note = f"already running since {_hhmm_day(before[0], tz, day)}; " + note
            plan.append(PlannedLaunch("Job_AggregateGIM", "gim_aggregate", start, end, note))

    if s.run_update_stats:
        for t in cron2_times_on(day, _as_cron2(s.update_stats_schedule), tz):
            note = ""
            if maint is not None and maint[0] <= t < maint[1]:
                note = "skipped if Job_MaintainGIM is still running (suspended during maintenance, R10)"
            plan.append(PlannedLaunch("Job_UpdateStats", "gim_update_stats", t, None, note))

    if s.run_export:
        for t in cron2_times_on(day, _as_cron2(s.export_schedule), tz):
            plan.append(PlannedLaunch("Job_ExportGIM", "gim_export", t, None, "incremental export (R12)"))

    plan.sort(key=lambda p: (p.start, _JOB_ORDER.get(p.job, 99)))
    return plan


def plan_to_json(plan: list[PlannedLaunch], tz: str) -> list[dict[str, Any]]:
    """JSON-able rows: local ISO-8601 ``start``/``end`` (with offset), plus UTC copies."""
    tzn = _tzname(tz)
    return [
        {
            "job": p.job,
            "dag_id": p.dag_id,
            "start": to_local(p.start, tzn).isoformat(),
            "end": to_local(p.end, tzn).isoformat() if p.end is not None else None,
            "start_utc": _aware(p.start).isoformat(),
            "end_utc": _aware(p.end).isoformat() if p.end is not None else None,
            "note": p.note,
        }
        for p in plan
    ]
