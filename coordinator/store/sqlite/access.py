"""Secrets, sessions and failed sign-in counts in SQLite."""

from __future__ import annotations

from datetime import datetime

from .connection import SqliteConnection

ACCESS_SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, stamp TEXT NOT NULL, expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user);
CREATE TABLE IF NOT EXISTS login_failures (
    key TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at REAL NOT NULL
) WITHOUT ROWID;
"""


class SqliteAccess(SqliteConnection):
    async def get_or_create_secret(self, name: str, candidate: str) -> str:
        async with self._write:
            await self._db.execute("INSERT OR IGNORE INTO secrets VALUES (?, ?)", (name, candidate))
            await self._db.commit()
        row = await self._one("SELECT value FROM secrets WHERE name = ?", (name,))
        return str(row[0])

    async def start_session(self, session_id: str, user: str, stamp: str, now: datetime, expires: datetime) -> None:
        async with self._write:
            await self._db.execute("DELETE FROM sessions WHERE expires <= ?", (now.timestamp(),))
            await self._db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?)",
                                   (session_id, user, stamp, expires.timestamp()))
            await self._db.commit()

    async def session_holder(self, session_id: str, now: datetime) -> tuple[str, str] | None:
        row = await self._one("SELECT user, stamp FROM sessions WHERE id = ? AND expires > ?",
                              (session_id, now.timestamp()))
        return (str(row[0]), str(row[1])) if row else None

    async def end_session(self, session_id: str) -> None:
        async with self._write:
            await self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            await self._db.commit()

    async def end_sessions_of(self, user: str) -> int:
        async with self._write:
            cur = await self._db.execute("DELETE FROM sessions WHERE user = ?", (user,))
            await self._db.commit()
        return int(cur.rowcount)

    async def note_login_failure(self, key: str, now: datetime, forget_after: float) -> int:
        """One more failed sign-in under `key`; a count idle `forget_after` seconds starts again."""
        at = now.timestamp()
        async with self._write:
            await self._db.execute(
                "INSERT INTO login_failures VALUES (?, 1, ?) ON CONFLICT (key) DO UPDATE SET"
                " count = CASE WHEN last_at <= ? THEN 1 ELSE count + 1 END, last_at = excluded.last_at",
                (key, at, at - forget_after))
            await self._db.commit()
        row = await self._one("SELECT count FROM login_failures WHERE key = ?", (key,))
        return int(row[0]) if row else 1

    async def login_failures(self, key: str, now: datetime, forget_after: float) -> tuple[int, datetime | None]:
        row = await self._one("SELECT count, last_at FROM login_failures WHERE key = ? AND last_at > ?",
                              (key, now.timestamp() - forget_after))
        if not row:
            return 0, None
        return int(row[0]), datetime.fromtimestamp(float(row[1]), tz=now.tzinfo)

    async def clear_login_failures(self, key: str) -> None:
        async with self._write:
            await self._db.execute("DELETE FROM login_failures WHERE key = ?", (key,))
            await self._db.commit()
