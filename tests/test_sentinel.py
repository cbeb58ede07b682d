"""Redis behind Sentinel, for real (tests/sentinel_cluster.py: a primary, two replicas and
three sentinels on loopback): `redis+sentinel://` URLs; the store contract on it; the
primary killed with SIGKILL while `coordinator serve` takes complaints (every complaint
answered 200 is on the promoted primary; /readyz says unreachable, then ready) and while
it fans a script out (the outbox resumes and finishes; nothing sent twice beyond what was
in flight)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiohttp
import pytest
import redis

from bench.faults.harness import board, converged
from coordinator.config.catalog import Catalog
from coordinator.config.settings import Settings
from coordinator.errors import SettingsError, StoreError
from coordinator.store import Store, open_store, shown
from coordinator.store.redis.failover import repeatable
from coordinator.store.redis.keys import RedisKeys
from coordinator.store.redis.sentinel import SentinelTarget

from .conftest import BUCKET_SECONDS, REPO
from .redis_server import free_port
from .sentinel_cluster import SentinelCluster
from .service_process import ServeProcess
from .store.test_complaints import (  # noqa: F401  the contract's tests, run here on Sentinel
    test_complaints_are_stored_once_and_counted_once,
    test_one_open_surge_per_stream,
    test_repeat_complainants_within_seven_days,
    test_stream_state_is_saved_by_compare_and_set,
)
from .store.test_deliveries import (  # noqa: F401
    test_concurrent_claims_never_share_a_delivery,
    test_delivery_is_deduplicated_and_only_moves_forward,
    test_outbox_claims_leases_retries_and_finishes,
    test_status_updates_in_a_batch,
)
from .store.test_incidents import (  # noqa: F401
    test_a_save_from_a_stale_copy_is_refused,
    test_concurrent_openers_make_one_incident,
    test_first_ack_wins,
    test_timeline_is_append_only_in_order,
)
from .test_faults import (  # noqa: F401  the fan-out's providers and checks, as the fault tests use them
    EMAIL_CONCURRENCY,
    SMS_CONCURRENCY,
    Providers,
    check_everyone_once,
    config,
    in_scope_of,
    providers,
    script_messages,
    trigger,
)

# --- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize("url, sentinels, service, db, password, extra", [
    ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/coord",
     (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)), "coord", 0, None, {}),
    ("redis+sentinel://s3cr%40t@h1:1,h2:2/main/3?prefix=cx:&wait_replicas=2&socket_timeout=2.5",
     (("h1", 1), ("h2", 2)), "main", 3, "s3cr@t", {"prefix": "cx:", "wait_replicas": 2, "socket_timeout": 2.5}),
    ("redis+sentinel://app:pw@h:26379/coord/1?wait_replicas=0&sentinel_password=sp&failover_seconds=5",
     (("h", 26379),), "coord", 1, "pw", {"username": "app", "wait_replicas": 0, "sentinel_password": "sp",
                                         "failover_seconds": 5.0}),
])
def test_sentinel_urls_are_read(url: str, sentinels: tuple[tuple[str, int], ...], service: str, db: int,
                                password: str | None, extra: dict[str, object]) -> None:
    target = SentinelTarget.parse(url)
    assert (target.sentinels, target.service, target.db, target.password) == (sentinels, service, db, password)
    for name, value in extra.items():
        assert getattr(target, name) == value
    if "wait_replicas" not in extra:
        assert target.wait_replicas == 1  # durable unless told otherwise


@pytest.mark.parametrize("url, says", [
    ("redis+sentinel://h1:1,h2:2", "names no service"),
    ("redis+sentinel://h1:1/coord/zero", "database must be a number"),
    ("redis+sentinel://h1/coord", "not host:port"),
    ("redis+sentinel://h1:99999/coord", "not host:port"),
    ("redis+sentinel://h1:1/coord?wait=1", "unknown option 'wait'"),
    ("redis+sentinel://h1:1/coord?wait_replicas=x", "wait_replicas must be a number"),
    ("redis+sentinel://h1:1/coord?wait_timeout_ms=9000", "shorter than socket_timeout"),
    ("redis+sentinel://pw@h1:1/coord/1/2", "names no service"),
])
def test_bad_sentinel_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        SentinelTarget.parse(url)
    assert "pw" not in str(caught.value)  # the URL may hold a password: never repeated


def test_a_store_url_in_a_log_line_shows_no_password() -> None:
    assert shown("redis+sentinel://s3cr3t@h1:1,h2:2/coord/0?sentinel_password=sp") == "redis+sentinel://***@h1:1,h2:2/coord/0"
    assert shown("redis://h:6379/0?prefix=a:") == "redis://h:6379/0"


def test_serve_refuses_a_bad_sentinel_url_naming_what_is_wrong() -> None:
    with pytest.raises(SettingsError, match="COORDINATOR_STORE: .*names no service"):
        Settings(store_url="redis+sentinel://h1:26379").validate()


@pytest.mark.parametrize("command, again", [
    (("GET", "k"), True),
    (("SET", "k", "v"), True),
    (("SET", "k", "v", "NX"), False),  # its answer is a decision (a surge opened once)
    (("ZADD", "k", "1", "m"), True),
    (("RPUSH", "k", "v"), False),
    (("INCR", "k"), False),
    (("EVALSHA", "0" * 40, 0), False),  # a script not known to be safe twice
    (("WAIT", 1, 1000), True),
])
def test_only_commands_safe_twice_are_sent_again_when_in_doubt(command: tuple[object, ...], again: bool) -> None:
    assert repeatable(command) is again


async def test_the_stores_guarded_scripts_are_repeatable_and_compare_and_set_is_not(cluster: SentinelCluster) -> None:
    store = await open_store(cluster.url(query=f"prefix=t-{uuid.uuid4().hex[:8]}:"), BUCKET_SECONDS)
    try:
        shas = {name: getattr(store, name).sha for name in ("_add_complaints", "_claim", "_update_deliveries",
                                                          "_add_delivery", "_record_ack", "_save_incident",
                                                          "_save_state", "_open_incident")}
    finally:
        await store.close()
    assert {name for name, sha in shas.items() if repeatable(("EVALSHA", sha, 0))} == {
        "_add_complaints", "_claim", "_update_deliveries", "_add_delivery", "_record_ack"}


# --- the store contract on Sentinel -------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    """One deployment for the tests that do not kill anything."""
    deployment = SentinelCluster(tmp_path_factory.mktemp("sentinel")).start()
    yield deployment
    deployment.stop()


@pytest.fixture
def store_kind() -> str:
    return "redis"


@pytest.fixture
async def store(cluster: SentinelCluster) -> AsyncIterator[Store]:
    """The contract's `store`: a Sentinel store on a fresh namespace, each complaint
    confirmed by a replica."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    opened = await open_store(cluster.url(query=f"prefix={prefix}"), BUCKET_SECONDS)
    yield opened
    await opened.close()
    host, port = cluster.primary_address()
    with redis.Redis(host=host, port=port) as cleanup:
        for key in cleanup.scan_iter(match=f"{prefix}*", count=1000):
            cleanup.delete(key)


async def test_not_ready_while_the_primary_has_fewer_replicas_than_must_confirm(cluster: SentinelCluster) -> None:
    enough = await open_store(cluster.url(query="wait_replicas=2"), BUCKET_SECONDS)
    await enough.ping()
    await enough.close()
    too_many = await open_store(cluster.url(query="wait_replicas=3"), BUCKET_SECONDS)
    try:
        with pytest.raises(StoreError, match="has 2 of the 3 replicas"):
            await too_many.ping()
    finally:
        await too_many.close()


async def test_a_complaint_is_answered_only_once_a_replica_holds_it(cluster: SentinelCluster) -> None:
    """With every replica stopped, the primary still applies the write but WAIT hears
    from nobody (and `min-replicas-to-write` then refuses writes): no answer "stored"."""
    from .store.builders import complaint

    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    opened = await open_store(cluster.url(query=f"prefix={prefix}&failover_seconds=2&wait_timeout_ms=300"),
                              BUCKET_SECONDS)
    replicas = [n for n in cluster.servers if n is not cluster.primary()]
    try:
        assert [a.new for a in await opened.add_complaints([complaint("c-before")])] == [True]
        procs = [node.proc for node in replicas if node.proc is not None]
        for proc in procs:
            proc.send_signal(signal.SIGSTOP)  # alive to the sentinels for a while, silent to WAIT
        try:
            with pytest.raises(StoreError, match="replicas confirmed"):
                await opened.add_complaints([complaint("c-unconfirmed")])
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGCONT)
    finally:
        await opened.close()


async def test_a_surge_opened_in_doubt_is_read_back(cluster: SentinelCluster) -> None:
    """`SET ... NX` (a stream's surge opened once) whose answer does not come in time
    (writes paused on the primary past the socket timeout) is not sent blindly again:
    read back, our surge there is reported opened by us, another one is not."""
    from .store.builders import T0, surge

    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    opened = await open_store(cluster.url(query=f"prefix={prefix}&socket_timeout=1&wait_timeout_ms=500"),
                              BUCKET_SECONDS)
    try:
        first = surge("broadband/hangzhou", T0)
        with cluster.primary().client() as primary:
            primary.execute_command("CLIENT PAUSE", 1500, "WRITE")
        assert await opened.open_stream_surge(first) is True
        assert await opened.stream_surge("broadband/hangzhou") == first
        assert await opened.open_stream_surge(surge("broadband/hangzhou", T0 + timedelta(minutes=5))) is False
    finally:
        await opened.close()


async def test_a_demoted_primary_is_followed_to_the_new_one(tmp_path: Path) -> None:
    """SENTINEL FAILOVER (a planned switch-over): the old primary becomes a replica and
    refuses writes (READONLY, nothing applied); each is sent again to the promoted one,
    and none fails."""
    from .store.builders import complaint

    deployment = SentinelCluster(tmp_path / "sentinel").start()
    prefix = f"switch-{uuid.uuid4().hex[:8]}:"
    stored: list[str] = []
    stop = asyncio.Event()
    opened: Store | None = None
    try:
        opened = store_ = await open_store(deployment.url(query=f"prefix={prefix}"), BUCKET_SECONDS)

        async def write(worker: int) -> None:
            n = 0
            while not stop.is_set():
                cid = f"w{worker}-{n}"
                n += 1
                await store_.add_complaints([complaint(cid)])
                stored.append(cid)
                await asyncio.sleep(0.002)

        writers = [asyncio.create_task(write(w)) for w in range(4)]
        await asyncio.sleep(0.5)
        old = deployment.primary()
        with old.client() as primary:  # docs/ops/redis-ha.md: a planned switch-over pauses writes first
            primary.execute_command("CLIENT PAUSE", 5000, "WRITE")
        with deployment.sentinels[0].client() as sentinel:
            assert sentinel.execute_command("SENTINEL FAILOVER", deployment.service)
        new = await asyncio.to_thread(deployment.wait_for_failover, old)
        written_before = len(stored)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*writers)  # raises if any write failed
        assert len(stored) > written_before, "no write after the switch-over"
        with new.client() as primary:
            with primary.pipeline(transaction=False) as pipe:
                for cid in stored:
                    pipe.exists(RedisKeys(prefix).complaint(cid))
                found = pipe.execute()
        lost = [cid for cid, there in zip(stored, found) if not there]
        assert lost == [], f"{len(lost)} of {len(stored)} confirmed complaints lost in the switch-over"
    finally:
        stop.set()
        if opened is not None:
            await opened.close()
        deployment.stop()


# --- the primary killed under a real `coordinator serve` ---------------------------------


async def answers(service: ServeProcess, path: str) -> int:
    try:
        async with aiohttp.ClientSession(headers=service.headers) as session:
            async with session.get(f"{service.url}{path}", timeout=aiohttp.ClientTimeout(total=10)) as resp:
                return resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return 0


async def test_primary_killed_during_intake_loses_no_answered_complaint(
    providers: Providers, tmp_path: Path  # noqa: F811  (the fixture of tests/test_faults.py)
) -> None:
    cluster = SentinelCluster(tmp_path / "sentinel").start()
    prefix = f"intake-{uuid.uuid4().hex[:8]}:"
    service = ServeProcess(REPO, cluster.url(query=f"prefix={prefix}"), free_port(), tmp_path / "serve.log",
                           **providers.env())
    statuses: Counter[int] = Counter()
    answered: set[str] = set()
    ready: list[tuple[float, int]] = []
    stop = asyncio.Event()
    try:
        await service.start()
        assert await answers(service, "/readyz") == 200

        async def post(worker: int) -> None:
            n = 0
            async with aiohttp.ClientSession(headers=service.headers) as session:
                while not stop.is_set():
                    now = datetime.now(timezone.utc).isoformat()
                    items = [{"id": f"w{worker}-{n}-{k}", "received_at": now, "channel": "hotline",
                              "category": "broadband", "region": "ningbo"} for k in range(5)]
                    n += 1
                    async with session.post(f"{service.url}/api/complaints", json=items,
                                            timeout=aiohttp.ClientTimeout(total=60)) as resp:
                        statuses[resp.status] += 1
                        if resp.status == 200:
                            answered.update(i["id"] for i in items)
                    await asyncio.sleep(0.02)

        async def probe() -> None:
            while not stop.is_set():
                ready.append((time.monotonic(), await answers(service, "/readyz")))
                await asyncio.sleep(0.1)

        tasks = [asyncio.create_task(post(w)) for w in range(6)] + [asyncio.create_task(probe())]
        await asyncio.sleep(1.0)
        before = len(answered)
        old = await asyncio.to_thread(cluster.kill_primary)
        killed_at = time.monotonic()
        new = await asyncio.to_thread(cluster.wait_for_failover, old)
        await asyncio.sleep(4.0)  # intake goes on through the promoted primary
        stop.set()
        await asyncio.gather(*tasks)

        assert before > 0 and len(answered) > before, "no complaint was answered after the failover"
        assert set(statuses) <= {200, 503}, statuses  # never a 500
        with new.client() as primary:
            keys = RedisKeys(prefix)
            with primary.pipeline(transaction=False) as pipe:
                for cid in sorted(answered):
                    pipe.exists(keys.complaint(cid))
                found = pipe.execute()
        lost = [cid for cid, there in zip(sorted(answered), found) if not there]
        assert lost == [], f"{len(lost)} complaints answered 200 are not on the promoted primary"
        after_kill = [status for at, status in ready if at > killed_at]
        assert 503 in after_kill, "/readyz never said the store was unreachable during the failover"
        deadline = time.monotonic() + 30  # ready again once the promoted primary has its replica back
        while await answers(service, "/readyz") != 200:
            assert time.monotonic() < deadline, "/readyz is not ready after the failover"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        service.stop()
        cluster.stop()


async def test_primary_killed_during_a_fan_out_the_outbox_finishes(
    providers: Providers, config: tuple[Path, Catalog], tmp_path: Path  # noqa: F811  (tests/test_faults.py's)
) -> None:
    directory, catalog = config
    cluster = SentinelCluster(tmp_path / "sentinel").start()
    env = providers.env(COORDINATOR_SMS_RATE="200", COORDINATOR_EMAIL_RATE="100")  # paced: the kill lands mid-way
    service = ServeProcess(directory, cluster.url(query=f"prefix=fanout-{uuid.uuid4().hex[:8]}:"), free_port(),
                           tmp_path / "serve.log", **env)
    providers.sandbox.inbound_url = f"{service.url}/hooks/twilio/inbound"
    try:
        await service.start()
        incident_id = await trigger(service)
        deadline = time.monotonic() + 30
        while script_messages(providers) < 60:
            assert time.monotonic() < deadline, "60 script SMS not sent within 30 s"
            await asyncio.sleep(0.05)
        old = await asyncio.to_thread(cluster.kill_primary)
        at_kill = script_messages(providers)
        await asyncio.to_thread(cluster.wait_for_failover, old)
        deadline = time.monotonic() + 90
        while not await finished(service, incident_id, catalog):
            assert time.monotonic() < deadline, "the fan-out did not finish after the failover"
            await asyncio.sleep(0.5)
        sms, _ = in_scope_of(catalog)
        assert at_kill < sms, "the fan-out was over before the kill"
        duplicates = await check_everyone_once(providers, catalog, service, incident_id)
        # Only a send in flight at the kill may go twice.
        print(f"sent when the primary was killed: {at_kill} SMS; sent twice: {dict(duplicates)}")
        assert duplicates["sms"] <= SMS_CONCURRENCY and duplicates["email"] <= EMAIL_CONCURRENCY, duplicates
    finally:
        service.stop()
        cluster.stop()


async def finished(service: ServeProcess, incident_id: str, catalog: Catalog) -> bool:
    """Every script delivery written with a final status (False while the API answers 503)."""
    try:
        return converged(await board(service, incident_id), in_scope_of(catalog))
    except AssertionError:
        return False
