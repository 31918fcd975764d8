"""Domain events raised inside a database transaction.

Producers (ingest, triggers, vision, scheduled checks) call
``ctx.events.emit(session, event)`` in the same transaction as the change
they describe, so a sink that writes to a durable outbox (the notification
service) commits or rolls back with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

log = logging.getLogger("mailcam.events")


class EventKind:
    MAIL_ARRIVED = "mail_arrived"
    PACKAGE_ARRIVED = "package_arrived"
    PACKAGE_DAMAGED = "package_damaged"
    MAILBOX_EMPTY = "mailbox_empty"
    MORE_MAIL = "more_mail"
    RETAKE_NEEDED = "retake_needed"
    ANALYSIS_FAILED = "analysis_failed"
    LOW_BATTERY = "low_battery"
    DEVICE_OFFLINE = "device_offline"
    TRIGGER_FULFILLED = "trigger_fulfilled"
    TRIGGER_EXPIRED = "trigger_expired"
    AI_BUDGET_REACHED = "ai_budget_reached"
    DAILY_DIGEST = "daily_digest"
    CAPTURE_RECEIVED = "capture_received"
    ANALYSIS_COMPLETED = "analysis_completed"
    # The mailbox's delivery state moved (data["transition"]: arrived | more | collected).
    MAIL_DELIVERY = "mail_delivery"
    CALIBRATION_NEEDED = "calibration_needed"
    TELEMETRY_RECEIVED = "telemetry_received"


@dataclass(frozen=True)
class Event:
    kind: str
    user_id: int | None
    device_id: int | None = None
    capture_pk: int | None = None
    # A stable key for "the same event": delivery is at most once per (key, channel, recipient).
    key: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class EventSink(Protocol):
    def emit(self, session: Session, event: Event) -> None: ...


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
