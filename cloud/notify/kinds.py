"""The notification kinds an owner can subscribe to, and the channel names."""


from __future__ import annotations

import enum


class NotificationKind(enum.StrEnum):
    """What an owner is told (not what happened: that is ``cloud.events.DomainEvent``)."""

    MAIL_ARRIVED = "mail_arrived"
    PACKAGE_ARRIVED = "package_arrived"
    PACKAGE_DAMAGED = "package_damaged"
    MORE_MAIL = "more_mail"
    MAILBOX_EMPTY = "mailbox_empty"  # the mail was collected: the box is empty again
    CALIBRATION_NEEDED = "calibration_needed"
    RETAKE_NEEDED = "retake_needed"
    ANALYSIS_FAILED = "analysis_failed"
    LOW_BATTERY = "low_battery"
    DEVICE_OFFLINE = "device_offline"
    TRIGGER_FULFILLED = "trigger_fulfilled"
    TRIGGER_EXPIRED = "trigger_expired"
    AI_BUDGET_REACHED = "ai_budget_reached"
    DAILY_DIGEST = "daily_digest"


# Short names, as the rest of the notification code spells them.
MAIL_ARRIVED = NotificationKind.MAIL_ARRIVED
PACKAGE_ARRIVED = NotificationKind.PACKAGE_ARRIVED
PACKAGE_DAMAGED = NotificationKind.PACKAGE_DAMAGED
MORE_MAIL = NotificationKind.MORE_MAIL
MAILBOX_EMPTY = NotificationKind.MAILBOX_EMPTY
CALIBRATION_NEEDED = NotificationKind.CALIBRATION_NEEDED
RETAKE_NEEDED = NotificationKind.RETAKE_NEEDED
ANALYSIS_FAILED = NotificationKind.ANALYSIS_FAILED
LOW_BATTERY = NotificationKind.LOW_BATTERY
DEVICE_OFFLINE = NotificationKind.DEVICE_OFFLINE
TRIGGER_FULFILLED = NotificationKind.TRIGGER_FULFILLED
TRIGGER_EXPIRED = NotificationKind.TRIGGER_EXPIRED
AI_BUDGET_REACHED = NotificationKind.AI_BUDGET_REACHED
DAILY_DIGEST = NotificationKind.DAILY_DIGEST

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
