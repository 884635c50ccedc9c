"""Mail from the registration desk: the message a promoted person gets (D3)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Protocol

from adapter.config import SmtpSection


class Mailer(Protocol):
    """Anything that can send one plain-text mail."""

    def send(self, to: str, subject: str, body: str) -> None: ...


class SmtpMailer:
    """Sends plain-text mail through an SMTP server, one connection per mail."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout

    @classmethod
    def from_settings(cls, section: SmtpSection) -> SmtpMailer:
        return cls(
            section.host,
            section.port,
            section.sender,
            starttls=section.starttls,
            username=section.username,
            password=section.password,
        )

    def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as server:
            if self.starttls:
                server.starttls(context=ssl.create_default_context())
            if self.username is not None:
                server.login(self.username, self.password or "")
            server.send_message(message)

    def __repr__(self) -> str:  # never shows the password
        return f"SmtpMailer({self.host!r}, {self.port}, {self.sender!r})"
