"""The Genesys Info Mart options and the configuration check (rule R21).

One declarative table, ``OPTIONS``, names every option we read with Genesys' exact spelling, its
default, what is valid and what it means. Parsing, validation, the README options table and the
``gim check-config`` output all come from that table, so they cannot drift apart.

Contract (``DESIGN.md``): the INI file is ``$GIM_CONFIG`` or ``<project>/config/gim.ini``. Every
problem is collected (never stop at the first) and named by section, option and value. Any error
blocks every new job (R21); options may change while jobs run and take effect for every decision
made after the change (R14), which is what ``current_config`` gives.

Decisions (ours, documented here and in the README):

* ``cfg.calendars`` holds every calendar keyed by the ``<name>`` of ``[date-time-<name>]``; the
  default ``[date-time]`` calendar has key ``""`` (no custom name can be empty, so no clash).
* HH:mm options are stored as ``int`` minutes since midnight plus ``<field>_text`` as written;
  cron options as a ``schedule.Cron2`` (its ``.text`` is the text as written).
* ``start-date`` is read as UTC and stored as an aware ``datetime`` (tzinfo UTC).
* Relative paths resolve against the config file's directory and may not climb above its parent
  (the project root for the shipped ``config/gim.ini``).
* R6: an ETL window with ``etl-end-time == etl-start-time`` covers the whole day, so no
  maintenance time fits it. Both window ends belong to the window.
* Booleans are ``true``/``false`` only (any case), as Genesys accepts.
* ``[DEFAULT]`` in the file is an ordinary (ignored) section: it must not leak values into every
  section as configparser would by default.

This module never imports Airflow; ``gim_jobs.schedule`` is imported lazily by the validators.
"""

from __future__ import annotations

import codecs
import configparser
import difflib
import os
import re
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gim_jobs.schedule import Cron2

__all__ = [
    "OPTIONS",
    "CalendarOptions",
    "CheckResult",
    "ConfigError",
    "GimConfig",
    "GimEtlOptions",
    "GimExportOptions",
    "GimTransformationOptions",
    "OptionSpec",
    "Problem",
    "ScheduleOptions",
    "check_config",
    "current_config",
    "default_config_path",
    "load_config",
    "render_options_markdown",
    "summary",
]

DEFAULT_CALENDAR = ""
"""Key of the default ``[date-time]`` calendar in ``GimConfig.calendars``."""

CALENDAR_SECTION = "date-time"
CUSTOM_CALENDAR_TEMPLATE = "date-time-<name>"
"""Section name used in ``OPTIONS`` for the options of every ``[date-time-<name>]`` section."""

DEFAULT_TABLE_NAME = "date_time"
_TABLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_NUMBER_RE = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)$")
_MMDD_RE = re.compile(r"^(\d{2})-(\d{2})$")
_START_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_SM_STATES = ("ACW", "NOT_READY", "BUSY", "READY")


# ---------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding of the check; ``str()`` is the single line ``gim check-config`` prints."""

    severity: Literal["error", "warning"]
    section: str | None
    option: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        head = ""
        if self.section is not None:
            head = f"[{self.section}]"
        if self.option is not None:
            head = f"{head} {self.option}" if head else self.option
        if self.value is not None:
            head = f'{head} = "{self.value}"'
        return f"{head}: {self.message}" if head else self.message


class ConfigError(Exception):
    """The configuration has errors; ``.problems`` holds them (``.warnings`` the warnings)."""

    def __init__(self, path: Path, problems: list[Problem], warnings: list[Problem] | None = None):
        self.path = path
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        n = len(self.problems)
        lines = [f"invalid configuration {path}: {n} error{'s' if n != 1 else ''}"]
        lines += [str(p) for p in self.problems]
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# Parsers: each takes the option text (stripped) and returns the typed value or raises
# ValueError("reason") -- the reason may be empty when "must be <valid>" already says it all.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    """What some parsers need beyond the text: where relative paths start, and 'now'."""

    config_dir: Path
    now: datetime


Parser = Callable[[str, _Ctx], Any]


def _parse_bool(text: str, ctx: _Ctx) -> bool:
    low = text.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    raise ValueError("")


def _int_parser(lo: int | None, hi: int | None, *, above: int | None = None) -> Parser:
    def parse(text: str, ctx: _Ctx) -> int:
        if not _INT_RE.match(text):
            raise ValueError("")
        n = int(text)
        if (lo is not None and n < lo) or (hi is not None and n > hi) or (above is not None and n <= above):
            raise ValueError("")
        return n

    return parse


def _int_valid(lo: int | None, hi: int | None, above: int | None = None) -> str:
    if above is not None:
        return f"an integer greater than {above}"
    if lo is not None and hi is not None:
        return f"an integer from {lo} to {hi}"
    if lo == 1:
        return "a positive integer"
    if lo == 0:
        return "a non-negative integer"
    return f"an integer >= {lo}"


def _parse_non_negative_number(text: str, ctx: _Ctx) -> float:
    if not _NUMBER_RE.match(text):
        raise ValueError("")
    return float(text)


def _choice_parser(choices: tuple[int, ...]) -> Parser:
    def parse(text: str, ctx: _Ctx) -> int:
        if not _INT_RE.match(text) or int(text) not in choices:
            raise ValueError("")
        return int(text)

    return parse


def _hhmm_parser(allow_24: bool) -> Parser:
    def parse(text: str, ctx: _Ctx) -> int:
        from gim_jobs.schedule import parse_hhmm

        return parse_hhmm(text, allow_24=allow_24)

    return parse


def _parse_cron2(text: str, ctx: _Ctx) -> Cron2:
    from gim_jobs.schedule import Cron2

    return Cron2.parse(text)


def _parse_timezone(text: str, ctx: _Ctx) -> str:
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone") from None
    return text


def _parse_state_priority(text: str, ctx: _Ctx) -> tuple[str, ...]:
    items = tuple(item.strip().upper() for item in text.split(","))
    if sorted(items) != sorted(_SM_STATES):
        raise ValueError("")
    return items


def _parse_name_list(text: str, ctx: _Ctx) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _resolve_relative(text: str, ctx: _Ctx) -> Path:
    """A relative path starts at the config dir and may not climb above the config dir's parent."""
    raw = Path(text).expanduser()
    if raw.is_absolute():
        return Path(os.path.normpath(raw))
    resolved = Path(os.path.normpath(ctx.config_dir / raw))
    limit = ctx.config_dir.parent
    if not resolved.is_relative_to(limit):
        raise ValueError(f"relative path climbs above {limit} (the parent of the config directory)")
    return resolved


def _parse_output_directory(text: str, ctx: _Ctx) -> Path:
    if not text:
        raise ValueError("empty")
    path = _resolve_relative(text, ctx)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path} exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"directory {path} is not writable")
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{path} cannot be created: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path} cannot be created: {parent} is not writable")
    return path


def _parse_certificate(text: str, ctx: _Ctx) -> Path:
    path = _resolve_relative(text, ctx)
    if not path.is_file():
        raise ValueError(f"{path} is not an existing file")
    return path


def _parse_encoding(text: str, ctx: _Ctx) -> str:
    try:
        info = codecs.lookup(text)
    except LookupError:
        raise ValueError("unknown encoding") from None
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(f"{info.name} is not a text encoding")
    return text


def _parse_start_date(text: str, ctx: _Ctx) -> datetime:
    try:
        when = datetime.strptime(text, _START_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError("not a date-time as yyyy-mm-dd hh:mm:ss") from None
    if when <= datetime(1970, 1, 1, tzinfo=UTC):
        raise ValueError("must be after 1970-01-01 00:00:00")
    if when > ctx.now:
        raise ValueError("is in the future")
    return when


def _table_name_parser(custom: bool) -> Parser:
    def parse(text: str, ctx: _Ctx) -> str:
        if custom:
            if not _TABLE_NAME_RE.match(text):
                raise ValueError("")
            if text == DEFAULT_TABLE_NAME:
                raise ValueError(f"{DEFAULT_TABLE_NAME} is the default calendar's table")
        elif text != DEFAULT_TABLE_NAME:
            raise ValueError("")
        return text

    return parse


def _parse_mmdd(text: str, ctx: _Ctx) -> tuple[int, int]:
    m = _MMDD_RE.match(text)
    if not m:
        raise ValueError("")
    month, day = int(m.group(1)), int(m.group(2))
    try:
        datetime(2001, month, day)  # a non-leap year: Feb 29 cannot start every fiscal year
    except ValueError:
        raise ValueError("no such day in a non-leap year") from None
    return month, day


# ---------------------------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One option: where it lives, how it parses, its default and what it means."""

    section: str
    name: str
    parse: Parser = field(repr=False, compare=False)
    default: str | None
    valid: str
    doc: str
    required: bool = False
    default_from: str | None = None
    """Name of an option (same section) whose value is the default, e.g. cfg-facts <- gim-facts."""
    keep_text: bool = False
    """Also store the text as written in ``<field>_text`` (HH:mm and MM-DD options)."""

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")

    @property
    def default_label(self) -> str:
        """The default as shown in docs."""
        if self.default_from:
            return f"= {self.default_from}"
        if self.required:
            return "(required)"
        if self.default is None:
            return "(none)"
        return self.default if self.default else "(empty)"


_BOOL = "true or false"
_HHMM = "a time HH:mm from 00:00 to 23:59"
_CRON = (
    'a 2-field cron "minute hour" (each field *, a number, a list a,b, a range a-b or a step a/b '
    "= from a every b; minute 0-59, hour 0-23)"
)
_TZ = "an IANA time zone name such as GMT, UTC or America/New_York"


def _bool(section: str, name: str, default: str, doc: str) -> OptionSpec:
    return OptionSpec(section, name, _parse_bool, default, _BOOL, doc)


def _int(
    section: str,
    name: str,
    default: str | None,
    doc: str,
    lo: int | None = 1,
    hi: int | None = None,
    *,
    above: int | None = None,
    default_from: str | None = None,
) -> OptionSpec:
    return OptionSpec(
        section,
        name,
        _int_parser(lo, hi, above=above),
        default,
        _int_valid(lo, hi, above),
        doc,
        default_from=default_from,
    )


def _hhmm(section: str, name: str, default: str, doc: str) -> OptionSpec:
    return OptionSpec(section, name, _hhmm_parser(False), default, _HHMM, doc, keep_text=True)


def _cron(section: str, name: str, default: str, doc: str) -> OptionSpec:
    return OptionSpec(section, name, _parse_cron2, default, _CRON, doc)


def _calendar_specs(custom: bool) -> list[OptionSpec]:
    s = CUSTOM_CALENDAR_TEMPLATE if custom else CALENDAR_SECTION
    return [
        OptionSpec(
            s,
            "date-time-tz",
            _parse_timezone,
            None if custom else "GMT",
            _TZ,
            "time zone of the calendar's days, hours and 15-minute rows",
            required=custom,
        ),
        _int(
            s, "date-time-max-days-ahead", "366", "days ahead of today the calendar table is filled", 1, 3660
        ),
        _int(
            s,
            "date-time-min-days-ahead",
            "183",
            "Job_MaintainGIM extends the calendar when fewer days than this are left (ours); "
            "at most date-time-max-days-ahead",
            0,
            3660,
        ),
        _int(s, "date-time-start-year", "2012", "first year the calendar table covers", 1970, 2100),
        OptionSpec(
            s,
            "date-time-table-name",
            _table_name_parser(custom),
            None if custom else DEFAULT_TABLE_NAME,
            "a lowercase SQL identifier matching ^[a-z_][a-z0-9_]{0,62}$, not date_time"
            if custom
            else "date_time (the default calendar's table name is fixed)",
            "name of the calendar table in the Info Mart",
            required=custom,
        ),
        _int(
            s, "first-day-of-week", "1", "first day of a week: 1 = Sunday, 2 = Monday, ... 7 = Saturday", 1, 7
        ),
        _int(
            s, "minimal-days-in-first-week", "1", "days of the new year the year's first week must hold", 1, 7
        ),
        _bool(
            s,
            "simple-week-numbering",
            "false" if custom else "true",
            "true: legacy (non-ISO) week numbers as in Genesys' default calendar; "
            "false: ISO-8601-style weeks from first-day-of-week and minimal-days-in-first-week",
        ),
        OptionSpec(
            s,
            "fiscal-year-start",
            _parse_mmdd,
            "01-01",
            "a day MM-DD (month 01-12, a day that exists in every year)",
            "first day of the fiscal year",
            keep_text=True,
        ),
    ]


_S, _E, _T, _X = "schedule", "gim-etl", "gim-transformation", "gim-export"

OPTIONS: list[OptionSpec] = [
    # [schedule]: when the scheduler launches each job (R1-R14)
    _bool(
        _S, "run-scheduler", "false", "true starts scheduled launches; false pauses them, running jobs finish"
    ),
    _hhmm(_S, "etl-start-time", "06:30", "start of the daily ETL window, in timezone"),
    _hhmm(
        _S,
        "etl-end-time",
        "00:30",
        "end of the ETL window: the last ETL cycle starts at or before it; "
        "not after etl-start-time = the window spans midnight",
    ),
    _int(_S, "etl-frequency", "30", "minutes between ETL cycle starts", 1, 1440),
    OptionSpec(_S, "timezone", _parse_timezone, "GMT", _TZ, "time zone of every time and cron in [schedule]"),
    _hhmm(
        _S, "maintain-start-time", "03:00", "daily start of Job_MaintainGIM; must lie outside the ETL window"
    ),
    _bool(_S, "run-maintain", "false", "run Job_MaintainGIM daily at maintain-start-time"),
    _bool(_S, "run-update-stats", "false", "run Job_UpdateStats on update-stats-schedule"),
    _cron(_S, "update-stats-schedule", "0/10 *", "start times of Job_UpdateStats, every day"),
    _bool(_S, "run-aggregates", "false", "run Job_AggregateGIM in its aggregate-schedule windows"),
    _cron(_S, "aggregate-schedule", "0 1", "daily start times of Job_AggregateGIM"),
    OptionSpec(
        _S,
        "aggregate-duration",
        _hhmm_parser(True),
        "5:00",
        "a duration H:mm or HH:mm from 00:00 to 24:00",
        "how long Job_AggregateGIM runs after each start",
        keep_text=True,
    ),
    _bool(_S, "run-export", "false", "run Job_ExportGIM on export-schedule"),
    _cron(_S, "export-schedule", "20 0/8", "start times of Job_ExportGIM, every day"),
    _bool(
        _S,
        "on-demand-migration",
        "false",
        "migrate the Info Mart schema automatically when it is out of date after an upgrade",
    ),
    # [gim-etl]: retention, partitions, extraction
    _int(
        _E,
        "days-to-keep-gim-facts",
        "400",
        "days facts are kept (by start time) before Job_MaintainGIM purges them",
    ),
    _int(
        _E,
        "days-to-keep-gidb-facts",
        "14",
        "days gidb_* staging rows are kept; at most days-to-keep-gim-facts",
    ),
    _int(
        _E,
        "days-to-keep-cfg-facts",
        None,
        "days deleted configuration facts are kept (by end time); at least days-to-keep-gim-facts",
        default_from="days-to-keep-gim-facts",
    ),
    _int(
        _E,
        "days-to-keep-discards-and-job-history",
        "600",
        "days discards, job history and audit rows are kept",
    ),
    _int(_E, "days-to-keep-gdpr-history", "15", "days GDPR request history (PII) is kept", 0, 30),
    _int(
        _E,
        "days-to-keep-active-facts",
        "30",
        "days after which a still-active multimedia interaction is closed",
    ),
    _int(_E, "partitioning-ahead-range", "14", "days ahead of now that partitions are created"),
    _int(
        _E,
        "partitioning-interval-size-gim",
        "86400",
        "seconds of data per fact/control table partition",
        3600,
    ),
    _int(_E, "extract-data-thread-pool-size", "32", "partitions of the extraction worked on in parallel"),
    _int(_E, "extract-data-chunk-size", "50000", "rows per extraction chunk (ours)", 100),
    _int(
        _E,
        "delayed-data-threshold",
        "900",
        "seconds of missing source data before a delay is logged",
        60,
        3600,
    ),
    OptionSpec(
        _E,
        "sub-hour-interval",
        _choice_parser((15, 30)),
        "15",
        "15 or 30",
        "minutes of the aggregates' sub-hour level",
    ),
    OptionSpec(
        _E,
        "job-test-delay-seconds",
        _parse_non_negative_number,
        "0",
        "a number >= 0 (fractions allowed)",
        "TEST ONLY (ours): seconds every job sleeps per batch, to make jobs slow enough to observe; keep 0",
    ),
    OptionSpec(
        _E,
        "job-test-start-delay-seconds",
        _parse_non_negative_number,
        "0",
        "a number >= 0 (fractions allowed)",
        "TEST ONLY (ours): seconds every job run sleeps (stoppably) after taking its lock, before its work; "
        "gives scheduler tests jobs of a known length; keep 0",
    ),
    # [gim-transformation]
    _int(_T, "chunk-size", "7200", "seconds of data one transformation chunk covers", 0),
    _int(_T, "max-state-duration", "14400", "seconds after which an open agent state is closed", above=900),
    _int(
        _T,
        "user-event-data-timeout",
        "3600",
        "seconds after a call ends that UserEvent data is still taken",
        0,
    ),
    OptionSpec(
        _T,
        "sm-resource-state-priority",
        _parse_state_priority,
        "ACW, NOT_READY, BUSY, READY",
        "ACW, NOT_READY, BUSY and READY, each exactly once, comma-separated, in any order",
        "which agent state wins when the agent's DNs disagree, highest first",
    ),
    OptionSpec(
        _T,
        "stop-ixn-queues",
        _parse_name_list,
        "",
        "a comma-separated list of interaction queue names (may be empty)",
        "an interaction placed in one of these queues counts as terminated",
    ),
    # [gim-export]: Job_ExportGIM (R22)
    OptionSpec(
        _X,
        "output-directory",
        _parse_output_directory,
        "output",
        "a writable directory path (created if missing); relative to the config file's directory, "
        "not above its parent",
        "where export folders are written",
    ),
    _int(_X, "days-to-keep-output-files", "14", "days export folders are kept"),
    _bool(_X, "use-export-views", "false", "export through frozen export views"),
    _int(_X, "chunk-size-seconds", "28800", "seconds of data time one export chunk covers"),
    _int(_X, "max-retries", "3", "retries of an export after a transient error", 0),
    _int(_X, "retry-delay-seconds", "30", "seconds between export retries", 0),
    OptionSpec(
        _X,
        "output-files-encoding",
        _parse_encoding,
        "utf8",
        "a text encoding Python knows (Java names such as UTF-8, ISO-8859-1, windows-1252 work)",
        "encoding of the exported CSV files",
    ),
    OptionSpec(
        _X,
        "start-date",
        _parse_start_date,
        None,
        "empty or a UTC date-time yyyy-mm-dd hh:mm:ss after 1970-01-01, not in the future",
        "earliest data to export; used only while output-directory is empty",
    ),
    _int(_X, "thread-pool-size", "10", "tables exported in parallel"),
    OptionSpec(
        _X,
        "encrypt-certificate",
        _parse_certificate,
        None,
        "empty or the path of an existing certificate file (relative to the config file's directory)",
        "if set, export zips are encrypted with this certificate",
    ),
    # [date-time] and [date-time-<name>]: calendars (R24)
    *_calendar_specs(custom=False),
    *_calendar_specs(custom=True),
]

_BY_SECTION: dict[str, dict[str, OptionSpec]] = {}
for _spec in OPTIONS:
    _BY_SECTION.setdefault(_spec.section, {})[_spec.name] = _spec
_KNOWN_SECTIONS = [_S, _E, _T, _X, CALENDAR_SECTION]


# ---------------------------------------------------------------------------------------------
# Typed configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleOptions:
    """``[schedule]``; times in minutes since midnight in ``timezone``."""

    run_scheduler: bool
    etl_start_time: int
    etl_start_time_text: str
    etl_end_time: int
    etl_end_time_text: str
    etl_frequency: int
    timezone: str
    maintain_start_time: int
    maintain_start_time_text: str
    run_maintain: bool
    run_update_stats: bool
    update_stats_schedule: Cron2
    run_aggregates: bool
    aggregate_schedule: Cron2
    aggregate_duration: int
    aggregate_duration_text: str
    run_export: bool
    export_schedule: Cron2
    on_demand_migration: bool


@dataclass(frozen=True)
class GimEtlOptions:
    """``[gim-etl]``: retention (days), partitions, extraction."""

    days_to_keep_gim_facts: int
    days_to_keep_gidb_facts: int
    days_to_keep_cfg_facts: int
    days_to_keep_discards_and_job_history: int
    days_to_keep_gdpr_history: int
    days_to_keep_active_facts: int
    partitioning_ahead_range: int
    partitioning_interval_size_gim: int
    extract_data_thread_pool_size: int
    extract_data_chunk_size: int
    delayed_data_threshold: int
    sub_hour_interval: int
    job_test_delay_seconds: float
    job_test_start_delay_seconds: float


@dataclass(frozen=True)
class GimTransformationOptions:
    """``[gim-transformation]``."""

    chunk_size: int
    max_state_duration: int
    user_event_data_timeout: int
    sm_resource_state_priority: tuple[str, ...]
    stop_ixn_queues: tuple[str, ...]


@dataclass(frozen=True)
class GimExportOptions:
    """``[gim-export]``; paths absolute, ``start_date`` aware UTC."""

    output_directory: Path
    days_to_keep_output_files: int
    use_export_views: bool
    chunk_size_seconds: int
    max_retries: int
    retry_delay_seconds: int
    output_files_encoding: str
    start_date: datetime | None
    thread_pool_size: int
    encrypt_certificate: Path | None


@dataclass(frozen=True)
class CalendarOptions:
    """One calendar: ``[date-time]`` (``name == ""``) or ``[date-time-<name>]``."""

    name: str
    section: str
    date_time_tz: str
    date_time_max_days_ahead: int
    date_time_min_days_ahead: int
    date_time_start_year: int
    date_time_table_name: str
    first_day_of_week: int
    minimal_days_in_first_week: int
    simple_week_numbering: bool
    fiscal_year_start: tuple[int, int]
    """(month, day)."""
    fiscal_year_start_text: str


@dataclass(frozen=True)
class GimConfig:
    """The whole validated configuration; ``calendars`` includes the default one under key ``""``."""

    path: Path
    schedule: ScheduleOptions
    gim_etl: GimEtlOptions
    gim_transformation: GimTransformationOptions
    gim_export: GimExportOptions
    date_time: CalendarOptions
    calendars: dict[str, CalendarOptions]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of ``check_config``: ``config`` is set only when there is no error."""

    ok: bool
    config: GimConfig | None
    errors: list[Problem]
    warnings: list[Problem]
    path: Path | None = None

    @property
    def problems(self) -> list[Problem]:
        return [*self.errors, *self.warnings]


_SECTION_CLASSES: dict[str, type] = {
    _S: ScheduleOptions,
    _E: GimEtlOptions,
    _T: GimTransformationOptions,
    _X: GimExportOptions,
}


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------


def default_config_path() -> Path:
    """``$GIM_CONFIG`` if set, else ``<project>/config/gim.ini`` (the project is installed editable)."""
    env = os.environ.get("GIM_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "config" / "gim.ini"


def _now() -> datetime:
    """Current UTC time; a seam for tests."""
    return datetime.now(UTC)


class _Checker:
    """Collects every problem of one file; ``values`` holds each valid option's typed value."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.ctx = _Ctx(config_dir=path.parent, now=_now())
        # (section as written, option) -> typed value, only for options that parsed
        self.values: dict[tuple[str, str], Any] = {}
        self.texts: dict[tuple[str, str], str] = {}
        self.defaulted: set[tuple[str, str]] = set()  # options not in the file

    def error(self, section: str | None, option: str | None, value: str | None, message: str) -> None:
        self.errors.append(Problem("error", section, option, value, message))

    def warn(self, section: str | None, option: str | None, value: str | None, message: str) -> None:
        self.warnings.append(Problem("warning", section, option, value, message))

    def run(self, text: str) -> GimConfig | None:
        parser = configparser.ConfigParser(
            interpolation=None,
            inline_comment_prefixes=(";", "#"),
            default_section="\x00no-default-section",
            strict=True,
        )
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(text, source=str(self.path))
        except configparser.Error as exc:
            self.error(None, None, None, f"{self.path}: cannot parse INI file: {_one_line(str(exc))}")
            return None

        calendars: list[tuple[str, str]] = [(CALENDAR_SECTION, DEFAULT_CALENDAR)]
        for section in parser.sections():
            if section in _BY_SECTION and section != CUSTOM_CALENDAR_TEMPLATE:
                continue
            if section.startswith(CALENDAR_SECTION + "-"):
                name = section[len(CALENDAR_SECTION) + 1 :]
                if name and name != "<name>":
                    calendars.append((section, name))
                    continue
                self.error(section, None, None, "a custom calendar section needs a name: [date-time-<name>]")
                continue
            close = _close(section, _KNOWN_SECTIONS)
            if close:
                self.warn(section, None, None, f'unknown section (ignored); did you mean "[{close}]"?')

        for section in (_S, _E, _T, _X):
            self._read_section(parser, section, section)
        for section, name in calendars:
            template = CUSTOM_CALENDAR_TEMPLATE if name else CALENDAR_SECTION
            self._read_section(parser, section, template)

        self._cross_rules(calendars)
        if self.errors:
            return None
        return self._build(calendars)

    def _read_section(self, parser: configparser.ConfigParser, section: str, template: str) -> None:
        specs = _BY_SECTION[template]
        given: dict[str, str] = dict(parser.items(section)) if parser.has_section(section) else {}
        for option, value in given.items():
            if option in specs:
                continue
            self._unknown_option(section, template, option, value)
        for spec in specs.values():
            key = (section, spec.name)
            if spec.name in given:
                text, from_default = given[spec.name], False
            elif spec.default_from is not None:
                if (section, spec.default_from) in self.values:
                    self.values[key] = self.values[(section, spec.default_from)]
                    self.texts[key] = self.texts[(section, spec.default_from)]
                continue
            elif spec.required:
                self.error(section, spec.name, None, f"is required in a [{template}] section; {spec.valid}")
                continue
            else:
                text, from_default = spec.default or "", True
            if text == "" and spec.default is None and not spec.required and spec.default_from is None:
                self.values[key] = None  # optional option left empty: unset
                self.texts[key] = ""
                continue
            if from_default:
                self.defaulted.add(key)
            try:
                self.values[key] = spec.parse(text, self.ctx)
                self.texts[key] = text
            except ValueError as exc:
                reason = str(exc).strip()
                message = f"must be {spec.valid} ({spec.doc})"
                if reason:
                    message += f": {reason}"
                if from_default:
                    message += " [this is the default; set the option]"
                self.error(section, spec.name, text, message)

    def _unknown_option(self, section: str, template: str, option: str, value: str) -> None:
        close = _close(option, list(_BY_SECTION[template]))
        if close:
            self.warn(section, option, value, f'unknown option (ignored); did you mean "{close}"?')
            return
        for other in (_S, _E, _T, _X, CALENDAR_SECTION):
            if other != template and option in _BY_SECTION[other]:
                self.warn(section, option, value, f"unknown option here (ignored); it belongs in [{other}]")
                return
        self.warn(section, option, value, "unknown option (ignored)")

    def _cross_rules(self, calendars: list[tuple[str, str]]) -> None:
        v = self.values

        def both(a: tuple[str, str], b: tuple[str, str]) -> bool:
            return v.get(a) is not None and v.get(b) is not None

        gim, cfg, gidb = (
            (_E, "days-to-keep-gim-facts"),
            (_E, "days-to-keep-cfg-facts"),
            (_E, "days-to-keep-gidb-facts"),
        )
        if both(gim, cfg) and v[cfg] < v[gim]:
            self.error(
                _E,
                cfg[1],
                self.texts[cfg],
                f"must be >= days-to-keep-gim-facts ({v[gim]}): deleted "
                "configuration facts may not be purged before the facts that refer to them",
            )
        if both(gim, gidb) and v[gidb] > v[gim]:
            self.error(_E, gidb[1], self.texts[gidb], f"must be <= days-to-keep-gim-facts ({v[gim]})")

        start_date, hist = (_X, "start-date"), (_E, "days-to-keep-discards-and-job-history")
        if both(start_date, hist) and both(gim, hist) and v[hist] < v[gim]:
            self.error(
                _X,
                "start-date",
                self.texts[start_date],
                f"needs [gim-etl] days-to-keep-discards-and-job-history ({v[hist]}) >= "
                f"days-to-keep-gim-facts ({v[gim]}): export history must outlive the facts",
            )

        self._r06_maintenance_outside_etl_window()

        tables: dict[str, str] = {}
        for section, _name in calendars:
            lo, hi = (section, "date-time-min-days-ahead"), (section, "date-time-max-days-ahead")
            if both(lo, hi) and v[lo] > v[hi]:
                note = (
                    f" ({self.texts[lo]} is the default; set date-time-min-days-ahead too)"
                    if lo in self.defaulted
                    else ""
                )
                self.error(
                    section, lo[1], self.texts[lo], f"must be <= date-time-max-days-ahead ({v[hi]}){note}"
                )
            table_key = (section, "date-time-table-name")
            table = v.get(table_key)
            if table is None:
                continue
            if table in tables:
                self.error(
                    section,
                    table_key[1],
                    table,
                    f"table {table} is already used by [{tables[table]}]; each calendar needs its own table",
                )
            else:
                tables[table] = section

    def _r06_maintenance_outside_etl_window(self) -> None:
        """R6: a daily maintenance start inside the ETL window would collide with ETL every day."""
        v = self.values
        keys = [(_S, n) for n in ("run-maintain", "maintain-start-time", "etl-start-time", "etl-end-time")]
        if any(k not in v for k in keys) or not v[keys[0]]:
            return
        maint, start, end = v[keys[1]], v[keys[2]], v[keys[3]]
        if _in_window(maint, start, end):
            window = f"etl-start-time {self.texts[keys[2]]} to etl-end-time {self.texts[keys[3]]}"
            if start == end:
                window += ", equal ends: the whole day"
            elif end < start:
                window += ", spanning midnight"
            self.error(
                _S,
                "maintain-start-time",
                self.texts[keys[1]],
                f"must lie outside the ETL window ({window}) when run-maintain = true (R6)",
            )

    def _build(self, calendars: list[tuple[str, str]]) -> GimConfig:
        sections: dict[str, Any] = {}
        for section, cls in _SECTION_CLASSES.items():
            sections[section] = cls(**self._kwargs(section, section))
        cals: dict[str, CalendarOptions] = {}
        for section, name in calendars:
            template = CUSTOM_CALENDAR_TEMPLATE if name else CALENDAR_SECTION
            cals[name] = CalendarOptions(name=name, section=section, **self._kwargs(section, template))
        return GimConfig(
            path=self.path,
            schedule=sections[_S],
            gim_etl=sections[_E],
            gim_transformation=sections[_T],
            gim_export=sections[_X],
            date_time=cals[DEFAULT_CALENDAR],
            calendars=cals,
        )

    def _kwargs(self, section: str, template: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for spec in _BY_SECTION[template].values():
            kwargs[spec.field] = self.values[(section, spec.name)]
            if spec.keep_text:
                kwargs[spec.field + "_text"] = self.texts[(section, spec.name)]
        return kwargs


def _in_window(t: int, start: int, end: int) -> bool:
    """Is minute-of-day ``t`` in the closed window ``[start, end]``? ``end <= start`` spans midnight."""
    if end > start:
        return start <= t <= end
    return t >= start or t <= end  # end == start: every t matches (whole day)


def _close(word: str, candidates: list[str]) -> str | None:
    """The known name ``word`` is probably a misspelling of, if any."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.8)
    return lowered[match[0]] if match else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_text(path: Path, text: str) -> CheckResult:
    checker = _Checker(path)
    cfg = checker.run(text)
    return CheckResult(
        ok=cfg is not None, config=cfg, errors=checker.errors, warnings=checker.warnings, path=path
    )


def _read(path: Path) -> tuple[bytes | None, CheckResult | None]:
    """The file's bytes, or a failed result naming the path."""
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        message = f"configuration file {path} does not exist (set GIM_CONFIG or create it)"
    except OSError as exc:
        message = f"cannot read configuration file {path}: {exc.strerror or exc}"
    return None, CheckResult(False, None, [Problem("error", None, None, None, message)], [], path)


def _decode(path: Path, data: bytes) -> CheckResult:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = Problem(
            "error", None, None, None, f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        )
        return CheckResult(False, None, [problem], [], path)
    return _check_text(path, text)


def check_config(path: Path | None = None) -> CheckResult:
    """Validate the whole file (R21) and report every problem; never raises for a bad config."""
    path = Path(path if path is not None else default_config_path()).expanduser().absolute()
    data, failed = _read(path)
    if failed is not None:
        return failed
    assert data is not None
    return _decode(path, data)


def load_config(path: Path | None = None) -> GimConfig:
    """The typed configuration; raises ``ConfigError`` listing every error."""
    result = check_config(path)
    if result.config is None:
        raise ConfigError(result.path or Path(), result.errors, result.warnings)
    return result.config


# ---------------------------------------------------------------------------------------------
# R14: re-read on change
# ---------------------------------------------------------------------------------------------


@dataclass
class _Cached:
    stamp: tuple[int, int, int]
    read_at_ns: int
    data: bytes
    result: CheckResult


_cache: dict[Path, _Cached] = {}
_cache_lock = threading.Lock()
_RACY_NS = 2_000_000_000
"""A file changed this close to when we read it may change again with the same mtime (coarse
file-system clocks), so such a cache entry is confirmed by comparing bytes (as git does)."""


def current_config(path: Path | None = None) -> GimConfig:
    """The configuration as the file is now (R14), parsed again only when the file changed.

    A change is seen through (mtime_ns, size, inode); raises ``ConfigError`` while the file is
    invalid -- never a stale valid config, since a bad config must block new jobs (R21).
    """
    path = Path(path if path is not None else default_config_path()).expanduser().absolute()
    with _cache_lock:
        try:
            st = path.stat()
        except OSError:
            _cache.pop(path, None)
            stamp = None
        else:
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = _cache.get(path)
        result: CheckResult | None = None
        if (
            cached is not None
            and stamp == cached.stamp
            and (cached.read_at_ns - stamp[0] > _RACY_NS or _read(path)[0] == cached.data)
        ):
            result = cached.result
        if result is None:
            read_at = time.time_ns()
            data, failed = _read(path)
            if data is None or stamp is None:
                _cache.pop(path, None)
                result = failed or check_config(path)
            else:
                result = _decode(path, data)
                _cache[path] = _Cached(stamp, read_at, data, result)
    if result.config is None:
        raise ConfigError(path, result.errors, result.warnings)
    return result.config


# ---------------------------------------------------------------------------------------------
# Docs and summary
# ---------------------------------------------------------------------------------------------


def render_options_markdown() -> str:
    """The README options table, generated from ``OPTIONS`` so docs cannot drift."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| section | option | default | valid values | meaning |",
        "|---|---|---|---|---|",
    ]
    for spec in OPTIONS:
        default = spec.default_label
        default = f"`{default}`" if spec.default and not spec.default_from else default
        lines.append(
            f"| `[{spec.section}]` | `{spec.name}` | {cell(default)} | {cell(spec.valid)} | {cell(spec.doc)} |"
        )
    return "\n".join(lines) + "\n"


def summary(cfg: GimConfig) -> str:
    """One line for a successful ``gim check-config``."""
    s = cfg.schedule

    def onoff(enabled: bool, text: str) -> str:
        return text if enabled else "off"

    calendars = ", ".join(f"{c.date_time_table_name} ({c.date_time_tz})" for c in cfg.calendars.values())
    parts = [
        f"ETL {s.etl_start_time_text}-{s.etl_end_time_text} every {s.etl_frequency} min {s.timezone}",
        f"maintenance {onoff(s.run_maintain, s.maintain_start_time_text)}",
        f"aggregates {onoff(s.run_aggregates, f'on {s.aggregate_schedule.text} for {s.aggregate_duration_text}')}",
        f"update-stats {onoff(s.run_update_stats, f'on {s.update_stats_schedule.text}')}",
        f"export {onoff(s.run_export, f'on {s.export_schedule.text}')}",
        f"calendars {calendars}",
        f"scheduler {'on' if s.run_scheduler else 'off'}",
    ]
    return f"config OK ({cfg.path}): " + "; ".join(parts)


def _check_schema() -> None:
    """Fail at import if the schema and the dataclasses disagree (a typo would lose an option)."""
    for section, cls in [*_SECTION_CLASSES.items(), (CALENDAR_SECTION, CalendarOptions)]:
        expected = set()
        for spec in _BY_SECTION[section].values():
            expected.add(spec.field)
            if spec.keep_text:
                expected.add(spec.field + "_text")
        if cls is CalendarOptions:
            expected |= {"name", "section"}
        actual = {f.name for f in fields(cls)}
        if expected != actual:
            raise AssertionError(f"{cls.__name__} fields {sorted(actual ^ expected)} disagree with OPTIONS")


_check_schema()
