"""The sandbox inside the service (`coordinator serve --sandbox`, COORDINATOR_SANDBOX=1):
a training or staging instance whose every SMS and email goes to the Twilio-compatible
API and SMTP inbox on loopback, never to a phone or mailbox. Drills in `sandbox`
channels run there; the console links trainers to its sandbox page (/sandbox/, behind
the login), where they read what each phone received and reply as a staff member."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from ..clock import Clock
from ..config.settings import Settings
from .smtp import SmtpInbox
from .twilio import TwilioSandbox

SANDBOX_ACCOUNT = "AC" + "5a" * 16
SANDBOX_SENDER = "+15005550006"


@dataclass
class RunningSandbox:
    sms: TwilioSandbox
    inbox: SmtpInbox
    # The service's settings with both channels pointed at the sandbox.
    settings: Settings

    async def stop(self) -> None:
        await self.sms.stop()
        await self.inbox.stop()


async def start_sandbox(settings: Settings, clock: Clock) -> RunningSandbox:
    """Start both halves on free loopback ports; replies go to this service's inbound hook."""
    account = settings.twilio_account_sid or SANDBOX_ACCOUNT
    token = settings.twilio_auth_token or secrets.token_hex(16)
    sender = settings.twilio_from or SANDBOX_SENDER
    inbox = SmtpInbox(clock=clock)
    await inbox.start()
    sms = TwilioSandbox(account, token, numbers=(sender,), inbound_url=f"{settings.base_url}/hooks/twilio/inbound",
                        clock=clock, inbox=inbox)
    try:
        await sms.start()
    except BaseException:
        await inbox.stop()
        raise
    host, port = inbox.address
    pointed = replace(settings, twilio_account_sid=account, twilio_auth_token=token, twilio_from=sender,
                      twilio_messaging_service_sid=None, twilio_base_url=sms.base_url, smtp_host=host, smtp_port=port,
                      smtp_user=None, smtp_password=None, smtp_starttls=False)
    return RunningSandbox(sms, inbox, pointed)
