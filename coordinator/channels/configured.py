"""The channels the settings ask for: SMS through the operator's SMSC (SMPP) or Twilio,
email through SMTP, DingTalk and WeCom."""

from __future__ import annotations

from ..config.settings import Settings
from ..clock import Clock
from .base import EmailChannel, SmsChannel
from .dingtalk import DEFAULT_BASE_URL as DINGTALK_URL, DingTalkClient, DingTalkConfig
from .wecom import DEFAULT_BASE_URL as WECOM_URL, WeComClient, WeComConfig
from .wecom_crypto import WeComCrypto
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


def dingtalk_client(settings: Settings, clock: Clock) -> DingTalkClient | None:
    """DingTalk work notifications, when an app key is set."""
    if not settings.dingtalk_app_key:
        return None
    assert settings.dingtalk_app_secret is not None and settings.dingtalk_agent_id is not None
    return DingTalkClient(DingTalkConfig(
        app_key=settings.dingtalk_app_key, app_secret=settings.dingtalk_app_secret,
        agent_id=settings.dingtalk_agent_id, base_url=settings.dingtalk_base_url or DINGTALK_URL), clock=clock)


def wecom_client(settings: Settings, clock: Clock) -> WeComClient | None:
    """WeCom app messages, when a corp id is set."""
    if not settings.wecom_corp_id:
        return None
    assert settings.wecom_secret is not None and settings.wecom_agent_id is not None
    return WeComClient(WeComConfig(
        corp_id=settings.wecom_corp_id, corp_secret=settings.wecom_secret, agent_id=settings.wecom_agent_id,
        base_url=settings.wecom_base_url or WECOM_URL), clock=clock)


def wecom_crypto(settings: Settings) -> WeComCrypto | None:
    """The WeCom callback's signature and AES, when WeCom is configured."""
    if not settings.wecom_corp_id or not settings.wecom_callback_token or not settings.wecom_encoding_aes_key:
        return None
    return WeComCrypto(settings.wecom_callback_token, settings.wecom_encoding_aes_key, settings.wecom_corp_id)
