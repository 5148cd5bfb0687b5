"""Info Mart Manager in the Airflow UI: ETL status, job history and the day's schedule.

A FastAPI app mounted by the api-server under ``/gim`` plus a nav entry (an external view the UI
shows in an iframe). Every route requires a logged-in Airflow user through Airflow's own
dependency ``requires_authenticated()`` (a plugin's routes are public otherwise): a browser that is
not logged in is sent to Airflow's login page and comes back after it, any other client gets
401/403. The OpenAPI/docs routes of the app are switched off, so nothing under ``/gim`` answers
without a login.

Routes (all GET, under ``/gim``): ``/`` status page, ``/history?job=&status=&limit=&offset=``,
``/schedule?date=YYYY-MM-DD`` (page with the inline SVG), ``/schedule.svg?date=``, and the JSON
twins ``/api/status``, ``/api/history``, ``/api/schedule``. The facts come from
``gim_jobs.status`` -- the functions ``gim status`` / ``gim history`` / ``gim schedule`` print.

The Info Mart: the Airflow connection ``gim_infomart`` if defined (read server-side from the
secrets backends / metadata DB), else ``GIM_INFOMART_DSN`` or the embedded PostgreSQL.

Plugins are imported by every Airflow process, so this module imports nothing heavy at the top:
the FastAPI app is built on the first request the api-server routes to it (:class:`LazyApp`).
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures at runtime, and the
# dependency aliases they use are local to create_app().
import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

__all__ = ["GimUiPlugin", "LazyApp", "create_app", "get_config_path", "get_infomart_dsn", "app"]

URL_PREFIX = "/gim"
HISTORY_MAX_ROWS = 1000


def get_infomart_dsn() -> str:
    """FastAPI dependency: the Info Mart DSN (connection ``gim_infomart``, else the CLI's rule)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets("gim_infomart")
    except AirflowNotFoundException:
        conn = None
    if conn is not None:
        from gim_operators import _conn_dsn  # one rule for connection -> DSN (plugins/ is on sys.path)

        return _conn_dsn(conn)
    from gim_jobs.db.connect import infomart_dsn

    return infomart_dsn()


def get_config_path() -> Any:
    """FastAPI dependency: the configuration file (None: ``$GIM_CONFIG`` or ``config/gim.ini``)."""
    return None


def _login_redirect(request: Any) -> Any:
    from fastapi.responses import RedirectResponse

    next_url = str(request.url)
    try:
        from airflow.api_fastapi.app import get_auth_manager

        url = get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # noqa: BLE001 - no auth manager (tests): Airflow's default login route
        from urllib.parse import urlencode

        url = "/auth/login?" + urlencode({"next": next_url})
    return RedirectResponse(url, status_code=302)


def create_app() -> Any:
    """The FastAPI app (every route behind ``requires_authenticated()``)."""
    import datetime as dt
    from typing import Annotated

    import psycopg
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.encoders import jsonable_encoder
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from gim_jobs import schedule
    from gim_jobs import status as st
    from gim_jobs.config import ConfigError, check_config
    from gim_jobs.registry import UnknownJob
    from gim_jobs.ui_templates import pages

    app = FastAPI(
        title="Info Mart Manager",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None, redoc_url=None, openapi_url=None,  # no unauthenticated routes at all
    )
    Dsn = Annotated[str, Depends(get_infomart_dsn)]
    Cfg = Annotated[Any, Depends(get_config_path)]

    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def tz_of(cfg_path: Any) -> str:
        chk = check_config(cfg_path)
        return chk.config.schedule.timezone if chk.config else "UTC"

    def json(data: Any, status_code: int = 200) -> JSONResponse:
        return JSONResponse(jsonable_encoder(data), status_code=status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _auth_redirect(request: Request, exc: StarletteHTTPException) -> Response:
        route = request.scope.get("route")
        is_page = (getattr(route, "name", None) or "").startswith("page_")
        if exc.status_code in (401, 403) and is_page and request.method == "GET":
            return _login_redirect(request)
        return await http_exception_handler(request, exc)

    @app.exception_handler(psycopg.OperationalError)
    async def _db_down(request: Request, exc: psycopg.OperationalError) -> Response:
        msg = f"the Info Mart database is unreachable: {exc}"
        if "/api/" in request.url.path:
            return json({"detail": msg}, 503)
        return HTMLResponse(pages.error_page("Info Mart unreachable", msg, now=now()), status_code=503)

    # ------------------------------------------------------------------ status
    @app.get("/", response_class=HTMLResponse, name="page_status")
    def page_status(dsn: Dsn, cfg: Cfg) -> HTMLResponse:
        return HTMLResponse(pages.status_page(st.status(dsn, cfg)))

    @app.get("/api/status", name="api_status")
    def api_status(dsn: Dsn, cfg: Cfg) -> JSONResponse:
        return json(st.status(dsn, cfg))

    # ------------------------------------------------------------------ history
    def _history(dsn: str, job: str | None, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        return st.history(dsn, job=job or None, status=status or None, limit=limit, offset=offset)

    Limit = Annotated[int, Query(ge=1, le=HISTORY_MAX_ROWS)]
    Offset = Annotated[int, Query(ge=0)]

    @app.get("/history", response_class=HTMLResponse, name="page_history")
    def page_history(dsn: Dsn, cfg: Cfg, job: str | None = None, status: str | None = None,
                     limit: Limit = 50, offset: Offset = 0) -> HTMLResponse:
        tz = tz_of(cfg)
        status = status.strip().upper() if status else None
        try:
            rows = _history(dsn, job, status, limit, offset)
        except UnknownJob as exc:
            return HTMLResponse(pages.history_page([], job=job, status=status, limit=limit, offset=offset,
                                                   now=now(), tz=tz, error=str(exc)), status_code=400)
        jname = rows[0]["job_name"] if rows and job else job
        return HTMLResponse(pages.history_page(rows, job=jname, status=status, limit=limit, offset=offset,
                                               now=now(), tz=tz))

    @app.get("/api/history", name="api_history")
    def api_history(dsn: Dsn, job: str | None = None, status: str | None = None,
                    limit: Limit = 50, offset: Offset = 0) -> JSONResponse:
        try:
            return json(_history(dsn, job, status, limit, offset))
        except UnknownJob as exc:
            return json({"detail": str(exc)}, 400)

    # ------------------------------------------------------------------ schedule
    def _day(date: str | None, cfg_path: Any) -> dt.date:
        if date:
            return dt.date.fromisoformat(date)
        return schedule.to_local(now(), tz_of(cfg_path)).date()

    def _view(dsn: str, date: str | None, cfg_path: Any) -> dict[str, Any]:
        from gim_jobs.ui_templates.pages import UI_ROOT

        def href(row: dict[str, Any]) -> str | None:
            return UI_ROOT + row["airflow"]["run"] if row.get("airflow") else None

        return st.day_view(_day(date, cfg_path), cfg_path, dsn=dsn, href=href)

    def _schedule_error(exc: Exception, as_json: bool, cfg_path: Any) -> Response:
        if isinstance(exc, ConfigError):
            msg = f"the configuration has errors, no schedule to show: {exc}"
            code = 409
        else:
            msg = f"date must be YYYY-MM-DD: {exc}"
            code = 400
        if as_json:
            return json({"detail": msg}, code)
        return HTMLResponse(pages.error_page("Schedule", msg, now=now(), tz=tz_of(cfg_path), active="schedule"),
                            status_code=code)

    @app.get("/schedule", response_class=HTMLResponse, name="page_schedule")
    def page_schedule(dsn: Dsn, cfg: Cfg, date: str | None = None) -> Response:
        try:
            view = _view(dsn, date, cfg)
        except (ConfigError, ValueError) as exc:
            return _schedule_error(exc, False, cfg)
        return HTMLResponse(pages.schedule_page(view, now=now()))

    @app.get("/schedule.svg", name="page_schedule_svg")
    def schedule_svg(dsn: Dsn, cfg: Cfg, date: str | None = None) -> Response:
        try:
            view = _view(dsn, date, cfg)
        except (ConfigError, ValueError) as exc:
            return _schedule_error(exc, True, cfg)
        return Response(view["svg"], media_type="image/svg+xml")

    @app.get("/api/schedule", name="api_schedule")
    def api_schedule(dsn: Dsn, cfg: Cfg, date: str | None = None) -> JSONResponse:
        try:
            view = _view(dsn, date, cfg)
        except (ConfigError, ValueError) as exc:
            return _schedule_error(exc, True, cfg)
        return json({k: view[k] for k in ("date", "timezone", "run_scheduler", "launches", "actual")})

    return app


class LazyApp:
    """An ASGI app that builds :func:`create_app` on its first request (only the api-server does)."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.get()(scope, receive, send)


app = LazyApp()


class GimUiPlugin(AirflowPlugin):
    name = "gim_ui"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Info Mart Manager"}]
    external_views = [
        {
            "name": "Info Mart Manager",
            "href": "gim/",  # relative to the UI's base URL, so it works behind a base path
            "destination": "nav",
            "url_route": "gim",  # shown inside the UI at /plugin/gim
            "nav_top_level": True,
        }
    ]
