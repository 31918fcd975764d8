"""Domain events: what happened, raised inside the database transaction that made it happen.

Producers (ingest, telemetry, triggers, vision, scheduled checks) call ``emit(...)`` in the same
transaction as the change they describe, so a sink that writes to a durable outbox (the
notification service) commits or rolls back with it.

A domain event is not a notification. ``DomainEvent`` lists what the code emits, each with its
payload's shape (``PAYLOADS``); what an owner is told, and in which words, is the notification
service's business (``cloud.notify.kinds.NotificationKind``, ``cloud.notify.mapping``). One
delivery of mail, for example, is one ``MAIL_DELIVERY`` event that the mapping turns into
"mail arrived", "package arrived", "more mail" or "mailbox empty".
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

from sqlalchemy.orm import Session

log = logging.getLogger("mailcam.events")


class DomainEvent(enum.StrEnum):
    CAPTURE_RECEIVED = "capture_received"
    TELEMETRY_RECEIVED = "telemetry_received"
    ANALYSIS_COMPLETED = "analysis_completed"
    ANALYSIS_FAILED = "analysis_failed"
    # The mailbox's delivery state moved (payload "transition": arrived | more | collected).
    MAIL_DELIVERY = "mail_delivery"
    CALIBRATION_NEEDED = "calibration_needed"
    AI_BUDGET_REACHED = "ai_budget_reached"
    LOW_BATTERY = "low_battery"
    DEVICE_OFFLINE = "device_offline"
    TRIGGER_DELIVERED = "trigger_delivered"  # the gateway handed the request to the mailbox
    TRIGGER_FULFILLED = "trigger_fulfilled"
    TRIGGER_EXPIRED = "trigger_expired"
    DAILY_DIGEST = "daily_digest"


# --- payloads (JSON-ready: they are copied into notification rows) -------------------------------


class CaptureReceived(TypedDict):
    capture_id: str
    device_serial: str
    trigger_type: str


class TelemetryReceived(TypedDict):
    device_serial: str
    battery_voltage: float | None


class AnalysisDone(TypedDict):
    """ANALYSIS_COMPLETED and ANALYSIS_FAILED: the stored analysis of one capture."""

    capture_id: str
    device_serial: str
    analysis_kind: str  # initial | reanalyse (the vision job's kind)
    status: str
    mail_detected: bool | None
    confidence: float | None
    description: str | None
    items: list | None
    categories: dict | None
    package_present: bool | None
    package_damage: str | None
    package_damage_confidence: float | None
    image_quality: str | None
    provider: str | None
    model: str | None
    source: str | None
    error: str | None
    # The device's previous result, so "mail arrived" can be told from "mail still there".
    previous_mail_detected: bool | None
    previous_package_present: bool | None


class MailDelivery(AnalysisDone):
    transition: str  # arrived | more | collected
    since: str  # ISO time the delivery began


class CalibrationNeeded(TypedDict):
    device_serial: str
    capture_id: str


class AIBudgetReached(TypedDict):
    device_serial: str
    month: str
    spent_usd: float
    budget_usd: float


class LowBattery(TypedDict):
    device_serial: str
    battery_voltage: float
    threshold_v: float


class DeviceOffline(TypedDict):
    device_serial: str
    last_seen_at: str | None
    missed_wakes: int


class TriggerFulfilled(TypedDict):
    """TRIGGER_DELIVERED and TRIGGER_FULFILLED."""

    trigger_id: str
    device_serial: str


class TriggerExpired(TypedDict):
    trigger_id: str
    device_serial: str | None
    click_refunded: bool


class DailyDigest(TypedDict):
    title: str
    text: str
    photos: int
    with_mail: int
    packages: int


PAYLOADS: dict[DomainEvent, type] = {
    DomainEvent.CAPTURE_RECEIVED: CaptureReceived,
    DomainEvent.TELEMETRY_RECEIVED: TelemetryReceived,
    DomainEvent.ANALYSIS_COMPLETED: AnalysisDone,
    DomainEvent.ANALYSIS_FAILED: AnalysisDone,
    DomainEvent.MAIL_DELIVERY: MailDelivery,
    DomainEvent.CALIBRATION_NEEDED: CalibrationNeeded,
    DomainEvent.AI_BUDGET_REACHED: AIBudgetReached,
    DomainEvent.LOW_BATTERY: LowBattery,
    DomainEvent.DEVICE_OFFLINE: DeviceOffline,
    DomainEvent.TRIGGER_DELIVERED: TriggerFulfilled,
    DomainEvent.TRIGGER_FULFILLED: TriggerFulfilled,
    DomainEvent.TRIGGER_EXPIRED: TriggerExpired,
    DomainEvent.DAILY_DIGEST: DailyDigest,
}


class PayloadMismatch(ValueError):
    """A producer's payload does not have its event's declared keys (a bug, caught where it is made)."""


@dataclass(frozen=True)
class Event:
    kind: DomainEvent
    user_id: int | None
    device_id: int | None = None
    capture_pk: int | None = None
    # A stable key for "the same event": delivery is at most once per (key, channel, recipient).
    key: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class EventSink(Protocol):
    def emit(self, session: Session, event: Event) -> None: ...


def emit(
    sink: EventSink,
    session: Session,
    kind: DomainEvent,
    data: Any,
    *,
    user_id: int | None,
    key: str,
    device_id: int | None = None,
    capture_pk: int | None = None,
) -> Event:
    """Raise one domain event in ``session``'s transaction (``sink`` is ``ctx.events``)."""
    expected = set(PAYLOADS[kind].__annotations__)
    if set(data) != expected:
        wrong = sorted(set(data) ^ expected)
        raise PayloadMismatch(f"{kind}: payload keys {wrong} differ from {PAYLOADS[kind].__name__}")
    event = Event(kind, user_id, device_id=device_id, capture_pk=capture_pk, key=key, data=dict(data))
    sink.emit(session, event)
    return event


class LogSink:
    """Logs events; the default until the notification service is wired in."""

    def emit(self, session: Session, event: Event) -> None:
        log.info("event %s device=%s capture=%s", event.kind, event.device_id, event.capture_pk)


class FanoutSink:
    """Several sinks in order (e.g. notifications, then a live feed for the demo)."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = list(sinks)

    def emit(self, session: Session, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(session, event)
