"""A whole fan-out through a proxy that does what a bad network or a struggling provider
does (coordinator/sandbox/faultproxy.py; each fault alone against the channel is in
tests/test_faultproxy.py), on both stores: nobody gets the script twice, nobody goes
without it, and the statuses converge."""

from __future__ import annotations

from collections import Counter

from coordinator.config.catalog import Catalog
from coordinator.models import DeliveryStatus
from coordinator.sandbox.faultproxy import FaultRates
from coordinator.store import Store

from .test_fanout import make_env


async def test_a_fan_out_through_a_storm_of_faults_reaches_everyone_once(store: Store, catalog: Catalog) -> None:  # noqa: F811
    storm = FaultRates(too_many_requests=0.09, server_error=0.09, unavailable=0.09, reset_before=0.09,
                        reset_after=0.09, hold=0.09, hold_seconds=0.6)
    async for env in make_env(store, catalog, timeout=0.25, proxy=storm):
        assert env.proxy is not None
        body = await env.trigger(region="*")
        await env.settle()
        assert set(env.proxy.injected) == {"too_many_requests", "server_error", "unavailable", "reset_before",
                                           "reset_after", "hold"}
        sms = [d for d in await store.deliveries(body["id"]) if d.key.channel == "sms"]
        assert len(sms) > 20
        got = Counter(m.to for m in env.sandbox.messages if m.direction == "outbound-api")
        for d in sms:
            assert got[d.address] >= 1, f"{d.key.person_id} got nothing"
        script = [m for m in env.sandbox.messages if m.direction == "outbound-api" and "统一口径" in m.body]
        assert sorted(Counter(m.to for m in script).values()) == [1] * len(sms)  # exactly once each
        # every status converged: the sandbox's receipts came by callback
        await env.sandbox.settled()
        final = {d.status for d in await store.deliveries(body["id"]) if d.key.channel == "sms"}
        assert final <= {DeliveryStatus.delivered, DeliveryStatus.sent}
        assert any(d.attempts > 0 for d in await store.deliveries(body["id"])), "the storm caused no retry"
