"""What holds for the store as a whole (ping, reopening), on SQLite and on a real Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from coordinator.store import Store
from coordinator.store.redis import RedisStore
from coordinator.store.sqlite import SqliteStore

from ..conftest import BUCKET_SECONDS
from .builders import complaint, incident, opened


async def test_a_reachable_store_answers_ping(store: Store) -> None:
    await store.ping()


async def test_secret_is_created_once(store: Store) -> None:
    assert await store.get_or_create_secret("subscriber", "first") == "first"
    assert await store.get_or_create_secret("subscriber", "second") == "first"


async def test_data_survives_reopening(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if store_kind == "sqlite":
        path = tmp_path / "reopen.db"
        reopen = lambda: SqliteStore.open(path, BUCKET_SECONDS)  # noqa: E731
    else:
        url, prefix = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex[:12]}:"
        reopen = lambda: RedisStore.open(url, BUCKET_SECONDS, prefix=prefix)  # noqa: E731
    first = await reopen()
    await first.add_complaints([complaint("a")])
    await first.open_incident(incident("INC-1"), opened())
    await first.close()
    second = await reopen()
    assert [a.new for a in await second.add_complaints([complaint("a")])] == [False]
    assert await second.count_complaints() == 1
    assert (await second.open_incident(incident("INC-2"), opened()))[1] is False
    await second.close()
