"""The real twilio client through a proxy that does what a bad network or a struggling
provider does (coordinator/sandbox/proxy.py): each fault alone against the channel, then
a whole fan-out through a storm of all of them, on both stores. Nobody gets the script
twice, nobody goes without it, and the statuses converge."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import AsyncIterator

import pytest

from coordinator.catalog import Catalog
from coordinator.channels.base import SendError
from coordinator.channels.sms import TwilioConfig, TwilioSms
from coordinator.clock import ManualClock
from coordinator.models import DeliveryStatus
from coordinator.sandbox import TwilioSandbox
from coordinator.sandbox.proxy import FaultProxy, ProxyFaults
from coordinator.store import Store

from .test_fanout import FROM, SID, TOKEN, catalog, make_env  # noqa: F401  (catalog: the module's fixture)

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
STAFF = "+8613800000001"


@pytest.fixture
async def sandbox() -> AsyncIterator[TwilioSandbox]:
    async with TwilioSandbox(SID, TOKEN, numbers=(FROM,), seed=2) as running:
        yield running


def channel(proxy: FaultProxy, timeout: float = 0.3) -> TwilioSms:
    return TwilioSms(TwilioConfig(account_sid=SID, auth_token=TOKEN, from_number=FROM, base_url=proxy.base_url,
                                  request_timeout_seconds=timeout), clock=ManualClock(T0))


@pytest.mark.parametrize(("fault", "created"), [
    ("too_many_requests", False), ("server_error", False), ("unavailable", False), ("reset_before", False),
    ("reset_after", True), ("hold", True),
])
async def test_each_fault_is_retried_and_never_sends_twice(sandbox: TwilioSandbox, fault: str, created: bool) -> None:
    faults = ProxyFaults(hold_seconds=1.0, **{fault: 1.0})
    async with FaultProxy(sandbox.base_url, faults) as proxy:
        sms = channel(proxy)
        try:
            if created:
                # The message was created: the channel finds it instead of posting again.
                accepted = await sms.send_sms("INC-1:1:p1:sms", STAFF, "口径v1")
                [message] = sandbox.received_by(STAFF)
                assert accepted.provider_id == message.sid
            else:
                with pytest.raises(SendError) as raised:
                    await sms.send_sms("INC-1:1:p1:sms", STAFF, "口径v1")
                assert raised.value.retryable and not raised.value.permanent
                assert sandbox.received_by(STAFF) == []
            assert proxy.injected[fault] == 1
        finally:
            await sms.close()
        # Once the proxy passes everything, a retry of the same delivery sends at most once.
        proxy.faults = ProxyFaults()
        sms = channel(proxy)
        try:
            await sms.send_sms("INC-1:1:p1:sms", STAFF, "口径v1", since=T0)
        finally:
            await sms.close()
        assert len(sandbox.received_by(STAFF)) == 1


async def test_a_fan_out_through_a_storm_of_faults_reaches_everyone_once(store: Store, catalog: Catalog) -> None:  # noqa: F811
    storm = ProxyFaults(too_many_requests=0.07, server_error=0.07, unavailable=0.07, reset_before=0.07,
                        reset_after=0.07, hold=0.07, hold_seconds=0.6)
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
