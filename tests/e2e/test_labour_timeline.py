"""A whole labour over HTTP: contractions timed with past start and end times,
phase progression, statistics, alerts, the labour lists and completion.

The timeline has three stages, each timed by the mother except some of the
last stage, which a birth partner times with their own token:

* early: 40 s contractions every 10 minutes, intensity 3 to 5;
* active: 72 s contractions every 4 minutes, intensity 6 or 7;
* transition: 100 s contractions every 2 to 2.5 minutes, intensity 8 or 9.

It ends shortly before the test starts, so the 30 and 60 minute statistics
windows cut through it at known places.
"""

import itertools
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import FerndServer
from tests.e2e.helpers import (
    Member,
    all_contractions,
    all_labour_updates,
    ask,
    error,
    eventually,
    expect_status,
    join,
    new_id,
    parse_wire_time,
    plan_labour,
    send,
    unique_user,
    wire_time,
)

# (stage, start offset in seconds from the timeline start, duration in
# seconds, intensity, timed by the birth partner).
SCHEDULE: list[tuple[str, int, int, int, bool]] = [
    ("early", 0, 40, 3, False),
    ("early", 600, 40, 4, False),
    ("early", 1200, 40, 5, False),
    ("early", 1800, 40, 4, False),
    ("early", 2400, 40, 5, False),
    ("early", 3000, 40, 3, False),
    ("active", 3600, 72, 6, False),
    ("active", 3840, 72, 7, False),
    ("active", 4080, 72, 6, False),
    ("active", 4320, 72, 7, False),
    ("active", 4560, 72, 7, False),
    ("active", 4800, 72, 6, False),
    ("transition", 5040, 100, 8, False),
    ("transition", 5190, 100, 8, True),
    ("transition", 5310, 100, 9, False),
    ("transition", 5460, 100, 8, True),
    ("transition", 5580, 100, 9, False),
    ("transition", 5730, 100, 9, True),
]
# The timeline starts this long before the test, so its last contraction ended
# 80 s before the test. The 30 minute window then starts 30 s after the third
# active contraction, and the 60 minute window 510 s after the fourth early one.
# Both margins grow while the test runs. The contraction after each boundary
# stays inside its window for the first 90 s of the test.
TIMELINE_SPAN = timedelta(seconds=5910)
# Index in SCHEDULE of the contraction whose end moves the labour up a phase.
FIRST_ACTIVE_INDEX = 8
FIRST_TRANSITION_INDEX = 14

PHASE_ORDER = ["PLANNED", "EARLY", "ACTIVE", "TRANSITION", "PUSHING", "COMPLETE"]
# The phase-progression rule: the mean over the newest 3 rated contractions.
RECENT_COUNT = 3
TRANSITION_INTENSITY, TRANSITION_MINUTES = 8.0, 1.5
ACTIVE_INTENSITY, ACTIVE_MINUTES = 6.0, 1.0

RANGE_WINDOWS = {"30mins": timedelta(minutes=30), "60mins": timedelta(minutes=60)}


@dataclass(frozen=True)
class Timed:
    """One contraction as the test sent it."""

    contraction_id: str
    start: datetime
    end: datetime
    intensity: int
    by_partner: bool


@dataclass
class Timeline:
    """The labour built by the `timeline` fixture and what it observed on the way."""

    server: FerndServer
    labour_id: str
    mother_id: str
    mother_token: str
    partner: Member
    contractions: list[Timed] = field(default_factory=list)
    phase_before_first: str = ""
    labour_after_first_start: dict[str, Any] = field(default_factory=dict)
    updates_after_first_start: list[dict[str, Any]] = field(default_factory=list)
    phases_after_start: list[str] = field(default_factory=list)
    phases_after_end: list[str] = field(default_factory=list)
    alert_after_stage: dict[str, str | None] = field(default_factory=dict)

    def mother(self) -> httpx.Client:
        return self.server.client(self.mother_token)


def _current_phase(client: httpx.Client, labour_id: str) -> str:
    reply = ask(client, "Labour", "GetLabour", labour_id=labour_id)
    phase: str = expect_status(reply, 200).json()["current_phase"]
    return phase


def _statistics(client: httpx.Client, labour_id: str, range_: str) -> dict[str, Any]:
    reply = ask(
        client,
        "Contraction",
        "GetContractionStatistics",
        labour_id=labour_id,
        range=range_,
    )
    body: dict[str, Any] = expect_status(reply, 200).json()
    return body


@pytest.fixture(scope="module")
def timeline(fernd_server: FerndServer) -> Iterator[Timeline]:
    """Plan a labour, add a birth partner and time the whole SCHEDULE."""
    mother_id = unique_user("timeline-mother")
    mother_token = fernd_server.token(mother_id, name="Alex Morgan")
    started = datetime.now(UTC) - TIMELINE_SPAN
    with fernd_server.client(mother_token) as mother:
        labour_id = plan_labour(mother, first_labour=True, labour_name="Baby M")
        partner = join(
            fernd_server,
            mother,
            labour_id,
            unique_user("timeline-partner"),
            role="BIRTH_PARTNER",
            name="Sam Morgan",
        )
        built = Timeline(fernd_server, labour_id, mother_id, mother_token, partner)
        built.phase_before_first = _current_phase(mother, labour_id)

        with fernd_server.client(partner.token) as partner_client:
            for index, (stage, offset, seconds, intensity, by_partner) in enumerate(
                SCHEDULE
            ):
                timer = partner_client if by_partner else mother
                start = started + timedelta(seconds=offset)
                timed = Timed(
                    new_id(),
                    start,
                    start + timedelta(seconds=seconds),
                    intensity,
                    by_partner,
                )
                reply = send(
                    timer,
                    "Contraction",
                    "StartContraction",
                    labour_id=labour_id,
                    contraction_id=timed.contraction_id,
                    start_time=timed.start.isoformat(),
                )
                expect_status(reply, 204)
                built.phases_after_start.append(_current_phase(mother, labour_id))
                if index == 0:
                    reply = ask(mother, "Labour", "GetLabour", labour_id=labour_id)
                    built.labour_after_first_start = reply.json()
                    built.updates_after_first_start = all_labour_updates(
                        mother, labour_id
                    )

                reply = send(
                    timer,
                    "Contraction",
                    "EndContraction",
                    labour_id=labour_id,
                    contraction_id=timed.contraction_id,
                    end_time=timed.end.isoformat(),
                    intensity=timed.intensity,
                )
                expect_status(reply, 204)
                built.contractions.append(timed)
                built.phases_after_end.append(_current_phase(mother, labour_id))

                last_of_stage = (
                    index + 1 == len(SCHEDULE) or SCHEDULE[index + 1][0] != stage
                )
                if last_of_stage:
                    stats = _statistics(mother, labour_id, "all")
                    built.alert_after_stage[stage] = stats["alert"]
    yield built


def _expected_phases(contractions: list[Timed]) -> list[str]:
    """Apply the phase-progression rule after each contraction ends."""
    phase = "EARLY"
    rated: list[tuple[int, float]] = []
    phases = []
    for timed in contractions:
        minutes = (timed.end - timed.start).total_seconds() / 60
        rated.insert(0, (timed.intensity, minutes))
        recent = rated[:RECENT_COUNT]
        candidate = None
        if len(recent) == RECENT_COUNT:
            intensity = statistics.fmean(value for value, _ in recent)
            duration = statistics.fmean(value for _, value in recent)
            if intensity >= TRANSITION_INTENSITY and duration >= TRANSITION_MINUTES:
                candidate = "TRANSITION"
            elif intensity >= ACTIVE_INTENSITY and duration >= ACTIVE_MINUTES:
                candidate = "ACTIVE"
        if candidate and PHASE_ORDER.index(candidate) > PHASE_ORDER.index(phase):
            phase = candidate
        phases.append(phase)
    return phases


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _expected_statistics(
    contractions: list[Timed], range_: str, now: datetime
) -> dict[str, Any]:
    """Compute the statistics of the contractions in range at `now`."""
    window = RANGE_WINDOWS.get(range_)
    in_range = sorted(
        (c for c in contractions if window is None or now - c.start <= window),
        key=lambda c: c.start,
    )
    durations = [
        (c.end - c.start).total_seconds() for c in in_range if c.end != c.start
    ]
    intensities = [float(c.intensity) for c in in_range]
    gaps = [
        (later.start - earlier.start).total_seconds()
        for earlier, later in itertools.pairwise(in_range)
        if later.start > earlier.start
    ]
    return {
        "contraction_count": len(in_range),
        "average_duration": _mean(durations),
        "average_intensity": _mean(intensities),
        "average_frequency": _mean(gaps),
    }


# Beginning the labour


def test_labour_planned_before_first_contraction(timeline: Timeline) -> None:
    assert timeline.phase_before_first == "PLANNED"


def test_first_contraction_begins_labour(timeline: Timeline) -> None:
    assert timeline.labour_after_first_start["current_phase"] == "EARLY"


def test_first_contraction_sets_labour_start_time(timeline: Timeline) -> None:
    first = timeline.contractions[0]
    assert timeline.labour_after_first_start["start_time"] == wire_time(first.start)


def test_first_contraction_posts_no_labour_begun_note(timeline: Timeline) -> None:
    messages = [update["message"] for update in timeline.updates_after_first_start]
    assert "labour_begun" not in messages


# Phase progression


def test_phase_unchanged_by_contraction_start(timeline: Timeline) -> None:
    phases_before_start = ["EARLY", *timeline.phases_after_end[:-1]]
    assert timeline.phases_after_start == phases_before_start


def test_phase_follows_progression_rule(timeline: Timeline) -> None:
    assert timeline.phases_after_end == _expected_phases(timeline.contractions)


def test_phase_active_at_third_active_contraction(timeline: Timeline) -> None:
    assert timeline.phases_after_end.index("ACTIVE") == FIRST_ACTIVE_INDEX


def test_phase_transition_at_third_transition_contraction(
    timeline: Timeline,
) -> None:
    assert timeline.phases_after_end.index("TRANSITION") == FIRST_TRANSITION_INDEX


# Contractions as read back


def test_contractions_read_back_as_sent(timeline: Timeline) -> None:
    with timeline.mother() as mother:
        rows = all_contractions(mother, timeline.labour_id)
    observed = {
        row["contraction_id"]: (
            row["duration"]["start_time"],
            row["duration"]["end_time"],
            row["duration_seconds"],
            row["intensity"],
        )
        for row in rows
    }
    expected = {
        timed.contraction_id: (
            wire_time(timed.start),
            wire_time(timed.end),
            (timed.end - timed.start).total_seconds(),
            timed.intensity,
        )
        for timed in timeline.contractions
    }
    assert observed == expected


def test_partner_contraction_visible_by_id(timeline: Timeline) -> None:
    by_partner = [timed for timed in timeline.contractions if timed.by_partner]
    with timeline.mother() as mother:
        for timed in by_partner:
            reply = ask(
                mother,
                "Contraction",
                "GetContractionById",
                labour_id=timeline.labour_id,
                contraction_id=timed.contraction_id,
            )
            assert reply.status_code == 200
            assert reply.json()["intensity"] == timed.intensity


def test_partner_reads_all_contractions(timeline: Timeline) -> None:
    with timeline.server.client(timeline.partner.token) as partner:
        rows = all_contractions(partner, timeline.labour_id)
    assert len(rows) == len(SCHEDULE)


# Statistics and alerts


@pytest.mark.parametrize("range_", ["30mins", "60mins", "all"])
def test_statistics_match_computed(timeline: Timeline, range_: str) -> None:
    with timeline.mother() as mother:
        stats = _statistics(mother, timeline.labour_id, range_)
    now = parse_wire_time(stats["computed_at"])
    expected = _expected_statistics(timeline.contractions, range_, now)
    assert stats["range"] == range_
    assert stats["contraction_count"] == expected["contraction_count"]
    assert stats["average_duration"] == pytest.approx(expected["average_duration"])
    assert stats["average_intensity"] == pytest.approx(expected["average_intensity"])
    assert stats["average_frequency"] == pytest.approx(expected["average_frequency"])


@pytest.mark.parametrize(
    ("range_", "count"), [("30mins", 9), ("60mins", 14), ("all", 18)]
)
def test_statistics_window_counts(timeline: Timeline, range_: str, count: int) -> None:
    with timeline.mother() as mother:
        stats = _statistics(mother, timeline.labour_id, range_)
    assert stats["contraction_count"] == count


def test_statistics_range_defaults_to_60mins(timeline: Timeline) -> None:
    with timeline.mother() as mother:
        reply = ask(
            mother,
            "Contraction",
            "GetContractionStatistics",
            labour_id=timeline.labour_id,
        )
    assert reply.json()["range"] == "60mins"


def test_alert_none_after_early_stage(timeline: Timeline) -> None:
    assert timeline.alert_after_stage["early"] is None


def test_alert_none_after_active_stage(timeline: Timeline) -> None:
    # Active contractions are 4 minutes apart, above the 3 minutes a first
    # labour's prepareForHospital pattern allows.
    assert timeline.alert_after_stage["active"] is None


def test_alert_prepare_after_transition_stage(timeline: Timeline) -> None:
    assert timeline.alert_after_stage["transition"] == "prepareForHospital"


def test_alert_follows_latest_plan_first_labour(timeline: Timeline) -> None:
    def replan(first_labour: bool) -> None:
        reply = send(
            mother,
            "Labour",
            "UpdateLabourPlan",
            labour_id=timeline.labour_id,
            first_labour=first_labour,
            due_date="2024-05-03T00:00:00Z",
            labour_name="Baby M",
        )
        expect_status(reply, 204)

    with timeline.mother() as mother:
        replan(False)
        try:
            stats = _statistics(mother, timeline.labour_id, "all")
        finally:
            replan(True)
    # A later labour raises goToHospital after 6 contractions at most 5 minutes
    # apart, which the transition stage provides.
    assert stats["alert"] == "goToHospital"


def _labour_with(
    server: FerndServer, contractions: list[tuple[timedelta, int]]
) -> tuple[str, str]:
    """Plan a labour for a new mother and time `contractions`, each given as
    (start before now, duration in seconds); return the token and labour id."""
    token = server.token(unique_user("alert-mother"))
    now = datetime.now(UTC)
    with server.client(token) as mother:
        labour_id = plan_labour(mother)
        for before_now, seconds in contractions:
            contraction_id = new_id()
            start = now - before_now
            reply = send(
                mother,
                "Contraction",
                "StartContraction",
                labour_id=labour_id,
                contraction_id=contraction_id,
                start_time=start.isoformat(),
            )
            expect_status(reply, 204)
            reply = send(
                mother,
                "Contraction",
                "EndContraction",
                labour_id=labour_id,
                contraction_id=contraction_id,
                end_time=(start + timedelta(seconds=seconds)).isoformat(),
                intensity=5,
            )
            expect_status(reply, 204)
    return token, labour_id


def test_alert_call_midwife_long_contraction(fernd_server: FerndServer) -> None:
    token, labour_id = _labour_with(fernd_server, [(timedelta(hours=3), 121)])
    with fernd_server.client(token) as mother:
        assert _statistics(mother, labour_id, "all")["alert"] == "callMidwife"


def test_alert_call_midwife_six_recent(fernd_server: FerndServer) -> None:
    starts = [timedelta(seconds=seconds) for seconds in (540, 450, 360, 270, 180, 90)]
    token, labour_id = _labour_with(fernd_server, [(start, 30) for start in starts])
    with fernd_server.client(token) as mother:
        assert _statistics(mother, labour_id, "all")["alert"] == "callMidwife"


def test_alert_none_five_recent(fernd_server: FerndServer) -> None:
    starts = [timedelta(seconds=seconds) for seconds in (450, 360, 270, 180, 90)]
    token, labour_id = _labour_with(fernd_server, [(start, 30) for start in starts])
    with fernd_server.client(token) as mother:
        assert _statistics(mother, labour_id, "all")["alert"] is None


# Labour lists and completion


def _active(client: httpx.Client) -> Any:
    return expect_status(client.get("/api/v1/labour/active"), 200).json()


def _history(client: httpx.Client) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = expect_status(
        client.get("/api/v1/labour/history"), 200
    ).json()
    return rows


def test_active_labour_before_completion(timeline: Timeline) -> None:
    with timeline.mother() as mother:
        active = eventually(
            lambda: _active(mother),
            lambda row: row is not None and row["current_phase"] == "TRANSITION",
        )
    assert active is not None
    assert active["labour_id"] == timeline.labour_id
    assert active["current_phase"] == "TRANSITION"
    assert active["mother_id"] == timeline.mother_id
    assert active["mother_name"] == "Alex Morgan"
    assert active["labour_name"] == "Baby M"


def test_completion_ends_labour(timeline: Timeline) -> None:
    """Complete the labour last, then check the labour row, the lists and a
    late contraction."""
    with timeline.mother() as mother:
        reply = send(
            mother,
            "Labour",
            "CompleteLabour",
            labour_id=timeline.labour_id,
            notes="A healthy girl",
        )
        assert reply.status_code == 204

        labour = ask(mother, "Labour", "GetLabour", labour_id=timeline.labour_id).json()
        assert labour["current_phase"] == "COMPLETE"
        assert labour["notes"] == "A healthy girl"
        assert labour["end_time"] is not None

        active = eventually(lambda: _active(mother), lambda row: row is None)
        assert active is None

        history = eventually(
            lambda: _history(mother),
            lambda rows: bool(rows) and rows[0]["current_phase"] == "COMPLETE",
        )
        assert [row["labour_id"] for row in history] == [timeline.labour_id]
        assert history[0]["current_phase"] == "COMPLETE"

        reply = send(
            mother,
            "Contraction",
            "StartContraction",
            labour_id=timeline.labour_id,
            contraction_id=new_id(),
        )
        assert reply.status_code == 409
        message = "Cannot start contraction in completed labour"
        assert reply.json() == error(
            f"Domain error: Invalid command: {message}", "conflict"
        )
