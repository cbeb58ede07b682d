"""The two connections every SQLite mixin works through, and the read helpers.

Writes go through one connection under one lock, so a check-then-insert (dedupe) is never
interleaved with another coroutine's. Reads go through a second connection, each query
run to its end in one call: a read sees one committed snapshot, never a write of the
other connection half done (a cursor left open on the writing connection while another
coroutine wrote through it returned partial results)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any, Sequence

import aiosqlite

from ...errors import StoreError

_IN_CHUNK = 500  # ids per `IN (...)`, well under SQLite's variable limit


class SqliteConnection:
    # One process owns the file: what it wrote last is what is stored.
    single_process = True

    def __init__(self, db: aiosqlite.Connection, reader: aiosqlite.Connection, bucket_seconds: int) -> None:
        self._db = db
        self._reader = reader
        self.bucket_seconds = bucket_seconds
        self._write = asyncio.Lock()

    async def close(self) -> None:
        await self._reader.close()
        await self._db.close()

    async def ping(self) -> None:
        try:
            await self._reader.execute_fetchall("SELECT 1")
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"SQLite store unavailable: {exc}") from exc

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read on the reading connection, executed and fetched in one call."""
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(f"reading the SQLite store failed: {exc}") from exc

    async def _all_in(self, sql: str, values: Sequence[Any], after: Sequence[Any] = ()) -> list[Any]:
        """`sql` with one `IN ({})`, run over `values` in chunks; `after`: the parameters
        that follow the IN list."""
        rows: list[Any] = []
        for i in range(0, len(values), _IN_CHUNK):
            chunk = values[i : i + _IN_CHUNK]
            rows += await self._all(sql.format(",".join("?" * len(chunk))), (*chunk, *after))
        return rows

    async def _existing(self, sql: str, values: Sequence[Any]) -> set[Any]:
        return {r[0] for r in await self._all_in(sql, values)}
