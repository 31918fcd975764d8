"""Domain events: one list of what is emitted, each with its payload's declared keys."""

from __future__ import annotations

import pytest

from cloud import events
from cloud.events import PAYLOADS, DomainEvent, PayloadMismatch
from cloud.notify.kinds import NotificationKind


class Recorder:
    def __init__(self) -> None:
        self.seen: list[events.Event] = []

    def emit(self, session, event) -> None:
        self.seen.append(event)


def test_every_domain_event_declares_its_payload():
    assert set(PAYLOADS) == set(DomainEvent)


def test_emit_refuses_a_payload_that_drifted_from_its_declaration():
    """A producer that renames or forgets a key fails where it emits, not in a notification text later."""
    sink = Recorder()
    with pytest.raises(PayloadMismatch, match="trigger_id"):
        events.emit(sink, None, DomainEvent.TRIGGER_FULFILLED, {"device_serial": "mb-1", "trigger": "t-1"},
                    user_id=1, key="k")
    assert sink.seen == []
    event = events.emit(sink, None, DomainEvent.TRIGGER_FULFILLED, {"device_serial": "mb-1", "trigger_id": "t-1"},
                        user_id=1, device_id=2, key="k")
    assert sink.seen == [event] and event.data == {"device_serial": "mb-1", "trigger_id": "t-1"}


def test_notification_kinds_are_not_domain_events():
    """What an owner is told is a separate list: "mail arrived" is never emitted as an event."""
    assert NotificationKind.MAIL_ARRIVED not in set(DomainEvent)
    assert NotificationKind.RETAKE_NEEDED not in set(DomainEvent)
