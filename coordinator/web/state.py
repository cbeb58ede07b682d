"""What request handlers reach through the app: one typed key, set by create_app."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ..catalog import Catalog
from ..clock import Clock
from ..drills import Drills
from ..frontline import Frontline
from ..intake import Intake
from ..outbox import Outbox
from ..pipeline import Pipeline
from ..settings import Settings
from ..store import Store
from ..streams import StreamMonitor


@dataclass
class Services:
    settings: Settings
    clock: Clock
    store: Store
    catalog: Catalog
    intake: Intake
    pipeline: Pipeline
    monitor: StreamMonitor
    frontline: Frontline
    outbox: Outbox
    ack_secret: str
    drills: Drills
    # Runs the tick and the drills' cron jobs in `serve` (None where ticks are off).
    scheduler: AsyncIOScheduler | None = None


SERVICES = web.AppKey("services", Services)
