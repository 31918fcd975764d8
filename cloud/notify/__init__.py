"""Notifications: events → outbox → channels, with preferences, quiet hours and scheduled alerts.

- ``outbox``: the event sink (``install(ctx)``), the durable outbox and ``deliver_due``.
- ``mapping``: which notification a domain event means; ``preferences``: who wants what, when.
- channels, one module each behind ``base.Channel``: ``console``, ``fcm`` (push), ``sms``
  (Twilio), ``email`` (SMTP), ``webhook`` (signed JSON POST).
- ``digest``, ``jobs`` (the scheduled ones), ``worker`` (the delivery thread).

Device health (battery, offline) lives in ``cloud.services.device_health`` and API keys in
``cloud.services.api_keys``: they raise events or guard requests, they are not delivery.
"""
