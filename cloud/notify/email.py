"""Email channel: SMTP with STARTTLS (or implicit TLS) and login, the capture's thumbnail attached."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from cloud.notify.base import OutgoingMessage, PermanentFailure, SendResult, TemporaryFailure, short
from cloud.notify.config import NotifySettings
from cloud.notify.rich import with_context


class EmailChannel:
    name = "email"

    def __init__(self, settings: NotifySettings) -> None:
        if not settings.smtp_host:
            raise ValueError("the email channel needs smtp_host")
        self.settings = settings

    def build(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.settings.smtp_from
        mail["To"] = message.address
        mail["Subject"] = message.title
        mail["Message-ID"] = make_msgid(idstring=f"mailcam-{message.notification_id}", domain="mailcam.local")
        mail.set_content(f"{with_context(message)}\n\n— mailcam")
        thumbnail = message.thumbnail()
        if thumbnail:
            mail.add_attachment(thumbnail, maintype="image", subtype="jpeg", filename="mailbox.jpg")
        return mail

    def send(self, message: OutgoingMessage) -> SendResult:
        mail = self.build(message)
        try:
            with self._connect() as smtp:
                if self.settings.smtp_username:
                    smtp.login(self.settings.smtp_username, self.settings.smtp_password or "")
                refused = smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure("the mail server refused the recipient") from exc
        except smtplib.SMTPResponseException as exc:
            failure = PermanentFailure if 500 <= exc.smtp_code < 600 and exc.smtp_code != 535 else TemporaryFailure
            raise failure(f"SMTP {exc.smtp_code}: {short(exc.smtp_error, 200)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(f"SMTP unavailable: {type(exc).__name__}: {short(exc, 200)}") from exc
        if refused:
            raise PermanentFailure("the mail server refused the recipient")
        return SendResult(provider_id=mail["Message-ID"])

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context(cafile=s.smtp_ca_file) if (s.smtp_ssl or s.smtp_starttls) else None
        if s.smtp_ssl:
            return smtplib.SMTP_SSL(s.smtp_host or "", s.smtp_port, timeout=s.smtp_timeout_s, context=context)
        smtp = smtplib.SMTP(s.smtp_host or "", s.smtp_port, timeout=s.smtp_timeout_s)
        try:
            if s.smtp_starttls:
                smtp.starttls(context=context)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def close(self) -> None:
        return None
