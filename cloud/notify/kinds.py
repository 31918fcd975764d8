"""The notification kinds an owner can subscribe to, and the channel names."""

from __future__ import annotations

from cloud.events import EventKind

MAIL_ARRIVED = EventKind.MAIL_ARRIVED
PACKAGE_ARRIVED = EventKind.PACKAGE_ARRIVED
PACKAGE_DAMAGED = EventKind.PACKAGE_DAMAGED
MORE_MAIL = EventKind.MORE_MAIL
MAILBOX_EMPTY = EventKind.MAILBOX_EMPTY  # the mail was collected: the box is empty again
CALIBRATION_NEEDED = EventKind.CALIBRATION_NEEDED
RETAKE_NEEDED = EventKind.RETAKE_NEEDED
ANALYSIS_FAILED = EventKind.ANALYSIS_FAILED
LOW_BATTERY = EventKind.LOW_BATTERY
DEVICE_OFFLINE = EventKind.DEVICE_OFFLINE
TRIGGER_FULFILLED = EventKind.TRIGGER_FULFILLED
TRIGGER_EXPIRED = EventKind.TRIGGER_EXPIRED
AI_BUDGET_REACHED = EventKind.AI_BUDGET_REACHED
DAILY_DIGEST = EventKind.DAILY_DIGEST

# On unless the owner turns them off.
DEFAULT_ON = (
    MAIL_ARRIVED,
    PACKAGE_ARRIVED,
    PACKAGE_DAMAGED,
    MORE_MAIL,
    CALIBRATION_NEEDED,
    RETAKE_NEEDED,
    LOW_BATTERY,
    DEVICE_OFFLINE,
    TRIGGER_FULFILLED,
    TRIGGER_EXPIRED,
    AI_BUDGET_REACHED,
)
# Off unless the owner turns them on (the seed's "mailbox empty" is opt-in).
OPT_IN = (MAILBOX_EMPTY, ANALYSIS_FAILED, DAILY_DIGEST)
ALL_KINDS = DEFAULT_ON + OPT_IN

CONSOLE = "console"
PUSH = "push"
SMS = "sms"
EMAIL = "email"
WEBHOOK = "webhook"
WEBPUSH = "webpush"  # browsers (cloud.notify.webpush)
APPRISE = "apprise"  # ntfy, Telegram, … (cloud.notify.apprise_channel)
ALL_CHANNELS = (CONSOLE, PUSH, WEBPUSH, APPRISE, SMS, EMAIL, WEBHOOK)
# Channels that cost nothing and need no address from the owner: on by default for DEFAULT_ON kinds.
DEFAULT_CHANNELS = (CONSOLE, PUSH, WEBPUSH, APPRISE, WEBHOOK)
