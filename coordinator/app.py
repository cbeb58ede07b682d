"""Wiring: one factory builds the service from settings and injected parts. Resources
(the store) are opened and closed in cleanup_ctx; nothing is read at import time."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys
from pathlib import Path
from datetime import timedelta
from zoneinfo import ZoneInfo
from typing import AsyncIterator, Callable

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import metrics
from .cluster import CLUSTER, Cluster, Reloaded, config_fingerprint
from .config.catalog import Catalog, load_catalog
from .models import DRILL_PREFIX
from .channels.base import EmailChannel, SmsChannel
from .channels.configured import email_channel, sms_channel
from .messengers.service import build_messengers
from .channels.smpp import SmppSms
from .clock import Clock, SystemClock
from .errors import ConfigError, StoreError
from .eventloop import loop_factory, loop_name
from .heap import settle_heap
from .intake import Intake, Limits, SubscriberHasher
from .config.settings import Settings
from .config.users import UsersFileError, read_users
from .store import Store, open_store, shown
from .acknowledgements import Acknowledgements
from .messages import Messages
from .notifier import Notifier
from .publication import Publication
from .outbox import Outbox, OutboxLimits, Wake
from .incident_updates import IncidentUpdates
from .webhooks.sender import lifecycle_out
from .drills import Drills, RunningDrills, channels_are_sandbox
from .pipeline import Pipeline
from .provider_push import SmppPushed, serve_pushed
from .reconcile import StatusReconciler
from .scheduler import Ticks
from .sandbox.inprocess import start_sandbox
from .detection.streams import StreamMonitor, detector_config, trigger_minimums
from .detection.config import DetectorConfig
from .web import api, auth, console, hooks, incidents, login, openapi, previews
from .web import messenger_hooks
from .web import drills as drills_api
from .web import metrics as metrics_routes
from .web import alarms as alarm_routes
from .web import reload as reload_routes
from .web import browser, reports, sandbox_page, stats
from .web.accesslog import request_ids
from .web.errors import json_errors
from .web.headers import secure_headers
from .web.guard import GuardLimits, body_deadline, run_guarded
from .web.state import SANDBOX, SERVICES, Services

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "web" / "static"


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    catalog: Catalog | None = None,
    sms: SmsChannel | None = None,
    email: EmailChannel | None = None,
) -> web.Application:
    """The service. Parts not given are built from `settings` when the app starts; a
    store or channel given by the caller is the caller's to close. With
    `settings.sandbox` every message goes to a sandbox started here."""
    base_settings = settings
    # Access: every route declares who may call it (web/auth.py); the middleware enforces it.
    # A body is read whole (within its deadline) before anything else looks at it.
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[request_ids, browser.html_errors, json_errors, body_deadline, auth.sessions,
                                       auth.authorize])

    async def services(app: web.Application) -> AsyncIterator[None]:
        own_store = store is None
        the_store = store if store is not None else await open_store(
            base_settings.store_url, base_settings.bucket_seconds,
            redis_connections=base_settings.redis_max_connections)
        the_clock = clock or SystemClock()
        sandbox = None
        try:
            if own_store:
                await _check_durability(the_store, base_settings)
            sandbox = await start_sandbox(base_settings, the_clock) if base_settings.sandbox else None
            settings = sandbox.settings if sandbox is not None else base_settings
            if sandbox is not None:
                app[SANDBOX] = sandbox
                log.info("sandbox mode: SMS to %s, email to %s:%d (page %s/sandbox/); nothing reaches a real phone",
                         sandbox.sms.base_url, *sandbox.inbox.address, settings.base_url)
            the_catalog = catalog if catalog is not None else load_catalog(settings.config_dir)
            metrics.config_loaded(True)
            own_sms = sms is None and (settings.twilio_account_sid is not None or settings.smpp_host is not None)
            own_email = email is None and settings.smtp_host is not None
            pushed = SmppPushed() if own_sms and settings.smpp_host is not None else None
            the_sms = sms if sms is not None else (sms_channel(settings, the_clock, pushed) if own_sms else None)
            the_email = email if email is not None else (email_channel(settings, the_clock) if own_email else None)
            built = await build_services(settings, store=the_store, catalog=the_catalog, clock=the_clock,
                                         sms=the_sms, email=the_email)
            app[SERVICES] = built
            _say_channels(built)
            if own_store:
                _say_secrets(base_settings)
            built.ticks.start()
            stop = asyncio.Event()
            worker = asyncio.create_task(built.outbox.run(stop)) if settings.outbox_worker else None
            sender = asyncio.create_task(built.webhooks.run(stop)) if settings.outbox_worker else None  # webhooks
            chats = asyncio.create_task(built.messengers.run(stop)) if settings.outbox_worker else None  # DingTalk, WeCom
            # The instance registry and cluster-wide reloads (cluster.py); it beats while ticks run.
            app[CLUSTER] = Cluster(store=the_store, clock=the_clock, instance_id=built.pipeline.worker,
                                   reload=lambda: reload_config(built), fingerprint=config_fingerprint(settings.config_dir))
            beating = asyncio.create_task(app[CLUSTER].run(stop)) if built.ticks.on else None
            pushing = None if pushed is None or the_sms is None else asyncio.create_task(serve_pushed(
                pushed, outbox=built.outbox, pipeline=built.pipeline, sms=the_sms, clock=the_clock, stop=stop))
            if isinstance(the_sms, SmppSms):
                await the_sms.start()  # bound now, so that replies and receipts come in
            try:
                yield
            finally:
                stop.set()
                built.outbox.wake.set()
                for task in (worker, pushing, beating, sender, chats):
                    if task is not None:
                        await task
                await built.messengers.close()
                built.ticks.stop()
                for channel, owned in ((the_sms, own_sms), (the_email, own_email)):
                    if owned and channel is not None:
                        await channel.close()
        finally:
            if sandbox is not None:
                await sandbox.stop()
            if own_store:
                await the_store.close()

    app.on_response_prepare.append(secure_headers)
    app.cleanup_ctx.append(services)
    app.cleanup_ctx.append(auth.gate_ctx(settings))
    # Pages: server-rendered, autoescaped; every asset is served from here (no CDN).
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("coordinator.web", "templates"), autoescape=True)
    app.router.add_static("/static/", STATIC_DIR, name="static")
    console.setup(app)
    app.add_routes(api.routes)
    app.add_routes(incidents.routes)
    app.add_routes(previews.routes)
    app.add_routes(reports.routes)
    app.add_routes(drills_api.routes)
    app.add_routes(hooks.routes)
    app.add_routes(messenger_hooks.routes)  # DingTalk and WeCom callbacks
    app.add_routes(login.routes)
    app.add_routes(openapi.routes)
    app.add_routes(stats.routes)
    app.add_routes(metrics_routes.routes)
    app.add_routes(reload_routes.routes)
    app.add_routes(alarm_routes.routes)  # network alarms in: Alertmanager, PagerDuty
    app.add_routes(browser.routes)  # the favicon
    app.add_routes(sandbox_page.routes if settings.sandbox else [])  # its page, for its own sandbox only
    return app


# Bursts of new connections (provider callbacks, intake clients) are queued, not dropped
# for a 1 s retry as past the default listen queue of 128.
LISTEN_BACKLOG = 1024


def _say_channels(services: Services) -> None:
    media = ", ".join(sorted(services.media)) or "none"
    log.info("delivery channels: %s", media)
    for playbook, missing in services.missing_channels().items():
        log.warning("playbook %s needs %s but no such channel is configured: those messages will fail",
                    playbook, " and ".join(missing))


def _say_secrets(settings: Settings) -> None:
    """Keys the operator did not set are made once and kept in the store, where anyone who
    can read the store file (or the Redis) could forge a leader's session or an ack link."""
    kept = [var for var, value in (("COORDINATOR_SESSION_KEY", settings.session_key),
                                   ("COORDINATOR_ACK_SECRET", settings.ack_secret),
                                   ("COORDINATOR_SUBSCRIBER_KEY", settings.subscriber_key)) if not value]
    if kept:
        log.warning("secrets kept in the store, where whoever reads it could forge sessions or ack links: "
                    "set %s (`coordinator secrets` prints new values; docs/security.md)", ", ".join(kept))


def guard_limits(settings: Settings) -> GuardLimits:
    return GuardLimits(header_timeout=settings.header_timeout_seconds, body_timeout=settings.body_timeout_seconds,
                       keepalive_timeout=settings.keepalive_seconds, write_timeout=settings.write_timeout_seconds,
                       max_connections_per_client=settings.max_connections_per_client)


async def _check_durability(store: Store, settings: Settings) -> None:
    """Refuse a Redis that would lose acknowledged complaints when its process dies,
    unless told to run on one anyway (then say so loudly)."""
    from .store.redis import RedisStore

    if not isinstance(store, RedisStore):
        return
    try:
        problem = await store.volatility()
    except StoreError as exc:
        log.warning("%s; make sure it runs with appendonly yes or a replica", exc)
        return
    if problem is None:
        return
    if not settings.redis_allow_volatile:
        raise StoreError(f"refusing to start: {problem}. Run Redis with `appendonly yes` (see README, "
                         "'Redis persistence'), or set COORDINATOR_REDIS_ALLOW_VOLATILE=1 to accept the loss")
    log.warning("RUNNING ON A VOLATILE STORE (COORDINATOR_REDIS_ALLOW_VOLATILE=1): %s", problem)


async def build_services(
    settings: Settings,
    *,
    store: Store,
    catalog: Catalog,
    clock: Clock,
    sms: SmsChannel | None = None,
    email: EmailChannel | None = None,
    worker: str | None = None,
) -> Services:
    """Intake, stream monitor, pipeline, script side and outbox over one store and
    catalog: the service's parts, also used by commands that work on the store
    directly (replay, demo). `worker` names this instance in claims and leases
    (default: a random name)."""
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
    monitor = StreamMonitor(
        store,
        clock,
        config_for=_detector_configs(settings, catalog),
        grace=timedelta(seconds=settings.detection_grace_seconds),
        tz=ZoneInfo(settings.timezone),
    )
    # Built bottom-up, each part from those below it; the parts read the catalog in use
    # through `built`, so that a reload reaches them.
    def current() -> Catalog:
        return built.catalog

    tz = ZoneInfo(settings.timezone)
    worker = worker or f"worker-{secrets.token_hex(4)}"
    lifecycle, webhooks = lifecycle_out(store=store, webhooks=lambda: built.catalog.webhooks, clock=clock, worker=worker)
    updates = IncidentUpdates(store=store, clock=clock, lifecycle=lifecycle)
    wake = Wake()
    ack_secret = settings.ack_secret or await store.get_or_create_secret("ack-links", secrets.token_hex(32))
    notifier = Notifier(store=store, catalog=current, clock=clock, wake=wake, tz=tz)
    publication = Publication(store=store, catalog=current, clock=clock, updates=updates, notifier=notifier,
                              wake=wake, tz=tz, worker=worker)
    acknowledgements = Acknowledgements(store=store, catalog=current, clock=clock, updates=updates)
    messages = Messages(store=store, catalog=current, clock=clock, wake=wake, tz=tz, ack_secret=ack_secret,
                        public_url=settings.base_url)
    pipeline = Pipeline(
        store=store, catalog=current, clock=clock, intake=intake, monitor=monitor, updates=updates,
        publication=publication, notifier=notifier, acknowledgements=acknowledgements, messages=messages,
        drill_setup=RunningDrills(store=store, catalog=current).setup_for, worker=worker, tz=tz,
    )
    outbox = Outbox(
        store, clock=clock, content=messages.content, sms=sms, email=email, on_permanent=messages.fallback,
        resume=publication.resume_publishing, worker=worker, wake=wake,
        limits=OutboxLimits(sms_concurrency=settings.sms_concurrency, email_concurrency=settings.email_concurrency,
                            sms_rate=settings.sms_rate, email_rate=settings.email_rate,
                            lease_seconds=settings.outbox_lease_seconds),
    )
    drills = Drills(store=store, catalog=current, clock=clock, pipeline=pipeline, monitor=monitor, lifecycle=lifecycle,
                    sandbox_channels=channels_are_sandbox(settings),
                    misfire_grace=timedelta(seconds=settings.drill_misfire_grace_seconds))
    reconciler = StatusReconciler(store=store, clock=clock, sms=sms, report=outbox.report)
    ticks = Ticks(store=store, clock=clock, catalog=current, pipeline=pipeline, drills=drills, reconciler=reconciler,
                  every_seconds=settings.tick_seconds,
                  reconcile_after=timedelta(seconds=settings.reconcile_after_seconds))
    messengers = build_messengers(settings, store=store, catalog=current, clock=clock, messages=messages, outbox=outbox,
                                  acknowledge=pipeline.acknowledge, ack_secret=ack_secret, worker=worker)  # DingTalk, WeCom
    built = Services(settings, clock, store, catalog, intake, pipeline, monitor, messages, outbox, ack_secret, drills,
                     reconciler, ticks, webhooks, media=frozenset(m for m, channel in (("sms", sms), ("email", email)) if channel is not None) | messengers.media, messengers=messengers)
    return built


def _detector_configs(settings: Settings, catalog: Catalog) -> Callable[[str], DetectorConfig]:
    """Each stream's detector settings: the bucket width, and the least count and ratio
    of the catalog's playbooks that cover the stream."""
    triggers = [
        (p.trigger.categories, p.trigger.regions, p.trigger.min_count, p.trigger.min_ratio)
        for p in catalog.playbooks.values()
    ]
    return lambda stream: detector_config(
        settings.bucket_seconds, *trigger_minimums(triggers, stream),
        typical_per_hour=catalog.typical_per_hour.get(stream.removeprefix(DRILL_PREFIX).partition("/")[0]),
        typical_day=catalog.typical_day.get(stream.removeprefix(DRILL_PREFIX).partition("/")[0]))


def use_catalog(services: Services, catalog: Catalog) -> None:
    """Put a newly built catalog in use (the swap of "reload = build then swap"):
    incidents already open keep the playbook they snapshotted when they opened."""
    services.catalog = catalog
    services.intake.categories = frozenset(catalog.categories)
    services.monitor.config_for = _detector_configs(services.settings, catalog)
    services.ticks.schedule_drills()
    settle_heap()  # the new catalog out of the collector's sight, as at start-up


async def reload_catalog(services: Services) -> bool:
    """`reload_config`: True if the new config is in use."""
    return not (await reload_config(services)).problems


async def reload_config(services: Services) -> Reloaded:
    """Read the config files again and use them if they are valid; otherwise log every
    problem and keep the config in use. Loading runs off the event loop."""
    config_dir = services.settings.config_dir
    fingerprint = await asyncio.to_thread(config_fingerprint, config_dir)
    try:
        catalog = await asyncio.to_thread(load_catalog, config_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        log.error("reload refused: %d problem(s) in %s; the config loaded before stays in use",
                  len(exc.problems), config_dir)
        metrics.config_loaded(False)
        return Reloaded([str(p) for p in exc.problems], fingerprint)
    use_catalog(services, catalog)
    metrics.config_loaded(True)
    log.info("config reloaded from %s: %d playbooks, %d people, %d drills",
             config_dir, len(catalog.playbooks), len(catalog.contacts.people), len(catalog.drills))
    return Reloaded([], fingerprint)


async def _reload_on_sighup(app: web.Application) -> None:
    """`kill -HUP PID` (systemd's ExecReload) reloads the config files."""
    cluster = app[CLUSTER]  # set by the services context, which starts first
    pending: set[asyncio.Task[Reloaded]] = set()

    def reload() -> None:
        task = asyncio.ensure_future(cluster.reload_here())
        pending.add(task)
        task.add_done_callback(pending.discard)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


def run_server(settings: Settings) -> int:
    """`coordinator serve`: check the config first so a bad file is reported plainly."""
    try:
        catalog = load_catalog(settings.config_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"refusing to start: {len(exc.problems)} problem(s) in {settings.config_dir}", file=sys.stderr)
        return 1
    if not (settings.sandbox or settings.twilio_account_sid or settings.smtp_host or settings.no_channels):
        print("refusing to start: no delivery channel is configured, so no script or notice could go out. "
              "Set TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN/TWILIO_FROM (SMS) and/or SMTP_HOST (email), use --sandbox "
              "for a training instance, or --no-channels to start anyway", file=sys.stderr)
        return 1
    try:
        read_users(settings.users_path)
    except UsersFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"refusing to start: {len(exc.problems)} problem(s) in {settings.users_path}", file=sys.stderr)
        return 1
    settle_heap()  # the catalog out of the collector's sight, young collections rarer
    loop = loop_factory()()  # uvloop when installed: coordinator/eventloop.py
    log.info(
        "serving on http://%s:%d (store %s, %d playbooks, %s)",
        settings.host, settings.port, shown(settings.store_url), len(catalog.playbooks), loop_name(loop),
    )
    app = create_app(settings, catalog=catalog)
    app.on_startup.append(_reload_on_sighup)
    try:
        run_guarded(app, host=settings.host, port=settings.port, loop=loop, backlog=LISTEN_BACKLOG,
                    limits=guard_limits(settings))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
