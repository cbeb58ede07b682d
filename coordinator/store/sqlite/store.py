"""The embedded default store: one SQLite file in WAL mode, for one process. Composed of
one mixin per protocol (complaints.py, incidents.py, ...); this module opens the file
and creates the schema they together need."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import aiosqlite

from ...errors import StoreError
from ...models import Incident
from .access import ACCESS_SCHEMA, SqliteAccess
from .alarms import ALARM_SCHEMA, SqliteAlarms
from .complaints import COMPLAINT_SCHEMA, SqliteComplaints
from .deliveries import DELIVERY_SCHEMA, SqliteDeliveries, migrate_deliveries
from .drills import DRILL_SCHEMA, SqliteDrills
from .incidents import INCIDENT_SCHEMA, SqliteIncidents
from .instances import INSTANCE_SCHEMA, SqliteInstances
from .sms import SMS_SCHEMA, SqliteSms
from .webhooks import WEBHOOK_SCHEMA, SqliteWebhooks

SCHEMA = (COMPLAINT_SCHEMA + INCIDENT_SCHEMA + DELIVERY_SCHEMA + SMS_SCHEMA + DRILL_SCHEMA + ACCESS_SCHEMA
          + WEBHOOK_SCHEMA + INSTANCE_SCHEMA + ALARM_SCHEMA)

log = logging.getLogger(__name__)


def _private_file(path: str | Path) -> None:
    """The file holds complaints (hashed subscribers, but texts), staff contacts and, unless
    the operator passes them as settings, the service's secrets: create it readable by
    its owner only (SQLite gives its -wal and -shm files the same mode). An older file
    that others may read is left as it is, with a warning that says how to mend it."""
    if str(path) == ":memory:":
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("the store file %s can be read by other users (mode %o): run chmod 600 %s",
                        path, stat.S_IMODE(mode), path)
    except OSError:
        return  # sqlite3 names the problem when it opens the path
    else:
        os.close(fd)
    folder = os.path.dirname(os.path.abspath(path))
    mode = os.stat(folder).st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:  # sticky (/tmp): others cannot replace it
        log.warning("the store's folder %s can be written by any user: they could replace the store", folder)


class SqliteStore(SqliteComplaints, SqliteIncidents, SqliteDeliveries, SqliteSms, SqliteDrills, SqliteAccess,
                  SqliteWebhooks, SqliteInstances, SqliteAlarms):
    def __init__(self, db: aiosqlite.Connection, reader: aiosqlite.Connection, bucket_seconds: int) -> None:
        super().__init__(db, reader, bucket_seconds)
        self._incidents: dict[str, Incident] = {}

    @classmethod
    async def open(cls, path: str | Path, bucket_seconds: int) -> "SqliteStore":
        try:
            _private_file(path)
            db = await aiosqlite.connect(str(path))
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.executescript(SCHEMA)
            await migrate_deliveries(db)
            await db.commit()
            reader = await aiosqlite.connect(str(path))
            await reader.execute("PRAGMA busy_timeout=5000")
            await reader.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {path}: {exc}") from exc
        return cls(db, reader, bucket_seconds)
