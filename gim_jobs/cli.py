"""`gim`: the jobs and their tools from a shell, without Airflow."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
idb_app = typer.Typer(no_args_is_help=True, help="The ICON-like source database and its traffic simulator.")
db_app = typer.Typer(no_args_is_help=True, help="The embedded PostgreSQL under .gim/.")
app.add_typer(idb_app, name="idb")
app.add_typer(db_app, name="db")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="INI file (default $GIM_CONFIG or config/gim.ini)")]


def _json_default(o: Any) -> Any:
    if isinstance(o, dt.datetime | dt.date):
        return o.isoformat()
    return str(o)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=_json_default))


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("check-config")
def check_config_cmd(config: ConfigOpt = None) -> None:
    """Validate the configuration (R21): exit 0 with a summary, or 1 with one line per problem."""
    from gim_jobs.config import check_config, summary

    res = check_config(config)
    for p in res.warnings:
        typer.echo(f"warning: {p}", err=True)
    if not res.ok:
        for p in res.errors:
            typer.echo(f"error: {p}")
        typer.echo(f"{len(res.errors)} error(s) in {res.path}: no job will start until they are fixed")
        raise typer.Exit(1)
    assert res.config is not None
    typer.echo(summary(res.config))


@app.command("init-db")
def init_db_cmd(idb: Annotated[bool, typer.Option(help="also create/upgrade the IDB schema of every source")] = True) -> None:
    """Create or upgrade the Info Mart (and IDB) schemas; running it again changes nothing."""
    from gim_jobs.db.connect import idb_sources, infomart_dsn, redact
    from gim_jobs.db.migrate import migrate

    dsn = infomart_dsn()
    applied = migrate(dsn, "infomart")
    typer.echo(f"Info Mart {redact(dsn)}: " + (f"applied {applied}" if applied else "up to date"))
    if idb:
        for src in idb_sources():
            applied = migrate(src.dsn, "idb")
            typer.echo(f"IDB {src.name} {redact(src.dsn)}: " + (f"applied {applied}" if applied else "up to date"))


@app.command("schedule")
def schedule_cmd(
    date: Annotated[str, typer.Option("--date", help="YYYY-MM-DD, a day in the configured time zone")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    svg: Annotated[Path | None, typer.Option("--svg", help="also write the day's timeline picture (SVG) here")] = None,
    runs: Annotated[bool, typer.Option("--runs/--no-runs",
                                       help="--svg: overlay the runs recorded in the Info Mart that day")] = True,
    config: ConfigOpt = None,
) -> None:
    """What the scheduler will start that day, in the configured time zone (--svg: as a picture)."""
    from gim_jobs import schedule
    from gim_jobs.config import ConfigError, load_config

    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        typer.echo(f"error: --date {date!r} is not a date YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    s = cfg.schedule
    plan = schedule.plan_day(day, s)
    rows = schedule.plan_to_json(plan, s.timezone)
    if svg is not None:
        _write_day_svg(day, config, svg, runs)
    if as_json:
        _echo_json({"date": day.isoformat(), "timezone": s.timezone, "run_scheduler": s.run_scheduler,
                    "launches": rows})
        return
    if not s.run_scheduler:
        typer.echo("run-scheduler = false: the scheduler starts nothing (R4)")
        return
    typer.echo(f"{day.isoformat()} ({s.timezone}): {len(rows)} scheduled launches")
    for r in rows:
        end = f" - {r['end']}" if r.get("end") else ""
        typer.echo(f"  {r['start']}{end}  {r['job']:<16} {r['dag_id']:<18} {r.get('note') or ''}")


def _write_day_svg(day: dt.date, config: Path | None, path: Path, runs: bool) -> None:
    """``gim schedule --svg``: the same picture as the Info Mart Manager's schedule page."""
    from gim_jobs.status import day_view

    dsn = None
    if runs:
        try:
            from gim_jobs.db.connect import infomart_dsn

            dsn = infomart_dsn()
            view = day_view(day, config, dsn=dsn)
        except Exception as exc:  # noqa: BLE001 - the plan alone is still worth drawing
            typer.echo(f"warning: runs not shown, the Info Mart is not readable: {exc}", err=True)
            dsn = None
    if dsn is None:
        view = day_view(day, config)
    path.write_text(view["svg"], encoding="utf-8")
    typer.echo(f"wrote {path} ({len(view['launches'])} planned launches, {len(view['actual'])} runs)", err=True)


@app.command("run")
def run_cmd(
    job: Annotated[str, typer.Argument(help="extract | transform | aggregate | maintain (or Job_* name)")],
    wait: Annotated[float, typer.Option(help="seconds to wait if the job is already running (R5)")] = 0.0,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="job parameter KEY=VALUE")] = None,
    scheduled: Annotated[bool, typer.Option("--scheduled", help="act as the scheduler (external cron)")] = False,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run one job now, with every start rule applied (config check, R5, R15)."""
    from gim_jobs.control import JobError, run_job

    _setup_logging(verbose)
    params: dict[str, str] = {}
    for p in param or []:
        if "=" not in p:
            typer.echo(f"error: --param {p!r} must be KEY=VALUE", err=True)
            raise typer.Exit(2)
        k, v = p.split("=", 1)
        params[k] = v
    if params.get("insertPendingAgg") and _hand_to_running_aggregation(job, params["insertPendingAgg"]):
        return
    try:
        out = run_job(job, run_type="scheduled" if scheduled else "cli", params=params, wait_seconds=wait,
                      config_path=config)
    except JobError as exc:
        typer.echo(f"{exc.status}: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(f"{out.job.name} {out.status}: {out.rows} rows in {out.seconds:.1f} s"
               + (f" ({out.message})" if out.message else ""))


def _hand_to_running_aggregation(job: str, value: str) -> bool:
    """R19/R20 from a shell: while Job_AggregateGIM runs, a re-aggregation request is validated and
    queued for the running aggregation (as a trigger of gim_aggregate does), instead of being refused
    as a second instance (R5). Returns True when it was queued."""
    from gim_jobs.aggregation.params import BadRequest, parse
    from gim_jobs.control import running_jobs
    from gim_jobs.db.connect import infomart_dsn
    from gim_jobs.jobs.aggregate import submit_request
    from gim_jobs.registry import UnknownJob, job_def

    try:
        if job_def(job).key != "aggregate":
            return False
    except UnknownJob:
        return False
    try:
        req = parse(value)
    except BadRequest as exc:
        typer.echo(f"REFUSED: {exc}", err=True)
        raise typer.Exit(2) from None
    dsn = infomart_dsn()
    if req is None or not any(r["job_name"] == "Job_AggregateGIM" for r in running_jobs(dsn)):
        return False
    try:
        rid = submit_request(dsn, req)
    except BadRequest as exc:
        typer.echo(f"REFUSED: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Job_AggregateGIM runs: re-aggregation {req.text!r} queued (request {rid}); "
               "the running aggregation deletes and recomputes that range (R20)")
    return True


@app.command("stop")
def stop_cmd(job: Annotated[str, typer.Argument(help="job to stop")],
             reason: Annotated[str, typer.Option(help="recorded in the job history")] = "stopped by operator") -> None:
    """Ask a running job to stop at its next batch boundary (R18); it keeps what it committed."""
    from gim_jobs.control import request_stop
    from gim_jobs.db.connect import infomart_dsn
    from gim_jobs.registry import UnknownJob, job_def

    try:
        jd = job_def(job)
    except UnknownJob as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if request_stop(infomart_dsn(), jd.name, reason):
        typer.echo(f"{jd.name}: stop requested")
    else:
        typer.echo(f"{jd.name} is not running")


@app.command("status")
def status_cmd(as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOpt = None) -> None:
    """Is the mart current? Data lag and alarm, config check, running and last jobs, what runs next."""
    from gim_jobs.db.connect import infomart_dsn
    from gim_jobs.status import status
    from gim_jobs.ui_templates.pages import fmt_duration, fmt_time

    st = status(infomart_dsn(), config)
    if as_json:
        _echo_json(st)
        return
    tz = st["timezone"]

    def t(at: Any) -> str:
        return fmt_time(at, tz) if at else "never"

    typer.echo(f"Info Mart status at {fmt_time(st['now'], tz)} {tz}")
    c = st["config"]
    typer.echo(f"configuration {c['path']}: {'OK' if c['ok'] else 'ERRORS (no job will start, R21)'}"
               + (f", {len(c['warnings'])} warning(s)" if c["warnings"] else ""))
    for err in c["errors"]:
        typer.echo(f"  error: {err}")
    if st["run_scheduler"] is False:
        typer.echo("run-scheduler = false: scheduled launches are paused (R4)")
    threshold = st["delayed_data_threshold"]
    if st["alarm"]:
        for m in st["alarm_messages"]:
            typer.secho(f"*** ALARM {m} ***", fg="red", bold=True)
    elif st["alarm"] is None:
        typer.echo("data: nothing extracted yet, lag unknown")
    else:
        lag = max(s["lag_seconds"] for s in st["sources"] if s["lag_seconds"] is not None)
        typer.echo(f"data: current, at most {fmt_duration(lag)} behind (delayed-data-threshold {threshold} s)")
    typer.echo("running: " + (", ".join(f"{r['job_name']} ({r['run_type']} since {t(r['started_at'])})"
                                        for r in st["running"]) or "nothing"))
    typer.echo(f"{'job':<17} {'last run':<9} {'started':<19} {'duration':>12} {'rows':>8}  "
               f"{'last success':<19} failed-24h")
    for name, j in st["jobs"].items():
        dur = (j["last_end"] - j["last_start"]).total_seconds() if j["last_start"] and j["last_end"] else None
        typer.echo(f"{name:<17} {j['last_status'] or '-':<9} {t(j['last_start']):<19} {fmt_duration(dur):>12} "
                   f"{j['last_rows'] if j['last_status'] else '':>8}  {t(j['last_success']):<19} {j['failed_24h']}")
        if j["last_status"] in ("FAILED", "REFUSED", "STOPPED") and j["last_message"]:
            typer.echo(f"    {j['last_message'].splitlines()[0][:150]}")
    for s in st["sources"]:
        flag = "ALARM" if s["alarm"] else "ok" if s["alarm"] is not None else "no events yet"
        typer.echo(f"source {s['data_source']}: newest event {t(s['newest_event'])}, lag "
                   f"{fmt_duration(s['lag_seconds']) or '-'} [{flag}]; last extracted {t(s['last_extracted'])}")
    for x in st["extraction"]:
        typer.echo(f"  {x['data_source']:<10} {x['table_name']:<22} {x['role']:<9} hwm {x['hwm_useq']:<10} "
                   f"newest {fmt_time(x['newest_event'], tz) or '-':<19} lag {fmt_duration(x['lag_seconds']) or '-':>14}"
                   + ("  late" if x["late"] else ""))

    def n(v: Any) -> str:
        return "n/a" if v is None else str(v)

    typer.echo(f"interaction_fact rows {n(st['interaction_facts'])}; discards {n(st['discards'])}; "
               f"waiting in transform {n(st['transform_waiting'])}; pending aggregation intervals "
               f"{st['pending_aggregation']}")
    outside = {k: v for k, v in st.get("default_partitions", {}).items() if v}
    if outside:
        from gim_jobs.status import DEFAULT_PARTITION_COUNT_LIMIT as lim

        typer.echo("rows outside every partition (default partitions; Job_MaintainGIM moves them into "
                   "partitions on its next run): " + ", ".join(
                       f"{k} {'>= ' if v >= lim else ''}{v}" for k, v in outside.items()))
    elif "default_partitions" in st:
        typer.echo("default partitions: empty")
    for x in st["next_launches"]:
        when = (f"window open until {t(x['end'])}" if x["open_now"] else t(x["start"]))
        typer.echo(f"next: {x['job']:<17} {when}")


@app.command("history")
def history_cmd(job: Annotated[str | None, typer.Option(help="job: extract, Job_ExtractICON or a DAG id")] = None,
                status: Annotated[str | None, typer.Option(help="RUNNING, COMPLETED, FAILED, STOPPED, REFUSED, SKIPPED")] = None,
                limit: int = 20, offset: int = 0, as_json: Annotated[bool, typer.Option("--json")] = False,
                config: ConfigOpt = None) -> None:
    """Job history from ctl_etl_history, newest first."""
    from gim_jobs.config import check_config
    from gim_jobs.db.connect import infomart_dsn
    from gim_jobs.registry import UnknownJob
    from gim_jobs.status import history
    from gim_jobs.ui_templates.pages import fmt_duration, fmt_time

    try:
        rows = history(infomart_dsn(), job=job, status=status, limit=limit, offset=offset)
    except UnknownJob as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        _echo_json(rows)
        return
    chk = check_config(config)
    tz = chk.config.schedule.timezone if chk.config else "UTC"
    if not rows:
        typer.echo("no runs match")
    for r in rows:
        where = f"{r['dag_id']} {r['run_id']}" if r["run_id"] else "(no Airflow run)"
        typer.echo(f"{fmt_time(r['start_time'], tz)} {r['job_name']:<17} {r['status']:<9} {r['run_type']:<9} "
                   f"{fmt_duration(r['seconds']):>12} rows {r['row_count']:<8} {where}")
        if r["message"]:
            typer.echo(f"    {r['message'].splitlines()[0][:160]}")


@idb_app.command("simulate")
def simulate_cmd(
    interactions: Annotated[int, typer.Option(help="batch mode: this many interactions")] = 0,
    hours: Annotated[float, typer.Option(help="batch mode: spread over this many hours ending now")] = 24.0,
    rate: Annotated[float, typer.Option(help="live mode: interactions per minute until Ctrl-C")] = 0.0,
    seed: int = 1,
    faults: Annotated[bool, typer.Option(help="inject late/out-of-order/duplicate/orphan rows")] = False,
) -> None:
    """Write simulated contact-center traffic into the IDB (batch, or live until stopped)."""
    import threading

    from gim_jobs.db.connect import idb_sources
    from gim_jobs.db.migrate import migrate
    from gim_jobs.idb import simulator

    if (interactions > 0) == (rate > 0):
        typer.echo("error: give either --interactions N (batch) or --rate N (live, per minute)", err=True)
        raise typer.Exit(2)
    src = idb_sources()[0]
    migrate(src.dsn, "idb")
    cfg = simulator.SimConfig(seed=seed)
    fspec = simulator.FaultSpec.default() if faults else None
    if interactions:
        span = int(hours * 3600)
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=span)
        summ = simulator.simulate_batch(src.dsn, interactions=interactions, start=start, span_seconds=span,
                                        config=cfg, faults=fspec)
        typer.echo(f"wrote {summ}")
        return
    stop = threading.Event()
    typer.echo(f"live traffic into {src.name}: {rate}/min, Ctrl-C to stop")
    try:
        simulator.run_live(src.dsn, rate, stop, config=cfg, faults=fspec)
    except KeyboardInterrupt:
        stop.set()


@db_app.command("start")
def db_start() -> None:
    """Start (or find) the embedded PostgreSQL and print its admin URI."""
    from gim_jobs.db.embedded import server_uri

    typer.echo(server_uri())


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL."""
    from gim_jobs.db.embedded import stop_server

    typer.echo("stopped" if stop_server() else "not running")


@app.command("demo")
def demo_cmd(
    port: Annotated[int, typer.Option(help="Airflow UI port")] = 8080,
    rate: Annotated[float, typer.Option(help="simulated interactions per minute")] = 30.0,
    history_hours: Annotated[float, typer.Option(help="hours of past traffic to seed on first start")] = 6.0,
) -> None:
    """The whole system on the embedded defaults: PostgreSQL, live IDB traffic, Airflow + UI."""
    from gim_jobs.demo import run_demo

    sys.exit(run_demo(port=port, rate=rate, history_hours=history_hours))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
