"""The FastAPI app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cloud import live, migrate, security, wakeups
from cloud.api.body_limit import BodyLimit, Cap
from cloud.api.routes import (
    api_keys,
    captures,
    device_api,
    devices,
    firmware,
    gateway,
    notifications,
    phone_alerts,
    uploads,
    users,
)
from cloud.api.routes import billing as billing_api
from cloud.api.routes import live as live_routes
from cloud.api.routes import vision as vision_routes
from cloud.background import build_services
from cloud.clock import Clock
from cloud.context import AppContext
from cloud.errors import document_error_bodies, install_error_handlers
from cloud.notify import outbox as notify_outbox
from cloud.services.trigger_watch import TriggerWatch
from cloud.settings import Settings
from cloud.web import routes as web

log = logging.getLogger("mailcam.cloud")


def quiet_url_logging() -> None:
    """httpx and httpcore log every request's full URL at INFO; webhook URLs carry secrets in their path."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, ctx: AppContext | None = None
) -> FastAPI:
    settings = settings or (ctx.settings if ctx else Settings())
    quiet_url_logging()
    ctx = ctx or AppContext.build(settings, clock=clock)
    notify_outbox.install(ctx)
    live.install(ctx)
    security.configure_hashing(settings.password_hash_concurrency, settings.password_hash_wait_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(ctx.engine)
        ctx.wakeups.start()  # other replicas' wakeups, for the long-polls and event streams here
        services = build_services(ctx) if ctx.settings.run_workers else []
        for service in services:
            service.start()
        try:
            yield
        finally:
            for service in reversed(services):
                service.stop()
            ctx.wakeups.stop()

    app = FastAPI(
        title="mailcam",
        version="0.1.0",
        summary="Camera mailboxes that tell their owners when mail arrives.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.trigger_watch = TriggerWatch().install(ctx.wakeups)
    # What Home Assistant shows through the gateway (/api/gateway/states/).
    app.state.state_watch = TriggerWatch().install(ctx.wakeups, wakeups.STATES)
    app.add_middleware(
        BodyLimit,
        default=Cap(settings.max_request_bytes),
        routes={
            "/api/device/capture/": Cap(settings.max_capture_request_bytes, "image_too_large"),
            # a batch is at most what one capture may be: the gateway sends a larger capture on its own
            "/api/gateway/uploads/": Cap(settings.max_capture_request_bytes),
            "/api/billing/stripe-webhook": Cap(settings.billing.webhook_max_bytes),
            "/api/firmware/releases": Cap(settings.max_release_bytes),
        },
    )
    install_error_handlers(app)
    document_error_bodies(app)
    vision_routes.document_allowed_models(app, ctx.settings.vision)
    # Starlette tries the routes in order, ~10 µs each: the devices' and gateways' routes (a few requests
    # per wake, from every mailbox) come first, ahead of the people's (a click now and then).
    for module in (uploads, device_api, gateway, live_routes, users, devices, captures, vision_routes, notifications,
                   api_keys, billing_api, firmware):
        app.include_router(module.router)
    app.include_router(phone_alerts.router)
    app.include_router(phone_alerts.links_router)
    app.include_router(phone_alerts.apprise_router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness probe."""
        return {"status": "ok"}

    web.install(app)  # the dashboard at / and /static (after the API routes)
    return app
