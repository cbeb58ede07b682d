"""Runtime settings, read from the environment once, by the caller (never at import time)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import SettingsError

DEFAULT_STORE = "sqlite:///coordinator.db"
MIN_TOKEN = 16  # shorter admin or intake tokens could be guessed
# Longer, and a surge first seen when its bucket is fed would be over an hour old: it
# would be recorded as history (streams.StreamMonitor's fresh_within) instead of acted on.
MAX_DETECTION_GRACE = 1800.0


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _is_fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (ValueError, UnicodeEncodeError):
        return False


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    config_dir: Path = Path(".")
    store_url: str = DEFAULT_STORE
    bucket_minutes: int = 5
    # A closed bucket is fed to its stream's detector this long after it closes: later
    # complaints count in the stream's totals only (the intake answer counts them).
    detection_grace_seconds: float = 600.0
    # Keyed hash for subscriber numbers. Unset: a random key is created once and kept in
    # the store, so hashes stay stable across restarts and across instances sharing Redis.
    subscriber_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = 10 * 1024 * 1024
    max_items: int = 10_000
    max_age_days: int = 90
    max_future_seconds: int = 300
    # The operator's local time: incident ids, template times, do-not-contact dates.
    timezone: str = "Asia/Shanghai"
    # How often due steps (escalations, reminders, follow-ups) are looked for; 0: never.
    tick_seconds: float = 5.0
    # A drill firing missed while no instance ran starts at start-up if at most this late.
    drill_misfire_grace_seconds: float = 600.0
    # Where providers and staff reach this service (callbacks, ack links); default
    # http://HOST:PORT.
    public_url: str | None = None
    # Key for the email ack links; unset: generated once and kept in the store.
    ack_secret: str | None = field(default=None, repr=False)
    # SMS: Twilio (or the sandbox, with twilio_base_url). Unset account: no SMS channel.
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str | None = None
    # Bound on each Twilio request; past it the send is checked, never blindly repeated.
    twilio_timeout_seconds: float = 10.0
    # SMS through the operator's SMSC over SMPP 3.4 (docs/smpp.md). Unset host: none.
    # One SMS route at a time: SMPP or Twilio.
    smpp_host: str | None = None
    smpp_port: int = 2775
    smpp_system_id: str | None = None
    smpp_password: str | None = field(default=None, repr=False)
    smpp_system_type: str = ""
    # Our number or service code as the SMSC knows it (e.g. "1065712345").
    smpp_source_addr: str | None = None
    # submit_sm outstanding at once, as the SMSC's contract allows.
    smpp_window: int = 10
    # A long script: parts with a concatenation header ("udh"), or one message_payload
    # ("payload", used only when the SMSC announces SMPP 3.4 TLVs).
    smpp_long_text: str = "udh"
    # Email: SMTP. Unset host: no email channel.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    smtp_from: str = "coordinator@example.com"
    # DingTalk work notifications from an internal app (docs/channels.md); unset app key:
    # no DingTalk. The corp id is what the card's page asks DingTalk's 免登 code for.
    dingtalk_app_key: str | None = None
    dingtalk_app_secret: str | None = field(default=None, repr=False)
    dingtalk_agent_id: int | None = None
    dingtalk_corp_id: str = ""
    dingtalk_base_url: str | None = None
    # WeCom app messages with button cards; unset corp id: no WeCom.
    wecom_corp_id: str | None = None
    wecom_secret: str | None = field(default=None, repr=False)
    wecom_agent_id: int | None = None
    wecom_callback_token: str | None = field(default=None, repr=False)
    wecom_encoding_aes_key: str | None = field(default=None, repr=False)
    wecom_base_url: str | None = None
    # Fan-out limits: SMS in segments per second, email in messages per second; 0: none.
    sms_rate: float = 0.0
    email_rate: float = 0.0
    # Sends in flight per channel (why these numbers: OutboxLimits in outbox.py).
    sms_concurrency: int = 100
    email_concurrency: int = 50
    # Send every message to a sandbox started inside the service (a training instance),
    # SMS to a Twilio-compatible API ("twilio") or to an SMSC over SMPP ("smpp").
    sandbox: bool = False
    sandbox_sms: str = "twilio"
    # Run the outbox worker inside `serve` (off for tests that drain it by hand).
    outbox_worker: bool = True
    # Access (coordinator/web/auth.py). The admin token holds every right; the intake
    # token only posts complaints. Unset: no such token.
    admin_token: str | None = field(default=None, repr=False)
    intake_token: str | None = field(default=None, repr=False)
    # GET /metrics asks for this bearer token; unset: open (keep it off the public network).
    metrics_token: str | None = field(default=None, repr=False)
    # Network alarms in (web/alarms.py): Alertmanager's bearer token, and the routing_key
    # PagerDuty-style events must carry. Unset: that receiver answers 404 (not configured).
    alertmanager_token: str | None = field(default=None, repr=False)
    pagerduty_routing_key: str | None = field(default=None, repr=False)
    # Users file; default CONFIG/users.yaml.
    users_file: Path | None = None
    # Fernet key of the session cookies; unset: generated once and kept in the store.
    session_key: str | None = field(default=None, repr=False)
    session_hours: float = 12.0
    # Password checks (argon2, about a core for a third of a second each) run at once.
    login_concurrency: int = 2
    # Slow clients (coordinator/web/guard.py): a request head must be complete within
    # header_timeout, a body within body_timeout; an idle kept-alive connection closes
    # after keepalive_seconds, a response not read for write_timeout is dropped; one
    # address holds at most max_connections_per_client connections (behind a reverse
    # proxy every client has the proxy's address: raise it there).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keepalive_seconds: float = 15.0
    write_timeout_seconds: float = 10.0
    max_connections_per_client: int = 256
    # How long an outbox claim lasts unless its holder renews it (every third of it): a
    # dead instance's claimed deliveries are sent by another within this.
    outbox_lease_seconds: float = 8.0
    # Connections to Redis per instance; past them a call waits for a free one.
    redis_max_connections: int = 64
    # Start on a Redis that keeps nothing across a restart (no AOF, no replica).
    redis_allow_volatile: bool = False
    # SMS still "sent" this long after the provider took them are looked up there (their
    # final status callback never came); 0: never.
    reconcile_after_seconds: float = 600.0
    # Start with no delivery channel at all (`serve --no-channels`): incidents open, no
    # message can go out.
    no_channels: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        simple: dict[str, tuple[str, Callable[[str], Any]]] = {
            "COORDINATOR_HOST": ("host", str),
            "COORDINATOR_PORT": ("port", int),
            "COORDINATOR_CONFIG": ("config_dir", Path),
            "COORDINATOR_STORE": ("store_url", str),
            "COORDINATOR_BUCKET_MINUTES": ("bucket_minutes", int),
            "COORDINATOR_DETECTION_GRACE_SECONDS": ("detection_grace_seconds", float),
            "COORDINATOR_SUBSCRIBER_KEY": ("subscriber_key", str),
            "COORDINATOR_MAX_BODY_BYTES": ("max_body_bytes", int),
            "COORDINATOR_MAX_ITEMS": ("max_items", int),
            "COORDINATOR_MAX_AGE_DAYS": ("max_age_days", int),
            "COORDINATOR_MAX_FUTURE_SECONDS": ("max_future_seconds", int),
            "COORDINATOR_TIMEZONE": ("timezone", str),
            "COORDINATOR_TICK_SECONDS": ("tick_seconds", float),
            "COORDINATOR_DRILL_MISFIRE_GRACE_SECONDS": ("drill_misfire_grace_seconds", float),
            "COORDINATOR_PUBLIC_URL": ("public_url", str),
            "COORDINATOR_ACK_SECRET": ("ack_secret", str),
            "TWILIO_ACCOUNT_SID": ("twilio_account_sid", str),
            "TWILIO_AUTH_TOKEN": ("twilio_auth_token", str),
            "TWILIO_FROM": ("twilio_from", str),
            "TWILIO_MESSAGING_SERVICE_SID": ("twilio_messaging_service_sid", str),
            "COORDINATOR_TWILIO_BASE_URL": ("twilio_base_url", str),
            "COORDINATOR_TWILIO_TIMEOUT_SECONDS": ("twilio_timeout_seconds", float),
            "COORDINATOR_SANDBOX_SMS": ("sandbox_sms", str),
            "COORDINATOR_METRICS_TOKEN": ("metrics_token", str),
            "COORDINATOR_ALERTMANAGER_TOKEN": ("alertmanager_token", str),
            "COORDINATOR_PAGERDUTY_ROUTING_KEY": ("pagerduty_routing_key", str),
            "COORDINATOR_SMPP_HOST": ("smpp_host", str),
            "COORDINATOR_SMPP_PORT": ("smpp_port", int),
            "COORDINATOR_SMPP_SYSTEM_ID": ("smpp_system_id", str),
            "COORDINATOR_SMPP_PASSWORD": ("smpp_password", str),
            "COORDINATOR_SMPP_SYSTEM_TYPE": ("smpp_system_type", str),
            "COORDINATOR_SMPP_SOURCE_ADDR": ("smpp_source_addr", str),
            "COORDINATOR_SMPP_WINDOW": ("smpp_window", int),
            "COORDINATOR_SMPP_LONG_TEXT": ("smpp_long_text", str),
            "SMTP_HOST": ("smtp_host", str),
            "SMTP_PORT": ("smtp_port", int),
            "SMTP_USER": ("smtp_user", str),
            "SMTP_PASSWORD": ("smtp_password", str),
            "SMTP_STARTTLS": ("smtp_starttls", _flag),
            "COORDINATOR_SANDBOX": ("sandbox", _flag),
            "SMTP_FROM": ("smtp_from", str),
            "COORDINATOR_DINGTALK_APP_KEY": ("dingtalk_app_key", str),
            "COORDINATOR_DINGTALK_APP_SECRET": ("dingtalk_app_secret", str),
            "COORDINATOR_DINGTALK_AGENT_ID": ("dingtalk_agent_id", int),
            "COORDINATOR_DINGTALK_CORP_ID": ("dingtalk_corp_id", str),
            "COORDINATOR_DINGTALK_BASE_URL": ("dingtalk_base_url", str),
            "COORDINATOR_WECOM_CORP_ID": ("wecom_corp_id", str),
            "COORDINATOR_WECOM_SECRET": ("wecom_secret", str),
            "COORDINATOR_WECOM_AGENT_ID": ("wecom_agent_id", int),
            "COORDINATOR_WECOM_CALLBACK_TOKEN": ("wecom_callback_token", str),
            "COORDINATOR_WECOM_ENCODING_AES_KEY": ("wecom_encoding_aes_key", str),
            "COORDINATOR_WECOM_BASE_URL": ("wecom_base_url", str),
            "COORDINATOR_SMS_RATE": ("sms_rate", float),
            "COORDINATOR_EMAIL_RATE": ("email_rate", float),
            "COORDINATOR_SMS_CONCURRENCY": ("sms_concurrency", int),
            "COORDINATOR_EMAIL_CONCURRENCY": ("email_concurrency", int),
            "COORDINATOR_ADMIN_TOKEN": ("admin_token", str),
            "COORDINATOR_INTAKE_TOKEN": ("intake_token", str),
            "COORDINATOR_USERS_FILE": ("users_file", Path),
            "COORDINATOR_SESSION_KEY": ("session_key", str),
            "COORDINATOR_SESSION_HOURS": ("session_hours", float),
            "COORDINATOR_LOGIN_CONCURRENCY": ("login_concurrency", int),
            "COORDINATOR_OUTBOX_LEASE_SECONDS": ("outbox_lease_seconds", float),
            "COORDINATOR_HEADER_TIMEOUT_SECONDS": ("header_timeout_seconds", float),
            "COORDINATOR_BODY_TIMEOUT_SECONDS": ("body_timeout_seconds", float),
            "COORDINATOR_KEEPALIVE_SECONDS": ("keepalive_seconds", float),
            "COORDINATOR_WRITE_TIMEOUT_SECONDS": ("write_timeout_seconds", float),
            "COORDINATOR_MAX_CONNECTIONS_PER_CLIENT": ("max_connections_per_client", int),
            "COORDINATOR_REDIS_MAX_CONNECTIONS": ("redis_max_connections", int),
            "COORDINATOR_REDIS_ALLOW_VOLATILE": ("redis_allow_volatile", _flag),
            "COORDINATOR_RECONCILE_AFTER_SECONDS": ("reconcile_after_seconds", float),
            "COORDINATOR_NO_CHANNELS": ("no_channels", _flag),
        }
        for var, (name, kind) in simple.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = kind(raw)
            except ValueError:
                kind_name = getattr(kind, "__name__", "value").strip("_")
                raise SettingsError(f"{var}={raw!r} is not a valid {kind_name}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"unknown time zone {self.timezone!r}") from None
        if not 1 <= self.bucket_minutes <= 1440:
            raise SettingsError("bucket_minutes must be between 1 and 1440")
        if not 0 <= self.detection_grace_seconds <= MAX_DETECTION_GRACE:
            raise SettingsError(
                f"COORDINATOR_DETECTION_GRACE_SECONDS must be between 0 and {MAX_DETECTION_GRACE:g}"
            )
        if not self.store_url.startswith(("sqlite://", "redis://", "rediss://", "unix://", "redis+sentinel://")):
            raise SettingsError(
                f"store URL {self.store_url!r} is neither sqlite:///PATH nor redis://HOST:PORT/DB"
            )
        if self.store_url.startswith("redis+sentinel://"):
            from ..store.redis.sentinel import SentinelTarget  # the URL's own reader (docs/ops/redis-ha.md)

            try:
                SentinelTarget.parse(self.store_url)
            except ValueError as exc:
                raise SettingsError(f"COORDINATOR_STORE: {exc}") from None
        for name, token in (("COORDINATOR_ADMIN_TOKEN", self.admin_token),
                            ("COORDINATOR_INTAKE_TOKEN", self.intake_token),
                            ("COORDINATOR_ALERTMANAGER_TOKEN", self.alertmanager_token),
                            ("COORDINATOR_PAGERDUTY_ROUTING_KEY", self.pagerduty_routing_key)):
            if token is not None and (len(token) < MIN_TOKEN or not token.isprintable() or " " in token):
                raise SettingsError(f"{name} must be at least {MIN_TOKEN} printable characters without spaces")
        for name, rate in (("COORDINATOR_SMS_RATE", self.sms_rate), ("COORDINATOR_EMAIL_RATE", self.email_rate)):
            if rate < 0:
                raise SettingsError(f"{name} must be 0 (no limit) or more")
        for name, concurrency in (("COORDINATOR_SMS_CONCURRENCY", self.sms_concurrency),
                                  ("COORDINATOR_EMAIL_CONCURRENCY", self.email_concurrency)):
            if concurrency < 1:
                raise SettingsError(f"{name} must be at least 1")
        for name, value in (("COORDINATOR_HEADER_TIMEOUT_SECONDS", self.header_timeout_seconds),
                            ("COORDINATOR_BODY_TIMEOUT_SECONDS", self.body_timeout_seconds),
                            ("COORDINATOR_KEEPALIVE_SECONDS", self.keepalive_seconds),
                            ("COORDINATOR_WRITE_TIMEOUT_SECONDS", self.write_timeout_seconds),
                            ("COORDINATOR_MAX_CONNECTIONS_PER_CLIENT", self.max_connections_per_client),
                            ("COORDINATOR_LOGIN_CONCURRENCY", self.login_concurrency)):
            if not 0 < value < float("inf"):
                raise SettingsError(f"{name} must be more than 0")
        if not 3 <= self.outbox_lease_seconds <= 600:
            raise SettingsError("COORDINATOR_OUTBOX_LEASE_SECONDS must be between 3 and 600")
        if self.redis_max_connections < 2:
            raise SettingsError("COORDINATOR_REDIS_MAX_CONNECTIONS must be at least 2")
        if self.reconcile_after_seconds < 0:
            raise SettingsError("COORDINATOR_RECONCILE_AFTER_SECONDS must be 0 (never) or more")
        if self.session_hours <= 0:
            raise SettingsError("COORDINATOR_SESSION_HOURS must be more than 0")
        if self.sandbox_sms not in ("twilio", "smpp"):
            raise SettingsError("COORDINATOR_SANDBOX_SMS must be twilio or smpp")
        if self.smpp_host is not None:
            if self.twilio_account_sid is not None:
                raise SettingsError("COORDINATOR_SMPP_HOST and TWILIO_ACCOUNT_SID are both set: choose one SMS route")
            missing = [name for name, value in (("COORDINATOR_SMPP_SYSTEM_ID", self.smpp_system_id),
                                                ("COORDINATOR_SMPP_PASSWORD", self.smpp_password),
                                                ("COORDINATOR_SMPP_SOURCE_ADDR", self.smpp_source_addr)) if not value]
            if missing:
                raise SettingsError(f"COORDINATOR_SMPP_HOST is set but {', '.join(missing)} is not")
            if self.smpp_long_text not in ("udh", "payload"):
                raise SettingsError("COORDINATOR_SMPP_LONG_TEXT must be udh or payload")
        for vendor, given in (("DINGTALK_APP_KEY", {"DINGTALK_APP_SECRET": self.dingtalk_app_secret,
                                                     "DINGTALK_AGENT_ID": self.dingtalk_agent_id})
                              if self.dingtalk_app_key else ("", {}),
                              ("WECOM_CORP_ID", {"WECOM_SECRET": self.wecom_secret, "WECOM_AGENT_ID": self.wecom_agent_id,
                                                 "WECOM_CALLBACK_TOKEN": self.wecom_callback_token,
                                                 "WECOM_ENCODING_AES_KEY": self.wecom_encoding_aes_key})
                              if self.wecom_corp_id else ("", {})):
            missing = [f"COORDINATOR_{name}" for name, value in given.items() if not value]
            if missing:
                raise SettingsError(f"COORDINATOR_{vendor} is set but {', '.join(missing)} is not")
        if self.wecom_encoding_aes_key and len(self.wecom_encoding_aes_key) != 43:
            raise SettingsError("COORDINATOR_WECOM_ENCODING_AES_KEY must be the 43 characters WeCom shows")
        if self.session_key is not None and not _is_fernet_key(self.session_key):
            raise SettingsError("COORDINATOR_SESSION_KEY must be a Fernet key: 32 bytes in URL-safe base64 (44 characters)")

    @property
    def users_path(self) -> Path:
        return self.users_file if self.users_file is not None else self.config_dir / "users.yaml"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def messenger_urls(self) -> list[str | None]:
        """The API base URL of each messenger configured (None: the vendor's own)."""
        return [url for on, url in ((self.dingtalk_app_key, self.dingtalk_base_url),
                                    (self.wecom_corp_id, self.wecom_base_url)) if on]

    @property
    def bucket_seconds(self) -> int:
        return self.bucket_minutes * 60
