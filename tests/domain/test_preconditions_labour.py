"""Preconditions, their order and the events of the Labour group commands."""

from datetime import timedelta

import pytest

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.authorization import Caller
from fernd.domain.enums import LabourPhase, LabourUpdateType
from fernd.domain.errors import (
    InvalidCommand,
    InvalidStateTransition,
    NotFound,
    RateLimited,
    ValidationError,
)

from .builders import (
    DUE_DATE,
    INTERNAL,
    LABOUR_ID,
    MOTHER,
    MOTHER_NAME,
    PARTNER,
    STRANGER,
    TOKEN,
    Scenario,
    assert_error,
    command,
    plan_command,
)

NOT_PLANNED_PHASES = [
    LabourPhase.EARLY,
    LabourPhase.ACTIVE,
    LabourPhase.TRANSITION,
    LabourPhase.PUSHING,
    LabourPhase.COMPLETE,
]
NOT_COMPLETE_PHASES = [
    LabourPhase.PLANNED,
    LabourPhase.EARLY,
    LabourPhase.ACTIVE,
    LabourPhase.TRANSITION,
    LabourPhase.PUSHING,
]


def reach_phase(scenario: Scenario, phase: LabourPhase) -> None:
    if phase is not LabourPhase.PLANNED:
        scenario.advance_to(phase)


# PlanLabour


def test_plan_labour_emits_planned_and_phase(empty: Scenario) -> None:
    events = empty.run(plan_command(labour_name="Baby Example"))

    assert events == [
        ev.LabourPlanned(
            labour_id=LABOUR_ID,
            mother_id=MOTHER.user_id,
            mother_name=MOTHER_NAME,
            first_labour=True,
            due_date=DUE_DATE,
            labour_name="Baby Example",
        ),
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.PLANNED),
    ]


def test_plan_labour_creates_initial_state(empty: Scenario) -> None:
    empty.run(plan_command())

    labour = empty.state
    assert labour.id == LABOUR_ID
    assert labour.mother_id == MOTHER.user_id
    assert labour.phase is LabourPhase.PLANNED
    assert labour.subscription_token is None
    assert labour.contractions == {}
    assert labour.labour_updates == {}
    assert labour.subscriptions == {}
    assert labour.start_time is None
    assert labour.end_time is None
    assert labour.deleted is False


def test_plan_labour_omitted_name_is_null(empty: Scenario) -> None:
    events = empty.run(plan_command())

    planned = events[0]
    assert isinstance(planned, ev.LabourPlanned)
    assert planned.labour_name is None


def test_plan_labour_name_at_limit_accepted(empty: Scenario) -> None:
    events = empty.run(plan_command(labour_name="n" * 255))

    assert len(events) == 2


def test_plan_labour_name_counts_code_points(empty: Scenario) -> None:
    # 255 code points of four UTF-8 bytes each stay within the limit.
    events = empty.run(plan_command(labour_name="\U0001f476" * 255))

    assert len(events) == 2


def test_plan_labour_name_too_long_rejected(empty: Scenario) -> None:
    error = empty.reject(plan_command(labour_name="n" * 256))

    assert_error(
        error,
        ValidationError,
        "Domain error: Validation error: Labour name must be at most 255 characters",
        "validation_error",
        400,
    )


def test_plan_labour_existing_rejected(scenario: Scenario) -> None:
    error = scenario.reject(plan_command())

    assert_error(
        error,
        InvalidStateTransition,
        "Domain error: Cannot transition from state PLANNED to state PLANNED",
        "conflict",
        409,
    )


@pytest.mark.parametrize("phase", NOT_PLANNED_PHASES, ids=lambda phase: phase.value)
def test_plan_labour_existing_names_current_phase(
    scenario: Scenario, phase: LabourPhase
) -> None:
    scenario.advance_to(phase)

    error = scenario.reject(plan_command())

    assert_error(
        error,
        InvalidStateTransition,
        f"Domain error: Cannot transition from state {phase.value} to state PLANNED",
        "conflict",
        409,
    )


def test_plan_labour_by_stranger_on_existing_rejected(scenario: Scenario) -> None:
    # An unassociated caller may send PlanLabour, but the labour already exists.
    error = scenario.reject(
        plan_command(mother_id=STRANGER.user_id, mother_name="unknown"), STRANGER
    )

    assert_error(
        error,
        InvalidStateTransition,
        "Domain error: Cannot transition from state PLANNED to state PLANNED",
        "conflict",
        409,
    )


def test_plan_labour_name_checked_before_existence(scenario: Scenario) -> None:
    error = scenario.reject(plan_command(labour_name="n" * 256))

    assert type(error) is ValidationError


def test_plan_labour_on_deleted_labour_rejected(scenario: Scenario) -> None:
    scenario.complete()
    scenario.run(command(cmd.DeleteLabour))

    error = scenario.reject(plan_command())

    assert_error(
        error,
        InvalidStateTransition,
        "Domain error: Cannot transition from state COMPLETE to state PLANNED",
        "conflict",
        409,
    )


# UpdateLabourPlan


def test_update_labour_plan_emits_plan_updated(scenario: Scenario) -> None:
    new_due_date = DUE_DATE + timedelta(days=3)

    events = scenario.run(
        command(
            cmd.UpdateLabourPlan,
            first_labour=False,
            due_date=new_due_date,
            labour_name="Second",
        )
    )

    assert events == [
        ev.LabourPlanUpdated(
            labour_id=LABOUR_ID,
            first_labour=False,
            due_date=new_due_date,
            labour_name="Second",
        )
    ]
    assert scenario.state.first_labour is False


def test_update_labour_plan_omitted_name_clears_it(scenario: Scenario) -> None:
    events = scenario.run(
        command(cmd.UpdateLabourPlan, first_labour=True, due_date=DUE_DATE)
    )

    assert events == [
        ev.LabourPlanUpdated(
            labour_id=LABOUR_ID, first_labour=True, due_date=DUE_DATE, labour_name=None
        )
    ]


def test_update_labour_plan_name_too_long_rejected(scenario: Scenario) -> None:
    error = scenario.reject(
        command(
            cmd.UpdateLabourPlan,
            first_labour=True,
            due_date=DUE_DATE,
            labour_name="n" * 256,
        )
    )

    assert_error(
        error,
        ValidationError,
        "Domain error: Validation error: Labour name must be at most 255 characters",
        "validation_error",
        400,
    )


@pytest.mark.parametrize("phase", NOT_PLANNED_PHASES, ids=lambda phase: phase.value)
def test_update_labour_plan_allowed_in_every_phase(
    scenario: Scenario, phase: LabourPhase
) -> None:
    scenario.advance_to(phase)

    events = scenario.run(
        command(cmd.UpdateLabourPlan, first_labour=True, due_date=DUE_DATE)
    )

    assert len(events) == 1


# BeginLabour


def test_begin_labour_emits_begun_phase_and_note(scenario: Scenario) -> None:
    scenario.tick(30)

    events = scenario.run(command(cmd.BeginLabour))

    assert events == [
        ev.LabourBegun(labour_id=LABOUR_ID, start_time=scenario.now),
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.EARLY),
        ev.LabourUpdatePosted(
            labour_id=LABOUR_ID,
            labour_update_id=scenario.ids.last,
            labour_update_type=LabourUpdateType.PRIVATE_NOTE,
            message="labour_begun",
            application_generated=True,
            sent_time=scenario.now,
        ),
    ]


def test_begin_labour_sets_start_time_and_phase(scenario: Scenario) -> None:
    scenario.run(command(cmd.BeginLabour))

    assert scenario.state.start_time == scenario.now
    assert scenario.state.phase is LabourPhase.EARLY


@pytest.mark.parametrize("phase", NOT_PLANNED_PHASES, ids=lambda phase: phase.value)
def test_begin_labour_not_planned_rejected(
    scenario: Scenario, phase: LabourPhase
) -> None:
    scenario.advance_to(phase)

    error = scenario.reject(command(cmd.BeginLabour))

    assert_error(
        error,
        InvalidStateTransition,
        f"Domain error: Cannot transition from state {phase.value} to state EARLY",
        "conflict",
        409,
    )


# CompleteLabour


def test_complete_labour_from_planned_emits_completed(scenario: Scenario) -> None:
    events = scenario.run(command(cmd.CompleteLabour, notes="All went well"))

    assert events == [
        ev.LabourCompleted(
            labour_id=LABOUR_ID, notes="All went well", end_time=scenario.now
        ),
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.COMPLETE),
    ]
    assert scenario.state.end_time == scenario.now
    assert scenario.state.phase is LabourPhase.COMPLETE


def test_complete_labour_without_notes_has_null_notes(scenario: Scenario) -> None:
    events = scenario.run(command(cmd.CompleteLabour))

    completed = events[0]
    assert isinstance(completed, ev.LabourCompleted)
    assert completed.notes is None


def test_complete_labour_notes_at_limit_accepted(scenario: Scenario) -> None:
    events = scenario.run(command(cmd.CompleteLabour, notes="n" * 5000))

    assert len(events) == 2


def test_complete_labour_notes_too_long_rejected(scenario: Scenario) -> None:
    error = scenario.reject(command(cmd.CompleteLabour, notes="n" * 5001))

    assert_error(
        error,
        ValidationError,
        "Domain error: Validation error: Notes must be at most 5000 characters",
        "validation_error",
        400,
    )


def test_complete_labour_twice_rejected(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(command(cmd.CompleteLabour))

    assert_error(
        error,
        InvalidStateTransition,
        "Domain error: Cannot transition from state COMPLETE to state COMPLETE",
        "conflict",
        409,
    )


def test_complete_labour_with_active_contraction_rejected(scenario: Scenario) -> None:
    scenario.start_contraction()

    error = scenario.reject(command(cmd.CompleteLabour))

    assert_error(
        error,
        ValidationError,
        "Domain error: Validation error: "
        "Cannot complete labour with active contraction",
        "validation_error",
        400,
    )


def test_complete_labour_notes_checked_before_phase(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(command(cmd.CompleteLabour, notes="n" * 5001))

    assert type(error) is ValidationError


def test_complete_labour_phase_checked_before_active_contraction(
    scenario: Scenario,
) -> None:
    scenario.start_contraction()
    scenario.advance_to(LabourPhase.COMPLETE)

    error = scenario.reject(command(cmd.CompleteLabour))

    assert type(error) is InvalidStateTransition


# SendLabourInvite


def invite(address: str = "friend@example.com") -> cmd.SendLabourInvite:
    return command(cmd.SendLabourInvite, invite_email=address)


def test_send_labour_invite_emits_invite_sent(scenario: Scenario) -> None:
    events = scenario.run(invite("friend@example.com"))

    assert events == [
        ev.LabourInviteSent(labour_id=LABOUR_ID, invite_email="friend@example.com")
    ]


@pytest.mark.parametrize(
    "address",
    [
        "friend@example.com",
        "a@b.c",
        "first.last+tag@mail.example.org",
        "a" * 240 + "@example.com.x",  # exactly 254 characters
    ],
)
def test_send_labour_invite_valid_address_accepted(
    scenario: Scenario, address: str
) -> None:
    events = scenario.run(invite(address))

    assert len(events) == 1


@pytest.mark.parametrize(
    "address",
    [
        "",
        "friend.example.com",
        "friend@@example.com",
        "friend@home@example.com",
        "@example.com",
        "friend@localhost",
        "friend@",
        "fr iend@example.com",
        "friend@exa mple.com",
        "friend@example.com\n",
        "\tfriend@example.com",
        "a" * 241 + "@example.com.x",  # 255 characters
    ],
)
def test_send_labour_invite_invalid_address_rejected(
    scenario: Scenario, address: str
) -> None:
    error = scenario.reject(invite(address))

    assert_error(
        error,
        ValidationError,
        "Domain error: Validation error: Invalid email address",
        "validation_error",
        400,
    )


def test_send_labour_invite_completed_rejected(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(invite())

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot invite to completed labour",
        "conflict",
        409,
    )


def test_send_labour_invite_email_checked_before_phase(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(invite("not-an-address"))

    assert type(error) is ValidationError


def send_invites(scenario: Scenario, count: int, spacing_seconds: float) -> None:
    for number in range(count):
        if number:
            scenario.tick(spacing_seconds)
        scenario.run(invite(f"friend{number}@example.com"))


def test_send_labour_invite_ten_per_day_accepted(scenario: Scenario) -> None:
    send_invites(scenario, 10, spacing_seconds=60)

    assert len(scenario.state.recent_invite_times) == 10


def test_send_labour_invite_eleventh_rate_limited(scenario: Scenario) -> None:
    first_invite_time = scenario.now
    send_invites(scenario, 10, spacing_seconds=60)
    scenario.tick(60)

    error = scenario.reject(invite())

    assert_error(
        error,
        RateLimited,
        "Domain error: Rate limit exceeded: Too many invites sent, try again later",
        "rate_limited",
        429,
    )
    assert isinstance(error, RateLimited)
    expected_wait = first_invite_time + timedelta(days=1) - scenario.now
    assert error.retry_after_seconds == expected_wait.total_seconds()


def test_send_labour_invite_limit_lifts_when_oldest_leaves(
    scenario: Scenario,
) -> None:
    # The window counts invites later than now - 24 h, so the oldest invite
    # stops counting exactly 24 h after it was sent.
    first_invite_time = scenario.now
    send_invites(scenario, 10, spacing_seconds=60)
    scenario.now = first_invite_time + timedelta(days=1)

    events = scenario.run(invite())

    assert len(events) == 1


def test_send_labour_invite_second_early_rate_limited(
    scenario: Scenario,
) -> None:
    first_invite_time = scenario.now
    send_invites(scenario, 10, spacing_seconds=60)
    scenario.now = first_invite_time + timedelta(days=1, seconds=-1)

    error = scenario.reject(invite())

    assert isinstance(error, RateLimited)
    assert error.retry_after_seconds == 1


def test_send_labour_invite_retry_after_rounds_up(scenario: Scenario) -> None:
    first_invite_time = scenario.now
    send_invites(scenario, 10, spacing_seconds=60)
    scenario.now = first_invite_time + timedelta(days=1, seconds=-2.5)

    error = scenario.reject(invite())

    assert isinstance(error, RateLimited)
    assert error.retry_after_seconds == 3


def test_send_labour_invite_rolling_window_counts_second_oldest(
    scenario: Scenario,
) -> None:
    first_invite_time = scenario.now
    send_invites(scenario, 10, spacing_seconds=60)
    scenario.now = first_invite_time + timedelta(days=1)
    scenario.run(invite())

    error = scenario.reject(invite())

    # The next slot opens when the second invite, sent 60 s after the first,
    # leaves the window.
    assert isinstance(error, RateLimited)
    assert error.retry_after_seconds == 60


def test_send_labour_invite_phase_checked_before_rate_limit(
    scenario: Scenario,
) -> None:
    send_invites(scenario, 10, spacing_seconds=1)
    scenario.complete()

    error = scenario.reject(invite())

    assert type(error) is InvalidCommand


# DeleteLabour


def test_delete_labour_emits_deleted(scenario: Scenario) -> None:
    scenario.complete()

    events = scenario.run(command(cmd.DeleteLabour))

    assert events == [ev.LabourDeleted(labour_id=LABOUR_ID)]
    assert scenario.state.deleted is True


@pytest.mark.parametrize("phase", NOT_COMPLETE_PHASES, ids=lambda phase: phase.value)
def test_delete_labour_not_complete_rejected(
    scenario: Scenario, phase: LabourPhase
) -> None:
    reach_phase(scenario, phase)

    error = scenario.reject(command(cmd.DeleteLabour))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot delete active labour",
        "conflict",
        409,
    )


@pytest.mark.parametrize(
    ("deleted_command", "caller"),
    [
        (command(cmd.BeginLabour), MOTHER),
        (command(cmd.CompleteLabour), MOTHER),
        (command(cmd.DeleteLabour), MOTHER),
        (command(cmd.UpdateLabourPlan, first_labour=True, due_date=DUE_DATE), MOTHER),
        (
            command(
                cmd.PostLabourUpdate,
                labour_update_type=LabourUpdateType.STATUS_UPDATE,
                message="Still here",
            ),
            PARTNER,
        ),
        (command(cmd.RequestAccess, token=TOKEN), STRANGER),
        (command(cmd.SetSubscriptionToken, token=TOKEN), INTERNAL),
        (command(cmd.AdvanceLabourPhase, labour_phase=LabourPhase.EARLY), INTERNAL),
    ],
    ids=lambda value: getattr(value, "name", getattr(value, "user_id", "")),
)
def test_deleted_labour_commands_not_found(
    scenario: Scenario, deleted_command: cmd.Command, caller: Caller
) -> None:
    scenario.complete()
    scenario.run(command(cmd.DeleteLabour))

    error = scenario.reject(deleted_command, caller)

    assert_error(error, NotFound, "Labour not found", "not_found", 404)


def test_unknown_labour_command_not_found(empty: Scenario) -> None:
    error = empty.reject(command(cmd.BeginLabour))

    assert_error(error, NotFound, "Labour not found", "not_found", 404)
