"""The gateway's settings: one pydantic model, read from the environment (prefix ``MAILCAM_GATEWAY_``).

A plain model, not pydantic-settings' ``BaseSettings``: what the gateway needs of it is the few lines
of `GatewaySettings.__init__` (variables named like a field, in any case; arguments win over them;
each value a string that the field's validation converts, as pydantic-settings does for fields of
simple types, which all of these are), and pydantic-settings brings ~1.3 MB into the gateway's
process (its command-line parser, cloud secret stores, dotenv, argparse). Defaults are validated too,
as there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from mcam import protocol
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

ENV_PREFIX = "MAILCAM_GATEWAY_"


class GatewaySettings(BaseModel):
    """Everything `mailcam gateway` reads from its environment (see gateway/README.md)."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(type(self).model_fields), **values})

    # The cloud
    cloud_url: str = Field("http://127.0.0.1:8000", description="Base URL of the mailcam cloud API")
    token: SecretStr | None = Field(None, description="Gateway token (mcg_…) from POST /api/gateways/")
    http_timeout_s: float = Field(30.0, gt=0)

    # The broker
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    broker_username: str | None = None
    broker_password: SecretStr | None = None
    client_id: str = Field("mailcam-gateway", description="Fixed MQTT client id: the broker keeps our session")
    keepalive_s: int = Field(30, ge=5)
    mqtt_process: Literal["auto", "on", "off"] = Field(
        "auto", description="Run the MQTT connection in a process of its own (auto: with 2+ CPU cores)"
    )

    # Durable store
    data_dir: Path = Field(Path("gateway-data"), description="Holds gateway.db (SQLite, WAL)")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL survives power loss; NORMAL survives a process crash only"
    )
    outbox_max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Soft limit of queued bytes")
    ingest_batch_max: int = Field(256, ge=1, description="MQTT messages committed per transaction at most")

    # Validation and reassembly
    max_image_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, le=protocol.MAX_IMAGE_BYTES, description="At most the protocol's cap (10 MiB)"
    )
    partial_timeout_s: float = Field(12 * 3600, gt=0, description="Dead-letter a capture whose chunks stop")
    completed_retention_s: float = Field(7 * 86400, gt=0, description="How long finished capture ids are kept")
    validate_devices: bool = Field(True, description="Hold messages of serials the cloud does not list")
    devices_refresh_s: float = Field(300.0, gt=0)
    unknown_device_refresh_s: float = Field(
        10.0, gt=0, description="Refresh the device list this soon after an unknown serial (rate limit)"
    )
    unknown_device_hold_s: float = Field(
        7 * 86400, gt=0, description="Hold an unlisted device's captures this long, then quarantine them"
    )
    device_partial_quota_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Bytes of partial captures one device may hold (≥ max_image_bytes)"
    )

    # Dead letters (the quarantine keeps replayable ones with their bytes)
    dead_letter_retention_s: float = Field(30 * 86400, gt=0, description="Delete dead letters older than this")
    dead_letter_max_count: int = Field(10_000, ge=1, description="Keep at most this many dead letters")
    dead_letter_max_bytes: int = Field(
        128 * 1024 * 1024, ge=0, description="Bytes kept in the quarantine; beyond, the oldest payloads go"
    )

    # Forwarding
    forward_concurrency: int = Field(4, ge=1, description="Devices forwarded in parallel (each in order)")
    forward_batch: int = Field(64, ge=1, description="Outbox rows read per forwarding round")
    upload_batch_items: int = Field(
        8, ge=1, le=32, description="A device's captures and reports sent in one request (1: one request each)"
    )
    upload_batch_bytes: int = Field(
        1024 * 1024, ge=0, description="Bytes of images one such request may carry (a larger capture goes alone)"
    )
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)

    # Trigger relay
    trigger_wait_s: float = Field(25.0, ge=0, le=60, description="Long-poll wait per request")

    # Device clock
    clock_every_s: int = Field(
        30, ge=1, le=3600, description="Republish the retained clock this often: devices set their RTC to within it"
    )

    # Home Assistant (MQTT discovery; see docs/home-assistant.md)
    homeassistant: bool = Field(False, description="Publish each mailbox to Home Assistant by MQTT discovery")
    homeassistant_prefix: str = Field(
        "homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Home Assistant's discovery prefix (its MQTT integration's setting)",
    )

    # Firmware updates (gateway.firmware)
    firmware_cache: bool = Field(
        True, description="Keep each release's bundle on disk (fetched once); off: fetch each device's request's range"
    )

    # Housekeeping and metrics
    housekeeping_s: float = Field(30.0, gt=0)
    heartbeat_s: float = Field(5.0, gt=0, description="Watchdog period; `status` trusts a heartbeat < 3 periods old")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, description="Prometheus /metrics; 0 turns it off")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _quota_holds_one_image(self) -> GatewaySettings:
        if self.device_partial_quota_bytes < self.max_image_bytes:
            raise ValueError("device_partial_quota_bytes must be at least max_image_bytes")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.db"


def _from_environment(fields: dict[str, Any]) -> dict[str, str]:
    """The MAILCAM_GATEWAY_<FIELD> variables (names in any case) of these fields, by field name."""
    found = {}
    for name, value in os.environ.items():
        if name.upper().startswith(ENV_PREFIX):
            field = name[len(ENV_PREFIX):].lower()
            if field in fields:
                found[field] = value
    return found
