"""What request handlers reach through the app: one typed key, set by create_app."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from ..config.catalog import Catalog
from ..clock import Clock
from ..drills import Drills
from ..messages import Messages
from ..messengers.service import Messengers
from ..intake import Intake
from ..outbox import Outbox
from ..pipeline import Pipeline
from ..reconcile import StatusReconciler
from ..scheduler import Ticks
from ..webhooks.sender import WebhookSender
from ..roster import missing_media
from ..sandbox.inprocess import RunningSandbox
from ..config.settings import Settings
from ..store import Store
from ..detection.streams import StreamMonitor


@dataclass
class Services:
    settings: Settings
    clock: Clock
    store: Store
    catalog: Catalog
    intake: Intake
    pipeline: Pipeline
    monitor: StreamMonitor
    messages: Messages
    outbox: Outbox
    ack_secret: str
    drills: Drills
    reconciler: StatusReconciler
    # Runs the tick and the drills' cron jobs (started by `serve`; off where ticks are 0).
    ticks: Ticks
    # Sends lifecycle events to webhooks.yaml's subscribers (started with the outbox worker).
    webhooks: WebhookSender
    # The delivery media a channel is configured for ("sms", "email", "dingtalk", "wecom").
    media: frozenset[str] = frozenset()
    # DingTalk and WeCom: their sender, read-state poller and button presses.
    messengers: Messengers | None = None
    _missing: tuple[Catalog, dict[str, list[str]]] | None = field(default=None, repr=False)

    def missing_channels(self) -> dict[str, list[str]]:
        """Per playbook, the media it needs that no channel is configured for (computed
        once per catalog in use: /healthz and every page ask)."""
        if self._missing is None or self._missing[0] is not self.catalog:
            self._missing = (self.catalog, missing_media(list(self.catalog.playbooks.values()),
                                                         self.catalog.contacts, set(self.media)))
        return self._missing[1]


SERVICES = web.AppKey("services", Services)
# The sandbox this service started (`serve --sandbox`); absent when the service sends to
# real providers or to a sandbox it did not start.
SANDBOX = web.AppKey("sandbox", RunningSandbox)
