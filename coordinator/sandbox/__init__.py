"""Stand-ins for the providers on loopback: a Twilio-compatible SMS API and an SMTP inbox
(see docs/sandbox.md). The page showing both is the service's own, for trainers
(coordinator/web/sandbox_page.py)."""

from coordinator.sandbox.client import point_client, sandbox_client
from coordinator.sandbox.lifecycle import Delivery
from coordinator.sandbox.limits import Faults, RateLimit
from coordinator.sandbox.messages import DELIVERY_ERRORS, Message
from coordinator.segments import Segments, sms_segments
from coordinator.sandbox.signature import twilio_signature
from coordinator.sandbox.smtp import ReceivedEmail, SmtpInbox
from coordinator.sandbox.twilio import TwilioSandbox
from coordinator.sandbox.webhooks import CallbackAttempt

__all__ = [
    "DELIVERY_ERRORS",
    "CallbackAttempt",
    "Delivery",
    "Faults",
    "Message",
    "RateLimit",
    "ReceivedEmail",
    "Segments",
    "SmtpInbox",
    "TwilioSandbox",
    "point_client",
    "sandbox_client",
    "sms_segments",
    "twilio_signature",
]
