"""Notifications: events → outbox → channels, with preferences, quiet hours and scheduled alerts.

- ``outbox``: the event sink (``install(ctx)``), the durable outbox and ``deliver_due``.
- ``mapping``: which notification a domain event means; ``preferences``: who wants what, when.
- channels, one module each behind ``base.Channel``: ``console``, ``fcm`` (push), ``webpush``
  (browsers, the dashboard's PWA), ``apprise_channel`` (ntfy, Telegram, … "Other apps"), ``sms``
  (Twilio), ``email`` (SMTP), ``webhook`` (signed JSON POST); ``rich`` and ``links`` (thumbnail
  link, mailbox name, local time in alerts), ``send_limits`` (email/SMS/code send limits).
- ``digest``, ``jobs`` (the scheduled ones), ``worker`` (the delivery thread).

Device health (battery, offline) lives in ``cloud.services.device_health`` and API keys in
``cloud.services.api_keys``: they raise events or guard requests, they are not delivery.
"""
