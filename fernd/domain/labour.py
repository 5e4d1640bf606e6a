"""The Labour aggregate and `evolve`, which applies one event to it.

The state is rebuilt only by replaying events in sequence order; a snapshot is
this struct encoded as JSON and always equals a full replay.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from fernd.domain import events as ev
from fernd.domain.constants import LABOUR_INVITE_LIMIT
from fernd.domain.enums import (
    LabourPhase,
    LabourUpdateType,
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
    SubscriberStatus,
)


class Contraction(msgspec.Struct, kw_only=True):
    id: UUID
    labour_id: UUID
    start_time: datetime
    end_time: datetime
    intensity: int | None = None

    @property
    def is_active(self) -> bool:
        return self.start_time == self.end_time

    @property
    def duration_seconds(self) -> float:
        return (self.end_time - self.start_time) / timedelta(seconds=1)

    @property
    def duration_minutes(self) -> float:
        return self.duration_seconds / 60


class LabourUpdate(msgspec.Struct, kw_only=True):
    id: UUID
    labour_id: UUID
    labour_update_type: LabourUpdateType
    message: str
    sent_time: datetime
    edited: bool = False
    application_generated: bool = False


class Subscription(msgspec.Struct, kw_only=True):
    id: UUID
    labour_id: UUID
    subscriber_id: str
    role: SubscriberRole = SubscriberRole.LOVED_ONE
    status: SubscriberStatus = SubscriberStatus.REQUESTED
    access_level: SubscriberAccessLevel = SubscriberAccessLevel.BASIC
    contact_methods: list[SubscriberContactMethod] = []


class Labour(msgspec.Struct, kw_only=True):
    id: UUID
    mother_id: str
    phase: LabourPhase = LabourPhase.PLANNED
    subscription_token: str | None = None
    # Dicts keep insertion order, and deleting a key keeps the order of the rest.
    contractions: dict[UUID, Contraction] = {}
    labour_updates: dict[UUID, LabourUpdate] = {}
    subscriptions: dict[UUID, Subscription] = {}
    start_time: datetime | None = None
    end_time: datetime | None = None
    deleted: bool = False
    # Derived from events for the rules that need them; not part of the wire state.
    first_labour: bool = False
    recent_invite_times: list[datetime] = []
    last_sequence: int = 0

    def active_contraction(self) -> Contraction | None:
        for contraction in self.contractions.values():
            if contraction.start_time == contraction.end_time:
                return contraction
        return None

    def subscription_of(self, user_id: str) -> Subscription | None:
        for subscription in self.subscriptions.values():
            if subscription.subscriber_id == user_id:
                return subscription
        return None

    def last_announcement(self) -> LabourUpdate | None:
        last: LabourUpdate | None = None
        for update in self.labour_updates.values():
            if update.labour_update_type is not LabourUpdateType.ANNOUNCEMENT:
                continue
            if last is None or update.sent_time > last.sent_time:
                last = update
        return last

    def subscribed(self) -> list[Subscription]:
        """Return the subscriptions whose status is SUBSCRIBED, in list order."""
        return [
            subscription
            for subscription in self.subscriptions.values()
            if subscription.status is SubscriberStatus.SUBSCRIBED
        ]


class EvolveError(ValueError):
    """An event does not fit the state it is applied to."""


def create(event: ev.LabourPlanned, sequence: int) -> Labour:
    """Create the aggregate from its first event."""
    return Labour(
        id=event.labour_id,
        mother_id=event.mother_id,
        first_labour=event.first_labour,
        last_sequence=sequence,
    )


# The status each of these subscription events sets; read models use it too.
SUBSCRIPTION_STATUS_AFTER: dict[type[ev.Event], SubscriberStatus] = {
    ev.SubscriberApproved: SubscriberStatus.SUBSCRIBED,
    ev.SubscriberUnsubscribed: SubscriberStatus.UNSUBSCRIBED,
    ev.SubscriberRemoved: SubscriberStatus.REMOVED,
    ev.SubscriberBlocked: SubscriberStatus.BLOCKED,
    ev.SubscriberUnblocked: SubscriberStatus.REMOVED,
}
_STATUS_EVENTS = (
    ev.SubscriberApproved,
    ev.SubscriberUnsubscribed,
    ev.SubscriberRemoved,
    ev.SubscriberBlocked,
    ev.SubscriberUnblocked,
)


def evolve(labour: Labour, event: ev.Event, sequence: int, timestamp: datetime) -> None:
    """Apply `event`, stored at `sequence` with `timestamp`, to `labour` in place.

    Raises EvolveError when the event names an entity the state does not hold.
    """
    try:
        _apply(labour, event, timestamp)
    except KeyError as error:
        raise EvolveError(
            f"{event.name} at sequence {sequence} names unknown id {error}"
        ) from error
    labour.last_sequence = sequence


def _apply(labour: Labour, event: ev.Event, timestamp: datetime) -> None:
    # A contraction or labour update added, changed or deleted here must be
    # named by `snapshot_entry_of`, or the next snapshot misses the change.
    if isinstance(event, _STATUS_EVENTS):
        subscription = labour.subscriptions[event.subscription_id]
        subscription.status = SUBSCRIPTION_STATUS_AFTER[type(event)]
        return
    match event:
        case ev.LabourPlanned():
            raise EvolveError("LabourPlanned can only create a labour")
        case ev.LabourPlanUpdated(first_labour=first_labour):
            labour.first_labour = first_labour
        case ev.LabourBegun(start_time=start_time):
            labour.start_time = start_time
        case ev.LabourCompleted(end_time=end_time):
            labour.end_time = end_time
        case ev.LabourInviteSent():
            # Only the newest invites can count against the rolling limit.
            labour.recent_invite_times.append(timestamp)
            del labour.recent_invite_times[:-LABOUR_INVITE_LIMIT]
        case ev.LabourDeleted():
            labour.deleted = True
        case ev.LabourPhaseChanged(labour_phase=phase):
            labour.phase = phase
        case ev.ContractionStarted(contraction_id=contraction_id, start_time=start):
            labour.contractions[contraction_id] = Contraction(
                id=contraction_id, labour_id=labour.id, start_time=start, end_time=start
            )
        case ev.ContractionEnded():
            contraction = labour.contractions[event.contraction_id]
            contraction.end_time = event.end_time
            contraction.intensity = event.intensity
        case ev.ContractionUpdated():
            contraction = labour.contractions[event.contraction_id]
            if event.start_time is not None:
                contraction.start_time = event.start_time
            if event.end_time is not None:
                contraction.end_time = event.end_time
            if event.intensity is not None:
                contraction.intensity = event.intensity
        case ev.ContractionDeleted(contraction_id=contraction_id):
            del labour.contractions[contraction_id]
        case ev.LabourUpdatePosted():
            labour.labour_updates[event.labour_update_id] = LabourUpdate(
                id=event.labour_update_id,
                labour_id=labour.id,
                labour_update_type=event.labour_update_type,
                message=event.message,
                sent_time=event.sent_time,
                application_generated=event.application_generated,
            )
        case ev.LabourUpdateMessageUpdated():
            update = labour.labour_updates[event.labour_update_id]
            update.message = event.message
            update.edited = True
        case ev.LabourUpdateTypeUpdated():
            update = labour.labour_updates[event.labour_update_id]
            update.labour_update_type = event.labour_update_type
        case ev.LabourUpdateDeleted(labour_update_id=update_id):
            del labour.labour_updates[update_id]
        case ev.SubscriptionTokenSet(token=token):
            labour.subscription_token = token
        case ev.SubscriptionTokenInvalidated():
            labour.subscription_token = None
        case ev.SubscriberRequested(subscription_id=subscription_id):
            existing = labour.subscriptions.get(subscription_id)
            if existing is not None:
                existing.status = SubscriberStatus.REQUESTED
            else:
                labour.subscriptions[subscription_id] = Subscription(
                    id=subscription_id,
                    labour_id=labour.id,
                    subscriber_id=event.subscriber_id,
                )
        case ev.SubscriberNotificationMethodsUpdated():
            subscription = labour.subscriptions[event.subscription_id]
            subscription.contact_methods = list(event.notification_methods)
        case ev.SubscriberAccessLevelUpdated():
            subscription = labour.subscriptions[event.subscription_id]
            subscription.access_level = event.access_level
        case ev.SubscriberRoleUpdated(subscription_id=subscription_id, role=role):
            labour.subscriptions[subscription_id].role = role
        case _:
            raise EvolveError(f"No rule applies event {event.name}")


_snapshot_encoder = msgspec.json.Encoder()
_snapshot_decoder = msgspec.json.Decoder(Labour)


def encode_snapshot(labour: Labour) -> bytes:
    return _snapshot_encoder.encode(labour)


def decode_snapshot(data: bytes) -> Labour:
    return _snapshot_decoder.decode(data)


# Snapshot entries: the contractions and labour updates of a snapshot can be
# stored one row each, so a snapshot rewrites only the entries that changed
# since the previous one. The rest of the state, the head, is small and is
# always written whole.

CONTRACTION_ENTRY = "contraction"
LABOUR_UPDATE_ENTRY = "labour_update"
SNAPSHOT_ENTRY_KINDS = (CONTRACTION_ENTRY, LABOUR_UPDATE_ENTRY)

_CONTRACTION_EVENTS = (
    ev.ContractionStarted,
    ev.ContractionEnded,
    ev.ContractionUpdated,
    ev.ContractionDeleted,
)
_LABOUR_UPDATE_EVENTS = (
    ev.LabourUpdatePosted,
    ev.LabourUpdateMessageUpdated,
    ev.LabourUpdateTypeUpdated,
    ev.LabourUpdateDeleted,
)
_entry_list_decoders: dict[
    str,
    msgspec.json.Decoder[list[Contraction]] | msgspec.json.Decoder[list[LabourUpdate]],
] = {
    CONTRACTION_ENTRY: msgspec.json.Decoder(list[Contraction]),
    LABOUR_UPDATE_ENTRY: msgspec.json.Decoder(list[LabourUpdate]),
}


def snapshot_entry_of(event: ev.Event) -> tuple[str, UUID] | None:
    """Return the kind and id of the snapshot entry that `event` adds, changes
    or deletes in `evolve`, or None when it changes only the head.

    Keep this in step with `_apply`: an entry changed there and missing here
    would leave a stale row in the next snapshot.
    """
    if isinstance(event, _CONTRACTION_EVENTS):
        return CONTRACTION_ENTRY, event.contraction_id
    if isinstance(event, _LABOUR_UPDATE_EVENTS):
        return LABOUR_UPDATE_ENTRY, event.labour_update_id
    return None


def snapshot_entries(
    labour: Labour, kind: str
) -> dict[UUID, Contraction | LabourUpdate]:
    """Return the dict of `labour` that contains the entries of `kind`."""
    if kind == CONTRACTION_ENTRY:
        return labour.contractions  # type: ignore[return-value]
    return labour.labour_updates  # type: ignore[return-value]


def encode_snapshot_head(labour: Labour) -> bytes:
    """Encode `labour` without its contractions and labour updates."""
    head = msgspec.structs.replace(labour, contractions={}, labour_updates={})
    return _snapshot_encoder.encode(head)


def encode_snapshot_entry(entry: Contraction | LabourUpdate) -> bytes:
    return _snapshot_encoder.encode(entry)


def add_snapshot_entries(labour: Labour, kind: str, encoded: Sequence[str]) -> None:
    """Decode stored entries of `kind`, each one JSON object, and append them
    to `labour` in order.

    Raises msgspec.DecodeError or msgspec.ValidationError for invalid data.
    """
    entries = snapshot_entries(labour, kind)
    # One decode of a JSON array costs less than one decode per entry.
    for entry in _entry_list_decoders[kind].decode("[" + ",".join(encoded) + "]"):
        entries[entry.id] = entry
