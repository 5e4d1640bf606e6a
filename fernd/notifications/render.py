"""Rendering of notification effects into messages for one delivery channel.

A `Renderer` turns the context of a SendNotification effect and the labour's
user rows into a `RenderedNotification`: the destination address, the template
name with its fields, and the texts rendered from the Jinja2 template files.
The template files live in one folder, named after the template and the part
they render:

* `<Template>.subject.txt`, `<Template>.txt` and `<Template>.html` for EMAIL;
* `<Template>.sms.txt` for SMS and `<Template>.whatsapp.txt` for WHATSAPP,
  for the four templates sent to subscribers on every channel.

Only `.html` files are autoescaped, so user text in the HTML body renders as
text, never as markup.
"""

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import jinja2
import msgspec

from fernd.domain.effects import (
    AnnouncementPostedNotification,
    EmailContext,
    LabourBegunNotification,
    LabourCompletedNotification,
    MotherContext,
    NotificationContext,
    SubscriberContext,
)
from fernd.domain.enums import NotificationChannel
from fernd.domain.users import User
from fernd.domain.validation import is_valid_email

logger = logging.getLogger(__name__)

# The template files shipped with the package.
DEFAULT_TEMPLATE_DIR: Final = Path(__file__).parent / "templates"

# Maximum SMS text length in characters, counted as Unicode code points. A
# longer text has its user-written part cut so that it fits.
SMS_MAX_LENGTH: Final = 320

# Marks the end of a user-written text that was cut to fit an SMS.
ELLIPSIS: Final = "…"

# E.164: a plus sign and 1 to 15 ASCII digits, nothing else.
_PHONE_NUMBER = re.compile(r"\+[0-9]{1,15}")

# Fallback names for users with no usable name, or no user row at all.
RECIPIENT_FALLBACK_NAME: Final = "there"
SENDER_FALLBACK_NAME: Final = "Unknown"
REQUESTER_FALLBACK_NAME: Final = "Someone"

LABOUR_BEGUN: Final = "LabourBegunData"
LABOUR_COMPLETED: Final = "LabourCompletedData"
LABOUR_COMPLETED_WITH_NOTE: Final = "LabourCompletedWithNoteData"
LABOUR_ANNOUNCEMENT: Final = "LabourAnnouncementData"
SUBSCRIBER_APPROVED: Final = "SubscriberApprovedData"
SUBSCRIBER_REQUESTED: Final = "SubscriberRequestedData"
LABOUR_INVITE: Final = "LabourInviteData"

_ALL_CHANNELS: Final = frozenset(NotificationChannel)
_EMAIL_ONLY: Final = frozenset({NotificationChannel.EMAIL})

# The fields of each template, in order, and the channels it may be sent on.
TEMPLATE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    LABOUR_BEGUN: (
        "birthing_person_name",
        "birthing_person_first_name",
        "subscriber_first_name",
        "link",
    ),
    LABOUR_COMPLETED: (
        "birthing_person_name",
        "birthing_person_first_name",
        "subscriber_first_name",
        "link",
    ),
    LABOUR_COMPLETED_WITH_NOTE: (
        "birthing_person_name",
        "birthing_person_first_name",
        "subscriber_first_name",
        "link",
        "update",
    ),
    LABOUR_ANNOUNCEMENT: (
        "birthing_person_name",
        "birthing_person_first_name",
        "subscriber_first_name",
        "link",
        "announcement",
    ),
    SUBSCRIBER_APPROVED: ("subscriber_first_name", "birthing_person_name", "link"),
    SUBSCRIBER_REQUESTED: ("birthing_person_first_name", "subscriber_name", "link"),
    LABOUR_INVITE: ("birthing_person_name", "birthing_person_first_name", "link"),
}
TEMPLATE_CHANNELS: Final[Mapping[str, frozenset[NotificationChannel]]] = {
    LABOUR_BEGUN: _ALL_CHANNELS,
    LABOUR_COMPLETED: _ALL_CHANNELS,
    LABOUR_COMPLETED_WITH_NOTE: _ALL_CHANNELS,
    LABOUR_ANNOUNCEMENT: _ALL_CHANNELS,
    SUBSCRIBER_APPROVED: _EMAIL_ONLY,
    SUBSCRIBER_REQUESTED: _EMAIL_ONLY,
    LABOUR_INVITE: _EMAIL_ONLY,
}

# The template file suffixes rendered for each channel.
_CHANNEL_PARTS: Final[Mapping[NotificationChannel, tuple[str, ...]]] = {
    NotificationChannel.EMAIL: ("subject.txt", "txt", "html"),
    NotificationChannel.SMS: ("sms.txt",),
    NotificationChannel.WHATSAPP: ("whatsapp.txt",),
}

# The field behind WhatsApp variable "3". Variables "1" and "2" are the
# subscriber's first name and the mother's name in every template.
_WHATSAPP_THIRD_FIELD: Final[Mapping[str, str]] = {
    LABOUR_BEGUN: "link",
    LABOUR_COMPLETED: "link",
    LABOUR_COMPLETED_WITH_NOTE: "update",
    LABOUR_ANNOUNCEMENT: "announcement",
}

# The user-written field that is cut when an SMS is too long.
_SMS_CUTTABLE_FIELD: Final[Mapping[str, str]] = {
    LABOUR_COMPLETED_WITH_NOTE: "update",
    LABOUR_ANNOUNCEMENT: "announcement",
}


class RenderedNotification(msgspec.Struct, frozen=True, kw_only=True):
    """A notification ready for one channel provider.

    `template_data` contains `type` (the template name) and the template's
    fields. `subject` and `html` are set for EMAIL only, and
    `whatsapp_variables` for WHATSAPP only. `text` is the plain-text email
    body, or the SMS or WhatsApp message. `recipient_id` is the recipient's
    user id, or the address of an invite.
    """

    channel: NotificationChannel
    destination: str
    template: str
    template_data: dict[str, str]
    subject: str | None
    text: str
    html: str | None
    whatsapp_variables: dict[str, str] | None
    recipient_id: str


class NotificationError(Exception):
    """A notification that cannot be built for its recipient and channel.

    `retryable` is False when retrying the same effect with the same users
    and templates cannot succeed.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Addressed(msgspec.Struct, frozen=True, kw_only=True):
    # The recipient, destination and template fields of one notification.
    channel: NotificationChannel
    recipient_id: str
    destination: str
    template: str
    fields: dict[str, str]


def _present(value: str | None) -> str | None:
    # A name that is missing, empty or only whitespace counts as absent.
    if value is None or not value.strip():
        return None
    return value


def recipient_first_name(user: User) -> str:
    """Return the recipient's `first_name`, else `name`, else "there"."""
    return _present(user.first_name) or _present(user.name) or RECIPIENT_FALLBACK_NAME


def sender_name(user: User | None) -> str:
    """Return the mother's `name`, else "Unknown", also when she has no row."""
    name = _present(user.name) if user is not None else None
    return name or SENDER_FALLBACK_NAME


def sender_first_name(user: User | None) -> str:
    """Return the mother's `first_name`, else the first word of `sender_name`."""
    first_name = _present(user.first_name) if user is not None else None
    return first_name or sender_name(user).split()[0]


def requester_name(user: User | None) -> str:
    """Return the requester's `name`, else "Someone", also when there is no row."""
    name = _present(user.name) if user is not None else None
    return name or REQUESTER_FALLBACK_NAME


def _require_user(users: Mapping[str, User], user_id: str) -> User:
    user = users.get(user_id)
    if user is None:
        raise NotificationError(f"user not found: {user_id}")
    return user


# Apprise splits a `to` address at these, so the message would reach a
# different address than the one that was checked.
_ADDRESS_SEPARATORS = frozenset(",;")


def _check_email(address: str, channel: NotificationChannel) -> str:
    if not is_valid_email(address) or _ADDRESS_SEPARATORS & set(address):
        raise NotificationError(f"invalid destination for {channel.value}")
    return address


def _destination(user: User, channel: NotificationChannel) -> str:
    """Return the user's address for `channel`.

    EMAIL uses the user's email, which must pass the email address rule. SMS
    and WHATSAPP use the phone number, which must be E.164 (`+` and 1 to 15
    digits). Raises NotificationError when the value is missing or invalid.
    """
    if channel is NotificationChannel.EMAIL:
        if not user.email:
            raise NotificationError(f"user {user.user_id} has no email")
        return _check_email(user.email, channel)
    if not user.phone_number:
        raise NotificationError(f"user {user.user_id} has no phone number")
    if _PHONE_NUMBER.fullmatch(user.phone_number) is None:
        raise NotificationError(f"invalid destination for {channel.value}")
    return user.phone_number


def _check_channel(template: str, channel: NotificationChannel) -> None:
    if channel not in TEMPLATE_CHANNELS[template]:
        raise NotificationError(f"Template not found for channel {channel.value}")


def _single_line(text: str) -> str:
    # An email subject is one header line, so line breaks in names become spaces.
    return " ".join(line.strip() for line in text.splitlines()).strip()


class Renderer:
    """Renderer of notification contexts with the template files of one folder.

    Every template file is loaded and rendered once with sample fields at
    construction, so a missing file, a syntax error or a field the template
    does not have raises a `jinja2.TemplateError` at startup, not when the
    first notification is sent.
    """

    def __init__(self, public_url: str, template_dir: Path | None = None) -> None:
        self._link = public_url
        self._template_dir = template_dir or DEFAULT_TEMPLATE_DIR
        # trim_blocks and lstrip_blocks keep `{% if %}` lines out of the output.
        self._environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self._template_dir),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates: dict[tuple[str, str], jinja2.Template] = {}
        for template, channels in TEMPLATE_CHANNELS.items():
            sample = {field: field for field in TEMPLATE_FIELDS[template]}
            for channel in channels:
                for part in _CHANNEL_PARTS[channel]:
                    loaded = self._environment.get_template(f"{template}.{part}")
                    loaded.render(sample)
                    self._templates[(template, part)] = loaded

    def render(
        self, context: NotificationContext, users: Mapping[str, User]
    ) -> RenderedNotification:
        """Render the notification of `context` for its channel.

        `users` maps user ids to the labour's user rows. The checks run in
        this order, and each raises NotificationError with `retryable` False:
        the template must support the channel (`Template not found for
        channel <channel>`), the recipient must have a row (`user not found:
        <user_id>`), and the destination must be present (`user <user_id>
        has no email`, `user <user_id> has no phone number`) and valid
        (`invalid destination for <channel>`). A template that fails to render
        raises NotificationError as well.
        """
        addressed = self._address(context, users)
        template_data = {"type": addressed.template, **addressed.fields}
        channel = addressed.channel
        subject: str | None = None
        html: str | None = None
        whatsapp_variables: dict[str, str] | None = None
        if channel is NotificationChannel.EMAIL:
            subject = _single_line(self._render_part(addressed, "subject.txt"))
            text = self._render_part(addressed, "txt")
            html = self._render_part(addressed, "html")
        elif channel is NotificationChannel.SMS:
            text = self._render_sms(addressed)
        else:
            text = self._render_part(addressed, "whatsapp.txt")
            whatsapp_variables = {
                "1": addressed.fields["subscriber_first_name"],
                "2": addressed.fields["birthing_person_name"],
                "3": addressed.fields[_WHATSAPP_THIRD_FIELD[addressed.template]],
            }
        return RenderedNotification(
            channel=channel,
            destination=addressed.destination,
            template=addressed.template,
            template_data=template_data,
            subject=subject,
            text=text,
            html=html,
            whatsapp_variables=whatsapp_variables,
            recipient_id=addressed.recipient_id,
        )

    def _address(
        self, context: NotificationContext, users: Mapping[str, User]
    ) -> _Addressed:
        if isinstance(context, SubscriberContext):
            return self._address_subscriber(context, users)
        if isinstance(context, MotherContext):
            return self._address_mother(context, users)
        return self._address_invite(context, users)

    def _address_subscriber(
        self, context: SubscriberContext, users: Mapping[str, User]
    ) -> _Addressed:
        notification = context.notification
        extra: dict[str, str] = {}
        if isinstance(notification, LabourBegunNotification):
            template = LABOUR_BEGUN
        elif isinstance(notification, LabourCompletedNotification):
            if notification.notes is None:
                template = LABOUR_COMPLETED
            else:
                template = LABOUR_COMPLETED_WITH_NOTE
                extra["update"] = notification.notes
        elif isinstance(notification, AnnouncementPostedNotification):
            template = LABOUR_ANNOUNCEMENT
            extra["announcement"] = notification.message
        else:
            template = SUBSCRIBER_APPROVED
        _check_channel(template, context.channel)

        recipient = _require_user(users, context.recipient_user_id)
        destination = _destination(recipient, context.channel)
        mother = users.get(context.sender_id)
        names = {
            "birthing_person_name": sender_name(mother),
            "birthing_person_first_name": sender_first_name(mother),
            "subscriber_first_name": recipient_first_name(recipient),
            "link": self._link,
            **extra,
        }
        return _Addressed(
            channel=context.channel,
            recipient_id=recipient.user_id,
            destination=destination,
            template=template,
            fields={field: names[field] for field in TEMPLATE_FIELDS[template]},
        )

    def _address_mother(
        self, context: MotherContext, users: Mapping[str, User]
    ) -> _Addressed:
        template = SUBSCRIBER_REQUESTED
        _check_channel(template, context.channel)
        mother = _require_user(users, context.recipient_user_id)
        destination = _destination(mother, context.channel)
        requester = users.get(context.notification.requester_user_id)
        return _Addressed(
            channel=context.channel,
            recipient_id=mother.user_id,
            destination=destination,
            template=template,
            fields={
                "birthing_person_first_name": recipient_first_name(mother),
                "subscriber_name": requester_name(requester),
                "link": self._link,
            },
        )

    def _address_invite(
        self, context: EmailContext, users: Mapping[str, User]
    ) -> _Addressed:
        channel = NotificationChannel.EMAIL
        destination = _check_email(context.email, channel)
        mother = users.get(context.sender_id)
        return _Addressed(
            channel=channel,
            recipient_id=context.email,
            destination=destination,
            template=LABOUR_INVITE,
            fields={
                "birthing_person_name": sender_name(mother),
                "birthing_person_first_name": sender_first_name(mother),
                "link": self._link,
            },
        )

    def _render_part(
        self, addressed: _Addressed, part: str, fields: Mapping[str, str] | None = None
    ) -> str:
        """Render one template file, with `fields` in place of the addressed ones.

        Raises NotificationError when the template fails, for example on a
        field it does not have inside a branch the startup check never took.
        """
        template = self._templates[(addressed.template, part)]
        try:
            return template.render(
                addressed.fields if fields is None else fields
            ).strip()
        except jinja2.TemplateError as error:
            raise NotificationError(
                f"Template {addressed.template}.{part} failed to render: {error}"
            ) from error

    def _render_sms(self, addressed: _Addressed) -> str:
        """Render the SMS text, cutting the user-written field to fit.

        When the text is longer than SMS_MAX_LENGTH, the announcement or
        update is shortened and ends with an ellipsis, and the rest of the
        text, the link included, is kept whole. Other templates are sent
        uncut.
        """
        text = self._render_part(addressed, "sms.txt")
        field = _SMS_CUTTABLE_FIELD.get(addressed.template)
        if len(text) <= SMS_MAX_LENGTH or field is None:
            if len(text) > SMS_MAX_LENGTH:
                # NOTE: names and the link are never cut, so very long names can
                # still produce an SMS over the limit.
                logger.warning(
                    "SMS text of %s to %s is %d characters, over the limit of %d",
                    addressed.template,
                    addressed.recipient_id,
                    len(text),
                    SMS_MAX_LENGTH,
                )
            return text

        original = addressed.fields[field]
        kept = len(original)
        # Each pass shortens the field by the excess. The loop repeats only when
        # the template uses the field more than once.
        while len(text) > SMS_MAX_LENGTH and kept > 0:
            kept = max(0, kept - (len(text) - SMS_MAX_LENGTH) - len(ELLIPSIS))
            shortened = original[:kept].rstrip() + ELLIPSIS
            text = self._render_part(
                addressed, "sms.txt", {**addressed.fields, field: shortened}
            )
        if len(text) > SMS_MAX_LENGTH:
            logger.warning(
                "SMS text of %s to %s is %d characters even with %s cut, over the "
                "limit of %d",
                addressed.template,
                addressed.recipient_id,
                len(text),
                field,
                SMS_MAX_LENGTH,
            )
        return text
