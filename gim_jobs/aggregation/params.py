"""``-insertPendingAgg <AGR_SET>:<START>:<END>`` (R19): parse and check.

``AGR_SET`` is ``ALLSETS`` or ``<HIERARCHIES>-<LEVEL>[.<Flavor>]``: HIERARCHIES a comma-separated
list of hierarchy names or empty (= all), LEVEL one of SUBHOUR, HOUR, DAY, MONTH, QUARTER, YEAR,
Flavor ``Online`` or ``Offline``. START and END are ``YYYY-MM-DD`` days, START <= END. The same
:data:`PATTERN` is the Airflow Param's JSON-schema pattern (trigger-time refusal, REST 400) and the
first check of :func:`parse` (task-time refusal); :func:`parse` then checks what a regex cannot
(real dates, START <= END). Whether the days are in ``date_time`` and not purged is checked against
the database by ``gim_jobs.jobs.aggregate.submit_request``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from gim_jobs.aggregation.hierarchies import FLAVORS, LEVELS, NAMES

PARAM_NAME = "insertPendingAgg"
_H = "|".join(sorted(NAMES, key=len, reverse=True))
_DAY = r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
_SET = rf"(?:ALLSETS|(?:(?:{_H})(?:,(?:{_H}))*)?-(?:{'|'.join(LEVELS)})(?:\.(?:{'|'.join(FLAVORS)}))?)"
# empty = no re-aggregation (the Param's default)
PATTERN = rf"^(?:|(?:-{PARAM_NAME} )?{_SET}:{_DAY}:{_DAY})$"
_RE = re.compile(PATTERN)


class BadRequest(ValueError):
    """The parameter is malformed; the message says why and what is valid."""


@dataclass(frozen=True)
class ReaggRequest:
    hierarchies: tuple[str, ...]  # never empty: empty list / ALLSETS = all
    level: str
    flavor: str  # '' (both), 'Online', 'Offline'
    start: dt.date
    end: dt.date  # inclusive
    text: str

    @property
    def start_ts(self) -> int:
        return int(dt.datetime.combine(self.start, dt.time(), dt.UTC).timestamp())

    @property
    def end_ts(self) -> int:
        """Exclusive: midnight GMT after END."""
        return int(dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp())


USAGE = (f"{PARAM_NAME} must be <AGR_SET>:<START>:<END>: AGR_SET = ALLSETS or <HIERARCHIES>-<LEVEL>[.<Flavor>] "
         f"with HIERARCHIES a comma-separated list of {', '.join(NAMES)} (or empty = all), LEVEL one of "
         f"{', '.join(LEVELS)}, Flavor Online or Offline; START and END days YYYY-MM-DD with START <= END")


def parse(text: str | None) -> ReaggRequest | None:
    """None for an empty value; raises BadRequest (message names the problem) otherwise."""
    raw = (text or "").strip()
    if not raw:
        return None
    if not _RE.match(raw):
        raise BadRequest(f"{PARAM_NAME} = {raw!r} is not valid: {_why(raw)}. {USAGE}")
    body = raw.removeprefix(f"-{PARAM_NAME} ")
    agr, start_s, end_s = body.rsplit(":", 2)
    try:
        start = dt.date.fromisoformat(start_s)
        end = dt.date.fromisoformat(end_s)
    except ValueError as exc:
        raise BadRequest(f"{PARAM_NAME} = {raw!r}: {exc} (START and END must be real days YYYY-MM-DD)") from None
    if start > end:
        raise BadRequest(f"{PARAM_NAME} = {raw!r}: START {start} is after END {end}")
    if agr == "ALLSETS":
        return ReaggRequest(NAMES, "SUBHOUR", "", start, end, raw)
    hs, rest = agr.rsplit("-", 1)
    level, _, flavor = rest.partition(".")
    names = tuple(dict.fromkeys(h for h in hs.split(",") if h)) or NAMES
    return ReaggRequest(names, level, flavor, start, end, raw)


def _why(raw: str) -> str:
    body = raw.removeprefix(f"-{PARAM_NAME} ")
    parts = body.split(":")
    if len(parts) != 3:
        return "expected exactly three parts separated by ':'"
    agr, a, b = parts
    for d in (a, b):
        if not re.fullmatch(_DAY, d):
            return f"{d!r} is not a day YYYY-MM-DD"
    if agr == "ALLSETS":
        return "unexpected form"
    if "-" not in agr:
        return f"{agr!r} lacks -<LEVEL>"
    hs, rest = agr.rsplit("-", 1)
    for h in (x for x in hs.split(",") if x):
        if h not in NAMES:
            return f"unknown hierarchy {h!r}"
    if hs and "" in hs.split(","):
        return "empty name in the hierarchy list"
    level, dot, flavor = rest.partition(".")
    if level not in LEVELS:
        return f"unknown level {level!r}"
    if dot and flavor not in FLAVORS:
        return f"unknown flavor {flavor!r}"
    return "unexpected form"
