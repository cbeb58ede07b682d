"""Wiring: one factory builds the service from settings and injected parts. Resources
(the store) are opened and closed in cleanup_ctx; nothing is read at import time."""

from __future__ import annotations

import logging
import secrets
import sys
from datetime import timedelta
from zoneinfo import ZoneInfo
from typing import AsyncIterator

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .catalog import Catalog, load_catalog
from .clock import Clock, SystemClock
from .errors import ConfigError, StoreError
from .intake import Intake, Limits, SubscriberHasher
from .settings import Settings
from .store import Store, open_store
from .pipeline import Pipeline
from .web import api, incidents
from .web.errors import json_errors
from .web.state import SERVICES, Services

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    catalog: Catalog | None = None,
) -> web.Application:
    """The service. Parts not given are built from `settings` when the app starts; a
    store given by the caller is the caller's to close."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[json_errors])

    async def services(app: web.Application) -> AsyncIterator[None]:
        own_store = store is None
        the_store = store if store is not None else await open_store(settings.store_url, settings.bucket_seconds)
        try:
            the_catalog = catalog if catalog is not None else load_catalog(settings.config_dir)
            the_clock = clock or SystemClock()
            key = settings.subscriber_key or await the_store.get_or_create_secret(
                "subscriber-hash", secrets.token_hex(32)
            )
            intake = Intake(
                the_store,
                categories=the_catalog.categories,
                hasher=SubscriberHasher(key),
                clock=the_clock,
                limits=Limits(
                    max_items=settings.max_items,
                    max_age=timedelta(days=settings.max_age_days),
                    max_future=timedelta(seconds=settings.max_future_seconds),
                ),
            )
            pipeline = Pipeline(
                store=the_store, catalog=lambda: the_catalog, clock=the_clock, tz=ZoneInfo(settings.timezone)
            )
            app[SERVICES] = Services(settings, the_clock, the_store, the_catalog, intake, pipeline)
            scheduler = _start_ticks(pipeline, settings.tick_seconds)
            try:
                yield
            finally:
                if scheduler is not None:
                    scheduler.shutdown(wait=False)
        finally:
            if own_store:
                await the_store.close()

    app.cleanup_ctx.append(services)
    app.add_routes(api.routes)
    app.add_routes(incidents.routes)
    return app


def _start_ticks(pipeline: Pipeline, every_seconds: float) -> AsyncIOScheduler | None:
    """APScheduler drives the tick; what is due comes from the store, not from here,
    so a missed or doubled tick changes nothing. 0 turns it off (tests tick by hand)."""
    if every_seconds <= 0:
        return None
    scheduler = AsyncIOScheduler()

    async def tick() -> None:
        try:
            await pipeline.tick()
        except StoreError as exc:
            log.warning("tick skipped: %s", exc)

    scheduler.add_job(tick, "interval", seconds=every_seconds, id="tick", max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler


def run_server(settings: Settings) -> int:
    """`coordinator serve`: check the config first so a bad file is reported plainly."""
    try:
        catalog = load_catalog(settings.config_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"refusing to start: {len(exc.problems)} problem(s) in {settings.config_dir}", file=sys.stderr)
        return 1
    log.info(
        "serving on http://%s:%d (store %s, %d playbooks)",
        settings.host, settings.port, settings.store_url.split("?")[0], len(catalog.playbooks),
    )
    try:
        web.run_app(create_app(settings, catalog=catalog), host=settings.host, port=settings.port, print=None)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
