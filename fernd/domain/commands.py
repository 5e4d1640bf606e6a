"""Labour commands and their JSON form.

A public command arrives with two levels of adjacent tagging,
`{"type": <group>, "payload": {"type": <name>, "payload": {<fields>}}}`. An
internal command, found only inside effect payloads, is externally tagged:
`{<name>: {<fields>}}`.
"""

import hashlib
from datetime import datetime
from typing import ClassVar
from uuid import UUID

import msgspec

from fernd.domain.datetimes import AwareDateTime, to_utc
from fernd.domain.enums import (
    Capability,
    LabourPhase,
    LabourUpdateType,
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
)


class CommandParseError(ValueError):
    """The request is not a well-formed command of a known group and name."""


class Command(msgspec.Struct, kw_only=True):
    labour_id: UUID

    group: ClassVar[str]
    name: ClassVar[str]
    capability: ClassVar[Capability]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)  # type: ignore[arg-type]
        cls.name = cls.__name__

    def __post_init__(self) -> None:
        # Every datetime is kept as the same instant in UTC.
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if isinstance(value, datetime):
                setattr(self, field, to_utc(value))

    @property
    def target_labour_id(self) -> UUID:
        return self.labour_id


# Labour group


class PlanLabour(Command, kw_only=True):
    group = "Labour"
    capability = Capability.ManageLabour
    mother_id: str | None = None
    mother_name: str | None = None
    first_labour: bool
    due_date: AwareDateTime
    labour_name: str | None = None


class UpdateLabourPlan(Command, kw_only=True):
    group = "Labour"
    capability = Capability.ManageLabour
    first_labour: bool
    due_date: AwareDateTime
    labour_name: str | None = None


class BeginLabour(Command, kw_only=True):
    group = "Labour"
    capability = Capability.ManageLabour


class CompleteLabour(Command, kw_only=True):
    group = "Labour"
    capability = Capability.ManageLabour
    notes: str | None = None


class SendLabourInvite(Command, kw_only=True):
    group = "Labour"
    capability = Capability.ManageLabour
    invite_email: str


class DeleteLabour(Command, kw_only=True):
    group = "Labour"
    capability = Capability.ManageLabour


# Contraction group


class StartContraction(Command, kw_only=True):
    group = "Contraction"
    capability = Capability.ExecuteLabourCommand
    contraction_id: UUID
    start_time: AwareDateTime | None = None


class EndContraction(Command, kw_only=True):
    group = "Contraction"
    capability = Capability.ExecuteLabourCommand
    contraction_id: UUID
    end_time: AwareDateTime | None = None
    intensity: int


class UpdateContraction(Command, kw_only=True):
    group = "Contraction"
    capability = Capability.ExecuteLabourCommand
    contraction_id: UUID
    start_time: AwareDateTime | None = None
    end_time: AwareDateTime | None = None
    intensity: int | None = None


class DeleteContraction(Command, kw_only=True):
    group = "Contraction"
    capability = Capability.ExecuteLabourCommand
    contraction_id: UUID


# Labour update group


class PostLabourUpdate(Command, kw_only=True):
    group = "LabourUpdate"
    capability = Capability.ExecuteLabourCommand
    labour_update_type: LabourUpdateType
    message: str


class UpdateLabourUpdateMessage(Command, kw_only=True):
    group = "LabourUpdate"
    capability = Capability.ExecuteLabourCommand
    labour_update_id: UUID
    message: str


class UpdateLabourUpdateType(Command, kw_only=True):
    group = "LabourUpdate"
    capability = Capability.ExecuteLabourCommand
    labour_update_id: UUID
    labour_update_type: LabourUpdateType


class DeleteLabourUpdate(Command, kw_only=True):
    group = "LabourUpdate"
    capability = Capability.ExecuteLabourCommand
    labour_update_id: UUID


# Subscriber group: a subscriber acts on their own subscription


class RequestAccess(Command, kw_only=True):
    group = "Subscriber"
    capability = Capability.ManageOwnSubscription
    token: str
    subscriber_id: str | None = None


class Unsubscribe(Command, kw_only=True):
    group = "Subscriber"
    capability = Capability.ManageOwnSubscription
    subscription_id: UUID


class UpdateNotificationMethods(Command, kw_only=True):
    group = "Subscriber"
    capability = Capability.ManageOwnSubscription
    subscription_id: UUID
    notification_methods: list[SubscriberContactMethod]


class UpdateAccessLevel(Command, kw_only=True):
    group = "Subscriber"
    capability = Capability.UpdateSubscriptionAccessLevel
    subscription_id: UUID
    access_level: SubscriberAccessLevel


# Subscription group: the mother manages subscribers


class ApproveSubscriber(Command, kw_only=True):
    group = "Subscription"
    capability = Capability.ManageLabourSubscriptions
    subscription_id: UUID


class RemoveSubscriber(Command, kw_only=True):
    group = "Subscription"
    capability = Capability.ManageLabourSubscriptions
    subscription_id: UUID


class BlockSubscriber(Command, kw_only=True):
    group = "Subscription"
    capability = Capability.ManageLabourSubscriptions
    subscription_id: UUID


class UnblockSubscriber(Command, kw_only=True):
    group = "Subscription"
    capability = Capability.ManageLabourSubscriptions
    subscription_id: UUID


class UpdateSubscriberRole(Command, kw_only=True):
    group = "Subscription"
    capability = Capability.ManageLabourSubscriptions
    subscription_id: UUID
    role: SubscriberRole


class InvalidateSubscriptionToken(Command, kw_only=True):
    group = "Subscription"
    capability = Capability.ManageLabour


# Internal commands, issued only inside fernd


class SetSubscriptionToken(Command, kw_only=True):
    group = "Internal"
    capability = Capability.ManageSubscriptionToken
    token: str


class AdvanceLabourPhase(Command, kw_only=True):
    group = "Internal"
    capability = Capability.AdvanceLabourPhase
    labour_phase: LabourPhase


class PostApplicationLabourUpdate(Command, kw_only=True):
    group = "Internal"
    capability = Capability.PostApplicationLabourUpdates
    message: str


# Admin group


class RebuildReadModels(msgspec.Struct, kw_only=True):
    """Rebuild a labour's read models from its events; appends no events."""

    aggregate_id: UUID

    group: ClassVar[str] = "Admin"
    name: ClassVar[str] = "RebuildReadModels"
    capability: ClassVar[Capability] = Capability.Administer

    @property
    def target_labour_id(self) -> UUID:
        return self.aggregate_id


PUBLIC_COMMANDS: dict[tuple[str, str], type[Command]] = {
    (cls.group, cls.name): cls
    for cls in (
        PlanLabour,
        UpdateLabourPlan,
        BeginLabour,
        CompleteLabour,
        SendLabourInvite,
        DeleteLabour,
        StartContraction,
        EndContraction,
        UpdateContraction,
        DeleteContraction,
        PostLabourUpdate,
        UpdateLabourUpdateMessage,
        UpdateLabourUpdateType,
        DeleteLabourUpdate,
        RequestAccess,
        Unsubscribe,
        UpdateNotificationMethods,
        UpdateAccessLevel,
        ApproveSubscriber,
        RemoveSubscriber,
        BlockSubscriber,
        UnblockSubscriber,
        UpdateSubscriberRole,
        InvalidateSubscriptionToken,
    )
}

INTERNAL_COMMANDS: dict[str, type[Command]] = {
    cls.name: cls
    for cls in (SetSubscriptionToken, AdvanceLabourPhase, PostApplicationLabourUpdate)
}

AnyCommand = Command | RebuildReadModels


class TaggedPayload(msgspec.Struct):
    """One level of adjacent tagging: `{"type": <name>, "payload": ...}`."""

    type: str
    payload: msgspec.Raw


class TaggedRequest(msgspec.Struct):
    """Both levels of a command or query: the group, then the name."""

    type: str
    payload: TaggedPayload


_request_decoder = msgspec.json.Decoder(TaggedRequest)
_payload_decoders: dict[tuple[str, str], msgspec.json.Decoder[AnyCommand]] = {
    key: msgspec.json.Decoder(cls) for key, cls in PUBLIC_COMMANDS.items()
}
_payload_decoders[("Admin", "RebuildReadModels")] = msgspec.json.Decoder(
    RebuildReadModels
)
_encoder = msgspec.json.Encoder(order="sorted")


def decode_tagged_command(request: TaggedRequest) -> AnyCommand:
    """Decode the fields of a command whose group and name are already read.

    Raises CommandParseError for an unknown command or malformed fields.
    """
    decoder = _payload_decoders.get((request.type, request.payload.type))
    if decoder is None:
        raise CommandParseError(
            f"Unknown command {request.type}/{request.payload.type}"
        )
    try:
        return decoder.decode(request.payload.payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
        raise CommandParseError(str(error)) from error


def decode_command(body: bytes) -> AnyCommand:
    """Decode a public command from its JSON body.

    Raises CommandParseError for anything that is not a known public command
    with well-formed fields.
    """
    try:
        request = _request_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as error:
        raise CommandParseError(str(error)) from error
    return decode_tagged_command(request)


def command_fingerprint(command: AnyCommand) -> str:
    """Return a digest of the command's group, name and fields as decoded.

    Call it before server-side fields are filled in: omitted and null fields
    decode alike, so they give the same fingerprint.
    """
    encoded = _encoder.encode(command)
    digest = hashlib.sha256()
    digest.update(f"{command.group}/{command.name}:".encode())
    digest.update(encoded)
    return digest.hexdigest()


def encode_internal_command(command: Command) -> dict[str, object]:
    """Return the externally tagged form `{<name>: {<fields>}}`."""
    return {command.name: msgspec.to_builtins(command)}


def decode_internal_command(value: object) -> Command:
    """Decode an externally tagged internal command.

    Raises CommandParseError when `value` is not exactly one known internal
    command.
    """
    if not isinstance(value, dict) or len(value) != 1:
        raise CommandParseError("An internal command has exactly one key")
    ((name, fields),) = value.items()
    cls = INTERNAL_COMMANDS.get(name)
    if cls is None:
        raise CommandParseError(f"Unknown internal command {name!r}")
    try:
        return msgspec.convert(fields, type=cls)
    except msgspec.ValidationError as error:
        raise CommandParseError(str(error)) from error
