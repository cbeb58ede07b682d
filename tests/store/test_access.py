"""The access side of both stores (AccessStore; store/sqlite/access.py, store/redis/access.py): server-side sessions and failed
sign-in counts, one contract over SQLite and a real Redis."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

from coordinator.store import Store, open_store

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


async def test_a_session_lives_until_it_ends_or_expires(store: Store) -> None:
    await store.start_session("s1", "chen-li", "stamp-a", T0, T0 + 12 * HOUR)
    await store.start_session("s2", "chen-li", "stamp-a", T0, T0 + 12 * HOUR)
    await store.start_session("s3", "sun-yue", "stamp-b", T0, T0 + 12 * HOUR)
    assert await store.session_holder("s1", T0 + HOUR) == ("chen-li", "stamp-a")
    assert await store.session_holder("s1", T0 + 12 * HOUR) is None  # expired
    assert await store.session_holder("nope", T0) is None
    await store.end_session("s1")
    assert await store.session_holder("s1", T0) is None
    assert await store.session_holder("s2", T0) == ("chen-li", "stamp-a")
    await store.end_session("s1")  # ending twice is harmless
    assert await store.end_sessions_of("chen-li") == 1
    assert await store.session_holder("s2", T0) is None
    assert await store.session_holder("s3", T0) == ("sun-yue", "stamp-b")
    assert await store.end_sessions_of("nobody") == 0


async def test_failed_sign_ins_count_up_and_are_forgotten(store: Store) -> None:
    forget = 3600.0
    assert await store.login_failures("user:chen-li", T0, forget) == (0, None)
    for n in range(1, 4):
        assert await store.note_login_failure("user:chen-li", T0 + timedelta(seconds=n), forget) == n
    count, last = await store.login_failures("user:chen-li", T0 + timedelta(seconds=10), forget)
    assert count == 3 and last == T0 + timedelta(seconds=3)
    assert await store.login_failures("addr:10.0.0.1", T0, forget) == (0, None)
    # an hour without a failure: forgotten, and the next one counts from 1
    later = T0 + timedelta(seconds=3 + forget)
    assert await store.login_failures("user:chen-li", later, forget) == (0, None)
    assert await store.note_login_failure("user:chen-li", later + timedelta(seconds=1), forget) == 1
    await store.clear_login_failures("user:chen-li")
    assert await store.login_failures("user:chen-li", T0, forget) == (0, None)


async def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/private.db", 300)
    try:
        await store.get_or_create_secret("session-key", "k")
        for name in os.listdir(tmp_path):
            mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
            assert mode & 0o077 == 0, (name, oct(mode))
    finally:
        await store.close()
