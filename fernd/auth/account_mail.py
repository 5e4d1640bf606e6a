"""The password reset email, rendered from the template files
`PasswordReset.subject.txt`, `PasswordReset.txt` and `PasswordReset.html`
beside the notification templates."""

import hashlib
from typing import Final

import jinja2

from fernd.auth.accounts import ResetMailer
from fernd.domain.enums import NotificationChannel
from fernd.notifications.render import DEFAULT_TEMPLATE_DIR, RenderedNotification
from fernd.notifications.service import NotificationService
from fernd.storage.accounts_db import AccountRow

TEMPLATE: Final = "PasswordReset"
# The greeting when the account has neither a first name nor a name.
FALLBACK_FIRST_NAME: Final = "there"


class ResetEmailRenderer:
    """Loads the three templates once and renders them per email."""

    def __init__(self, lifetime_seconds: int) -> None:
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(DEFAULT_TEMPLATE_DIR),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._subject = environment.get_template(f"{TEMPLATE}.subject.txt")
        self._text = environment.get_template(f"{TEMPLATE}.txt")
        self._html = environment.get_template(f"{TEMPLATE}.html")
        self._lifetime_minutes = max(1, lifetime_seconds // 60)

    def render(self, account: AccountRow, link: str) -> RenderedNotification:
        first_name = (
            account.first_name
            or (account.name.split()[0] if account.name else None)
            or FALLBACK_FIRST_NAME
        )
        fields = {
            "first_name": first_name,
            "link": link,
            "lifetime_minutes": str(self._lifetime_minutes),
        }
        return RenderedNotification(
            channel=NotificationChannel.EMAIL,
            destination=account.email,
            template=TEMPLATE,
            template_data={"type": TEMPLATE, **fields},
            subject=" ".join(self._subject.render(fields).split()),
            text=self._text.render(fields),
            html=self._html.render(fields),
            whatsapp_variables=None,
            recipient_id=account.user_id,
        )


def reset_mailer(
    notifications: NotificationService, lifetime_seconds: int
) -> ResetMailer | None:
    """Return the sender of reset emails, or None when no email channel is
    configured (then only `fernd admin reset-password` resets passwords)."""
    if not notifications.email_configured:
        return None
    renderer = ResetEmailRenderer(lifetime_seconds)

    async def send(account: AccountRow, link: str) -> None:
        rendered = renderer.render(account, link)
        # Each link gets its own message id, from a digest of the link.
        key = "password-reset:" + hashlib.sha256(link.encode()).hexdigest()
        await notifications.send_email(rendered, key)

    return send
