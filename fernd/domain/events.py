"""The 26 labour events and their stored form `{"type": <name>, "data": {...}}`.

Every event's data contains `labour_id`; optional fields are written as null.
"""

from datetime import datetime
from typing import ClassVar
from uuid import UUID

import msgspec

from fernd.domain.enums import (
    LabourPhase,
    LabourUpdateType,
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
)

EVENT_VERSION = 1


class Event(msgspec.Struct, frozen=True, kw_only=True):
    labour_id: UUID

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)  # type: ignore[arg-type]
        cls.name = cls.__name__


class LabourPlanned(Event, frozen=True, kw_only=True):
    mother_id: str
    mother_name: str
    first_labour: bool
    due_date: datetime
    labour_name: str | None = None


class LabourPlanUpdated(Event, frozen=True, kw_only=True):
    first_labour: bool
    due_date: datetime
    labour_name: str | None = None


class LabourBegun(Event, frozen=True, kw_only=True):
    start_time: datetime


class LabourCompleted(Event, frozen=True, kw_only=True):
    notes: str | None = None
    end_time: datetime


class LabourInviteSent(Event, frozen=True, kw_only=True):
    invite_email: str


class LabourDeleted(Event, frozen=True, kw_only=True):
    pass


class LabourPhaseChanged(Event, frozen=True, kw_only=True):
    labour_phase: LabourPhase


class ContractionStarted(Event, frozen=True, kw_only=True):
    contraction_id: UUID
    start_time: datetime


class ContractionEnded(Event, frozen=True, kw_only=True):
    contraction_id: UUID
    end_time: datetime
    intensity: int


class ContractionUpdated(Event, frozen=True, kw_only=True):
    contraction_id: UUID
    start_time: datetime | None = None
    end_time: datetime | None = None
    intensity: int | None = None


class ContractionDeleted(Event, frozen=True, kw_only=True):
    contraction_id: UUID


class LabourUpdatePosted(Event, frozen=True, kw_only=True):
    labour_update_id: UUID
    labour_update_type: LabourUpdateType
    message: str
    application_generated: bool
    sent_time: datetime


class LabourUpdateMessageUpdated(Event, frozen=True, kw_only=True):
    labour_update_id: UUID
    message: str


class LabourUpdateTypeUpdated(Event, frozen=True, kw_only=True):
    labour_update_id: UUID
    labour_update_type: LabourUpdateType


class LabourUpdateDeleted(Event, frozen=True, kw_only=True):
    labour_update_id: UUID


class SubscriptionTokenSet(Event, frozen=True, kw_only=True):
    token: str


class SubscriptionTokenInvalidated(Event, frozen=True, kw_only=True):
    pass


class SubscriberRequested(Event, frozen=True, kw_only=True):
    subscriber_id: str
    subscription_id: UUID


class SubscriberUnsubscribed(Event, frozen=True, kw_only=True):
    subscription_id: UUID


class SubscriberNotificationMethodsUpdated(Event, frozen=True, kw_only=True):
    subscription_id: UUID
    notification_methods: list[SubscriberContactMethod]


class SubscriberAccessLevelUpdated(Event, frozen=True, kw_only=True):
    subscription_id: UUID
    access_level: SubscriberAccessLevel


class SubscriberApproved(Event, frozen=True, kw_only=True):
    subscription_id: UUID


class SubscriberRemoved(Event, frozen=True, kw_only=True):
    subscription_id: UUID


class SubscriberBlocked(Event, frozen=True, kw_only=True):
    subscription_id: UUID


class SubscriberUnblocked(Event, frozen=True, kw_only=True):
    subscription_id: UUID


class SubscriberRoleUpdated(Event, frozen=True, kw_only=True):
    subscription_id: UUID
    role: SubscriberRole


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        LabourPlanned,
        LabourPlanUpdated,
        LabourBegun,
        LabourCompleted,
        LabourInviteSent,
        LabourDeleted,
        LabourPhaseChanged,
        ContractionStarted,
        ContractionEnded,
        ContractionUpdated,
        ContractionDeleted,
        LabourUpdatePosted,
        LabourUpdateMessageUpdated,
        LabourUpdateTypeUpdated,
        LabourUpdateDeleted,
        SubscriptionTokenSet,
        SubscriptionTokenInvalidated,
        SubscriberRequested,
        SubscriberUnsubscribed,
        SubscriberNotificationMethodsUpdated,
        SubscriberAccessLevelUpdated,
        SubscriberApproved,
        SubscriberRemoved,
        SubscriberBlocked,
        SubscriberUnblocked,
        SubscriberRoleUpdated,
    )
}


class _StoredEvent(msgspec.Struct):
    type: str
    data: msgspec.Raw


_encoder = msgspec.json.Encoder()
_stored_decoder = msgspec.json.Decoder(_StoredEvent)
_data_decoders = {name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()}


def encode_event(event: Event) -> bytes:
    """Encode `event` as `{"type": <name>, "data": {...}}`."""
    return b'{"type":"%s","data":%s}' % (event.name.encode(), _encoder.encode(event))


def decode_event(data: bytes | str) -> Event:
    """Decode the stored form of an event.

    Raises msgspec.DecodeError or msgspec.ValidationError for data that is not
    a known event.
    """
    stored = _stored_decoder.decode(data)
    decoder = _data_decoders.get(stored.type)
    if decoder is None:
        raise msgspec.ValidationError(f"Unknown event type {stored.type!r}")
    return decoder.decode(stored.data)
