"""Notification settings (nested under ``MAILCAM_NOTIFY__*``)."""

from __future__ import annotations

from pydantic import BaseModel


class NotifySettings(BaseModel):
    console: bool = True
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "mailcam <alerts@mailcam.local>"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    fcm_credentials_file: str | None = None
    worker_poll_interval_s: float = 0.5
    max_attempts: int = 8
