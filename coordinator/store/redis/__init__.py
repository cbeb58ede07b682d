"""The Redis backend, one module per store protocol, composed in store.py; every key
name is built in keys.py."""

from .store import RedisStore

__all__ = ["RedisStore"]
