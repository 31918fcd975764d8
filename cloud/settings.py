"""All cloud settings in one pydantic-settings class (env prefix ``MAILCAM_``).

Nested groups use ``__``: ``MAILCAM_VISION__PROVIDER=openai``.
Nothing is built at import time: ``Settings()`` is called by the app factory
or the CLI, so tests make their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from mcam import protocol
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud.billing.config import BillingSettings
from cloud.imagestore.config import ImageSettings
from cloud.notify.config import NotifySettings
from cloud.vision.config import VisionSettings

DEV_SECRET = "dev-only-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILCAM_", env_nested_delimiter="__", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    secret_key: str = DEV_SECRET
    data_dir: Path = Path("mailcam-data")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under data_dir")
    image_dir: Path | None = Field(default=None, description="default data_dir/images")
    # Images in a bucket instead (several replicas): MAILCAM_IMAGES__URL=s3://bucket/prefix, see cloud/imagestore.
    images: ImageSettings = Field(default_factory=ImageSettings)

    # Request bodies: every route is capped at max_request_bytes, except the capture route
    # (max_image_bytes as base64, plus the same again for the JSON around it).
    max_request_bytes: int = 64 * 1024

    # Ingest
    max_image_bytes: int = Field(default=protocol.MAX_IMAGE_BYTES, ge=1024, le=protocol.MAX_IMAGE_BYTES)
    min_image_side: int = 32
    # The largest side an image may have: an ESP32-CAM's largest frame (OV2640 UXGA) is 1600x1200.
    # Checked on the JPEG header before decoding; a larger image only costs memory in analysis.
    max_image_side: int = 2048
    thumbnail_side: int = 320

    # Accounts and triggers
    user_token_ttl_s: int = 30 * 24 * 3600
    # Failed logins allowed per account and per client address in each window (then 429).
    login_failures_per_account: int = 10
    login_failures_per_address: int = 30
    login_window_s: int = 900
    # argon2 checks (64 MB each) running at once in a process; a login waiting longer gets 429.
    password_hash_concurrency: int = 2
    password_hash_wait_s: float = 10.0
    token_purge_interval_s: int = Field(default=24 * 3600, ge=60, description="Expired login tokens deleted")
    # Serials that are broker logins of our own or Home Assistant's (a device's broker username is its serial); any
    # serial starting with "mailcam" is refused as well.
    reserved_serials: list[str] = Field(
        default_factory=lambda: ["mailcam-gateway", "homeassistant", "admin", "root", "mosquitto"]
    )
    free_clicks_per_day: int = 3
    # A gateway not heard from for this long shows as offline (a running one long-polls every ~25 s).
    gateway_offline_after_s: float = 120
    trigger_ttl_s: int = 24 * 3600
    default_wake_interval_s: int = 3600
    # A device is "online" if heard from within wake_interval * factor + slack.
    online_grace_factor: float = 1.5
    online_slack_s: int = 30

    # Gateway trigger long-poll: waiters per gateway (a new one releases the oldest), and the slow
    # safety-net poll (a trigger change wakes waiters at once, in every replica: cloud.wakeups).
    gateway_long_polls_per_gateway: int = 2
    gateway_long_poll_safety_s: float = 30.0

    # Live dashboard stream (GET /api/events/): events kept for replay after a reconnect, the
    # single-use ticket's lifetime, the keep-alive (and safety poll) period, the client's retry.
    live_retention_s: int = Field(default=3600, ge=60)
    stream_ticket_ttl_s: int = Field(default=60, ge=5, le=3600)
    live_keepalive_s: float = Field(default=15.0, gt=0)
    live_retry_ms: int = Field(default=2000, ge=100)
    # A stream writes (and reads, for other replicas' events) at most once per this interval: an event
    # after a quiet spell goes at once, a burst (a capture's stored, telemetry and analysed events) in one.
    live_read_interval_s: float = Field(default=0.1, ge=0, le=5)

    # Firmware updates (cloud.services.firmware): the Ed25519 public key (64 hex) releases must be signed
    # with, the one devices are provisioned with (`mailcam release keygen` makes the pair)
    firmware_public_key: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    max_release_bytes: int = Field(default=protocol.MAX_BUNDLE_BYTES + 1024, ge=1024)

    # Workers
    run_workers: bool = True
    run_scheduler: bool = True
    trigger_expiry_interval_s: int = 60

    vision: VisionSettings = Field(default_factory=VisionSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> Settings:
        if self.environment == "production" and self.secret_key == DEV_SECRET:
            raise ValueError("MAILCAM_SECRET_KEY must be set to a real secret in production")
        if self.notify.console is None:
            self.notify.console = self.environment != "production"
        if self.notify.vapid_key_file is None:  # Web Push's key pair lives with the data
            self.notify.vapid_key_file = str(self.data_dir / "vapid_private.pem")
        return self

    @property
    def max_capture_request_bytes(self) -> int:
        return (self.max_image_bytes * 4) // 3 + 4 + self.max_request_bytes

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mailcam.db').resolve()}"

    @property
    def resolved_image_dir(self) -> Path:
        return (self.image_dir or self.data_dir / "images").resolve()


