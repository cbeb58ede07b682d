"""Server-side sessions. The cookie (encrypted by aiohttp-session) names the user and a
random session id; the store says whether that id is still live. So signing out ends
the session even in a copy of the cookie, a new password or a removed user ends every
session begun before it, and a cookie forged with a stolen cookie key names no live id.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from aiohttp_session import Session

from ..clock import Clock
from ..store import AccessStore
from ..config.users import Directory, User

log = logging.getLogger(__name__)

USER = "user"
SESSION_ID = "sid"


class ServerSessions:
    def __init__(self, store: AccessStore, clock: Clock, directory: Directory, hours: float) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory
        self.lifetime = timedelta(hours=hours)

    async def begin(self, session: Session, user: User) -> None:
        """`session` must be new (aiohttp_session.new_session): nothing from before survives."""
        session_id = secrets.token_urlsafe(24)
        now = self.clock.now()
        await self.store.start_session(session_id, user.name, self.directory.stamp(user.name) or "", now,
                                       now + self.lifetime)
        session[USER] = user.name
        session[SESSION_ID] = session_id

    async def user_of(self, session: Session) -> User | None:
        """The signed-in user, or None; a session that ended is cleared from the cookie."""
        name, session_id = session.get(USER), session.get(SESSION_ID)
        if name is None and session_id is None:
            return None
        user = self.directory.get(name) if isinstance(name, str) else None
        holder = (await self.store.session_holder(session_id, self.clock.now())
                  if isinstance(session_id, str) else None)
        if user is not None and holder == (user.name, self.directory.stamp(user.name)):
            return user
        if holder is not None and isinstance(session_id, str):
            await self.store.end_session(session_id)  # its user was removed or changed password
        session.pop(USER, None)
        session.pop(SESSION_ID, None)
        return None

    async def end(self, session: Session) -> None:
        session_id = session.get(SESSION_ID)
        if isinstance(session_id, str):
            await self.store.end_session(session_id)
        session.invalidate()
