"""The delivery channels: thin adapters from the outbox to Twilio (SMS) and an SMTP relay
(email). See docs/channels.md."""

from coordinator.channels.base import Accepted, EmailChannel, SmsChannel
from coordinator.channels.email import SmtpConfig, SmtpEmail
from coordinator.channels.sms import TwilioConfig, TwilioSms, map_twilio_status

__all__ = [
    "Accepted",
    "EmailChannel",
    "SmsChannel",
    "SmtpConfig",
    "SmtpEmail",
    "TwilioConfig",
    "TwilioSms",
    "map_twilio_status",
]
