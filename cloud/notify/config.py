"""Notification, scheduled-alert and integration-API settings (nested under ``MAILCAM_NOTIFY__*``).

Example: ``MAILCAM_NOTIFY__SMTP_HOST=smtp.example.com``. A channel is available when its
settings are present: email needs ``smtp_host``, SMS the three ``twilio_*`` values, push
``fcm_credentials_file``; webhooks are always available, the console channel when ``console``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class NotifySettings(BaseModel):
    # Console: logs what would have been sent, for development and demos. Unset: on except in production
    # (an operator's tool; a homeowner is reached by Web Push, Apprise, email or SMS).
    console: bool | None = None

    # Email (SMTP)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_ssl: bool = Field(default=False, description="implicit TLS (port 465) instead of STARTTLS")
    smtp_ca_file: str | None = Field(default=None, description="extra CA bundle to trust (self-signed relays)")
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "mailcam <alerts@mailcam.local>"
    smtp_timeout_s: float = 15.0

    # SMS (Twilio)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_base_url: str | None = Field(default=None, description="replaces https://api.twilio.com (a proxy)")
    twilio_timeout_s: float = 15.0

    # Push (Firebase Cloud Messaging through firebase-admin)
    fcm_credentials_file: str | None = Field(default=None, description="service-account JSON")
    fcm_base_url: str | None = Field(default=None, description="replaces https://fcm.googleapis.com (a proxy)")
    fcm_timeout_s: float = 15.0

    # Webhooks (and any other URL a user gives us): private, loopback, link-local, CGNAT, multicast
    # and reserved targets are refused unless listed here (CIDRs or host names), e.g. a LAN
    # Home Assistant: ["192.168.1.0/24", "homeassistant.local"]. See cloud/netguard.py.
    outbound_allow: list[str] = Field(default_factory=list)
    webhook_timeout_s: float = 10.0  # per connect, read or write
    webhook_deadline_s: float = 15.0  # for the whole request: a receiver dripping bytes is cut off here

    # Confirming an email address or phone number before it gets anything: a 6-digit code sent there.
    confirm_code_ttl_s: int = Field(default=900, ge=60)
    confirm_max_attempts: int = Field(default=5, ge=1)
    confirm_resend_interval_s: int = Field(default=60, ge=0, description="between two codes to one address")

    # Outbox delivery: sends run in `senders` threads, each row in its own, claimed as threads free
    # up; one user holds at most `sends_per_user` of them, so nobody's slow channel stalls the rest.
    # A new job wakes the worker at once (cloud.wakeups); this poll is only the safety net (retries, leases).
    worker_poll_interval_s: float = 10.0
    batch_size: int = 50
    senders: int = 8
    sends_per_user: int = 2
    max_attempts: int = 8
    retry_base_s: float = 10.0
    retry_max_s: float = 3600.0
    # A row claimed but not finished within this time (worker killed mid-send) is not retried:
    # delivery is at most once, so its outcome is recorded as unknown.
    send_lease_s: int = 300

    # Alerts
    low_battery_v: float = 3.45
    battery_recovered_v: float = 3.70
    offline_missed_wakes: int = 3
    offline_check_interval_s: int = 300
    digest_check_interval_s: int = 900
    default_digest_hour: int = 8
    default_min_confidence: float = 0.6

    # Image retention: captures older than this are deleted with their files (0 keeps them forever).
    retention_days: int = 30
    retention_interval_s: int = 3600
    retention_batch: int = 500
    # Delivery-log rows in a final state are kept this long (0 keeps them forever).
    log_retention_days: int = 90

    # Integration API keys: requests per minute per key, by the owner's tier.
    api_rate_free_per_min: int = 60
    api_rate_premium_per_min: int = 600

    # Web Push (browsers, no app): VAPID key from here (base64url raw or DER), else the deployment's key
    # in the database, made on first use (adopting vapid_key_file, default data_dir/vapid_private.pem,
    # where earlier versions kept it). See cloud/notify/vapid.py.
    webpush: bool = True
    vapid_private_key: str | None = None
    vapid_key_file: str | None = None
    vapid_subject: str = Field(default="mailto:alerts@mailcam.local", description="contact the push services see")
    webpush_timeout_s: float = 10.0
    webpush_ttl_s: int = Field(default=24 * 3600, ge=0, description="how long a push service keeps an alert")
    # Thumbnail links in alerts (no bearer token): signed, valid this long.
    alert_link_ttl_s: int = Field(default=24 * 3600, ge=60)
    # The dashboard's address as users reach it (absolute links in Apprise and email alerts).
    public_url: str | None = None
    # Apprise ("Other apps": ntfy, Telegram, …): on by default; per-request socket timeout.
    apprise: bool = True
    apprise_timeout_s: float = 10.0

    # Send limits (cloud/notify/send_limits.py): email and SMS alerts per user and per recipient each
    # hour (over it, an alert waits for the next hour); confirmation codes per user an hour and per
    # address a day (over it: 429).
    email_per_user_per_hour: int = Field(default=30, ge=0)
    sms_per_user_per_hour: int = Field(default=10, ge=0)
    sends_per_recipient_per_hour: int = Field(default=20, ge=0)
    confirm_codes_per_user_per_hour: int = Field(default=5, ge=0)
    confirm_codes_per_address_per_day: int = Field(default=5, ge=0)
