"""The channels the settings ask for: SMS through the operator's SMSC (SMPP) or Twilio,
email through SMTP."""

from __future__ import annotations

from ..config.settings import Settings
from ..clock import Clock
from .base import EmailChannel, SmsChannel
from .email import SmtpConfig, SmtpEmail
from .pushed import Pushed
from .sms import TwilioConfig, TwilioSms
from .smpp import DeliveryReport, InboundSms, SmppConfig, SmppSms


def sms_channel(settings: Settings, clock: Clock, pushed: Pushed[DeliveryReport, InboundSms] | None = None) -> SmsChannel:
    """SMPP when an SMSC is set (its receipts and replies handed to `pushed`), else Twilio."""
    if settings.smpp_host is not None:
        assert pushed is not None and settings.smpp_system_id and settings.smpp_password and settings.smpp_source_addr
        return SmppSms(SmppConfig(
            host=settings.smpp_host, port=settings.smpp_port, system_id=settings.smpp_system_id,
            password=settings.smpp_password, source_addr=settings.smpp_source_addr,
            system_type=settings.smpp_system_type, window=settings.smpp_window,
            long_text="payload" if settings.smpp_long_text == "payload" else "udh",
        ), on_receipt=pushed.receipt, on_reply=pushed.message, clock=clock)
    return twilio_channel(settings, clock)


def twilio_channel(settings: Settings, clock: Clock) -> SmsChannel:
    assert settings.twilio_account_sid is not None and settings.twilio_auth_token is not None
    return TwilioSms(TwilioConfig(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        from_number=settings.twilio_from,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        status_callback_url=f"{settings.base_url}/hooks/twilio/status",
        base_url=settings.twilio_base_url,
        request_timeout_seconds=settings.twilio_timeout_seconds,
        max_connections=settings.sms_concurrency,
    ), clock=clock)


def email_channel(settings: Settings, clock: Clock) -> EmailChannel:
    assert settings.smtp_host is not None
    return SmtpEmail(SmtpConfig(
        host=settings.smtp_host, port=settings.smtp_port, from_address=settings.smtp_from,
        message_id_domain=settings.smtp_from.rpartition("@")[2] or "coordinator.local",
        username=settings.smtp_user, password=settings.smtp_password, starttls=settings.smtp_starttls,
        pool_size=settings.email_concurrency,  # one connection per concurrent send, kept open
    ), clock=clock)
