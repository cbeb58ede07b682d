"""Shared fixtures: a real Redis (COORDINATOR_TEST_REDIS_URL, else a redis-server started
on a free port), and a store of each backend on a fresh namespace."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
import redis

from coordinator.config.catalog import Catalog, load_catalog
from coordinator.clock import ManualClock
from coordinator.store import Store
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore

from .redis_server import RedisServer, unavailable

REPO = Path(__file__).resolve().parent.parent
BUCKET_SECONDS = 300
# The API wants credentials: tests that are not about access call it with the admin
# token (tests/test_auth.py is about access).
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for the whole session, persisting as the README asks (append-only file)."""
    url = os.environ.get("COORDINATOR_TEST_REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url).ping()
        except redis.RedisError as exc:
            unavailable(f"COORDINATOR_TEST_REDIS_URL={url} does not answer: {exc}")
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty store of each backend."""
    if store_kind == "sqlite":
        sqlite_store = await SqliteStore.open(tmp_path / "test.db", BUCKET_SECONDS)
        yield sqlite_store
        await sqlite_store.close()
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    redis_store = await RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)
    yield redis_store
    cleanup = redis.Redis.from_url(url)
    for key in cleanup.scan_iter(match=f"{prefix}*", count=1000):
        cleanup.delete(key)
    await redis_store.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc))


@pytest.fixture
async def other_store(store: Store, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A second instance's own connection to the same data (SQLite: one process owns the
    file, so a second set of services shares the store object)."""
    if isinstance(store, RedisStore):
        other = await RedisStore.open(request.getfixturevalue("redis_url"), store.bucket_seconds,
                                      prefix=store.keys.prefix)
        yield other
        await other.close()
    else:
        yield store


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The repository's own config (playbooks, contacts, templates), loaded once."""
    return load_catalog(REPO)
