"""Model → public schema conversions, in one place."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.api import schemas
from cloud.context import AppContext
from cloud.models import Analysis, Capture, Device, MailboxReference, ManualTrigger, User
from cloud.services import access, devices
from cloud.services.device_history import DeviceHistory
from cloud.vision import references


def device_public(device: Device, ctx: AppContext, user: User) -> schemas.DevicePublic:
    """The device as ``user`` sees it (their access to it is part of the answer)."""
    online = devices.is_online(device, ctx.clock.now(), ctx.settings)
    mailbox = device.mailbox
    has_mail = mailbox is not None and mailbox.state == "mail"
    return schemas.DevicePublic(
        serial=device.serial,
        name=device.name,
        timezone=device.timezone,
        wake_interval_s=device.wake_interval_s,
        status="online" if online else "offline",
        last_seen_at=device.last_seen_at,
        battery_voltage=device.last_battery_voltage,
        rssi=device.last_rssi,
        firmware_version=device.firmware_version,
        calibrated=mailbox is not None and mailbox.calibrated_at is not None,
        mailbox=mailbox.state if mailbox is not None and mailbox.capture_pk is not None else None,
        mail_since=mailbox.since if has_mail else None,
        mail_categories=mailbox.categories if has_mail else None,
        access=access.label(access.access_of(device, user)),
        claimed=device.owner_id is not None,
        installer_access=device.installer_access,
    )


def device_settings_public(device: Device) -> schemas.DeviceSettings:
    return schemas.DeviceSettings(
        serial=device.serial,
        desired=device.settings_desired or {},
        version=device.settings_version,
        applied_version=device.settings_applied_version,
        applied=device.settings_version is not None and device.settings_applied_version == device.settings_version,
        error=device.settings_error,
        wake_interval_s=device.wake_interval_s,
    )


def device_history_public(serial: str, days: int, h: DeviceHistory) -> schemas.DeviceHistory:
    return schemas.DeviceHistory(
        serial=serial,
        timezone=h.timezone,
        days=days,
        daily=schemas.DailyHistory(day=h.days, deliveries=h.deliveries, wakes=h.wakes, awake_s=h.awake_s),
        battery=schemas.BatteryHistory(points=h.battery_points, threshold_v=h.threshold_v,
                                       forecast=schemas.BatteryForecast(**h.forecast.__dict__)),
        delivery_times=schemas.DeliveryTimes(**h.delivery_times.__dict__),
    )


def reference_set(session: Session, row: MailboxReference, capture: Capture, device: Device) -> schemas.ReferenceSet:
    return schemas.ReferenceSet(capture_id=capture.capture_id, device_serial=device.serial, reference_id=row.id,
                                source=row.source, references=references.count(session, device.id))


def analysis_public(analysis: Analysis | None) -> schemas.AnalysisPublic | None:
    if analysis is None:
        return None
    return schemas.AnalysisPublic(
        status=analysis.status.value,
        mail_detected=analysis.mail_detected,
        confidence=analysis.confidence,
        description=analysis.description,
        items=analysis.items or [],
        categories=analysis.categories,
        package_present=analysis.package_present,
        package_damage=analysis.package_damage,
        package_damage_confidence=analysis.package_damage_confidence,
        image_quality=analysis.image_quality,
        provider=analysis.provider,
        model=analysis.model,
        source=analysis.source,
        delivery=analysis.delivery,
        error=analysis.error,
    )


def capture_public(capture: Capture, device_serial: str) -> schemas.CapturePublic:
    base = f"/api/captures/{capture.capture_id}"
    return schemas.CapturePublic(
        capture_id=capture.capture_id,
        device_serial=device_serial,
        trigger_type=capture.trigger_type.value,
        trigger_id=capture.trigger_id,
        battery_voltage=capture.battery_voltage,
        taken_at=capture.taken_at,
        taken_at_uncertain=capture.taken_at_uncertain,
        received_at=capture.received_at,
        width=capture.width,
        height=capture.height,
        image_bytes=capture.image_bytes,
        image_url=f"{base}/image",
        thumbnail_url=f"{base}/thumbnail",
        analysis=analysis_public(capture.analysis),
    )


def trigger_public(session: Session, trigger: ManualTrigger, device_serial: str) -> schemas.TriggerPublic:
    capture_id = None
    if trigger.capture_pk is not None:
        capture_id = session.scalar(select(Capture.capture_id).where(Capture.id == trigger.capture_pk))
    return schemas.TriggerPublic(
        trigger_id=trigger.trigger_id,
        device_serial=device_serial,
        status=trigger.status.value,
        requested_at=trigger.requested_at,
        expires_at=trigger.expires_at,
        delivered_at=trigger.delivered_at,
        ended_at=trigger.ended_at,
        capture_id=capture_id,
        click_refunded=trigger.click_refunded,
    )
