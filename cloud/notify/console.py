"""Console channel: logs what would have been sent (the embedded default, for demos)."""

from __future__ import annotations

import logging
from collections import deque

from cloud.notify.base import OutgoingMessage, SendResult

log = logging.getLogger("mailcam.notify.console")


class ConsoleChannel:
    name = "console"

    def __init__(self, *, keep: int = 200) -> None:
        # The latest messages, newest last, for a demo page or a test to read.
        self.recent: deque[OutgoingMessage] = deque(maxlen=keep)

    def send(self, message: OutgoingMessage) -> SendResult:
        self.recent.append(message)
        log.info("[notification %s] %s: %s — %s", message.notification_id, message.kind, message.title, message.body)
        return SendResult(provider_id=f"console-{message.notification_id}")

    def close(self) -> None:
        return None
