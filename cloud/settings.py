"""All cloud settings in one pydantic-settings class (env prefix ``MAILCAM_``).

Nested groups use ``__``: ``MAILCAM_VISION__PROVIDER=openai``.
Nothing is built at import time: ``Settings()`` is called by the app factory
or the CLI, so tests make their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    # Ingest
    max_image_bytes: int = 10 * 1024 * 1024
    min_image_side: int = 32
    max_image_side: int = 8192
    thumbnail_side: int = 320

    # Accounts and triggers
    user_token_ttl_s: int = 30 * 24 * 3600
    token_purge_interval_s: int = Field(default=24 * 3600, ge=60, description="Expired login tokens deleted")
    # Serials that are broker logins of our own (a device's broker username is its serial); any
    # serial starting with "mailcam" is refused as well.
    reserved_serials: list[str] = Field(default_factory=lambda: ["mailcam-gateway", "admin", "root", "mosquitto"])
    free_clicks_per_day: int = 3
    trigger_ttl_s: int = 24 * 3600
    default_wake_interval_s: int = 3600
    # A device is "online" if heard from within wake_interval * factor + slack.
    online_grace_factor: float = 1.5
    online_slack_s: int = 30

    # Workers
    run_workers: bool = True
    run_scheduler: bool = True
    trigger_expiry_interval_s: int = 60

    vision: VisionSettings = Field(default_factory=VisionSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> Settings:
        if self.environment == "production" and self.secret_key == DEV_SECRET:
            raise ValueError("MAILCAM_SECRET_KEY must be set to a real secret in production")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mailcam.db').resolve()}"

    @property
    def resolved_image_dir(self) -> Path:
        return (self.image_dir or self.data_dir / "images").resolve()


