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
from .streams import StreamMonitor, detector_config, trigger_minimums
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
            built = await build_services(settings, store=the_store, catalog=the_catalog, clock=clock or SystemClock())
            app[SERVICES] = built
            scheduler = _start_ticks(built.pipeline, settings.tick_seconds)
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


async def build_services(settings: Settings, *, store: Store, catalog: Catalog, clock: Clock) -> Services:
    """Intake, stream monitor and pipeline over one store and catalog: the service's
    parts, also used by commands that work on the store directly (replay)."""
    key = settings.subscriber_key or await store.get_or_create_secret("subscriber-hash", secrets.token_hex(32))
    intake = Intake(
        store,
        categories=catalog.categories,
        hasher=SubscriberHasher(key),
        clock=clock,
        limits=Limits(
            max_items=settings.max_items,
            max_age=timedelta(days=settings.max_age_days),
            max_future=timedelta(seconds=settings.max_future_seconds),
        ),
    )
    triggers = [
        (p.trigger.categories, p.trigger.regions, p.trigger.min_count, p.trigger.min_ratio)
        for p in catalog.playbooks.values()
    ]
    monitor = StreamMonitor(
        store,
        clock,
        config_for=lambda stream: detector_config(settings.bucket_seconds, *trigger_minimums(triggers, stream)),
    )
    pipeline = Pipeline(
        store=store, catalog=lambda: catalog, clock=clock, intake=intake, monitor=monitor,
        tz=ZoneInfo(settings.timezone),
    )
    return Services(settings, clock, store, catalog, intake, pipeline, monitor)


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
