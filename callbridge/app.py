"""ASGI app factory: mounts the dialects' inbound routes and the API, runs the background sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__, flows, metrics, outbox, outbox_process, recordings, redact
from .api import webhooks as api_webhooks
from .api.admin import router as api_admin_router
from .api.routes import router as api_router
from .config import Settings, key_file
from .dialects import DIALECTS
from .dialects.base import token_matches
from .guard import BodyLimits, SecurityHeaders
from .live import LiveBus, PostgresBus
from .recording_files import recording_files
from .server import GuardedHttp
from .services import Services
from .store import Database, StoreBusy
from .web import analytics as web_analytics
from .web import crm as web_crm
from .web import missed as web_missed
from .web import presence as web_presence
from .web import pages as web
from .web import settings as web_settings
from .web.auth import Forbidden, LoginRequired, SignInGuard, secret_key

log = logging.getLogger("callbridge")


class PbxLane:
    """PBX requests go straight to the dialects' routes, past what only people and the API need (the session
    cookie, the routing of every other route); anything else goes on to the app. The limits and headers around
    both are the same, and so are the error handlers."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], handlers: dict) -> None:
        self.app = app
        self.prefixes = lane_prefixes(routes)
        self.lane = AsyncExitStackMiddleware(ExceptionMiddleware(Router(routes=routes), handlers=handlers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            await self.lane(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def lane_prefixes(routes: list[BaseRoute]) -> tuple[str, ...]:
    """The paths the PBXs' requests start with: their routes' paths up to the first parameter."""
    return tuple(route.path.split("{")[0] for route in routes)  # type: ignore[attr-defined]


@contextlib.contextmanager
def _settled_collector() -> Iterator[None]:
    """While the server runs: what start-up made (modules, routes, compiled statements) lives as long as the
    server, so the garbage collector stops looking at it, and it collects the young objects of requests less
    often (Python's default, every 700 allocations, runs several times per PBX event)."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def build_services(settings: Settings) -> Services:
    database = Database(settings.database_url, wait_seconds=settings.store_wait_seconds)
    files = recording_files(settings)
    bus = LiveBus(max_streams=settings.live_streams)
    return Services(db=database, settings=settings, dialects=DIALECTS, recording_files=files, bus=bus)


async def _server_bus(services: Services) -> LiveBus:
    """On PostgreSQL the live bus goes through the database, so any number of workers share it; a worker takes
    requests once it hears the others (a browser it serves sees every card), or after 10 s, still reconnecting."""
    if services.db.is_sqlite:
        return services.bus
    bus = PostgresBus(services.settings.database_url, max_streams=services.settings.live_streams)
    bus.start()
    try:
        await asyncio.wait_for(bus.connected.wait(), 10.0)
    except TimeoutError:
        log.warning("live bus not connected after 10 s: cards reach browsers once it is")
    return bus


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _mask_secrets_in_logs()
        services = build_services(settings)
        await services.db.migrate()
        services.bus = await _server_bus(services)
        app.state.services = services
        workers = [
            # jobs any worker may run at once: they claim rows (leases, SKIP LOCKED) or keep their own batch
            asyncio.create_task(_every(settings.lookup_journal_seconds, _flush_lookups, services)),
            asyncio.create_task(_every(settings.recording_poll_seconds, recordings.fetch_due, services)),
            asyncio.create_task(outbox_process.keep_running(settings, services.outbox_due) if settings.outbox_apart
                                else _outbox_worker(services)),
            # jobs one worker runs at a time
            asyncio.create_task(_every(settings.sweep_interval_seconds, flows.close_stale_calls, services, True)),
        ]
        if settings.backfill_minutes > 0:
            every = settings.backfill_minutes * 60
            workers.append(asyncio.create_task(_every(every, flows.backfill_all, services, True)))
        try:
            with _settled_collector():
                yield
        finally:
            for worker in workers:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            if isinstance(services.bus, PostgresBus):
                await services.bus.stop()
            await services.close()

    # the API docs' scripts come with the package (fastapi-offline): /docs works on a closed network
    # FastAPI's own OpenTelemetry is off: it asks for its global providers on every request, and callbridge's
    # figures are on /metrics
    app = FastAPIOffline(title="callbridge", version=__version__, lifespan=lifespan, static_url="/static/api-docs",
                         telemetry={"tracing": False, "metrics": False, "logs": False})
    for dialect in DIALECTS.values():
        app.include_router(dialect.router)
    app.include_router(api_router)
    app.include_router(api_admin_router)
    app.include_router(api_webhooks.router)
    api_webhooks.document(app)
    app.include_router(web.router)
    app.include_router(web_crm.router)
    app.include_router(web_analytics.router)
    app.include_router(web_missed.router)
    app.include_router(web_presence.router)
    app.include_router(web_settings.router)
    app.mount("/static", StaticFiles(directory=Path(web.__file__).with_name("static")), name="static")
    key = secret_key(settings.secret_key.get_secret_value(), key_file(settings))
    app.add_middleware(SessionMiddleware, secret_key=key, same_site="lax", session_cookie="callbridge_session")
    pbx_routes = [r for d in DIALECTS.values() for r in d.router.routes]
    app.add_middleware(PbxLane, routes=pbx_routes, handlers=app.exception_handlers)
    GuardedHttp.pbx_paths = lane_prefixes(pbx_routes)  # the server keeps connections for them
    uploads = {d.uploads_under: settings.recording_max_bytes + 1_000_000 for d in DIALECTS.values() if d.uploads_under}
    app.add_middleware(BodyLimits, default=settings.max_body_bytes, uploads=uploads)
    app.add_middleware(SecurityHeaders)
    app.state.key_uses = {}
    # failed sign-ins allowed per worker, so that all workers together allow about the configured number
    app.state.sign_in = SignInGuard(
        per_login=max(1, settings.login_failures_per_login // settings.workers),
        per_address=max(1, settings.login_failures_per_address // settings.workers),
    )

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, _exc: Forbidden) -> Response:
        return web.error_page(request, 403, "admins_only")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """A workspace page's error as a page in the user's language; the API's and the PBXs' stay JSON."""
        if request.url.path.startswith(web.NOT_PAGES):
            return await http_exception_handler(request, exc)
        return web.error_page(request, exc.status_code, f"http_{exc.status_code}", detail=str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, for a body that is not UTF-8 too: its own handler fails on such bytes, and the peer got a
        503 and a closed connection."""
        readable = {bytes: lambda raw: raw.decode("utf-8", "replace")}
        return JSONResponse({"detail": jsonable_encoder(exc.errors(), custom_encoder=readable)}, status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def gone(_request: Request, _exc: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody is there to read it; nothing to log

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page(request: Request) -> Response:
        wanted = settings.metrics_token.get_secret_value()
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if wanted and not token_matches(given, wanted):
            return PlainTextResponse("metrics need `Authorization: Bearer <CALLBRIDGE_METRICS_TOKEN>`", 401)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> JSONResponse:
        """Whether this node can serve, for a load balancer: its store reachable, writable now and migrated. Quick
        (100 ms at most) and never waiting for a lock; 503 when degraded."""
        store = await request.app.state.services.db.health()
        status = "ok" if store == "ok" else "degraded"
        return JSONResponse({"status": status, "store": store}, status_code=200 if store == "ok" else 503)

    @app.exception_handler(StoreBusy)
    async def store_busy(_request: Request, exc: StoreBusy) -> JSONResponse:
        # Nothing was written or acknowledged: the PBX sends it again (they retry on anything but 200).
        log.warning("a request waited %s s for the store and was refused: %s", settings.store_wait_seconds, exc)
        return JSONResponse({"error": "Service temporarily unavailable"}, status_code=503,
                            headers={"Retry-After": "5"})  # fmt: skip

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Nothing was acknowledged: the peer should try again later; the traceback goes to the log.
        log.error("unhandled error", exc_info=exc)
        return JSONResponse({"error": "Service temporarily unavailable"}, status_code=503)

    return app


async def outbox_worker(settings: Settings) -> None:
    """What the outbox process of `serve` runs: the outbox worker alone. A delivery's result waits for a busy store
    longer than a PBX request does: given up, it would be delivered again."""
    _mask_secrets_in_logs()  # a receiver's or a PBX's error text may repeat the URL it was sent to
    services = build_services(settings.model_copy(update={"store_wait_seconds": settings.outbox_lease_seconds / 4}))
    try:
        await outbox_process.work(services, _outbox_worker(services))
    finally:
        await services.close()


def _mask_secrets_in_logs() -> None:
    redact.install(d.secret_in_path for d in DIALECTS.values() if d.secret_in_path)


def _outbox_worker(services: Services):
    return _every(services.settings.outbox_poll_seconds, outbox.drain, services, wake=services.outbox_due)


async def _flush_lookups(services: Services, _now: datetime) -> None:
    await services.lookups.flush(services.db)


async def _every(
    seconds: float, job, services: Services, exclusive: bool = False, wake: asyncio.Event | None = None
) -> None:
    """Run a background job forever (if `exclusive`, in one worker at a time), and at once when `wake` is set; a
    failure is logged and the job runs again next time."""
    while True:
        if wake is None:
            await asyncio.sleep(seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), seconds)
            wake.clear()
        try:
            if not exclusive:
                await job(services, datetime.now(UTC))
                continue
            async with services.db.exclusively(job.__name__) as mine:
                if mine:
                    await job(services, datetime.now(UTC))
        except Exception:
            log.exception("background job %s failed", job.__name__)
