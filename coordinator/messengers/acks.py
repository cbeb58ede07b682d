"""A press of a messenger card's 确认 button, made an acknowledgement of exactly that
person, incident and version.

- **WeCom** POSTs a `template_card_event` to the callback URL: its signature is checked,
  it is decrypted (wecom_crypto.py), the userid and the button's key name the person and
  the (incident, version); once acknowledged, the card's button turns grey as 已确认
  (`update_template_card`, spending the press's response_code). WeCom retries a callback
  it got no answer to within 5 s, so the answer comes first and the greying after, and
  the acknowledgement is idempotent. A callback seen before (same signature and nonce)
  or more than 5 minutes old is refused: a replay changes nothing.
- **DingTalk** opens the card's link (links.py: incident and version, signed) in its
  browser; the page gets a 免登 code from DingTalk's JSAPI and posts it; the code is
  exchanged for the userid with the app's token.

Either way the person must be a contact with that userid who was sent that version on
that messenger: a press for anything else acknowledges nothing."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Mapping

from .links import read_card_token
from ..channels.dingtalk import DingTalkClient
from ..channels.wecom import WeComClient
from ..channels.wecom_crypto import WeComCrypto, read_card_click
from ..clock import Clock
from ..config.catalog import Catalog
from ..errors import AckTokenInvalid, CallbackRefused, SendError
from ..models import DeliveryKey, Medium
from .sending import parse_card_key
from ..store import Store

log = logging.getLogger(__name__)

Acknowledge = Callable[[str, int, str, str], Awaitable[bool]]
SEEN_CALLBACKS = 10_000  # signatures remembered against replays (5 minutes' worth at most)


@dataclass(frozen=True)
class Pressed:
    """What a press acknowledged."""

    incident_id: str
    version: int
    person_id: str
    new: bool
    """False: acknowledged before (a repeated press, or WeCom's retry)."""


class MessengerAcks:
    def __init__(self, *, store: Store, catalog: Callable[[], Catalog], clock: Clock, acknowledge: Acknowledge,
                 ack_secret: str, dingtalk: DingTalkClient | None, wecom: WeComClient | None,
                 wecom_crypto: WeComCrypto | None) -> None:
        """`acknowledge(incident, version, person, via)` is the pipeline's."""
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.acknowledge = acknowledge
        self.ack_secret = ack_secret
        self.dingtalk = dingtalk
        self.wecom = wecom
        self.crypto = wecom_crypto
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._greying: set[asyncio.Task[None]] = set()
        self._index: tuple[object, dict[tuple[str, str], str]] | None = None

    # --- WeCom -----------------------------------------------------------------------

    def wecom_url_check(self, query: Mapping[str, str]) -> str:
        """The echostr's plaintext for WeCom's URL check. Raises CallbackRefused."""
        if self.crypto is None:
            raise CallbackRefused("receiver", "WeCom is not configured")
        return self.crypto.check_url(query, now=self.clock.now())

    async def wecom_press(self, query: Mapping[str, str], body: bytes) -> Pressed | None:
        """A callback POST: the press it carries acknowledged (None: another event, or a
        press of nothing we sent). Raises CallbackRefused (forged, stale, replayed)."""
        if self.crypto is None:
            raise CallbackRefused("receiver", "WeCom is not configured")
        message = self.crypto.open_callback(query, body, now=self.clock.now())
        seen = (query.get("msg_signature", ""), query.get("nonce", ""))
        if seen in self._seen:
            raise CallbackRefused("replayed", "this callback was received before")
        self._seen[seen] = None
        while len(self._seen) > SEEN_CALLBACKS:
            self._seen.popitem(last=False)
        click = read_card_click(message)
        if click is None:
            return None
        target = parse_card_key(click.key)
        person_id = self._person("wecom_userid", click.userid)
        if target is None or person_id is None:
            log.warning("wecom press of a card we cannot place (task %s)", click.task_id)
            return None
        pressed = await self._acknowledge(target[0], target[1], person_id, Medium.wecom)
        if pressed is not None and click.response_code and self.wecom is not None:
            task = asyncio.create_task(self._grey(click.response_code, click.userid, target[0]))
            self._greying.add(task)
            task.add_done_callback(self._greying.discard)
        return pressed

    async def _grey(self, response_code: str, userid: str, incident_id: str) -> None:
        assert self.wecom is not None
        try:
            await self.wecom.update_card_acknowledged(f"{incident_id}:wecom-card", response_code, [userid])
        except SendError as exc:
            log.warning("wecom card not turned grey: %s", exc.code)

    async def settle(self) -> None:
        """Until every card being turned grey is (tests, shutdown)."""
        if self._greying:
            await asyncio.gather(*self._greying, return_exceptions=True)

    # --- DingTalk --------------------------------------------------------------------

    def dingtalk_claim(self, token: str) -> tuple[str, int]:
        """(incident, version) of a card link. Raises AckTokenInvalid."""
        claim = read_card_token(self.ack_secret, token, self.clock.now())
        return claim.incident_id, claim.version

    async def dingtalk_press(self, token: str, code: str) -> Pressed | None:
        """The page's post: the link's version acknowledged for the person DingTalk names
        by `code`. Raises AckTokenInvalid (a bad link, or a code DingTalk does not know)."""
        incident_id, version = self.dingtalk_claim(token)
        if self.dingtalk is None:
            raise AckTokenInvalid("unfounded", "DingTalk is not configured")
        try:
            userid = await self.dingtalk.userid_of(code)
        except SendError as exc:
            raise AckTokenInvalid("unfounded", f"DingTalk did not name a person for the code ({exc.code})") from None
        person_id = self._person("dingtalk_userid", userid)
        if person_id is None:
            raise AckTokenInvalid("unfounded", "the DingTalk user is not a contact")
        pressed = await self._acknowledge(incident_id, version, person_id, Medium.dingtalk)
        if pressed is None:
            raise AckTokenInvalid("unfounded", f"{person_id} was not sent version {version} of {incident_id} "
                                  "by DingTalk")
        return pressed

    # --- both ------------------------------------------------------------------------

    def _person(self, field: str, userid: str) -> str | None:
        """The contact with this userid (case ignored, as the vendors do), from an index
        made once per catalog in use."""
        contacts = self.catalog().contacts
        if self._index is None or self._index[0] is not contacts:
            self._index = (contacts, {(f, str(getattr(p, f)).lower()): p.id for p in contacts.people.values()
                                      for f in ("dingtalk_userid", "wecom_userid") if getattr(p, f)})
        return self._index[1].get((field, userid.lower()))

    async def _acknowledge(self, incident_id: str, version: int, person_id: str, medium: Medium) -> Pressed | None:
        """Acknowledged if that version went to that person on `medium`."""
        key = DeliveryKey(incident_id=incident_id, version=version, person_id=person_id, medium=medium)
        if await self.store.get_delivery(key) is None:
            return None
        new = await self.acknowledge(incident_id, version, person_id, medium.value)
        return Pressed(incident_id, version, person_id, new)
