"""The DingTalk and WeCom sandboxes inside a sandboxed service, the demo and drills: one
organisation each on loopback, whose members are the contacts' userids, with fresh
credentials; the settings come back pointed at them (docs/messengers.md)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, replace
from datetime import timedelta

from ..clock import Clock
from ..config.catalog import Contacts
from ..config.settings import Settings
from .dingtalk import DingTalkSandbox
from .wecom import WeComSandbox

AGENT_ID = 1000001
# How long after a card reaches them the sandbox's staff read it, unless a test says.
READ_AFTER = timedelta(minutes=2)


@dataclass
class MessengerSandboxes:
    dingtalk: DingTalkSandbox | None
    wecom: WeComSandbox | None

    async def stop(self) -> None:
        for sandbox in (self.dingtalk, self.wecom):
            if sandbox is not None:
                await sandbox.stop()


def userids(contacts: Contacts) -> tuple[list[str], list[str]]:
    """The contacts' DingTalk and WeCom userids."""
    people = contacts.people.values()
    return ([p.dingtalk_userid for p in people if p.dingtalk_userid],
            [p.wecom_userid for p in people if p.wecom_userid])


async def start_messengers(settings: Settings, clock: Clock, contacts: Contacts | None,
                           read_after: timedelta | None = READ_AFTER) -> tuple[MessengerSandboxes, Settings]:
    """Both sandboxes for the contacts who have a userid (none: not started), their
    staff reading each card `read_after` after it arrives (None: only when told)."""
    ding, wecom_ids = userids(contacts) if contacts is not None else ([], [])
    dingtalk = wecom = None
    pointed = settings
    if ding:
        key, secret = "ding" + secrets.token_hex(8), secrets.token_hex(16)
        # No per-second cap: the sandbox's clock may be a test's, which does not move.
        dingtalk = DingTalkSandbox(key, secret, AGENT_ID, users=ding, clock=clock, calls_per_second=None)
        await dingtalk.start()
        if read_after is not None:
            for userid in ding:
                dingtalk.read_after(userid, read_after)
        pointed = replace(pointed, dingtalk_app_key=key, dingtalk_app_secret=secret, dingtalk_agent_id=AGENT_ID,
                          dingtalk_corp_id="ding-sandbox", dingtalk_base_url=dingtalk.base_url)
    if wecom_ids:
        corp, secret, token = "ww" + secrets.token_hex(8), secrets.token_hex(16), secrets.token_hex(8)
        aes = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))
        wecom = WeComSandbox(corp, secret, AGENT_ID, users=wecom_ids, clock=clock,
                             callback_url=f"{settings.base_url}/hooks/wecom", callback_token=token,
                             encoding_aes_key=aes)
        await wecom.start()
        pointed = replace(pointed, wecom_corp_id=corp, wecom_secret=secret, wecom_agent_id=AGENT_ID,
                          wecom_callback_token=token, wecom_encoding_aes_key=aes, wecom_base_url=wecom.base_url)
    return MessengerSandboxes(dingtalk, wecom), pointed
