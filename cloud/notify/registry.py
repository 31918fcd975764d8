"""The channels this process can use, built from the settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from cloud.notify import kinds
from cloud.notify.base import Channel
from cloud.notify.config import NotifySettings

if TYPE_CHECKING:
    from py_vapid import Vapid02

    from cloud.context import AppContext

log = logging.getLogger("mailcam.notify")


def available(settings: NotifySettings) -> list[str]:
    """Channel names whose settings are present (no network, no SDK start-up)."""
    names = [kinds.WEBHOOK]
    if settings.console:
        names.append(kinds.CONSOLE)
    if settings.smtp_host:
        names.append(kinds.EMAIL)
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from_number:
        names.append(kinds.SMS)
    if settings.fcm_credentials_file:
        names.append(kinds.PUSH)
    if settings.webpush:
        names.append(kinds.WEBPUSH)
    if settings.apprise:
        names.append(kinds.APPRISE)
    return [n for n in kinds.ALL_CHANNELS if n in names]


class ChannelRegistry:
    """Channels by name, built lazily on first use and closed together."""

    def __init__(self, settings: NotifySettings, *, now: Callable[[], datetime],
                 vapid: Callable[[], Vapid02] | None = None, overrides: dict[str, Channel] | None = None) -> None:
        self.settings = settings
        self._now = now
        self._vapid = vapid  # Web Push's key: the deployment's, read from the database when first needed
        self._channels: dict[str, Channel] = dict(overrides or {})
        self._lock = threading.Lock()  # sends run in a thread pool; build each channel once

    @classmethod
    def for_context(cls, ctx: AppContext, *, overrides: dict[str, Channel] | None = None) -> ChannelRegistry:
        from cloud.notify.vapid import server_vapid

        return cls(ctx.settings.notify, now=ctx.clock.now, vapid=lambda: server_vapid(ctx), overrides=overrides)

    def get(self, name: str) -> Channel | None:
        with self._lock:
            if name not in self._channels:
                if name not in available(self.settings):
                    return None
                self._channels[name] = self._build(name)
            return self._channels[name]

    def _build(self, name: str) -> Channel:
        s = self.settings
        if name == kinds.CONSOLE:
            from cloud.notify.console import ConsoleChannel

            return ConsoleChannel()
        if name == kinds.WEBHOOK:
            from cloud.netguard import Policy
            from cloud.notify.webhook import WebhookChannel

            return WebhookChannel(now=self._now, policy=Policy.from_allow(s.outbound_allow),
                                  timeout_s=s.webhook_timeout_s, deadline_s=s.webhook_deadline_s)
        if name == kinds.EMAIL:
            from cloud.notify.email import EmailChannel

            return EmailChannel(s)
        if name == kinds.SMS:
            from cloud.notify.sms import SmsChannel

            return SmsChannel(s)
        if name == kinds.WEBPUSH:
            from cloud.netguard import Policy
            from cloud.notify.webpush import WebPushChannel

            if self._vapid is None:
                raise RuntimeError("Web Push needs the deployment's VAPID key: build the registry for_context")
            return WebPushChannel(s, self._vapid(), policy=Policy.from_allow(s.outbound_allow))
        if name == kinds.APPRISE:
            from cloud.netguard import Policy
            from cloud.notify.apprise_channel import AppriseChannel

            return AppriseChannel(s, policy=Policy.from_allow(s.outbound_allow))
        from cloud.notify.fcm import FcmChannel

        return FcmChannel(s)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
