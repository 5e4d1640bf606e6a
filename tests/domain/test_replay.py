"""Property test: random command sequences from random callers, then replay.

Every accepted command's events are stored in their JSON form. Decoding them
and applying them one by one from nothing must give the live state, and so
must a snapshot round trip and a snapshot taken midway followed by the rest of
the events. The aggregate invariants are checked after every accepted command.
"""

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from hypothesis import event, given, settings
from hypothesis import strategies as st

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.authorization import Caller
from fernd.domain.constants import (
    CONTRACTION_MAX_INTENSITY,
    CONTRACTION_MIN_INTENSITY,
    SUBSCRIPTION_TOKEN_ALPHABET,
    SUBSCRIPTION_TOKEN_LENGTH,
)
from fernd.domain.enums import (
    LabourPhase,
    LabourUpdateType,
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
)
from fernd.domain.errors import AuthorizationDenied, LabourError
from fernd.domain.events import decode_event
from fernd.domain.handlers import apply_events
from fernd.domain.labour import Labour, decode_snapshot, encode_snapshot

from .builders import (
    ADMIN,
    INTERNAL,
    LOVED_ONE,
    MOTHER,
    PARTNER,
    STRANGER,
    TOKEN,
    UNKNOWN_ID,
    Scenario,
    StoredEvent,
    command,
    contraction_id,
    plan_command,
    planned_scenario,
)

CALLERS: dict[str, Caller] = {
    "mother": MOTHER,
    "partner": PARTNER,
    "loved_one": LOVED_ONE,
    "stranger": STRANGER,
    "internal": INTERNAL,
    "admin": ADMIN,
}
# Contraction commands are listed several times so that sequences build up
# contractions before a CompleteLabour or DeleteLabour ends the labour.
KINDS = [
    *["StartContraction"] * 5,
    *["EndContraction"] * 8,
    *["UpdateContraction"] * 6,
    *["DeleteContraction"] * 2,
    *["PostLabourUpdate"] * 2,
    "UpdateLabourUpdateMessage",
    "UpdateLabourUpdateType",
    "DeleteLabourUpdate",
    "PlanLabour",
    "UpdateLabourPlan",
    "BeginLabour",
    "CompleteLabour",
    "SendLabourInvite",
    "DeleteLabour",
    "RequestAccess",
    "Unsubscribe",
    "UpdateNotificationMethods",
    "UpdateAccessLevel",
    "ApproveSubscriber",
    "RemoveSubscriber",
    "BlockSubscriber",
    "UnblockSubscriber",
    "UpdateSubscriberRole",
    "InvalidateSubscriptionToken",
    "SetSubscriptionToken",
    "AdvanceLabourPhase",
    "PostApplicationLabourUpdate",
]
# Tokens are drawn from a small set so that RequestAccess sometimes matches.
TOKENS = [TOKEN, "HJKMNP45", TOKEN.lower(), "WRONG234"]
MESSAGES = ["Hello", "   ", "m" * 1001, "Still going"]
METHODS = [
    [],
    [SubscriberContactMethod.EMAIL],
    [SubscriberContactMethod.SMS, SubscriberContactMethod.WHATSAPP],
    [SubscriberContactMethod.SMS, SubscriberContactMethod.SMS],
]
CONTRACTION_POOL_SIZE = 6


@dataclass(frozen=True)
class Step:
    """One generated command, resolved against the state when it runs."""

    caller: str
    kind: str
    advance_seconds: int
    pick: int
    first_minutes: int | None
    second_minutes: int | None
    number: int | None
    choice: int


# The mother and the birth partner are drawn most often, because they are the
# only callers allowed to run most commands.
CALLER_WEIGHTS = ["mother"] * 4 + ["partner"] * 3 + list(CALLERS)[2:]

steps = st.builds(
    Step,
    caller=st.sampled_from(CALLER_WEIGHTS),
    kind=st.sampled_from(KINDS),
    advance_seconds=st.sampled_from([0, 1, 10, 11, 60, 600, 3600, 86400]),
    pick=st.integers(0, CONTRACTION_POOL_SIZE - 1),
    # Whole minutes, with the whole-minute advances of `now` above, let start
    # and end times coincide.
    first_minutes=st.none() | st.integers(-30, 2),
    second_minutes=st.none() | st.integers(-30, 2),
    number=st.none() | st.integers(-1, 11),
    choice=st.integers(0, 3),
)


def _pick(ids: list[UUID], step: Step) -> UUID:
    """Return one of `ids`, or an unknown id for choice 3 or an empty list."""
    if not ids or step.choice == 3:
        return UNKNOWN_ID
    return ids[step.pick % len(ids)]


def build_command(step: Step, scenario: Scenario) -> cmd.Command:
    """Turn `step` into a command, choosing ids among the state's items."""
    labour = scenario.state
    caller = CALLERS[step.caller]

    def at(minutes: int | None) -> object:
        return None if minutes is None else scenario.now + timedelta(minutes=minutes)

    pool_id = contraction_id(step.pick)
    # Ending and changing contractions mostly name one that exists.
    existing_contraction_id = _pick(list(labour.contractions), step)
    if existing_contraction_id == UNKNOWN_ID:
        existing_contraction_id = pool_id
    active = labour.active_contraction()
    end_id = active.id if active is not None and step.pick > 0 else pool_id
    update_id = _pick(list(labour.labour_updates), step)
    subscription_id = _pick(list(labour.subscriptions), step)
    own = labour.subscription_of(caller.user_id)
    if step.choice == 0 and own is not None:
        subscription_id = own.id

    match step.kind:
        case "StartContraction":
            return command(
                cmd.StartContraction,
                contraction_id=pool_id,
                start_time=at(step.first_minutes),
            )
        case "EndContraction":
            # A strong default intensity lets phase progression happen.
            return command(
                cmd.EndContraction,
                contraction_id=end_id,
                end_time=at(step.second_minutes),
                intensity=8 if step.number is None else step.number,
            )
        case "UpdateContraction":
            return command(
                cmd.UpdateContraction,
                contraction_id=existing_contraction_id,
                start_time=at(step.first_minutes),
                end_time=at(step.second_minutes),
                intensity=step.number,
            )
        case "DeleteContraction":
            return command(
                cmd.DeleteContraction, contraction_id=existing_contraction_id
            )
        case "PostLabourUpdate":
            return command(
                cmd.PostLabourUpdate,
                labour_update_type=list(LabourUpdateType)[step.pick % 3],
                message=MESSAGES[step.choice],
            )
        case "UpdateLabourUpdateMessage":
            return command(
                cmd.UpdateLabourUpdateMessage,
                labour_update_id=update_id,
                message=MESSAGES[step.choice],
            )
        case "UpdateLabourUpdateType":
            return command(
                cmd.UpdateLabourUpdateType,
                labour_update_id=update_id,
                labour_update_type=list(LabourUpdateType)[step.choice % 3],
            )
        case "DeleteLabourUpdate":
            return command(cmd.DeleteLabourUpdate, labour_update_id=update_id)
        case "PlanLabour":
            return plan_command(mother_id=caller.user_id)
        case "UpdateLabourPlan":
            return command(
                cmd.UpdateLabourPlan,
                first_labour=step.choice % 2 == 0,
                due_date=scenario.now + timedelta(days=step.pick),
                labour_name=[None, "Baby", "n" * 256, "Name"][step.choice],
            )
        case "BeginLabour":
            return command(cmd.BeginLabour)
        case "CompleteLabour":
            return command(
                cmd.CompleteLabour, notes=[None, "Done", "n" * 5001, None][step.choice]
            )
        case "SendLabourInvite":
            return command(
                cmd.SendLabourInvite,
                invite_email=["a@example.com", "bad", "b@example.org", "c@x.y"][
                    step.choice
                ],
            )
        case "DeleteLabour":
            return command(cmd.DeleteLabour)
        case "RequestAccess":
            return command(cmd.RequestAccess, token=TOKENS[step.choice])
        case "Unsubscribe":
            return command(cmd.Unsubscribe, subscription_id=subscription_id)
        case "UpdateNotificationMethods":
            return command(
                cmd.UpdateNotificationMethods,
                subscription_id=subscription_id,
                notification_methods=METHODS[step.pick % len(METHODS)],
            )
        case "UpdateAccessLevel":
            return command(
                cmd.UpdateAccessLevel,
                subscription_id=subscription_id,
                access_level=list(SubscriberAccessLevel)[step.pick % 2],
            )
        case "ApproveSubscriber":
            return command(cmd.ApproveSubscriber, subscription_id=subscription_id)
        case "RemoveSubscriber":
            return command(cmd.RemoveSubscriber, subscription_id=subscription_id)
        case "BlockSubscriber":
            return command(cmd.BlockSubscriber, subscription_id=subscription_id)
        case "UnblockSubscriber":
            return command(cmd.UnblockSubscriber, subscription_id=subscription_id)
        case "UpdateSubscriberRole":
            return command(
                cmd.UpdateSubscriberRole,
                subscription_id=subscription_id,
                role=list(SubscriberRole)[step.pick % 3],
            )
        case "InvalidateSubscriptionToken":
            return command(cmd.InvalidateSubscriptionToken)
        case "SetSubscriptionToken":
            # The process manager only ever sets well-formed tokens.
            return command(cmd.SetSubscriptionToken, token=TOKENS[step.choice % 2])
        case "AdvanceLabourPhase":
            return command(
                cmd.AdvanceLabourPhase, labour_phase=list(LabourPhase)[step.pick]
            )
        case "PostApplicationLabourUpdate":
            return command(
                cmd.PostApplicationLabourUpdate, message=MESSAGES[step.choice]
            )
    raise AssertionError(f"no builder for {step.kind}")


def starting_scenario() -> Scenario:
    """A planned labour with a share token, a birth partner and a loved one."""
    scenario = planned_scenario()
    scenario.add_subscriber(PARTNER, role=SubscriberRole.BIRTH_PARTNER)
    scenario.add_subscriber(LOVED_ONE)
    return scenario


def replay(stored: list[StoredEvent], labour: Labour | None = None) -> Labour:
    """Decode and apply `stored` one event at a time, starting from `labour`."""
    for row in stored:
        labour = apply_events(
            labour, [decode_event(row.data)], row.sequence, row.timestamp
        )
    assert labour is not None
    return labour


def check_invariants(labour: Labour, zero_length_update_seen: bool) -> None:
    """Assert the aggregate invariants that the command rules guarantee.

    At most one active contraction is not guaranteed once UpdateContraction
    has set a contraction's end equal to its start, because that makes an
    ended contraction active again even while another one is active.
    """
    active = [c for c in labour.contractions.values() if c.is_active]
    if not zero_length_update_seen:
        assert len(active) <= 1

    for key, contraction in labour.contractions.items():
        assert key == contraction.id
        assert contraction.start_time <= contraction.end_time
        if contraction.intensity is not None:
            assert (
                CONTRACTION_MIN_INTENSITY
                <= contraction.intensity
                <= CONTRACTION_MAX_INTENSITY
            )

    subscriber_ids = [s.subscriber_id for s in labour.subscriptions.values()]
    assert len(subscriber_ids) == len(set(subscriber_ids))
    assert labour.mother_id not in subscriber_ids

    token = labour.subscription_token
    if token is not None:
        assert len(token) == SUBSCRIPTION_TOKEN_LENGTH
        assert set(token) <= set(SUBSCRIPTION_TOKEN_ALPHABET)


@settings(max_examples=200, deadline=None)
@given(
    generated=st.lists(steps, min_size=20, max_size=60),
    snapshot_after=st.integers(0, 60),
)
def test_replay_equals_live_state(generated: list[Step], snapshot_after: int) -> None:
    scenario = starting_scenario()
    zero_length_update_seen = False
    midway: tuple[bytes, int] | None = None

    for index, step in enumerate(generated):
        if index == snapshot_after:
            midway = (encode_snapshot(scenario.state), len(scenario.stored))
        scenario.tick(step.advance_seconds)
        next_command = build_command(step, scenario)
        caller = CALLERS[step.caller]
        before = encode_snapshot(scenario.state)
        try:
            events = scenario.decide(next_command, caller)
        except (LabourError, AuthorizationDenied) as error:
            event(f"rejected: {type(error).__name__}")
            assert encode_snapshot(scenario.state) == before
            continue
        assert encode_snapshot(scenario.state) == before, "decide changed the state"
        event(f"accepted: {next_command.name}")
        progressed = any(isinstance(e, ev.LabourPhaseChanged) for e in events)
        if progressed and isinstance(
            next_command, cmd.EndContraction | cmd.UpdateContraction
        ):
            event("phase progressed")

        if isinstance(next_command, cmd.StartContraction):
            assert next_command.contraction_id not in scenario.state.contractions
        scenario.apply(events, caller)

        if isinstance(next_command, cmd.UpdateContraction):
            updated = scenario.state.contractions[next_command.contraction_id]
            if updated.is_active:
                zero_length_update_seen = True
                event("UpdateContraction made a contraction active")
        check_invariants(scenario.state, zero_length_update_seen)
        assert decode_snapshot(encode_snapshot(scenario.state)) == scenario.state

    live = scenario.state
    assert replay(scenario.stored) == live
    assert decode_snapshot(encode_snapshot(live)) == live
    if midway is not None:
        snapshot, stored_count = midway
        resumed = replay(scenario.stored[stored_count:], decode_snapshot(snapshot))
        assert resumed == live


def test_replay_of_empty_sequence_equals_start() -> None:
    scenario = starting_scenario()

    assert replay(scenario.stored) == scenario.state
