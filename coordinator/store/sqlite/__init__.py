"""The SQLite backend, one module per store protocol, composed in store.py."""

from .store import SqliteStore

__all__ = ["SqliteStore"]
