"""What the service counts for Prometheus (GET /metrics, web/metrics.py), kept in its
own registry. Counters and histograms are this instance's (each instance exports its
own; Prometheus sums them); the gauges of global state (incidents, the outbox, who has
not acknowledged) are read from the shared store when scraped, so every instance
reports the same values for them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .models import DeliveryStatus
from .store.records import Moved

REGISTRY = CollectorRegistry()

COMPLAINTS = Counter("coordinator_complaints_received_total", "Complaints stored (new ones, not duplicates)",
                     ["category", "channel"], registry=REGISTRY)
REFUSED = Counter("coordinator_complaints_refused_total", "Complaints refused, by the field at fault",
                  ["reason"], registry=REGISTRY)
DELIVERIES = Counter("coordinator_delivery_status_total", "Deliveries moved to a status",
                     ["medium", "purpose", "status"], registry=REGISTRY)
SEND_SECONDS = Histogram("coordinator_send_attempt_seconds", "One send attempt of a delivery, provider call included",
                         ["medium"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
ACKS = Counter("coordinator_acknowledgements_total", "Script versions acknowledged", ["via"], registry=REGISTRY)
ACK_SECONDS = Histogram(
    "coordinator_time_to_acknowledge_seconds", "From a script version's publication to each person's acknowledgement",
    ["via"], buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200), registry=REGISTRY)
FIRST_SCRIPT_SECONDS = Histogram(
    "coordinator_surge_to_first_script_seconds", "From the surge's detection to the first script version published",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800), registry=REGISTRY)
STORE_ERRORS = Counter("coordinator_store_errors_total", "Requests answered 503 because the store failed",
                       registry=REGISTRY)
# Network alarms in (alarms/intake.py), by source (alertmanager, pagerduty) and outcome
# (alarms.Outcome: opened, attached, repeat, unmapped, failed, cleared, resolved, ...).
ALARMS = Counter("coordinator_alarms_received_total", "Network alarms received, by source and what became of them",
                 ["source", "outcome"], registry=REGISTRY)
RELOAD_OK = Gauge("coordinator_config_last_reload_successful", "1 if the last config (re)load succeeded",
                  registry=REGISTRY)
RELOAD_AT = Gauge("coordinator_config_last_reload_success_timestamp_seconds", "When the config last loaded",
                  registry=REGISTRY)
# Global state, set from the store at each scrape.
INCIDENTS = Gauge("coordinator_incidents", "Incidents by playbook and status", ["playbook", "status"],
                  registry=REGISTRY)
OUTBOX = Gauge("coordinator_outbox_depth", "Deliveries waiting in the outbox", registry=REGISTRY)
OLDEST_CLAIM = Gauge("coordinator_outbox_oldest_claim_age_seconds", "How long the longest-claimed delivery still in "
                     "the outbox (sending, or waiting for a retry) has been claimed; 0 when none is",
                     registry=REGISTRY)
# This instance's stream monitor, as of its last tick (every instance checks every stream).
STREAMS = Gauge("coordinator_streams", "Complaint streams (category x region) watched, drills apart",
                registry=REGISTRY)
STREAMS_LEARNING = Gauge("coordinator_streams_learning", "Streams in their first day (alarming only on "
                         "overwhelming evidence)", registry=REGISTRY)
STREAMS_ALARMING = Gauge("coordinator_streams_alarming", "Streams with a surge open", registry=REGISTRY)
UNACKED = Gauge("coordinator_unacknowledged_people", "People reached by the wording in force who have not "
                "acknowledged it, per open incident", ["incident"], registry=REGISTRY)
# Outgoing webhooks (webhooks/sender.py): outcome sent (a 2xx), failed (an attempt to be
# retried), dropped (too old), gone (410: not retried), unqueued (the store refused it).
WEBHOOKS = Counter("coordinator_webhook_deliveries_total", "Lifecycle event deliveries to webhook subscribers, "
                   "by outcome", ["subscriber", "outcome"], registry=REGISTRY)
WEBHOOK_QUEUE = Gauge("coordinator_webhook_queue_depth", "Lifecycle events waiting per webhook subscriber",
                      ["subscriber"], registry=REGISTRY)


@contextlib.contextmanager
def timed_send(medium: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        SEND_SECONDS.labels(medium).observe(time.perf_counter() - started)


def config_loaded(ok: bool, at: float | None = None) -> None:
    RELOAD_OK.set(1 if ok else 0)
    if ok:
        RELOAD_AT.set(at if at is not None else time.time())


def counted(moved: Moved, status: DeliveryStatus) -> Moved:
    """A status update's result, counted if the delivery moved."""
    if moved.delivery is not None and moved.moved:
        DELIVERIES.labels(moved.delivery.key.medium.value, moved.delivery.key.notice or "script", status.value).inc()
    return moved
