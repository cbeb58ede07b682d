"""The overview page: what needs the leader now on every open incident (attention.py),
every stream's recent counts against its baseline, the open surges and incidents; live
through /events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup

from ...models import DRILL_PREFIX, bucket_start, utc
from ...detection.streams import Learning, StreamStatus
from ...config.users import Role
from .. import sse
from ..auth import requires
from ..charts import bar_chart
from ..page import console_page, readable, tr
from ..state import SERVICES
from .attention import attention
from .incident_text import open_alerts, param_labels

routes = web.RouteTableDef()

WINDOW_BUCKETS = 36  # three hours of 5-minute buckets
RECENT_CLOSED = 10


def learning_text(learning: Learning, t: Callable[[str], str], name: Callable[[str], str],
                  bucket_seconds: float) -> str:
    """What detection can do on the stream yet, in the page's words: "learning: 6 of
    24 h, unmistakable surges only · seeded from broadband/*" (`name` renders a stream)."""
    if not learning.young:
        return t("stream.ready")
    text = t("stream.learning") % (int(learning.learned_hours), round(learning.warmup_hours))
    prior = learning.prior
    if prior is None or prior.source == "default":
        seeded = t("stream.seeded_default")
    elif prior.source == "config":
        seeded = t("stream.seeded_config") % round(prior.per_bucket * 3600.0 / bucket_seconds)
    else:
        seeded = t("stream.seeded_from") % t("stream.list_sep").join(name(s) for s in prior.streams)
    return f"{text} · {seeded}"


@dataclass(frozen=True)
class StreamRow:
    stream: str
    label: str
    status: StreamStatus
    chart: Markup
    learning: str  # what detection can do on it yet

    @property
    def drill(self) -> bool:
        return self.stream.startswith(DRILL_PREFIX)


@routes.get("/")
@requires(Role.viewer)
@console_page
async def overview(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    t = tr(request)
    rd = readable(request, t)
    now = services.clock.now()
    width = services.settings.bucket_seconds
    first = bucket_start(now, width) - (WINDOW_BUCKETS - 1) * width
    starts = [first + i * width for i in range(WINDOW_BUCKETS)]
    labels = [rd.when(utc(s), "%H:%M") for s in starts]
    rows: list[StreamRow] = []
    for name in await services.store.stream_names():
        status = await services.monitor.status(name)
        counts = await services.store.bucket_counts(name, utc(first), utc(starts[-1] + width))
        chart = bar_chart([counts.get(s, 0) for s in starts], labels=labels, baseline=status.expected,
                          title=rd.stream(name), baseline_label=t("chart.baseline"), filling_last=True)
        learning = learning_text(status.learning, t, rd.stream, width)
        rows.append(StreamRow(name, rd.stream(name), status, chart, learning))
    # Surging streams first, then the closest to their alarm level.
    rows.sort(key=lambda r: (r.drill, r.status.surge is None, -r.status.score, r.stream))
    incidents = await services.store.list_incidents()
    needs = []
    live = [i for i in incidents if i.is_open]
    # Counted in the store: a fan-out's deliveries are not read out for the overview.
    waiting = await services.store.unacknowledged({i.id: i.current_script.version for i in live if i.current_script})
    for incident in live:
        alerts = open_alerts(incident, await services.store.timeline(incident.id), rd, t) if incident.alerts else []
        found = attention(incident, waiting.get(incident.id, 0), now, alerts)
        if not found.empty:
            needs.append(found)
    summary = await sse.overview_summary(services)
    return aiohttp_jinja2.render_template("overview.html", request, {
        "rd": rd, "streams": [r for r in rows if not r.drill], "drill_streams": [r for r in rows if r.drill],
        "surges": [r for r in rows if r.status.surge is not None],
        "open": [i for i in incidents if i.is_open], "recent": [i for i in incidents if not i.is_open][:RECENT_CLOSED],
        "bucket_minutes": services.settings.bucket_minutes, "fingerprint": summary["fingerprint"], "needs": needs,
        "labels": lambda incident, names: param_labels(incident, names, t),
    })

