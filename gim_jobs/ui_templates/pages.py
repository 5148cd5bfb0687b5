"""The Info Mart Manager pages as HTML strings: status, job history, the day's schedule.

Plain f-strings; every value from the database or the configuration goes through :func:`e`
(``html.escape``). The pages live under the plugin's prefix (``/gim/``) and link to each other and
to the Airflow UI with *relative* URLs (``history``, ``../dags/...``), so they work behind a base
path and inside the Airflow UI's iframe. No JavaScript is needed to read them; one small inline
script only makes links to Airflow runs open in the Airflow UI around the iframe instead of inside
it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from gim_jobs.registry import JOBS
from gim_jobs.status import JOB_STATUSES

UI_ROOT = "../"
"""From a page under ``/gim/`` to the Airflow UI root."""


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def fmt_time(at: dt.datetime | None, tz: str, *, seconds: bool = True) -> str:
    if at is None:
        return ""
    from gim_jobs import schedule

    return schedule.to_local(at, tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def fmt_duration(seconds: float | int | None) -> str:
    if seconds is None:
        return ""
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def badge(status: str | None) -> str:
    if not status:
        return '<span class="badge none">never ran</span>'
    return f'<span class="badge s-{e(status.lower())}">{e(status)}</span>'


def airflow_links(row: Mapping[str, Any]) -> str:
    paths = row.get("airflow")
    if not paths:
        return '<span class="muted">no Airflow run</span>'
    out = f'<a class="airflow-link" target="_top" href="{e(UI_ROOT + paths["run"])}">run</a>'
    if paths.get("log"):
        out += f' · <a class="airflow-link" target="_top" href="{e(UI_ROOT + paths["log"])}">log</a>'
    return out


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; font-size: 14px;
       color: #1f2933; background: #f5f7fa; margin: 0; }
header { background: #017cee; color: #fff; padding: 10px 20px; display: flex; align-items: center;
         gap: 28px; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
header nav a { color: #e3f2fd; text-decoration: none; margin-right: 18px; padding: 4px 0; }
header nav a.active { color: #fff; border-bottom: 2px solid #fff; font-weight: 600; }
header .asof { margin-left: auto; font-size: 12px; color: #e3f2fd; }
main { padding: 16px 20px 32px; max-width: 1400px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 0 0 10px; font-weight: 600; }
.banner ul { margin: 6px 0 0; font-weight: normal; }
.ok { background: #e8f5e9; color: #1b5e20; border: 1px solid #a5d6a7; }
.alarm { background: #ffebee; color: #b71c1c; border: 1px solid #ef9a9a; }
.warn { background: #fff8e1; color: #8d5300; border: 1px solid #ffe082; }
.info { background: #eceff1; color: #37474f; border: 1px solid #cfd8dc; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #dde3ea; border-radius: 6px; padding: 10px 14px; }
.card h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: #52606d; margin: 0 0 6px; }
.card dl { display: grid; grid-template-columns: auto 1fr; gap: 3px 14px; margin: 0; }
.card dt { color: #52606d; } .card dd { margin: 0; font-weight: 600; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #dde3ea; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #edf0f3; vertical-align: top; }
th { background: #eef2f6; font-weight: 600; font-size: 12px; color: #3e4c59; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.msg { max-width: 520px; white-space: pre-wrap; word-break: break-word; font-size: 12px; }
tr.late td { background: #fff3e0; } tr.alarm td { background: #ffebee; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 11px; font-weight: 700;
         color: #fff; background: #546e7a; }
.s-completed { background: #2e7d32; } .s-running { background: #1e88e5; } .s-failed { background: #c62828; }
.s-stopped { background: #ef6c00; } .s-refused { background: #8e24aa; } .s-skipped { background: #9e9e9e; }
.badge.none { background: #cfd8dc; color: #37474f; }
.flag { font-weight: 700; } .flag.on { color: #c62828; } .flag.off { color: #2e7d32; }
.muted { color: #7b8794; }
a { color: #0b5cad; }
form.filters { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; margin: 6px 0 12px; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: #52606d; gap: 3px; }
form.filters select, form.filters input { font-size: 14px; padding: 4px 6px; }
form.filters button { font-size: 14px; padding: 5px 14px; }
.svgbox { background: #fff; border: 1px solid #dde3ea; border-radius: 6px; padding: 6px; overflow-x: auto; }
details summary { cursor: pointer; color: #0b5cad; margin: 6px 0; }
footer { color: #7b8794; font-size: 12px; padding: 0 20px 20px; }
"""

# Inside the Airflow UI (an iframe without allow-top-navigation) a link to an Airflow page would
# open the whole UI inside the frame; let the UI around it route there instead. Plain links
# still work when the page is opened on its own.
_SCRIPT = """
(function () {
  if (window.parent === window) return;
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a.airflow-link");
    if (!a || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    try {
      var url = new URL(a.getAttribute("href"), document.baseURI);
      var p = window.parent;
      if (url.origin !== p.location.origin) return;
      var st = p.history.state || {};
      p.history.pushState({usr: null, key: Math.random().toString(36).slice(2, 10),
                           idx: (typeof st.idx === "number" ? st.idx + 1 : 0)}, "",
                          url.pathname + url.search + url.hash);
      p.dispatchEvent(new PopStateEvent("popstate", {state: p.history.state}));
      ev.preventDefault();
    } catch (err) { /* fall back to a normal navigation */ }
  });
})();
"""

_ACTIVE = ' class="active"'
_NAV = (("status", "./", "ETL status"), ("history", "history", "Job history"), ("schedule", "schedule", "Schedule"))


def layout(title: str, active: str, body: str, *, now: dt.datetime, tz: str, refresh: int | None = None) -> str:
    nav = "".join(
        f'<a href="{href}"{_ACTIVE if key == active else ""}>{e(label)}</a>' for key, href, label in _NAV
    )
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{meta}<title>{e(title)} · Info Mart Manager</title><style>{_CSS}</style></head>
<body data-page="{e(active)}">
<header><h1>Info Mart Manager</h1><nav>{nav}</nav>
<span class="asof">as of {e(fmt_time(now, tz))} {e(tz)}</span></header>
<main>
{body}
</main>
<footer>gim-airflow · times in {e(tz)} (the configured [schedule] timezone) · JSON:
<a href="api/{e(active)}">api/{e(active)}</a></footer>
<script>{_SCRIPT}</script>
</body></html>
"""


def error_page(title: str, message: str, *, now: dt.datetime, tz: str = "UTC", active: str = "status") -> str:
    return layout(title, active, f'<div class="banner alarm">{e(title)}<ul><li>{e(message)}</li></ul></div>',
                  now=now, tz=tz)


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------


def _banners(st: Mapping[str, Any], tz: str) -> str:
    out = []
    cfg = st["config"]
    if not cfg["ok"]:
        items = "".join(f"<li>{e(p)}</li>" for p in cfg["errors"])
        out.append(f'<div class="banner alarm" id="config-errors">Configuration check: {len(cfg["errors"])} '
                   f'error(s) in {e(cfg["path"])}; no job will start until they are fixed (R21)<ul>{items}</ul></div>')
    threshold = st["delayed_data_threshold"]
    if st["alarm"]:
        items = "".join(f"<li>{e(m)}</li>" for m in st["alarm_messages"])
        out.append(f'<div class="banner alarm" id="data-alarm">ALARM: delayed data (lag over '
                   f'delayed-data-threshold = {e(threshold)} s)<ul>{items}</ul></div>')
    elif st["alarm"] is None:
        out.append('<div class="banner info" id="data-alarm">No event data extracted yet: the data lag is '
                   'unknown until Job_ExtractICON has run.</div>')
    else:
        lags = [s["lag_seconds"] for s in st["sources"] if s["lag_seconds"] is not None]
        out.append(f'<div class="banner ok" id="data-alarm">The mart is current: newest event '
                   f'{e(fmt_duration(max(lags)))} behind at most (delayed-data-threshold {e(threshold)} s)</div>')
    failed = {n: j["failed_24h"] for n, j in st["jobs"].items() if j["failed_24h"]}
    if failed:
        parts = ", ".join(f'<a href="history?{e(urlencode({"job": n, "status": "FAILED"}))}">{e(n)} {c}</a>'
                          for n, c in failed.items())
        out.append(f'<div class="banner warn" id="failures">Failed runs in the last 24 h: {parts}</div>')
    if st.get("run_scheduler") is False:
        out.append('<div class="banner warn">run-scheduler = false: scheduled launches are paused (R4)</div>')
    return "\n".join(out)


def _onoff(v: bool | None) -> str:
    return "n/a" if v is None else str(v).lower()


def _cards(st: Mapping[str, Any], tz: str) -> str:
    running = st["running"]
    if running:
        run_rows = "".join(
            f"<dt>{e(r['job_name'])}</dt><dd>{e(r['run_type'])} since {e(fmt_time(r['started_at'], tz))}"
            + (" <span class='flag on'>stop requested</span>" if r.get("stop_requested") else "") + "</dd>"
            for r in running
        )
    else:
        run_rows = "<dt>nothing</dt><dd></dd>"
    nxt = st["next_launches"]
    if nxt:
        next_rows = "".join(
            f"<dt>{e(n['job'])}</dt><dd>"
            + (f"window open until {e(fmt_time(n['end'], tz, seconds=False))}" if n["open_now"]
               else e(fmt_time(n["start"], tz, seconds=False))
               + (f" - {e(fmt_time(n['end'], tz, seconds=False))}" if n["end"] else ""))
            + "</dd>"
            for n in nxt
        )
    else:
        next_rows = "<dt>nothing scheduled</dt><dd></dd>"
    pend = st["pending_aggregation"]
    dflt = {k: v for k, v in st.get("default_partitions", {}).items() if v}
    outside = ", ".join(f"{k} {v}" for k, v in dflt.items()) if dflt else ("none" if "default_partitions" in st else "n/a")
    counts = (
        f"<dt>interaction_fact rows</dt><dd id='facts'>{e(st['interaction_facts'] if st['interaction_facts'] is not None else 'n/a')}</dd>"
        f"<dt>rows in discards</dt><dd id='discards'>{e(st['discards'] if st['discards'] is not None else 'n/a')}</dd>"
        f"<dt>rows waiting in transform</dt><dd>{e(st['transform_waiting'] if st['transform_waiting'] is not None else 'n/a')}</dd>"
        f"<dt>pending aggregation intervals</dt><dd id='pending-agg'>{e(pend)}</dd>"
        f"<dt>rows outside every partition</dt><dd id='default-partitions' "
        f"title='rows in default partitions: Job_MaintainGIM moves them into time partitions'>{e(outside)}</dd>"
    )
    cfg = st["config"]
    cfg_state = ("<span class='flag off'>OK</span>" if cfg["ok"]
                 else f"<span class='flag on'>{len(cfg['errors'])} error(s)</span>")
    cfg_rows = (f"<dt>configuration</dt><dd id='config-state'>{cfg_state}</dd>"
                f"<dt>file</dt><dd>{e(cfg['path'])}</dd><dt>warnings</dt><dd>{len(cfg['warnings'])}</dd>"
                f"<dt>run-scheduler</dt><dd>{e(_onoff(st.get('run_scheduler')))}</dd>")
    return f"""<div class="cards">
<div class="card" id="running"><h3>Running now</h3><dl>{run_rows}</dl></div>
<div class="card" id="next"><h3>Runs next</h3><dl>{next_rows}</dl></div>
<div class="card" id="counts"><h3>Mart</h3><dl>{counts}</dl></div>
<div class="card" id="config"><h3>Configuration check</h3><dl>{cfg_rows}</dl></div>
</div>"""


def _jobs_table(st: Mapping[str, Any], tz: str) -> str:
    rows = []
    for jd in JOBS.values():
        j = st["jobs"].get(jd.name, {})
        dur = None
        if j.get("last_start") and j.get("last_end"):
            dur = (j["last_end"] - j["last_start"]).total_seconds()
        run = {"dag_id": j.get("last_dag_id"), "run_id": j.get("last_run_id")}
        link = ""
        if run["dag_id"] and run["run_id"]:
            from gim_jobs.status import airflow_paths

            paths = airflow_paths({**run, "task_id": jd.key})
            link = airflow_links({"airflow": paths})
        rows.append(
            f"<tr data-job='{e(jd.name)}'><td><a href='history?{e(urlencode({'job': jd.name}))}'>{e(jd.name)}</a></td>"
            f"<td>{badge(j.get('last_status'))}</td><td>{e(fmt_time(j.get('last_start'), tz))}</td>"
            f"<td class='num'>{e(fmt_duration(dur))}</td><td class='num'>{e(j.get('last_rows') if j.get('last_status') else '')}</td>"
            f"<td class='last-success'>{e(fmt_time(j.get('last_success'), tz)) or '<span class=muted>never</span>'}</td>"
            f"<td class='num'>{e(j.get('failed_24h') or '')}</td><td class='msg'>{e(j.get('last_message'))}</td>"
            f"<td>{link}</td></tr>"
        )
    return ("<table id='jobs'><tr><th>job</th><th>last run</th><th>started</th><th class='num'>duration</th>"
            "<th class='num'>rows</th><th>last success (end)</th><th class='num'>failed 24 h</th><th>message</th>"
            "<th>Airflow</th></tr>" + "".join(rows) + "</table>")


def _sources_table(st: Mapping[str, Any], tz: str) -> str:
    if not st["sources"]:
        return "<p class='muted'>No extraction high-water marks yet.</p>"
    threshold = st["delayed_data_threshold"]
    rows = []
    for s in st["sources"]:
        cls = " class='alarm'" if s["alarm"] else ""
        flag = ("<span class='flag on'>ALARM</span>" if s["alarm"]
                else "<span class='muted'>unknown</span>" if s["alarm"] is None else "<span class='flag off'>ok</span>")
        rows.append(
            f"<tr{cls} data-source='{e(s['data_source'])}'><td>{e(s['data_source'])}</td>"
            f"<td>{e(fmt_time(s['newest_event'], tz))}</td><td class='num'>{e(fmt_duration(s['lag_seconds']))}</td>"
            f"<td>{flag}</td><td>{e(fmt_time(s['last_extracted'], tz))}</td><td class='num'>{e(s['tables'])}</td>"
            f"<td class='num'>{e(s['rows_extracted'])}</td></tr>"
        )
    return (f"<table id='sources'><tr><th>IDB source</th><th>newest event (data clock)</th><th class='num'>lag</th>"
            f"<th>alarm (&gt; {e(threshold)} s)</th><th>last extracted</th><th class='num'>tables</th>"
            "<th class='num'>rows extracted</th></tr>" + "".join(rows) + "</table>")


def _extraction_table(st: Mapping[str, Any], tz: str) -> str:
    if not st["extraction"]:
        return ""
    rows = []
    for x in st["extraction"]:
        cls = " class='late'" if x["late"] else ""
        kind = "events" if x["event_table"] else "configuration"
        rows.append(
            f"<tr{cls}><td>{e(x['data_source'])}</td><td>{e(x['table_name'])}</td><td>{e(x['role'])}</td>"
            f"<td class='muted'>{kind}</td><td class='num'>{e(x['hwm_useq'])}</td>"
            f"<td>{e(fmt_time(x['newest_event'], tz))}</td><td class='num'>{e(fmt_duration(x['lag_seconds']))}</td>"
            f"<td class='num'>{e(x['row_count'])}</td><td>{e(fmt_time(x['updated'], tz))}</td></tr>"
        )
    return ("<table id='extraction'><tr><th>source</th><th>table</th><th>role</th><th>kind</th>"
            "<th class='num'>high-water mark (gsys_useq)</th><th>newest event</th><th class='num'>lag</th>"
            "<th class='num'>rows extracted</th><th>mark updated</th></tr>" + "".join(rows) + "</table>")


def status_page(st: Mapping[str, Any]) -> str:
    tz = st["timezone"]
    discards = ""
    if st["discards_by_code"]:
        discards = ("<h2>Discards by reason</h2><table id='discard-codes'><tr><th>code</th><th class='num'>rows</th></tr>"
                    + "".join(f"<tr><td>{e(d['code'])}</td><td class='num'>{e(d['rows'])}</td></tr>"
                              for d in st["discards_by_code"]) + "</table>")
    warnings = ""
    if st["config"]["warnings"]:
        warnings = ("<details><summary>configuration warnings</summary><ul>"
                    + "".join(f"<li>{e(w)}</li>" for w in st["config"]["warnings"]) + "</ul></details>")
    body = f"""{_banners(st, tz)}
{_cards(st, tz)}
<h2>Jobs</h2>
{_jobs_table(st, tz)}
<h2>Data sources (delayed-data-threshold {e(st['delayed_data_threshold'])} s)</h2>
{_sources_table(st, tz)}
<h2>Extraction high-water marks per table</h2>
{_extraction_table(st, tz)}
{discards}
{warnings}"""
    return layout("ETL status", "status", body, now=st["now"], tz=tz, refresh=60)


# ---------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------


def history_page(rows: Sequence[Mapping[str, Any]], *, job: str | None, status: str | None, limit: int,
                 offset: int, now: dt.datetime, tz: str, error: str | None = None) -> str:
    job_opts = "<option value=''>all jobs</option>" + "".join(
        f"<option value='{e(j.name)}'{' selected' if job == j.name else ''}>{e(j.name)}</option>" for j in JOBS.values()
    )
    st_opts = "<option value=''>all statuses</option>" + "".join(
        f"<option value='{s}'{' selected' if status == s else ''}>{s}</option>" for s in JOB_STATUSES
    )
    form = f"""<form class="filters" method="get" action="history">
<label>job<select name="job">{job_opts}</select></label>
<label>status<select name="status">{st_opts}</select></label>
<label>rows<input type="number" name="limit" min="1" max="1000" value="{e(limit)}"></label>
<button type="submit">Filter</button></form>"""
    if error:
        return layout("Job history", "history", form + f'<div class="banner alarm">{e(error)}</div>', now=now, tz=tz)
    trs = []
    for r in rows:
        trs.append(
            f"<tr data-job='{e(r['job_name'])}' data-status='{e(r['status'])}'><td>{e(r['job_name'])}</td>"
            f"<td>{e(fmt_time(r['start_time'], tz))}</td><td>{e(fmt_time(r['end_time'], tz))}</td>"
            f"<td class='num'>{e(fmt_duration(r['seconds']))}</td><td>{badge(r['status'])}</td>"
            f"<td class='num'>{e(r['row_count'])}</td><td>{e(r['run_type'])}</td>"
            f"<td class='msg'>{e(r['message'])}</td><td>{airflow_links(r)}</td></tr>"
        )
    if not trs:
        table = "<p class='muted' id='no-rows'>No runs match.</p>"
    else:
        table = ("<table id='history'><tr><th>job</th><th>start</th><th>end</th><th class='num'>duration</th>"
                 "<th>status</th><th class='num'>rows</th><th>run type</th><th>message / error</th><th>Airflow</th></tr>"
                 + "".join(trs) + "</table>")
    pager = []
    base = {k: v for k, v in (("job", job), ("status", status), ("limit", limit)) if v}
    if offset > 0:
        pager.append(f"<a href='history?{e(urlencode({**base, 'offset': max(0, offset - limit)}))}'>newer</a>")
    if len(rows) >= limit:
        pager.append(f"<a href='history?{e(urlencode({**base, 'offset': offset + limit}))}'>older</a>")
    body = (form + f"<p class='muted'>{len(rows)} run(s), newest first"
            + (f", from #{offset + 1}" if offset else "") + "</p>" + table
            + (f"<p>{' · '.join(pager)}</p>" if pager else ""))
    return layout("Job history", "history", body, now=now, tz=tz)


# ---------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------


def schedule_page(view: Mapping[str, Any], *, now: dt.datetime) -> str:
    tz = view["timezone"]
    day = dt.date.fromisoformat(view["date"])
    prev_d, next_d = day - dt.timedelta(days=1), day + dt.timedelta(days=1)
    form = f"""<form class="filters" method="get" action="schedule">
<a href="schedule?date={prev_d.isoformat()}">&larr; {prev_d.isoformat()}</a>
<label>day ({e(tz)})<input type="date" name="date" value="{e(view['date'])}"></label>
<button type="submit">Show</button>
<a href="schedule?date={next_d.isoformat()}">{next_d.isoformat()} &rarr;</a>
<a href="schedule">today</a> · <a href="schedule.svg?date={e(view['date'])}">SVG file</a></form>"""
    counts: dict[str, int] = {}
    for launch in view["launches"]:
        counts[launch["job"]] = counts.get(launch["job"], 0) + 1
    summary = ", ".join(f"{e(k)} {v}" for k, v in counts.items()) or "nothing"
    launches = "".join(
        f"<tr><td>{e(launch['start'][11:16])}</td><td>{e(launch['end'][:16].replace('T', ' ') if launch['end'] else '')}</td>"
        f"<td>{e(launch['job'])}</td><td>{e(launch['dag_id'])}</td><td class='msg'>{e(launch['note'])}</td></tr>"
        for launch in view["launches"]
    )
    ran = "".join(
        f"<tr><td>{e(r['job_name'])}</td><td>{e(fmt_time(r['start_time'], tz))}</td>"
        f"<td>{e(fmt_time(r['end_time'], tz))}</td><td class='num'>{e(fmt_duration(r['seconds']))}</td>"
        f"<td>{badge(r['status'])}</td><td class='num'>{e(r['row_count'])}</td><td>{airflow_links(r)}</td></tr>"
        for r in view["actual"]
    )
    body = f"""{form}
<p>Planned for {e(view['date'])} ({e(tz)}): {summary}. Runs recorded that day: {len(view['actual'])}.
Hover a mark or bar for details; click a run to open it in Airflow.</p>
<div class="svgbox" id="timeline">{view['svg']}</div>
<h2>Runs recorded that day</h2>
{"<table id='day-runs'><tr><th>job</th><th>start</th><th>end</th><th class='num'>duration</th><th>status</th><th class='num'>rows</th><th>Airflow</th></tr>" + ran + "</table>" if ran else "<p class='muted'>none</p>"}
<details><summary>All {len(view['launches'])} planned launches</summary>
<table id='launches'><tr><th>start</th><th>end</th><th>job</th><th>DAG</th><th>note</th></tr>{launches}</table></details>"""
    return layout(f"Schedule {view['date']}", "schedule", body, now=now, tz=tz)
