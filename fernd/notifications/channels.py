"""Delivery of rendered notifications through Apprise.

Apprise's calls block (smtplib, HTTP), so they run in a worker thread with a
timeout, never on the Trio thread. Apprise's own log lines can name
addresses, so its logger is silenced and failures are reported without
contact details.
"""

import logging
import re
from urllib.parse import quote

import apprise
import trio

from fernd.domain.enums import NotificationChannel
from fernd.notifications.render import RenderedNotification
from fernd.notifications.settings import (
    DESTINATION_PLACEHOLDER,
    EmailSettings,
    NotificationSettings,
)

logger = logging.getLogger(__name__)

# A provider that has not accepted a message by then has failed.
DELIVERY_TIMEOUT_SECONDS = 30.0
# Apprise's connect and read timeouts, inside the delivery timeout.
_CONNECT_TIMEOUT = 10
_READ_TIMEOUT = 20

logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)

_TLS_MODES = {"starttls": "starttls", "ssl": "ssl", "none": "insecure"}
_ADDRESSES = re.compile(r"[^\s@]+@[^\s@]+|\+?\d[\d\s-]{6,}\d")


class DeliveryError(Exception):
    """The provider rejected the message, or could not be reached in time."""


def stable_message_id(idempotency_key: str) -> str:
    """Return the id every attempt of one notification carries, so that a
    duplicate after a crash can be recognised by the receiver."""
    import hashlib

    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def redact(text: str) -> str:
    """Replace anything that looks like an email address or phone number."""
    return _ADDRESSES.sub("[redacted]", text)


class AppriseChannels:
    """The configured channels; `configured(channel)` reports which exist."""

    def __init__(self, settings: NotificationSettings) -> None:
        self._settings = settings
        self._email_password = settings.email.password() if settings.email else None
        self._sms_url = settings.sms.resolve("sms") if settings.sms else None
        self._whatsapp_url = (
            settings.whatsapp.resolve("whatsapp") if settings.whatsapp else None
        )

    @property
    def any_configured(self) -> bool:
        return any(self.configured(channel) for channel in NotificationChannel)

    def configured(self, channel: NotificationChannel) -> bool:
        match channel:
            case NotificationChannel.EMAIL:
                return self._settings.email is not None
            case NotificationChannel.SMS:
                return self._sms_url is not None
            case NotificationChannel.WHATSAPP:
                return self._whatsapp_url is not None

    async def deliver(
        self, rendered: RenderedNotification, idempotency_key: str
    ) -> None:
        """Send `rendered`; raise DeliveryError on refusal, error or timeout."""
        notifier = apprise.Apprise()
        url = self._url(rendered, idempotency_key)
        if not notifier.add(url):
            raise DeliveryError(f"invalid provider URL for {rendered.channel.value}")
        email = self._settings.email
        if (
            rendered.channel is NotificationChannel.EMAIL
            and email
            and email.format == "html"
        ):
            body, body_format = (
                rendered.html or rendered.text,
                apprise.NotifyFormat.HTML,
            )
        else:
            body, body_format = rendered.text, apprise.NotifyFormat.TEXT
        title = rendered.subject or ""

        def send() -> bool:
            return bool(
                notifier.notify(body=body, title=title, body_format=body_format)
            )

        with trio.move_on_after(DELIVERY_TIMEOUT_SECONDS) as scope:
            accepted = await trio.to_thread.run_sync(send, abandon_on_cancel=True)
        if scope.cancelled_caught:
            raise DeliveryError(
                f"{rendered.channel.value} provider timed out after"
                f" {DELIVERY_TIMEOUT_SECONDS:.0f} s"
            )
        if not accepted:
            raise DeliveryError(
                f"{rendered.channel.value} provider refused the message"
            )

    async def send_to_operator(self, title: str, body: str) -> bool:
        """Forward a message to every operator URL; return True if any took it."""
        if not self._settings.operator_urls:
            return False
        notifier = apprise.Apprise()
        for url in self._settings.operator_urls:
            notifier.add(url)

        def send() -> bool:
            return bool(notifier.notify(body=body, title=title))

        with trio.move_on_after(DELIVERY_TIMEOUT_SECONDS):
            return await trio.to_thread.run_sync(send, abandon_on_cancel=True)
        return False

    def _url(self, rendered: RenderedNotification, idempotency_key: str) -> str:
        match rendered.channel:
            case NotificationChannel.EMAIL:
                assert self._settings.email is not None
                return self._email_url(self._settings.email, rendered, idempotency_key)
            case NotificationChannel.SMS:
                assert self._sms_url is not None
                return self._sms_url.replace(
                    DESTINATION_PLACEHOLDER, quote(rendered.destination)
                )
            case NotificationChannel.WHATSAPP:
                assert self._whatsapp_url is not None
                return self._whatsapp_url.replace(
                    DESTINATION_PLACEHOLDER, quote(rendered.destination)
                )

    def _email_url(
        self, email: EmailSettings, rendered: RenderedNotification, idempotency_key: str
    ) -> str:
        credentials = ""
        if email.user:
            credentials = quote(email.user, safe="")
            if self._email_password:
                credentials += ":" + quote(self._email_password, safe="")
            credentials += "@"
        sender = f"{email.from_name} <{email.from_address}>"
        query = "&".join(
            [
                f"smtp={quote(email.host)}",
                f"mode={_TLS_MODES[email.tls]}",
                f"from={quote(sender, safe='')}",
                f"to={quote(rendered.destination, safe='')}",
                f"+X-Entity-Ref-ID={stable_message_id(idempotency_key)}",
                f"cto={_CONNECT_TIMEOUT}",
                f"rto={_READ_TIMEOUT}",
            ]
        )
        return f"mailto://{credentials}{quote(email.host)}:{email.port}?{query}"
