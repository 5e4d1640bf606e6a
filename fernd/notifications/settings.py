"""The `[notifications]` table of fernd.toml: SMTP for email, Apprise URLs
for SMS, WhatsApp and the operator."""

import os
from pathlib import Path
from typing import Any, Literal

import msgspec

from fernd.config import ConfigError

# The recipient's E.164 number replaces this in an SMS or WhatsApp URL.
DESTINATION_PLACEHOLDER = "{to}"


class EmailSettings(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    host: str
    port: int = 587
    # "starttls" upgrades a plain connection, "ssl" connects with TLS, "none"
    # sends in clear (only for a relay on the same machine).
    tls: Literal["starttls", "ssl", "none"] = "starttls"
    user: str | None = None
    # The password is never kept in fernd.toml: it comes from this environment
    # variable or from this file (its first line).
    password_env: str | None = None
    password_file: str | None = None
    from_address: str
    from_name: str = "fernd"
    # "html" sends HTML with a plain-text part; "text" sends the text body only.
    format: Literal["html", "text"] = "html"

    def password(self) -> str | None:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"notifications.email.password_env names {self.password_env},"
                    " which is not set"
                )
            return value
        if self.password_file:
            try:
                return Path(self.password_file).read_text().splitlines()[0]
            except (OSError, IndexError) as error:
                raise ConfigError(
                    f"notifications.email.password_file {self.password_file}"
                    f" cannot be read: {error}"
                ) from None
        return None


class TargetSettings(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """An Apprise URL with `{to}` where the recipient's number goes, e.g.
    `twilio://SID:TOKEN@+15551234567/{to}`, given directly or by an
    environment variable, since it usually contains a secret."""

    url: str | None = None
    url_env: str | None = None

    def resolve(self, name: str) -> str:
        url = os.environ.get(self.url_env) if self.url_env else self.url
        if not url:
            source = f"environment variable {self.url_env}" if self.url_env else "url"
            raise ConfigError(f"notifications.{name}: {source} is empty or not set")
        if DESTINATION_PLACEHOLDER not in url:
            raise ConfigError(
                f"notifications.{name}: the URL must contain {DESTINATION_PLACEHOLDER}"
                " where the recipient's number goes"
            )
        return url


class NotificationSettings(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    email: EmailSettings | None = None
    sms: TargetSettings | None = None
    whatsapp: TargetSettings | None = None
    # Apprise URLs that receive contact-us messages for the operator.
    operator_urls: list[str] = []


def load_notification_settings(table: dict[str, Any]) -> NotificationSettings:
    """Validate the raw `[notifications]` table; raise ConfigError naming the
    setting at fault."""
    try:
        return msgspec.convert(table, NotificationSettings)
    except msgspec.ValidationError as error:
        raise ConfigError(f"Invalid [notifications] setting: {error}") from None
