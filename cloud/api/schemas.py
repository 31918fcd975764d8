"""What comes in and what goes out, per resource."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fastapi import Path
from mcam.config import FRAMESIZES
from mcam.protocol import SETTABLE
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

SERIAL_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # capture and trigger ids
Serial = Annotated[str, StringConstraints(pattern=SERIAL_PATTERN)]
CaptureId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
# The same rules for ids in paths and queries: what the server can hold is what the document states.
SerialPath = Annotated[str, Path(pattern=SERIAL_PATTERN)]
IdPath = Annotated[str, Path(pattern=ID_PATTERN)]


def _known_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc
    return name


def _zone_names() -> list[str]:
    names = []
    for name in available_timezones():
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        names.append(name)
    return sorted(names)


# The OpenAPI document lists the zones this server knows, so what it accepts is what it states.
TimeZone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_known_timezone),
    WithJsonSchema({"type": "string", "enum": _zone_names(), "description": "An IANA time zone name"}),
]
# An email address as this server checks it (stated in the OpenAPI document as is): whether the
# address reaches anyone is proven by a confirmation code before anything is sent there.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$"
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=EMAIL_PATTERN),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254, "pattern": EMAIL_PATTERN}),
]
# Table ids in paths: bounded so that no database is asked about a number its INTEGER cannot hold.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class Strict(BaseModel):
    """A request body: unknown fields and NUL characters are refused (PostgreSQL text cannot hold NUL;
    the OpenAPI document states it, see ``cloud.errors.NO_NUL_PATTERN``)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text may not contain NUL characters")
        return value


# Users and auth
class UserCreate(Strict):
    email: Email
    password: str = Field(min_length=8, max_length=200)
    name: str | None = Field(default=None, max_length=100)
    timezone: TimeZone = "UTC"


class UserUpdate(Strict):
    name: str | None = Field(default=None, max_length=100)
    timezone: TimeZone | None = None


class UserPublic(BaseModel):
    id: int
    email: str
    name: str | None
    timezone: str
    tier: Literal["free", "premium"]
    role: Literal["homeowner", "installer"] = Field(
        description="An installer may register devices (an operator grants it: `mailcam set-role`)"
    )


class LoginIn(Strict):
    email: str = Field(max_length=254)
    password: str = Field(max_length=200)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime


class StreamTicketOut(BaseModel):
    """Opens ``GET /api/events/?ticket=…`` once, before ``expires_at``."""

    ticket: str
    expires_at: datetime


class PasswordChange(Strict):
    current_password: str = Field(max_length=200)
    new_password: str = Field(min_length=8, max_length=200)


# Devices
class DeviceCreate(Strict):
    serial: Serial
    name: str | None = Field(default=None, max_length=100)
    timezone: TimeZone = "UTC"
    wake_interval_s: int | None = Field(default=None, ge=10, le=7 * 24 * 3600)


class DeviceRegistered(BaseModel):
    serial: str
    device_token: str = Field(description="Shown once; the device authenticates with it")
    claim_code: str = Field(description="Shown once; the homeowner claims the device with it")


class DeviceClaim(Strict):
    claim_code: str = Field(min_length=4, max_length=32)
    name: str | None = Field(default=None, max_length=100)


class DeviceUpdate(Strict):
    name: str | None = Field(default=None, max_length=100)
    timezone: TimeZone | None = None
    wake_interval_s: int | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    installer_access: bool | None = Field(
        default=None, description="Owner only: the installer who registered it may keep seeing it (read-only)"
    )


class DevicePublic(BaseModel):
    serial: str
    name: str
    timezone: str
    wake_interval_s: int
    status: Literal["online", "offline"]
    last_seen_at: datetime | None
    battery_voltage: float | None
    rssi: int | None
    firmware_version: str | None
    calibrated: bool = Field(description="A photo of the mailbox empty was given: mail alerts are on")
    mailbox: Literal["empty", "mail"] | None = Field(description="The delivery state (None: not judged yet)")
    mail_since: datetime | None = Field(description="When the mail now in the box arrived")
    mail_categories: dict[str, int] | None = None
    access: Literal["owner", "installer", "read_only"] = Field(
        description="Mine; one I installed, not claimed yet; or an installer's read-only view the owner allows"
    )
    claimed: bool = Field(description="A homeowner has claimed it")
    installer_access: bool = Field(description="Its installer may still see it (read-only) after the claim")


class DeviceClaimed(DevicePublic):
    device_token: str = Field(
        description="The device's new token, shown once: claiming revokes the one its installer saw"
    )


class DeviceToken(BaseModel):
    serial: str
    device_token: str = Field(description="Shown once; every earlier token of this device stops working")


# Captures
class ReferenceSet(BaseModel):
    """A photo of the mailbox empty, now the device's reference."""

    capture_id: str
    device_serial: str
    reference_id: int
    source: Literal["owner", "installer"]
    references: int = Field(description="How many references the device now has (day and night, refined)")


class ReferenceRequest(Strict):
    """Which photo shows the mailbox empty: the one named, or the newest (taken after ``taken_after``)."""

    capture_id: CaptureId | None = None
    taken_after: datetime | None = Field(
        default=None, description="Only a photo taken after this counts (e.g. when the installer closed the box)")


class CaptureCreate(Strict):
    serial_number: Serial
    image: str = Field(
        description="Base64 JPEG (a data: URL prefix is accepted); anything else is a 422 invalid_image",
        json_schema_extra={"contentEncoding": "base64", "contentMediaType": "image/jpeg"},
    )
    trigger_type: Literal["automatic", "manual"] = "automatic"
    battery_voltage: float | None = Field(default=None, ge=0, le=30)
    timestamp: datetime
    capture_id: CaptureId | None = Field(default=None, description="Device-made idempotency key")
    trigger_id: str | None = Field(default=None, max_length=64)
    time_uncertain: bool = Field(
        default=False, description="The timestamp is an estimate (the device's clock was unset); a timestamp "
        "before 2024-01-01 counts as one and is replaced by the receive time")
    wake_reason: Literal["timer", "door", "power_on", "manual"] | None = Field(
        default=None, description="Why the device woke: a door opening with a visible change is stronger "
        "evidence of a delivery than a timer wake")


class CaptureSaved(BaseModel):
    status: Literal["saved"] = "saved"
    capture_id: str
    analysis_queued: bool


class AnalysisPublic(BaseModel):
    status: Literal["queued", "running", "done", "failed"]
    mail_detected: bool | None = None
    confidence: float | None = None
    description: str | None = None
    items: list = Field(default_factory=list)
    categories: dict | None = None
    package_present: bool | None = None
    package_damage: str | None = None
    package_damage_confidence: float | None = None
    image_quality: str | None = None
    provider: str | None = None
    model: str | None = None
    source: str | None = None
    delivery: Literal["arrived", "more", "collected"] | None = Field(
        default=None, description="The change this photo made to the mailbox's delivery state")
    error: str | None = None


class CapturePublic(BaseModel):
    capture_id: str
    device_serial: str
    trigger_type: Literal["automatic", "manual"]
    trigger_id: str | None
    battery_voltage: float | None
    taken_at: datetime
    taken_at_uncertain: bool = Field(description="taken_at is an estimate: the device's clock was unset")
    received_at: datetime
    width: int
    height: int
    image_bytes: int
    image_url: str
    thumbnail_url: str
    analysis: AnalysisPublic | None


CURSOR_PATTERN = r"^[0-9]{1,17}-[0-9]{1,10}$"


class CapturePage(BaseModel):
    items: list[CapturePublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page: `<received_at, µs since 1970>-<row id>`"
    )


# Telemetry
class FirmwareUpdateReport(Strict):
    release_id: int = Field(ge=1)
    version: str = Field(max_length=40)
    state: Literal["downloading", "staged", "installed", "rolled_back", "refused"]
    percent: int = Field(default=0, ge=0, le=100)
    reason: str | None = Field(default=None, max_length=200)


class TelemetryCreate(Strict):
    serial_number: Serial
    battery_voltage: float | None = Field(default=None, ge=0, le=30)
    rssi: int | None = Field(default=None, ge=-150, le=0)
    wake_reason: Literal["timer", "door", "power_on", "manual"] | None = None
    awake_ms: int | None = Field(default=None, ge=0, le=3_600_000)
    firmware_version: str | None = Field(default=None, max_length=40)
    boot_count: int | None = Field(default=None, ge=0)
    last_error: str | None = Field(default=None, max_length=200)
    pending_captures: int | None = Field(default=None, ge=0, le=10_000)
    timestamp: datetime | None = None
    settings_version: int | None = Field(default=None, ge=1, description="Remote settings version in effect")
    settings_error: str | None = Field(default=None, max_length=200,
                                       description="Why the newest remote settings were refused")
    firmware_update: FirmwareUpdateReport | None = Field(
        default=None, description="Where the device's firmware update stands (its `ota` report)")


class TelemetryAccepted(BaseModel):
    status: Literal["recorded"] = "recorded"


# A gateway's uploads in one request (POST /api/gateway/uploads/)
UPLOADS_MAX_ITEMS = 32


class UploadItem(Strict):
    kind: Literal["capture", "telemetry"]
    body: dict[str, Any] = Field(description="What POST /api/device/capture/ or /api/device/telemetry/ takes")


class UploadBatch(Strict):
    items: list[UploadItem] = Field(min_length=1, max_length=UPLOADS_MAX_ITEMS)


class UploadResult(BaseModel):
    status: int = Field(description="The HTTP status the item would have had on its own route")
    body: dict[str, Any] = Field(description="That route's answer: its result, or the error body")


class UploadResults(BaseModel):
    results: list[UploadResult] = Field(description="One per item, in the items' order")


# Triggers
class TriggerCreate(Strict):
    device_serial: Serial
    user_id: int | None = Field(
        default=None,
        description="The seed's field, optional: checked against the caller, never trusted (a mismatch is a 403)",
    )


class TriggerAccepted(BaseModel):
    status: Literal["triggered", "queued"]
    message: str
    trigger_id: str
    device_serial: str
    expires_at: datetime
    clicks_used: int
    clicks_limit: int | None
    reset_at: str


class ClickLimitBody(BaseModel):
    status: Literal["error"]
    error: Literal["click_limit_exceeded"]
    message: str
    detail: str
    clicks_used: int
    clicks_limit: int
    reset_at: str


class TriggerPublic(BaseModel):
    trigger_id: str
    device_serial: str
    status: Literal["pending", "delivered", "fulfilled", "expired", "cancelled"]
    requested_at: datetime
    expires_at: datetime
    delivered_at: datetime | None
    ended_at: datetime | None
    capture_id: str | None
    click_refunded: bool


class DeviceStatus(BaseModel):
    device_serial: str
    status: Literal["online", "offline"]
    last_capture: datetime | None = Field(description="When the latest photo was taken (the seed's field)")
    latest_capture: CapturePublic | None = Field(description="The latest capture with its analysis")
    battery_voltage: float | None
    user_tier: Literal["free", "premium"]
    clicks_used_today: int
    clicks_limit: int | None = Field(description="null: unlimited (premium)")
    clicks_reset_at: str


# Gateways
class GatewayCreate(Strict):
    name: str = Field(min_length=1, max_length=100)


class GatewaySetup(BaseModel):
    """How to start the gateway with its token (shown once, with the token)."""

    command: str = Field(description="The `mailcam gateway` command line, to run it now")
    env_file: str = Field(description="/etc/mailcam/gateway.env for the systemd unit (holds the token)")
    systemd_unit: str = Field(description="/etc/systemd/system/mailcam-gateway.service")


class GatewayRegistered(BaseModel):
    gateway_id: int
    name: str
    gateway_token: str = Field(description="Shown once")
    setup: GatewaySetup


class GatewayPublic(BaseModel):
    gateway_id: int
    name: str
    created_at: datetime
    last_seen_at: datetime | None = Field(description="Its last request to the cloud")
    state: Literal["never_seen", "online", "offline"]
    reported_at: datetime | None = Field(description="When it last reported the figures below")
    backlog: int | None = Field(description="Photos and reports waiting at the gateway for the cloud")
    backlog_oldest_s: float | None = Field(description="Age of the oldest of them, in seconds")
    held: int | None = Field(description="Items of devices not claimed yet, kept until they are")
    dead_letters: int | None = Field(description="Messages the gateway refused or could not deliver")
    broker_connected: bool | None


class GatewayStatusReport(BaseModel):
    """What a gateway says about its spool (``POST /api/gateway/status/``, every housekeeping round).
    Fields a newer gateway adds are ignored, so an upgrade of either side keeps the report working."""

    backlog: int = Field(ge=0, le=10**9)
    backlog_oldest_s: float = Field(ge=0, le=10**10)
    held: int = Field(ge=0, le=10**9)
    dead_letters: int = Field(ge=0, le=10**9)
    broker_connected: bool


class GatewayToken(BaseModel):
    gateway_id: int
    gateway_token: str = Field(description="Shown once; the gateway's earlier token stops working")
    setup: GatewaySetup


class GatewayFirmwareOffer(BaseModel):
    release_id: int
    version: str
    size: int
    signature: str


class GatewayDevice(BaseModel):
    serial: str
    wake_interval_s: int
    settings_version: int | None = Field(default=None, description="Desired remote settings version")
    settings: dict[str, Any] | None = Field(default=None, description="Desired remote settings {path: value}")
    firmware: GatewayFirmwareOffer | None = Field(default=None, description="The firmware release offered to it")


class RemoteSettings(Strict):
    """The settings a device takes over the air (``mcam.protocol.SETTABLE``) with the firmware's own
    ranges (``mcam.config.validate``): the one description of what the device accepts. Requests are
    checked by the firmware's rules themselves (their messages name the path); this model gives the
    OpenAPI document the same rules, so every schema-valid request is one the device takes."""

    model_config = ConfigDict(extra="forbid")

    wake_interval_s: StrictInt = Field(default=None, ge=10, le=7 * 86400)
    camera_framesize: Literal[FRAMESIZES] = Field(default=None, alias="camera.framesize")  # type: ignore[valid-type]
    camera_quality: StrictInt = Field(default=None, ge=2, le=63, alias="camera.quality")
    camera_flash: StrictBool = Field(default=None, alias="camera.flash")
    low_battery_mv: StrictInt = Field(default=None, ge=0, le=10000, alias="low_battery.mv")
    chunk_size: StrictInt = Field(default=None, ge=256, le=65536)
    door_level: StrictInt = Field(default=None, ge=0, le=1, alias="door.level")


class SettingsUpdate(Strict):
    settings: Annotated[
        dict[str, Any], WithJsonSchema(RemoteSettings.model_json_schema(by_alias=True))
    ] = Field(description="The desired remote settings {path: value}; an empty object clears them")


class DeviceSettings(BaseModel):
    serial: str
    desired: dict[str, Any] = Field(description="What the owner asked for (empty: the device's own config)")
    version: int | None = Field(description="Version of the desired settings (None: never set)")
    applied_version: int | None = Field(description="The version the device reports in effect")
    applied: bool = Field(description="The device reports the desired version in effect")
    error: str | None = Field(description="Why the device refused the newest version it received")
    wake_interval_s: int = Field(description="The wake interval 'offline' is measured against")
    settable: list[str] = Field(default=list(SETTABLE), description="The paths that may be set remotely")


class GatewayTrigger(BaseModel):
    trigger_id: str
    device_serial: str
    status: Literal["pending", "delivered"]
    expires_at: datetime


class GatewayTriggers(BaseModel):
    version: str = Field(description="Pass back as `version` to long-poll for a change")
    triggers: list[GatewayTrigger]


class MailState(BaseModel):
    """The mailbox's delivery state as the cloud decided it (``cloud.vision.delivery``)."""

    state: Literal["mail", "empty"] | None = Field(description="None: not judged yet")
    since: datetime | None = None
    items: list[Any] = Field(default_factory=list, description="What the last photo that moved the state showed")
    categories: dict[str, int] = Field(default_factory=dict)
    confidence: float | None = None
    package: bool = False


class LatestPhoto(BaseModel):
    capture_id: str
    taken_at: datetime
    thumbnail: str = Field(description="Signed, expiring path of its thumbnail (relative to the API's base URL)")


class DeliveryNews(BaseModel):
    """The newest delivery transition (an id the gateway remembers, so each is announced once)."""

    id: int
    kind: Literal["arrived", "more", "collected"]
    at: datetime
    package: bool


class GatewayDeviceState(BaseModel):
    """One device as Home Assistant shows it, through the gateway."""

    serial: str
    name: str
    firmware_version: str | None
    online: bool
    last_seen_at: datetime | None
    battery_voltage: float | None
    battery_percent: int | None = Field(description="Estimate for one Li-ion cell, from the voltage")
    rssi: int | None
    awake_ms: int | None
    pending_captures: int | None
    mail: MailState
    latest_photo: LatestPhoto | None
    last_delivery: DeliveryNews | None


class GatewayStates(BaseModel):
    version: str = Field(description="Pass back as `version` to long-poll for a change")
    devices: list[GatewayDeviceState]


class ErrorBody(BaseModel):
    error: str
    detail: str


# Firmware updates
class FirmwareKey(BaseModel):
    public_key: str | None = Field(description="This cloud's Ed25519 release key (64 hex); provision devices with it")


class ReleasePublic(BaseModel):
    release_id: int
    version: str
    size: int
    files: int
    sha256: str
    created_at: datetime


class _RolloutBase(Strict):
    version: str = Field(max_length=40, description="The release to roll out")
    first_wave: int | None = Field(default=None, ge=1, description="Devices in the first wave (default 10%, >= 1)")
    max_failure_rate: float = Field(default=0.2, ge=0, le=1,
                                    description="Halt when more than this share of the first wave fails")


class RolloutToDevices(_RolloutBase):
    serials: list[Serial] = Field(min_length=1, max_length=1000, description="These devices (one or a list)")


class RolloutToShare(_RolloutBase):
    percent: int = Field(ge=1, le=100, description="This share of the devices I own or installed")


RolloutCreate = RolloutToDevices | RolloutToShare


class DeviceUpdatePublic(BaseModel):
    rollout_id: int
    version: str
    wave: int
    state: Literal["waiting", "pending", "downloading", "staged", "installed", "rolled_back", "refused"]
    progress: int = Field(description="Percent downloaded")
    reason: str | None = Field(description="Why it was refused or rolled back")
    updated_at: datetime


class RolloutDevicePublic(DeviceUpdatePublic):
    serial: str


class RolloutPublic(BaseModel):
    rollout_id: int
    version: str
    status: Literal["active", "halted", "cancelled"]
    halted_reason: str | None
    first_wave: int
    max_failure_rate: float
    created_at: datetime
    devices: list[RolloutDevicePublic]


class DeviceFirmware(BaseModel):
    running: str | None = Field(description="The firmware version the device last reported")
    update: DeviceUpdatePublic | None = Field(description="Its newest rollout, if any")


class BatteryForecast(BaseModel):
    status: Literal["projected", "below", "none"] = Field(
        description="projected: a date; below: at or under the threshold now; none: no honest date (see reason)")
    reason: str | None = Field(description="Why there is no date (too little history, a battery change, …)")
    date: datetime | None = Field(description="The central estimate of reaching the low-battery threshold")
    earliest: datetime | None = Field(description="The early end of the 90 % range")
    latest: datetime | None = Field(description="The late end of the range (None: beyond what the data supports)")
    slope_v_per_day: float | None = Field(description="The fitted discharge rate (negative: falling)")
    since: datetime | None = Field(description="The first reading used (after the last battery change)")
    change_at: datetime | None = Field(description="The last battery change or charge seen")


class BatteryHistory(BaseModel):
    points: list[tuple[int, float]] = Field(description="[unix seconds, volts]: median per bucket, oldest first")
    threshold_v: float = Field(description="The low-battery alert threshold")
    forecast: BatteryForecast


class DeliveryTimes(BaseModel):
    by_hour: list[int] = Field(description="Deliveries per hour of the owner's day, 0 to 23")
    typical: str | None = Field(description="Median delivery time HH:MM (None: fewer than 3 deliveries)")
    usual_from: str | None = Field(description="The middle half of deliveries came from this time …")
    usual_to: str | None = Field(description="… to this one")


class DailyHistory(BaseModel):
    """Columns, one entry per day of the owner's calendar (compact for charts)."""

    day: list[str] = Field(description="ISO dates, oldest first")
    deliveries: list[int] = Field(description="Mail arrived or more mail, per day")
    wakes: list[int] = Field(description="Wakes reported in telemetry, per day")
    awake_s: list[float] = Field(description="Seconds awake, per day (the battery's cost)")


class DeviceHistory(BaseModel):
    serial: str
    timezone: str = Field(description="The owner's time zone the days are counted in")
    days: int
    daily: DailyHistory
    battery: BatteryHistory
    delivery_times: DeliveryTimes
