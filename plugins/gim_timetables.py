"""Airflow timetables for the Genesys Info Mart scheduler, registered by ``GimTimetablesPlugin``.

Airflow imports every file in ``plugins/`` under its file stem and puts ``plugins/`` on
``sys.path``, and a custom timetable is found again by ``<module>.<Class>``. So DAG files must import
these classes as ``from gim_timetables import EtlWindowTimetable`` (never ``plugins.gim_timetables``),
or the DAG fails with ``TimetableNotRegistered``.

All schedule math lives in ``gim_jobs.schedule`` (pure, tested without Airflow); this module only
maps it onto Airflow's ``Timetable`` protocol. Policy shared by both timetables here:

* a scheduled run's ``logical_date == run_after == the slot`` (``DagRunInfo.exact``), the moment the
  job is due (DESIGN "A scheduled run's logical date is the moment that job is due to start");
* ``catchup=False`` (the GIM behaviour, R3): if slots were missed (a cycle ran longer than the
  frequency, or the scheduler was down) the **latest** due slot runs once, as soon as the DAG may
  run again, and older missed slots are dropped -- one late cycle, no backlog. This is the policy of
  Airflow's ``CronTriggerTimetable``. With ``catchup=True`` every slot runs, in order;
* manual runs are exact at the trigger time.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.exceptions import AirflowTimetableInvalid
from airflow.plugins_manager import AirflowPlugin
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable
from pendulum import DateTime

from gim_jobs import schedule

__all__ = ["AggregateWindowTimetable", "Cron2Timetable", "EtlWindowTimetable", "GimTimetablesPlugin"]


def _now() -> DateTime:
    """The scheduler's clock; tests monkeypatch ``gim_timetables._now``."""
    return pendulum.now("UTC")


class _SlotTimetable(Timetable):
    """Runs at discrete slots given by ``_next_slot``/``_prev_slot`` (subclasses)."""

    _error: str | None = None

    # -- hooks -------------------------------------------------------------------------------
    def _next_slot(self, after: DateTime, *, inclusive: bool) -> DateTime:
        raise NotImplementedError

    def _prev_slot(self, at: DateTime) -> DateTime:
        """The latest slot at or before ``at``."""
        raise NotImplementedError

    # -- Timetable protocol ------------------------------------------------------------------
    def validate(self) -> None:
        if self._error is not None:
            raise AirflowTimetableInvalid(self._error)

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        self.validate()
        last = last_automated_data_interval
        if restriction.catchup:
            if last is not None:
                slot = self._next_slot(last.end, inclusive=False)
            elif restriction.earliest is not None:
                slot = self._next_slot(restriction.earliest, inclusive=True)
            else:
                slot = self._next_slot(_now(), inclusive=True)
        else:
            now = _now()
            candidates = [self._prev_slot(now)]  # the latest due slot: at most one late run
            if last is not None:
                candidates.append(self._next_slot(last.end, inclusive=False))
            elif restriction.earliest is None:
                candidates.append(self._next_slot(now, inclusive=True))
            if restriction.earliest is not None:
                candidates.append(self._next_slot(restriction.earliest, inclusive=True))
            slot = max(candidates)
        if restriction.latest is not None and slot > restriction.latest:
            return None
        return DagRunInfo.exact(slot)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timetable) or type(other).__qualname__ != type(self).__qualname__:
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, tuple(sorted(self.serialize().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.serialize().items())
        return f"{type(self).__name__}({args})"


class EtlWindowTimetable(_SlotTimetable):
    """ETL cycles every ``every_minutes`` from ``start`` to ``end`` (``HH:mm``, wall clock in
    ``timezone``); ``end`` not after ``start`` means the window ends the next day (R1, R2).

    Slots are exactly ``gim_jobs.schedule.etl_slots`` (so ``gim schedule`` shows what runs).
    """

    def __init__(self, start: str, end: str, every_minutes: int, timezone: str = "GMT") -> None:
        self._start_s, self._end_s = start, end
        self._every = every_minutes
        self._tz = timezone
        self._start = self._end = 0
        self._error = None
        try:
            self._start = schedule.parse_hhmm(start)
        except ValueError as exc:
            self._error = f"ETL window start: {exc}"
        try:
            self._end = schedule.parse_hhmm(end)
        except ValueError as exc:
            self._error = self._error or f"ETL window end: {exc}"
        if (
            not isinstance(every_minutes, int)
            or isinstance(every_minutes, bool)
            or not 1 <= every_minutes <= 1440
        ):
            self._error = self._error or f"every_minutes must be an integer 1-1440, got {every_minutes!r}"
        try:
            schedule.check_timezone(timezone)
        except ValueError as exc:
            self._error = self._error or str(exc)
        self.description = self._describe()

    def _describe(self) -> str:
        if self._error is not None:
            return f"Invalid ETL window: {self._error}"
        if self._start == self._end:
            span = f"around the clock from {self._start_s}"
        elif self._end < self._start:
            span = f"from {self._start_s} to {self._end_s} the next day"
        else:
            span = f"from {self._start_s} to {self._end_s}"
        return (
            f"ETL cycle every {self._every} minutes {span} ({self._tz} wall clock); "
            f"the last cycle of a window starts at or before {self._end_s}"
        )

    @property
    def summary(self) -> str:
        return f"{self._start_s}-{self._end_s}/{self._every}m {self._tz}"

    def serialize(self) -> dict[str, Any]:
        return {
            "start": self._start_s,
            "end": self._end_s,
            "every_minutes": self._every,
            "timezone": self._tz,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(
            start=data["start"],
            end=data["end"],
            every_minutes=data["every_minutes"],
            timezone=data.get("timezone", "GMT"),
        )

    def _next_slot(self, after: DateTime, *, inclusive: bool) -> DateTime:
        return schedule.next_etl_slot(
            after, self._start, self._end, self._every, self._tz, inclusive=inclusive
        )

    def _prev_slot(self, at: DateTime) -> DateTime:
        return schedule.prev_etl_slot(at, self._start, self._end, self._every, self._tz, inclusive=True)


class Cron2Timetable(_SlotTimetable):
    """GIM's 2-field cron ``minute hour`` (R13) in ``timezone``, with the DST rules of
    ``gim_jobs.schedule`` (gap times fire when the clock jumps, a repeated hour fires once) and
    the same late-run policy as ``EtlWindowTimetable``.

    Airflow's ``CronTriggerTimetable(Cron2(...).to_cron5(), timezone=...)`` gives the same times on
    ordinary days, but on fall-back days it fires a repeated time at its *second* occurrence (and an
    hourly-or-more-frequent cron fires in both passes of the repeated hour), which ``gim schedule``
    would not show. Use this class where the plan and the runs must agree on DST days.
    """

    def __init__(self, cron: str, timezone: str = "GMT") -> None:
        self._text, self._tz = cron, timezone
        self._cron: schedule.Cron2 | None = None
        self._error = None
        try:
            self._cron = schedule.Cron2.parse(cron)
        except ValueError as exc:
            self._error = f"2-field cron: {exc}"
        try:
            schedule.check_timezone(timezone)
        except ValueError as exc:
            self._error = self._error or str(exc)
        self.description = self._describe()

    def _describe(self) -> str:
        if self._error is not None or self._cron is None:
            return f"Invalid schedule: {self._error}"
        times = self._cron.times_of_day()
        if len(times) <= 6:
            at = ", ".join(schedule.format_hhmm(m) for m in times)
            return f"At {at} every day ({self._tz} wall clock)"
        minute, hour = self._text.split()
        return f"{len(times)} times a day: minute {minute} of hour {hour} ({self._tz} wall clock)"

    @property
    def summary(self) -> str:
        return f"{self._text} {self._tz}"

    def serialize(self) -> dict[str, Any]:
        return {"cron": self._text, "timezone": self._tz}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(cron=data["cron"], timezone=data.get("timezone", "GMT"))

    def _next_slot(self, after: DateTime, *, inclusive: bool) -> DateTime:
        assert self._cron is not None
        return schedule.next_cron2(after, self._cron, self._tz, inclusive=inclusive)

    def _prev_slot(self, at: DateTime) -> DateTime:
        assert self._cron is not None
        return schedule.prev_cron2(at, self._cron, self._tz, inclusive=True)


class AggregateWindowTimetable(_SlotTimetable):
    """Job_AggregateGIM's windows (R11): ``aggregate-schedule`` (2-field cron) opens a window of
    ``aggregate-duration`` minutes (``gim_jobs.schedule.aggregate_window_at``; overlapping windows
    merge). A run starts at each window start (logical date = window start) and lives until the
    window ends.

    Restart (R11), when ``restart`` (= ``run-aggregates`` at parse time): while ``now`` is inside a
    window, the next run is due at ``max(now, last run + restart_seconds)``. With
    ``max_active_runs=1`` that run cannot be created while the window's run is alive; the moment
    that run ends early (stopped, killed, failed) the stored slot is already due and the scheduler
    creates the next run on its next loop: aggregation is back within seconds. Within the last
    ``quiet_seconds`` of a window the next slot is the next window's start, so a run ending
    normally at the window end is not followed by an idle run. With ``restart`` false (aggregation
    switched off) only window starts are produced, whose runs skip (R11 off).
    """

    def __init__(self, cron: str, duration_minutes: int, timezone: str = "GMT", restart: bool = True,
                 restart_seconds: int = 10, quiet_seconds: int = 60) -> None:
        self._text, self._dur, self._tz = cron, duration_minutes, timezone
        self._restart, self._restart_s, self._quiet_s = bool(restart), int(restart_seconds), int(quiet_seconds)
        self._cron: schedule.Cron2 | None = None
        self._error = None
        try:
            self._cron = schedule.Cron2.parse(cron)
        except ValueError as exc:
            self._error = f"2-field cron: {exc}"
        if not isinstance(duration_minutes, int) or not 1 <= duration_minutes <= 1440:
            self._error = self._error or f"duration must be 1-1440 minutes, got {duration_minutes!r}"
        try:
            schedule.check_timezone(timezone)
        except ValueError as exc:
            self._error = self._error or str(exc)
        h, m = divmod(duration_minutes if isinstance(duration_minutes, int) else 0, 60)
        self.description = (f"Invalid aggregation schedule: {self._error}" if self._error else
                            f"Aggregation windows opening at {cron} (minute hour) for {h}:{m:02d} ({timezone}); "
                            + ("restarted within seconds if stopped inside a window (R11)" if self._restart
                               else "run-aggregates = false: no restarts"))

    @property
    def summary(self) -> str:
        h, m = divmod(self._dur, 60)
        return f"{self._text} +{h}:{m:02d} {self._tz}"

    def serialize(self) -> dict[str, Any]:
        return {"cron": self._text, "duration_minutes": self._dur, "timezone": self._tz, "restart": self._restart,
                "restart_seconds": self._restart_s, "quiet_seconds": self._quiet_s}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(**data)

    def _window(self, at: DateTime) -> tuple[DateTime, DateTime] | None:
        assert self._cron is not None
        return schedule.aggregate_window_at(at, self._cron, self._dur, self._tz)

    def _next_slot(self, after: DateTime, *, inclusive: bool) -> DateTime:
        """The next window start after ``after`` (a cron firing inside an open window is no start)."""
        assert self._cron is not None
        t = after
        for _ in range(2000):
            t = schedule.next_cron2(t, self._cron, self._tz, inclusive=inclusive)
            inclusive = False
            w = self._window(t)
            if w is not None and w[0] == t:
                return t
        raise AssertionError("no aggregation window start found")

    def _prev_slot(self, at: DateTime) -> DateTime:
        w = self._window(at)
        if w is not None:
            return w[0]
        return schedule.prev_cron2(at, self._cron, self._tz, inclusive=True)  # type: ignore[arg-type]

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        self.validate()
        now = _now()
        last = last_automated_data_interval
        w = self._window(now)
        slot: DateTime | None = None
        if w is not None and now < w[1].subtract(seconds=self._quiet_s):
            if last is None or last.start < w[0]:
                slot = w[0]  # the window's first run, late if the scheduler was down at its start
            elif self._restart:
                slot = max(now.replace(microsecond=0), last.start.add(seconds=self._restart_s))
        if slot is None:
            base = now if last is None else max(now, last.end)
            slot = self._next_slot(base, inclusive=last is None)
        if restriction.earliest is not None and slot < restriction.earliest:
            slot = self._next_slot(restriction.earliest, inclusive=True)
        if restriction.latest is not None and slot > restriction.latest:
            return None
        return DagRunInfo.exact(slot)


class GimTimetablesPlugin(AirflowPlugin):
    name = "gim_timetables"
    timetables = [EtlWindowTimetable, Cron2Timetable, AggregateWindowTimetable]
