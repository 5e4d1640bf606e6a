"""Callers, ids, times and a command runner shared by the domain tests.

`Scenario` drives a labour through the real `decide` and `apply_events`, and
keeps every accepted event in its stored JSON form so that tests can replay
them.
"""

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.authorization import Caller
from fernd.domain.enums import (
    LabourPhase,
    LabourUpdateType,
    SubscriberRole,
    SubscriberStatus,
)
from fernd.domain.errors import AuthorizationDenied, LabourError
from fernd.domain.events import encode_event
from fernd.domain.handlers import CommandContext, apply_events, decide
from fernd.domain.labour import Labour, encode_snapshot

LABOUR_ID = UUID("0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d")
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
DUE_DATE = datetime(2024, 5, 20, 9, 30, tzinfo=UTC)
MOTHER_NAME = "Alice Example"
# A valid share token: eight symbols of the token alphabet.
TOKEN = "ABCDEF23"
PROVIDER_ISSUER = "https://id.example.com"

MOTHER = Caller(user_id="user-mother", issuer=PROVIDER_ISSUER)
PARTNER = Caller(user_id="user-partner", issuer=PROVIDER_ISSUER)
SUPPORTER = Caller(user_id="user-supporter", issuer=PROVIDER_ISSUER)
LOVED_ONE = Caller(user_id="user-loved-one", issuer=PROVIDER_ISSUER)
STRANGER = Caller(user_id="user-stranger", issuer=PROVIDER_ISSUER)
INTERNAL = Caller(user_id="fern-labour-internal-process-manager", issuer="internal")
ADMIN = Caller(user_id="user-admin", issuer=PROVIDER_ISSUER, is_admin=True)

# A UUID no test ever creates, for "not found" cases.
UNKNOWN_ID = UUID("0190f5a2-0000-7000-8000-00000000dead")

CommandT = TypeVar("CommandT", bound=cmd.Command)


def command(cls: type[CommandT], **fields: Any) -> CommandT:
    """Build a command of type `cls` for the test labour."""
    return cls(labour_id=LABOUR_ID, **fields)


def plan_command(**fields: Any) -> cmd.PlanLabour:
    """Build PlanLabour with the server-side fields already filled in."""
    values: dict[str, Any] = {
        "mother_id": MOTHER.user_id,
        "mother_name": MOTHER_NAME,
        "first_labour": True,
        "due_date": DUE_DATE,
    }
    values.update(fields)
    return command(cmd.PlanLabour, **values)


def contraction_id(number: int) -> UUID:
    """Return a client-made contraction id, distinct for each `number`."""
    return UUID(f"0190f5b8-0000-7000-8000-{number:012x}")


class SequentialIds:
    """Deterministic stand-in for the server's UUID v7 source."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.issued: list[UUID] = []

    def __call__(self) -> UUID:
        value = UUID(f"0190f5c0-0000-7000-8000-{next(self._counter):012x}")
        self.issued.append(value)
        return value

    @property
    def last(self) -> UUID:
        return self.issued[-1]


@dataclass(frozen=True)
class StoredEvent:
    """One event row as the event store keeps it."""

    sequence: int
    timestamp: datetime
    user_id: str
    data: bytes


def assert_error(
    error: Exception,
    expected_type: type[LabourError | AuthorizationDenied],
    message: str,
    code: str,
    status: int,
) -> None:
    """Check the exact type, wire message, code and HTTP status of `error`."""
    assert type(error) is expected_type
    assert isinstance(error, LabourError | AuthorizationDenied)
    assert error.message == message
    assert error.code == code
    assert error.status == status


class Scenario:
    """A labour driven through `decide` and `apply_events` at a settable `now`."""

    def __init__(self, now: datetime = T0) -> None:
        self.labour: Labour | None = None
        self.now = now
        self.ids = SequentialIds()
        self.stored: list[StoredEvent] = []
        self._contraction_numbers = itertools.count(1)

    @property
    def state(self) -> Labour:
        assert self.labour is not None, "the scenario has no labour yet"
        return self.labour

    def tick(self, seconds: float) -> datetime:
        """Move `now` forward by `seconds` and return the new `now`."""
        self.now += timedelta(seconds=seconds)
        return self.now

    def context(self, caller: Caller) -> CommandContext:
        return CommandContext(now=self.now, caller=caller, new_id=self.ids)

    def decide(self, command: cmd.Command, caller: Caller = MOTHER) -> list[ev.Event]:
        """Run `decide` without applying its events."""
        return decide(self.labour, command, self.context(caller))

    def run(self, command: cmd.Command, caller: Caller = MOTHER) -> list[ev.Event]:
        """Decide `command`, apply and store its events, and return them."""
        events = self.decide(command, caller)
        self.apply(events, caller)
        return events

    def apply(self, events: list[ev.Event], caller: Caller) -> None:
        first_sequence = len(self.stored) + 1
        self.labour = apply_events(self.labour, events, first_sequence, self.now)
        for offset, event in enumerate(events):
            self.stored.append(
                StoredEvent(
                    sequence=first_sequence + offset,
                    timestamp=self.now,
                    user_id=caller.user_id,
                    data=encode_event(event),
                )
            )

    def reject(
        self, command: cmd.Command, caller: Caller = MOTHER
    ) -> LabourError | AuthorizationDenied:
        """Return the error that `command` raises, and fail the test if it
        succeeds.

        Also checks that the rejected command left the state unchanged.
        """
        before = None if self.labour is None else encode_snapshot(self.labour)
        try:
            events = self.decide(command, caller)
        except (LabourError, AuthorizationDenied) as error:
            after = None if self.labour is None else encode_snapshot(self.labour)
            assert after == before, "a rejected command changed the state"
            return error
        raise AssertionError(f"{command.name} was accepted with {events!r}")

    # Set-up steps that go through the real command handlers.

    def plan(self, **fields: Any) -> None:
        self.run(plan_command(**fields), MOTHER)

    def set_token(self, token: str = TOKEN) -> None:
        self.run(command(cmd.SetSubscriptionToken, token=token), INTERNAL)

    def advance_to(self, phase: LabourPhase) -> None:
        """Move the phase with AdvanceLabourPhase, as the mother may."""
        self.run(command(cmd.AdvanceLabourPhase, labour_phase=phase), MOTHER)

    def complete(self) -> None:
        self.run(command(cmd.CompleteLabour), MOTHER)

    def new_contraction_id(self) -> UUID:
        return contraction_id(next(self._contraction_numbers))

    def start_contraction(
        self, start: datetime | None = None, caller: Caller = MOTHER
    ) -> UUID:
        """Start a contraction, at `start` or at `now`, and return its id."""
        new_id = self.new_contraction_id()
        self.run(
            command(cmd.StartContraction, contraction_id=new_id, start_time=start),
            caller,
        )
        return new_id

    def add_contraction(
        self, start: datetime, seconds: float, intensity: int
    ) -> tuple[UUID, list[ev.Event]]:
        """Start and end a contraction, and return its id and the end's events."""
        new_id = self.start_contraction(start)
        end_events = self.run(
            command(
                cmd.EndContraction,
                contraction_id=new_id,
                end_time=start + timedelta(seconds=seconds),
                intensity=intensity,
            )
        )
        return new_id, end_events

    def post(self, update_type: LabourUpdateType, message: str = "Doing well") -> UUID:
        """Post a labour update as the mother and return its id."""
        self.run(
            command(
                cmd.PostLabourUpdate, labour_update_type=update_type, message=message
            )
        )
        return self.ids.last

    def add_subscriber(
        self,
        caller: Caller,
        status: SubscriberStatus = SubscriberStatus.SUBSCRIBED,
        role: SubscriberRole = SubscriberRole.LOVED_ONE,
    ) -> UUID:
        """Bring `caller` to `status` with `role` through real commands and
        return the subscription id."""
        self.run(command(cmd.RequestAccess, token=TOKEN), caller)
        subscription = self.state.subscription_of(caller.user_id)
        assert subscription is not None
        subscription_id = subscription.id
        if role is not SubscriberRole.LOVED_ONE:
            self.run(
                command(
                    cmd.UpdateSubscriberRole, subscription_id=subscription_id, role=role
                )
            )
        approve = command(cmd.ApproveSubscriber, subscription_id=subscription_id)
        match status:
            case SubscriberStatus.REQUESTED:
                pass
            case SubscriberStatus.SUBSCRIBED:
                self.run(approve)
            case SubscriberStatus.UNSUBSCRIBED:
                self.run(approve)
                self.run(
                    command(cmd.Unsubscribe, subscription_id=subscription_id), caller
                )
            case SubscriberStatus.REMOVED:
                self.run(command(cmd.RemoveSubscriber, subscription_id=subscription_id))
            case SubscriberStatus.BLOCKED:
                self.run(command(cmd.BlockSubscriber, subscription_id=subscription_id))
        assert self.state.subscriptions[subscription_id].status is status
        return subscription_id


def planned_scenario() -> Scenario:
    """Return a scenario whose labour is planned and has the share token set."""
    scenario = Scenario()
    scenario.plan()
    scenario.set_token()
    return scenario
