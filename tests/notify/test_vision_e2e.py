"""The real vision pipeline (offline provider) feeding the outbox: capture → analysis → notification."""

from __future__ import annotations

from cloud.notify import outbox
from cloud.vision.worker import process_pending
from tests.notify.conftest import notifications, set_prefs, store_capture

# A fresh device is uncalibrated: its first photo asks the owner for a photo of the box empty.
ANALYSIS_KINDS = {"mail_arrived", "package_arrived", "package_damaged", "mailbox_empty", "retake_needed",
                  "calibration_needed"}


def test_an_analysed_capture_notifies_its_owner_once(nctx, owner):
    set_prefs(nctx, owner, min_confidence=0.0,
              events={kind: ["console"] for kind in ANALYSIS_KINDS | {"analysis_failed"}})
    pk = store_capture(nctx, owner, "cap-1")
    assert process_pending(nctx) == 1
    rows = [r for r in notifications(nctx, channel="console") if r.capture_pk == pk]
    assert len(rows) == 1 and rows[0].kind in ANALYSIS_KINDS | {"analysis_failed"}
    assert rows[0].data["capture_id"] == "cap-1"
    assert outbox.deliver_due(nctx) >= 1
    assert notifications(nctx, channel="console")[0].delivery == "sent"
