"""The sandbox inside the service (`coordinator serve --sandbox`, COORDINATOR_SANDBOX=1):
a training or staging instance whose every SMS and email goes to the Twilio-compatible
API (or, with COORDINATOR_SANDBOX_SMS=smpp, an SMSC) and an SMTP inbox on loopback,
and every DingTalk and WeCom card to their sandboxes, never to a phone or mailbox. Drills in `sandbox`
channels run there; the console links trainers to its sandbox page (/sandbox/, behind
the login), where they read what each phone received and reply as a staff member."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace

from ..clock import Clock
from ..config.catalog import Contacts, load_catalog
from ..config.settings import Settings
from ..errors import ConfigError
from .messengers import MessengerSandboxes, start_messengers
from .phones import SmscPhones
from .smsc import SandboxSmsc
from .smtp import SmtpInbox
from .twilio import TwilioSandbox

SANDBOX_ACCOUNT = "AC" + "5a" * 16
SANDBOX_SENDER = "+15005550006"
SANDBOX_SYSTEM_ID = "sandbox"
SANDBOX_SOURCE_ADDR = "1065700000"


@dataclass
class RunningSandbox:
    sms: TwilioSandbox | SmscPhones
    inbox: SmtpInbox
    # The service's settings with both channels pointed at the sandbox.
    settings: Settings
    # DingTalk and WeCom, for the contacts with a userid (sandbox/messengers.py).
    messengers: MessengerSandboxes = field(default_factory=lambda: MessengerSandboxes(None, None))

    async def stop(self) -> None:
        await self.messengers.stop()
        await self.sms.stop()
        await self.inbox.stop()


async def start_sandbox(settings: Settings, clock: Clock) -> RunningSandbox:
    """Start both halves on free loopback ports; replies go to this service."""
    inbox = SmtpInbox(clock=clock)
    await inbox.start()
    try:
        sms, pointed = await (_smsc(settings, clock) if settings.sandbox_sms == "smpp" else _twilio(settings, clock, inbox))
    except BaseException:
        await inbox.stop()
        raise
    host, port = inbox.address
    pointed = replace(pointed, smtp_host=host, smtp_port=port, smtp_user=None, smtp_password=None, smtp_starttls=False)
    messengers, pointed = await start_messengers(pointed, clock, _contacts(settings))
    return RunningSandbox(sms, inbox, pointed, messengers)


def _contacts(settings: Settings) -> Contacts | None:
    """The contacts whose userids the messenger sandboxes know (none if the config is bad:
    the service refuses it anyway)."""
    try:
        return load_catalog(settings.config_dir).contacts
    except (ConfigError, OSError):
        return None


async def _twilio(settings: Settings, clock: Clock, inbox: SmtpInbox) -> tuple[TwilioSandbox, Settings]:
    account = settings.twilio_account_sid or SANDBOX_ACCOUNT
    token = settings.twilio_auth_token or secrets.token_hex(16)
    sender = settings.twilio_from or SANDBOX_SENDER
    sms = TwilioSandbox(account, token, numbers=(sender,), inbound_url=f"{settings.base_url}/hooks/twilio/inbound",
                        clock=clock, inbox=inbox)
    await sms.start()
    return sms, replace(settings, twilio_account_sid=account, twilio_auth_token=token, twilio_from=sender,
                        twilio_messaging_service_sid=None, twilio_base_url=sms.base_url, smpp_host=None)


async def _smsc(settings: Settings, clock: Clock) -> tuple[SmscPhones, Settings]:
    password = secrets.token_hex(4)  # at most 8 characters in SMPP
    smsc = await SandboxSmsc(clock=clock, system_id=SANDBOX_SYSTEM_ID, password=password).start()
    source = settings.smpp_source_addr or SANDBOX_SOURCE_ADDR
    return SmscPhones(smsc, source_addr=source, clock=clock), replace(
        settings, smpp_host="127.0.0.1", smpp_port=smsc.port, smpp_system_id=SANDBOX_SYSTEM_ID,
        smpp_password=password, smpp_source_addr=source, twilio_account_sid=None, twilio_base_url=None)
