"""The day's schedule as a picture: planned launches and what actually ran, one lane per job.

Like the Operations Guide's sample-schedule figure: a 24-hour axis on the configured clock, the ETL
cycles as marks, the aggregation window as a band, maintenance with the ETL slot that stops it,
UpdateStats and Export marks; the runs recorded in ``ctl_etl_history`` drawn over it as bars
coloured by status. Pure (no Airflow, no database): ``gim schedule --svg`` and the Info Mart Manager
page both call :func:`render_day_svg`.

The horizontal axis is elapsed time from local midnight to the next local midnight, so a DST day is
23 or 25 hours wide and every bar keeps its true length; hour ticks sit where the local clock shows
that hour (a skipped hour has no tick).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from gim_jobs import schedule
from gim_jobs.schedule import PlannedLaunch

__all__ = ["LANES", "STATUS_COLORS", "lane_of_job", "render_day_svg", "timeline_plan"]


@dataclass(frozen=True)
class Lane:
    key: str
    title: str
    plan_job: str
    """``PlannedLaunch.job`` drawn in this lane."""
    run_jobs: tuple[str, ...]
    """``ctl_etl_history.job_name`` values drawn in this lane (one sub-row each)."""


LANES: tuple[Lane, ...] = (
    Lane("etl", "ETL cycle", "ETL cycle", ("Job_ExtractICON", "Job_TransformGIM")),
    Lane("aggregate", "Job_AggregateGIM", "Job_AggregateGIM", ("Job_AggregateGIM",)),
    Lane("maintain", "Job_MaintainGIM", "Job_MaintainGIM", ("Job_MaintainGIM",)),
    Lane("update_stats", "Job_UpdateStats", "Job_UpdateStats", ("Job_UpdateStats",)),
    Lane("export", "Job_ExportGIM", "Job_ExportGIM", ("Job_ExportGIM",)),
)

STATUS_COLORS: dict[str, str] = {
    "COMPLETED": "#2e7d32",
    "RUNNING": "#1e88e5",
    "FAILED": "#c62828",
    "STOPPED": "#ef6c00",
    "REFUSED": "#8e24aa",
    "SKIPPED": "#9e9e9e",
}
_OTHER_STATUS = "#546e7a"
_PLAN_COLOR = "#37474f"
_WINDOW_COLOR = "#7e57c2"
_DEADLINE_COLOR = "#ffb74d"

# Geometry (px)
WIDTH = 1200
_LEFT = 190
_RIGHT = 24
_TOP = 62
_LANE_H = 52
_LEGEND_H = 64
_PLOT_W = WIDTH - _LEFT - _RIGHT


def lane_of_job(job_name: str) -> str | None:
    """The lane key a ``ctl_etl_history.job_name`` is drawn in (None: not drawn)."""
    for lane in LANES:
        if job_name in lane.run_jobs:
            return lane.key
    return None


def timeline_plan(day: dt.date, s: Any) -> list[PlannedLaunch]:
    """``schedule.plan_day(day)`` plus yesterday's aggregation windows still open at midnight.

    ``plan_day`` lists only the windows that *open* on ``day``; a ``0 4``/``23:00`` window opened
    yesterday still runs from 00:00 to 03:00 today, and the picture should show it.
    """
    plan = schedule.plan_day(day, s)
    if not s.run_scheduler:
        return plan
    start_of_day = schedule.local_time(day, 0, s.timezone)
    carried = [
        PlannedLaunch(p.job, p.dag_id, p.start, p.end, f"opened the day before; {p.note}")
        for p in schedule.plan_day(day - dt.timedelta(days=1), s)
        if p.end is not None and p.end > start_of_day
    ]
    return carried + plan


def _fmt(at: dt.datetime, tz: str, day: dt.date) -> str:
    loc = schedule.to_local(at, tz)
    return loc.strftime("%H:%M:%S") if loc.date() == day else loc.strftime("%Y-%m-%d %H:%M:%S")


def _hhmm(at: dt.datetime, tz: str, day: dt.date) -> str:
    loc = schedule.to_local(at, tz)
    diff = (loc.date() - day).days
    return loc.strftime("%H:%M") + (f" ({diff:+d} d)" if diff else "")


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


class _Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def el(self, tag: str, attrs: Mapping[str, Any], *, title: str | None = None, text: str | None = None) -> None:
        a = " ".join(f'{k.rstrip("_").replace("_", "-")}="{escape(str(v), quote=True)}"'
                     for k, v in attrs.items() if v is not None)
        inner = ""
        if title is not None:
            inner += f"<title>{escape(title, quote=False)}</title>"
        if text is not None:
            inner += escape(text, quote=False)
        self.add(f"<{tag} {a}>{inner}</{tag}>" if inner else f"<{tag} {a}/>")


def render_day_svg(
    plan: Sequence[PlannedLaunch],
    actual: Iterable[Mapping[str, Any]],
    day: dt.date,
    tz: str,
    *,
    now: dt.datetime | None = None,
    href: Callable[[Mapping[str, Any]], str | None] | None = None,
    notice: str | None = None,
    title: str | None = None,
) -> str:
    """A standalone SVG document of local ``day`` in zone ``tz``.

    ``plan``: what the scheduler starts (``timeline_plan``/``plan_day``); point launches are marks,
    launches with an ``end`` are windows. ``actual``: ``ctl_etl_history`` rows (``job_name``,
    ``status``, ``start_time``, ``end_time`` aware datetimes; ``row_count``, ``run_type``,
    ``message`` used in tooltips); a run without an end is drawn up to ``now``. ``href(row)`` may
    give a link for a run's bar (the Airflow run). ``notice`` is written across the plot (e.g.
    "run-scheduler = false").
    """
    now = now or dt.datetime.now(dt.UTC)
    d0 = schedule.local_time(day, 0, tz)
    d1 = schedule.local_time(day + dt.timedelta(days=1), 0, tz)
    span = (d1 - d0).total_seconds()

    def x(at: dt.datetime) -> float:
        sec = (at - d0).total_seconds()
        return _LEFT + max(0.0, min(span, sec)) / span * _PLOT_W

    height = _TOP + len(LANES) * _LANE_H + _LEGEND_H
    plot_bottom = _TOP + len(LANES) * _LANE_H
    svg = _Svg()
    label = title or f"Genesys Info Mart schedule, {day.isoformat()} ({tz})"
    svg.add(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="gim-tl-title" class="gim-timeline" '
        f'font-family="Helvetica, Arial, sans-serif" font-size="12">'
    )
    svg.el("title", {"id": "gim-tl-title"}, text=label)
    svg.el("rect", {"x": 0, "y": 0, "width": WIDTH, "height": height, "fill": "#ffffff"})
    svg.el("text", {"x": 12, "y": 22, "font-size": 16, "font-weight": "bold", "fill": "#212121"}, text=label)

    # hour grid and labels
    svg.add('<g class="axis">')
    seen: set[float] = set()
    for h in range(25):
        at = d1 if h == 24 else schedule.local_time(day, h * 60, tz)
        if h < 24 and schedule.to_local(at, tz).hour != h:
            continue  # the hour the clock skips (DST gap)
        xv = round(x(at), 1)
        if xv in seen:
            continue
        seen.add(xv)
        strong = h % 6 == 0
        svg.el("line", {"x1": _num(xv), "x2": _num(xv), "y1": _TOP - 6, "y2": plot_bottom,
                        "stroke": "#9e9e9e" if strong else "#e0e0e0", "stroke-width": 1})
        svg.el("text", {"x": _num(xv), "y": _TOP - 10, "text-anchor": "middle", "font-size": 11,
                        "fill": "#424242" if strong else "#757575", "class": "hour"}, text=f"{h:02d}")
    svg.add("</g>")

    by_lane: dict[str, list[PlannedLaunch]] = {lane.key: [] for lane in LANES}
    for p in plan:
        for lane in LANES:
            if p.job == lane.plan_job:
                by_lane[lane.key].append(p)
    runs: dict[str, list[Mapping[str, Any]]] = {lane.key: [] for lane in LANES}
    for r in actual:
        key = lane_of_job(str(r.get("job_name")))
        start = r.get("start_time")
        if key is None or start is None:
            continue
        end = r.get("end_time") or max(now, start)
        if end < d0 or start >= d1:
            continue
        runs[key].append(r)
    etl_starts = sorted(p.start for p in by_lane["etl"])

    for i, lane in enumerate(LANES):
        y0 = _TOP + i * _LANE_H
        planned = by_lane[lane.key]
        ran = runs[lane.key]
        svg.add(f'<g class="lane" data-lane="{lane.key}" data-job="{escape(lane.title)}">')
        svg.el("rect", {"x": _LEFT, "y": y0, "width": _PLOT_W, "height": _LANE_H,
                        "fill": "#fafafa" if i % 2 == 0 else "#f3f3f3"})
        svg.el("line", {"x1": 8, "x2": WIDTH - _RIGHT, "y1": y0 + _LANE_H, "y2": y0 + _LANE_H,
                        "stroke": "#e0e0e0", "stroke-width": 1})
        svg.el("text", {"x": 12, "y": y0 + 20, "font-weight": "bold", "fill": "#212121", "class": "lane-title"},
               text=lane.title)
        points = sum(1 for p in planned if p.end is None)
        windows = len(planned) - points
        sub = []
        if points:
            sub.append(f"{points} planned")
        if windows:
            sub.append(f"{windows} window{'s' if windows > 1 else ''}")
        if not planned:
            sub.append("not scheduled")
        sub.append(f"{len(ran)} ran")
        svg.el("text", {"x": 12, "y": y0 + 36, "font-size": 11, "fill": "#616161", "class": "lane-sub"},
               text=", ".join(sub))

        plan_y0, plan_y1 = y0 + 5, y0 + 23
        for p in planned:
            if p.end is not None:  # a window (aggregation)
                if p.end <= d0 or p.start >= d1:
                    continue
                x0, x1 = x(p.start), x(p.end)
                tip = (f"{p.job} window {_fmt(p.start, tz, day)} - {_fmt(p.end, tz, day)}"
                       + (f": {p.note}" if p.note else ""))
                svg.el("rect", {"x": _num(x0), "y": y0 + 3, "width": _num(max(1.0, x1 - x0)),
                                "height": _LANE_H - 6, "fill": _WINDOW_COLOR, "fill-opacity": "0.18",
                                "stroke": _WINDOW_COLOR, "stroke-width": 1, "class": "planned window",
                                "data-start": schedule.to_local(p.start, tz).isoformat()}, title=tip)
                span_text = f"{_hhmm(p.start, tz, day)} - {_hhmm(p.end, tz, day)}"
                if x1 - x0 > 7 * len(span_text):
                    svg.el("text", {"x": _num(x0 + 6), "y": y0 + 17, "font-size": 11, "fill": "#4527a0"},
                           text=span_text)
                continue
            if lane.key == "maintain":
                deadline = next((t for t in etl_starts if t > p.start), None)
                if deadline is not None:
                    x0, x1 = x(p.start), x(deadline)
                    svg.el("rect", {"x": _num(x0), "y": plan_y0 + 4, "width": _num(max(1.0, x1 - x0)),
                                    "height": plan_y1 - plan_y0 - 8, "fill": _DEADLINE_COLOR,
                                    "fill-opacity": "0.5", "class": "deadline"},
                           title=f"Job_MaintainGIM may run until the ETL cycle of {_fmt(deadline, tz, day)} (R9)")
            xv = _num(x(p.start))
            tip = f"{p.job} at {_fmt(p.start, tz, day)}" + (f": {p.note}" if p.note else "")
            svg.el("line", {"x1": xv, "x2": xv, "y1": plan_y0, "y2": plan_y1, "stroke": _PLAN_COLOR,
                            "stroke-width": 2, "class": "planned launch",
                            "data-start": schedule.to_local(p.start, tz).isoformat()}, title=tip)

        rows = lane.run_jobs
        act_y0, act_y1 = y0 + 26, y0 + _LANE_H - 4
        row_h = (act_y1 - act_y0) / len(rows)
        for r in ran:
            j = rows.index(str(r.get("job_name")))
            start = r["start_time"]
            end = r.get("end_time") or max(now, start)
            status = str(r.get("status") or "")
            x0, x1 = x(start), x(end)
            secs = (end - start).total_seconds()
            tip = (f"{r.get('job_name')} {status}: {_fmt(start, tz, day)} - "
                   f"{_fmt(end, tz, day) if r.get('end_time') else 'now (running)'} ({secs:.0f} s)")
            if r.get("run_type"):
                tip += f", {r['run_type']} run"
            if r.get("row_count") is not None:
                tip += f", {r['row_count']} rows"
            if r.get("message"):
                tip += f"\n{r['message']}"
            link = href(r) if href else None
            if link:
                svg.add(f'<a href="{escape(link, quote=True)}" target="_top">')
            svg.el("rect", {"x": _num(x0), "y": _num(act_y0 + j * row_h + 1), "width": _num(max(2.0, x1 - x0)),
                            "height": _num(row_h - 2), "fill": STATUS_COLORS.get(status, _OTHER_STATUS),
                            "class": f"actual run status-{status.lower() or 'unknown'}",
                            "data-job": r.get("job_name"), "data-status": status}, title=tip)
            if link:
                svg.add("</a>")
        if len(rows) > 1:
            for j, name in enumerate(rows):
                svg.el("text", {"x": _LEFT - 6, "y": _num(act_y0 + j * row_h + row_h - 2), "font-size": 9,
                                "text-anchor": "end", "fill": "#757575"},
                       text=name.removeprefix("Job_").removesuffix("ICON").removesuffix("GIM").lower())
        svg.add("</g>")

    if d0 <= now < d1:
        xn = _num(x(now))
        svg.el("line", {"x1": xn, "x2": xn, "y1": _TOP - 4, "y2": plot_bottom, "stroke": "#d32f2f",
                        "stroke-width": 1.5, "stroke-dasharray": "4 3", "class": "now"},
               title=f"now: {_fmt(now, tz, day)}")
    if notice:
        svg.el("text", {"x": _LEFT + _PLOT_W / 2, "y": _TOP + len(LANES) * _LANE_H / 2,
                        "text-anchor": "middle", "font-size": 18, "fill": "#c62828", "class": "notice"},
               text=notice)

    # legend
    ly = plot_bottom + 22
    svg.add('<g class="legend">')
    lx = 12.0

    def item(width: float, draw: Callable[[float], None], text: str) -> None:
        nonlocal lx
        draw(lx)
        svg.el("text", {"x": _num(lx + width + 5), "y": ly + 4, "fill": "#424242"}, text=text)
        lx += width + 12 + 6.6 * len(text)

    item(2, lambda v: svg.el("line", {"x1": _num(v + 1), "x2": _num(v + 1), "y1": ly - 8, "y2": ly + 8,
                                      "stroke": _PLAN_COLOR, "stroke-width": 2}), "planned launch")
    item(22, lambda v: svg.el("rect", {"x": _num(v), "y": ly - 8, "width": 22, "height": 16, "fill": _WINDOW_COLOR,
                                       "fill-opacity": "0.18", "stroke": _WINDOW_COLOR}), "aggregation window")
    item(22, lambda v: svg.el("rect", {"x": _num(v), "y": ly - 5, "width": 22, "height": 10, "fill": _DEADLINE_COLOR,
                                       "fill-opacity": "0.5"}), "maintenance until next ETL (R9)")
    item(16, lambda v: svg.el("line", {"x1": _num(v), "x2": _num(v + 16), "y1": ly, "y2": ly, "stroke": "#d32f2f",
                                       "stroke-width": 1.5, "stroke-dasharray": "4 3"}), "now")
    lx = 12.0
    ly += 24
    svg.el("text", {"x": _num(lx), "y": ly + 4, "fill": "#424242"}, text="ran:")
    lx += 34
    for status, color in STATUS_COLORS.items():
        item(16, lambda v, c=color: svg.el("rect", {"x": _num(v), "y": ly - 6, "width": 16, "height": 12,
                                                    "fill": c}), status.lower())
    svg.add("</g>")
    svg.add("</svg>")
    return "\n".join(svg.parts) + "\n"
