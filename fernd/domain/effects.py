"""Effects of the process manager, their stored JSON form and idempotency keys.

An effect payload is externally tagged: `{<variant>: {<fields>}}` with variant
`SendNotification`, `GenerateSubscriptionToken` or `IssueCommand`. Inside a
notification, the context is tagged by `recipient_type` and the notification by
`type`. The notification structs carry a `Notification` suffix because their
tags reuse event names such as `LabourBegun`.
"""

import enum
from typing import Any
from uuid import UUID

import msgspec

from fernd.domain.commands import (
    Command,
    CommandParseError,
    decode_internal_command,
    encode_internal_command,
)
from fernd.domain.enums import NotificationChannel

# Notifications to subscribers


class LabourBegunNotification(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="LabourBegun"
):
    labour_id: UUID


class LabourCompletedNotification(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="LabourCompleted"
):
    labour_id: UUID
    notes: str | None = None


class AnnouncementPostedNotification(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    tag="AnnouncementPosted",
):
    labour_id: UUID
    message: str


class SubscriptionApprovedNotification(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    tag="SubscriptionApproved",
):
    labour_id: UUID


SubscriberNotification = (
    LabourBegunNotification
    | LabourCompletedNotification
    | AnnouncementPostedNotification
    | SubscriptionApprovedNotification
)

# Notification to the mother


class SubscriberRequestedNotification(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    tag="SubscriberRequested",
):
    labour_id: UUID
    subscription_id: UUID
    requester_user_id: str


MotherNotification = SubscriberRequestedNotification

# Notification to an email address that belongs to no user yet


class LabourInviteNotification(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="LabourInvite"
):
    labour_id: UUID


EmailNotification = LabourInviteNotification

# Notification contexts: who receives the notification and on which channel


class SubscriberContext(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="recipient_type",
    tag="Subscriber",
):
    recipient_user_id: str
    subscription_id: UUID
    channel: NotificationChannel
    sender_id: str
    notification: SubscriberNotification


class MotherContext(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="recipient_type", tag="Mother"
):
    recipient_user_id: str
    channel: NotificationChannel
    notification: MotherNotification


class EmailContext(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="recipient_type", tag="Email"
):
    """Context of a notification to a bare address, which always goes by EMAIL."""

    email: str
    sender_id: str
    notification: EmailNotification


NotificationContext = SubscriberContext | MotherContext | EmailContext

# Effect payloads


class SendNotification(msgspec.Struct, frozen=True, kw_only=True):
    idempotency_key: str
    context: NotificationContext


class GenerateSubscriptionToken(msgspec.Struct, frozen=True, kw_only=True):
    """Request to make a fresh share token and set it with SetSubscriptionToken."""

    labour_id: UUID
    idempotency_key: str


class IssueCommand(msgspec.Struct, frozen=True, kw_only=True):
    """Request to run an internal command as the process manager.

    `command` is written in the externally tagged form `{<name>: {<fields>}}`.
    """

    command: Command
    idempotency_key: str


EffectPayload = SendNotification | GenerateSubscriptionToken | IssueCommand


class EffectType(enum.Enum):
    NOTIFICATION = "NOTIFICATION"
    COMMAND = "COMMAND"


class Effect(msgspec.Struct, frozen=True, kw_only=True):
    """An effect derived from one event, before it is inserted into the ledger.

    `idempotency_key` equals the payload's key; use `effect_of` to build one
    with both fields derived from the payload.
    """

    effect_type: EffectType
    idempotency_key: str
    payload: EffectPayload


def effect_type_of(payload: EffectPayload) -> EffectType:
    """Return NOTIFICATION for SendNotification and COMMAND for the others."""
    if isinstance(payload, SendNotification):
        return EffectType.NOTIFICATION
    return EffectType.COMMAND


def effect_of(payload: EffectPayload) -> Effect:
    """Wrap `payload` in an Effect with its type and idempotency key."""
    return Effect(
        effect_type=effect_type_of(payload),
        idempotency_key=payload.idempotency_key,
        payload=payload,
    )


class EffectPayloadError(ValueError):
    """The stored JSON is not a well-formed effect payload."""


class _IssueCommandFields(msgspec.Struct, kw_only=True):
    command: dict[str, Any]
    idempotency_key: str


_encoder = msgspec.json.Encoder()
_tagged_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_send_notification_decoder = msgspec.json.Decoder(SendNotification)
_generate_token_decoder = msgspec.json.Decoder(GenerateSubscriptionToken)
_issue_command_decoder = msgspec.json.Decoder(_IssueCommandFields)


def encode_effect_payload(payload: EffectPayload) -> bytes:
    """Encode `payload` as JSON with one key, the name of its variant."""
    if isinstance(payload, IssueCommand):
        fields: dict[str, object] = {
            "command": encode_internal_command(payload.command),
            "idempotency_key": payload.idempotency_key,
        }
        return _encoder.encode({"IssueCommand": fields})
    return _encoder.encode({type(payload).__name__: payload})


def decode_effect_payload(data: bytes) -> EffectPayload:
    """Decode the JSON written by `encode_effect_payload`.

    Raises EffectPayloadError when the JSON does not have exactly one key, the
    key names no payload variant, or the fields do not fit that variant. A
    Mother or Email notification without its `type` field still decodes,
    because each of those contexts has only one notification type.
    """
    try:
        tagged = _tagged_decoder.decode(data)
    except msgspec.DecodeError as error:
        raise EffectPayloadError(f"Invalid effect payload: {error}") from error
    if len(tagged) != 1:
        raise EffectPayloadError(
            f"An effect payload has exactly one key, found {sorted(tagged)}"
        )
    ((name, fields),) = tagged.items()
    try:
        if name == "SendNotification":
            return _send_notification_decoder.decode(fields)
        if name == "GenerateSubscriptionToken":
            return _generate_token_decoder.decode(fields)
        if name == "IssueCommand":
            issue = _issue_command_decoder.decode(fields)
            return IssueCommand(
                command=decode_internal_command(issue.command),
                idempotency_key=issue.idempotency_key,
            )
    except (msgspec.DecodeError, CommandParseError) as error:
        raise EffectPayloadError(f"Invalid {name} payload: {error}") from error
    raise EffectPayloadError(f"Unknown effect payload variant {name!r}")


def notification_key(
    labour_id: UUID,
    sequence: int,
    recipient_id: str,
    notification_type: str,
    channel: NotificationChannel,
) -> str:
    """Return the idempotency key of one notification caused by one event.

    `recipient_id` is the recipient's user id, or the address of an invite.
    """
    return (
        f"{labour_id}:{sequence}:notify:{recipient_id}:"
        f"{notification_type}:{channel.value}"
    )


def command_key(labour_id: UUID, sequence: int, command_type: str) -> str:
    """Return the idempotency key of one command caused by one event."""
    return f"{labour_id}:{sequence}:cmd:{command_type}"
