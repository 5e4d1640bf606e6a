"""Tests of contraction statistics and alerts."""

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import msgspec
import pytest

from fernd.domain.enums import Alert, StatisticsRange
from fernd.domain.labour import Contraction
from fernd.domain.statistics import (
    ContractionStatistics,
    alert_for,
    compute_statistics,
)

LABOUR_ID = UUID(int=1)
NOW = datetime(2024, 5, 1, 10, 5, 0, 120, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# The newest contraction of a run starts here by default, so a 60 s one has
# ended by NOW.
NEWEST_START = NOW - timedelta(seconds=70)


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def completed(
    start: datetime, duration: timedelta, intensity: int | None = None
) -> Contraction:
    return Contraction(
        id=uuid4(),
        labour_id=LABOUR_ID,
        start_time=start,
        end_time=start + duration,
        intensity=intensity,
    )


def active(start: datetime, intensity: int | None = None) -> Contraction:
    return Contraction(
        id=uuid4(),
        labour_id=LABOUR_ID,
        start_time=start,
        end_time=start,
        intensity=intensity,
    )


def run(
    count: int,
    duration: timedelta,
    gap: timedelta,
    newest_start: datetime = NEWEST_START,
) -> list[Contraction]:
    """Build `count` completed contractions whose start times are `gap` apart,
    oldest first, the newest starting at `newest_start`."""
    return [
        completed(newest_start - gap * (count - 1 - index), duration)
        for index in range(count)
    ]


def statistics_for(
    contractions: list[Contraction],
    range: StatisticsRange = StatisticsRange.ALL,
    first_labour: bool = False,
) -> ContractionStatistics:
    return compute_statistics(contractions, first_labour, range, NOW)


# Statistics: range windows


@pytest.mark.parametrize(
    ("range", "window"),
    [
        (StatisticsRange.THIRTY_MINUTES, timedelta(minutes=30)),
        (StatisticsRange.SIXTY_MINUTES, timedelta(minutes=60)),
    ],
)
def test_range_keeps_start_exactly_at_window(
    range: StatisticsRange, window: timedelta
) -> None:
    contractions = [completed(NOW - window, seconds(60))]

    stats = compute_statistics(contractions, False, range, NOW)

    assert stats.contraction_count == 1
    assert stats.average_duration == 60.0


@pytest.mark.parametrize(
    ("range", "window"),
    [
        (StatisticsRange.THIRTY_MINUTES, timedelta(minutes=30)),
        (StatisticsRange.SIXTY_MINUTES, timedelta(minutes=60)),
    ],
)
def test_range_drops_start_one_microsecond_past_window(
    range: StatisticsRange, window: timedelta
) -> None:
    contractions = [completed(NOW - window - MICROSECOND, seconds(60))]

    stats = compute_statistics(contractions, False, range, NOW)

    assert stats.contraction_count == 0
    assert stats.average_duration == 0.0


def test_range_all_keeps_old_contractions() -> None:
    contractions = [
        completed(NOW - timedelta(days=2), seconds(40)),
        completed(NOW - timedelta(hours=5), seconds(50)),
    ]

    stats = compute_statistics(contractions, False, StatisticsRange.ALL, NOW)

    assert stats.contraction_count == 2
    assert stats.average_duration == 45.0


def test_range_sixty_minutes_filters_every_average() -> None:
    old = completed(NOW - timedelta(minutes=90), seconds(200), intensity=9)
    recent = [
        completed(NOW - seconds(600), seconds(50), intensity=4),
        completed(NOW - seconds(300), seconds(70), intensity=6),
    ]

    stats = compute_statistics(
        [old, *recent], False, StatisticsRange.SIXTY_MINUTES, NOW
    )

    assert stats.contraction_count == 2
    assert stats.average_duration == 60.0
    assert stats.average_intensity == 5.0
    assert stats.average_frequency == 300.0


def test_range_keeps_contraction_starting_after_now() -> None:
    contractions = [completed(NOW + seconds(30), seconds(60))]

    stats = compute_statistics(contractions, False, StatisticsRange.THIRTY_MINUTES, NOW)

    assert stats.contraction_count == 1


# Statistics: values


def test_statistics_empty_are_zero_without_alert() -> None:
    stats = statistics_for([])

    assert stats.contraction_count == 0
    assert stats.average_duration == 0
    assert stats.average_intensity == 0
    assert stats.average_frequency == 0
    assert stats.alert is None


def test_statistics_count_includes_active_contraction() -> None:
    contractions = [
        completed(NOW - seconds(400), seconds(60)),
        active(NOW - seconds(10)),
    ]

    stats = statistics_for(contractions)

    assert stats.contraction_count == 2


def test_average_duration_excludes_active_contraction() -> None:
    contractions = [
        completed(NOW - seconds(400), seconds(60)),
        completed(NOW - seconds(200), seconds(80)),
        active(NOW - seconds(10)),
    ]

    stats = statistics_for(contractions)

    assert stats.average_duration == 70.0


def test_average_duration_only_active_is_zero() -> None:
    stats = statistics_for([active(NOW - seconds(10))])

    assert stats.average_duration == 0
    assert stats.contraction_count == 1


def test_average_duration_not_rounded() -> None:
    contractions = [
        completed(NOW - seconds(900), seconds(60)),
        completed(NOW - seconds(600), seconds(61)),
        completed(NOW - seconds(300), seconds(61.5)),
    ]

    stats = statistics_for(contractions)

    assert stats.average_duration == (60 + 61 + 61.5) / 3


def test_average_duration_keeps_microseconds() -> None:
    contractions = [completed(NOW - seconds(300), seconds(60) + MICROSECOND)]

    stats = statistics_for(contractions)

    assert stats.average_duration == 60.000001


def test_average_intensity_ignores_missing_intensities() -> None:
    contractions = [
        completed(NOW - seconds(900), seconds(60), intensity=3),
        completed(NOW - seconds(600), seconds(60)),
        completed(NOW - seconds(300), seconds(60), intensity=8),
    ]

    stats = statistics_for(contractions)

    assert stats.average_intensity == 5.5


def test_average_intensity_not_rounded() -> None:
    contractions = [
        completed(NOW - seconds(900), seconds(60), intensity=5),
        completed(NOW - seconds(600), seconds(60), intensity=6),
        completed(NOW - seconds(300), seconds(60), intensity=6),
    ]

    stats = statistics_for(contractions)

    assert stats.average_intensity == 17 / 3


def test_average_intensity_none_rated_is_zero() -> None:
    contractions = [completed(NOW - seconds(300), seconds(60))]

    stats = statistics_for(contractions)

    assert stats.average_intensity == 0


def test_average_frequency_includes_active_contraction() -> None:
    contractions = [
        completed(NOW - seconds(700), seconds(60)),
        completed(NOW - seconds(400), seconds(60)),
        active(NOW - seconds(200)),
    ]

    stats = statistics_for(contractions)

    assert stats.average_frequency == 250.0


def test_average_frequency_excludes_zero_gaps() -> None:
    contractions = [
        completed(NOW - seconds(600), seconds(60)),
        completed(NOW - seconds(600), seconds(30)),
        completed(NOW - seconds(400), seconds(60)),
    ]

    stats = statistics_for(contractions)

    assert stats.average_frequency == 200.0


def test_average_frequency_single_contraction_is_zero() -> None:
    stats = statistics_for([completed(NOW - seconds(300), seconds(60))])

    assert stats.average_frequency == 0


def test_average_frequency_sorts_by_start_time() -> None:
    # In insertion order the gaps would be -300 s and +400 s, but sorted by start
    # time they are 100 s and 300 s.
    contractions = [
        completed(NOW - seconds(400), seconds(60)),
        completed(NOW - seconds(700), seconds(60)),
        completed(NOW - seconds(300), seconds(60)),
    ]

    stats = statistics_for(contractions)

    assert stats.average_frequency == 200.0


def test_average_frequency_not_rounded() -> None:
    contractions = [
        completed(NOW - seconds(700), seconds(60)),
        completed(NOW - seconds(400), seconds(60)),
        completed(NOW - seconds(399.5) + MICROSECOND, seconds(60)),
    ]

    stats = statistics_for(contractions)

    assert stats.average_frequency == (300 + 0.500001) / 2


def test_statistics_alert_uses_contractions_outside_range() -> None:
    contractions = [completed(NOW - timedelta(hours=3), seconds(130))]

    stats = statistics_for(contractions, StatisticsRange.THIRTY_MINUTES)

    assert stats.contraction_count == 0
    assert stats.alert is Alert.CALL_MIDWIFE


def test_statistics_alert_uses_first_labour() -> None:
    contractions = run(6, seconds(60), seconds(300))

    later = statistics_for(contractions, first_labour=False)
    first = statistics_for(contractions, first_labour=True)

    assert later.alert is Alert.GO_TO_HOSPITAL
    assert first.alert is None


def test_statistics_records_range_and_computed_at() -> None:
    stats = statistics_for([], StatisticsRange.SIXTY_MINUTES)

    assert stats.range is StatisticsRange.SIXTY_MINUTES
    assert stats.computed_at == NOW


def test_statistics_computed_at_converted_to_utc() -> None:
    local_now = NOW.astimezone(timezone(timedelta(hours=1)))

    stats = compute_statistics([], False, StatisticsRange.ALL, local_now)

    assert stats.computed_at == NOW
    assert stats.computed_at.tzinfo is UTC


# Statistics: JSON


@pytest.mark.parametrize(
    ("range", "spelling"),
    [
        (StatisticsRange.THIRTY_MINUTES, "30mins"),
        (StatisticsRange.SIXTY_MINUTES, "60mins"),
        (StatisticsRange.ALL, "all"),
    ],
)
def test_statistics_json_writes_range_spelling(
    range: StatisticsRange, spelling: str
) -> None:
    stats = statistics_for([], range)

    body = json.loads(msgspec.json.encode(stats))

    assert body["range"] == spelling


@pytest.mark.parametrize(
    ("contractions", "first_labour", "spelling"),
    [
        ([completed(NOW - seconds(300), seconds(121))], False, "callMidwife"),
        (run(6, seconds(60), seconds(300)), False, "goToHospital"),
        (run(3, seconds(60), seconds(300)), False, "prepareForHospital"),
        ([], False, None),
    ],
)
def test_statistics_json_writes_alert_spelling(
    contractions: list[Contraction], first_labour: bool, spelling: str | None
) -> None:
    stats = statistics_for(contractions, first_labour=first_labour)

    body = json.loads(msgspec.json.encode(stats))

    assert body["alert"] == spelling


def test_statistics_json_writes_all_fields() -> None:
    contractions = [
        completed(NOW - seconds(600), seconds(60), intensity=6),
        completed(NOW - seconds(300), seconds(70), intensity=7),
    ]
    stats = statistics_for(contractions, StatisticsRange.SIXTY_MINUTES)

    body = json.loads(msgspec.json.encode(stats))

    assert body == {
        "range": "60mins",
        "contraction_count": 2,
        "average_duration": 65.0,
        "average_intensity": 6.5,
        "average_frequency": 300.0,
        "alert": None,
        "computed_at": "2024-05-01T10:05:00.000120Z",
    }


def test_statistics_json_computed_at_without_fraction() -> None:
    now = NOW.replace(microsecond=0)
    stats = compute_statistics([], False, StatisticsRange.ALL, now)

    body = json.loads(msgspec.json.encode(stats))

    assert body["computed_at"] == "2024-05-01T10:05:00Z"


# Alerts: callMidwife


@pytest.mark.parametrize("first_labour", [True, False])
def test_call_midwife_duration_over_limit(first_labour: bool) -> None:
    contractions = [completed(NOW - timedelta(hours=2), seconds(120) + MICROSECOND)]

    assert alert_for(contractions, first_labour, NOW) is Alert.CALL_MIDWIFE


@pytest.mark.parametrize("first_labour", [True, False])
def test_call_midwife_duration_at_limit_none(first_labour: bool) -> None:
    contractions = [completed(NOW - timedelta(hours=2), seconds(120))]

    assert alert_for(contractions, first_labour, NOW) is None


@pytest.mark.parametrize("first_labour", [True, False])
def test_call_midwife_six_started_within_window(first_labour: bool) -> None:
    # Durations of 30 s match no hospital pattern.
    contractions = run(6, seconds(30), seconds(120), newest_start=NOW)
    assert contractions[0].start_time == NOW - seconds(600)

    assert alert_for(contractions, first_labour, NOW) is Alert.CALL_MIDWIFE


@pytest.mark.parametrize("first_labour", [True, False])
def test_call_midwife_sixth_outside_window_none(
    first_labour: bool,
) -> None:
    contractions = run(6, seconds(30), seconds(120), newest_start=NOW - MICROSECOND)
    assert contractions[0].start_time == NOW - seconds(600) - MICROSECOND

    assert alert_for(contractions, first_labour, NOW) is None


@pytest.mark.parametrize("first_labour", [True, False])
def test_call_midwife_five_in_window_none(first_labour: bool) -> None:
    contractions = run(5, seconds(30), seconds(60), newest_start=NOW - seconds(10))

    assert alert_for(contractions, first_labour, NOW) is None


def test_call_midwife_ignores_active_contraction_in_window() -> None:
    contractions = [
        *run(5, seconds(30), seconds(60), newest_start=NOW - seconds(100)),
        active(NOW - seconds(10)),
    ]

    assert alert_for(contractions, False, NOW) is None


# Alerts: goToHospital

# (first_labour, contraction count, max gap) of the goToHospital pattern.
GO_TO_HOSPITAL_LIMITS = [
    pytest.param(True, 20, seconds(180), id="first_labour"),
    pytest.param(False, 6, seconds(300), id="later_labour"),
]


@pytest.mark.parametrize(("first_labour", "count", "max_gap"), GO_TO_HOSPITAL_LIMITS)
def test_go_to_hospital_at_limits(
    first_labour: bool, count: int, max_gap: timedelta
) -> None:
    contractions = run(count, seconds(60), max_gap)

    assert alert_for(contractions, first_labour, NOW) is Alert.GO_TO_HOSPITAL


@pytest.mark.parametrize(("first_labour", "count", "max_gap"), GO_TO_HOSPITAL_LIMITS)
def test_go_to_hospital_one_fewer_prepares(
    first_labour: bool, count: int, max_gap: timedelta
) -> None:
    contractions = run(count - 1, seconds(60), max_gap)

    assert alert_for(contractions, first_labour, NOW) is Alert.PREPARE_FOR_HOSPITAL


@pytest.mark.parametrize(("first_labour", "count", "max_gap"), GO_TO_HOSPITAL_LIMITS)
def test_go_to_hospital_wide_gap_prepares(
    first_labour: bool, count: int, max_gap: timedelta
) -> None:
    contractions = run(count, seconds(60), max_gap)
    # Widen the gap between the two oldest contractions of the run.
    contractions[0] = completed(
        contractions[1].start_time - max_gap - MICROSECOND, seconds(60)
    )

    assert alert_for(contractions, first_labour, NOW) is Alert.PREPARE_FOR_HOSPITAL


@pytest.mark.parametrize(("first_labour", "count", "max_gap"), GO_TO_HOSPITAL_LIMITS)
def test_go_to_hospital_short_contraction_prepares(
    first_labour: bool, count: int, max_gap: timedelta
) -> None:
    contractions = run(count, seconds(60), max_gap)
    contractions[0] = completed(contractions[0].start_time, seconds(60) - MICROSECOND)

    assert alert_for(contractions, first_labour, NOW) is Alert.PREPARE_FOR_HOSPITAL


def test_go_to_hospital_first_labour_needs_closer_gaps() -> None:
    contractions = run(20, seconds(60), seconds(300))

    assert alert_for(contractions, True, NOW) is None


# Alerts: prepareForHospital

# (first_labour, contraction count, max gap) of the prepareForHospital pattern.
PREPARE_FOR_HOSPITAL_LIMITS = [
    pytest.param(True, 5, seconds(180), id="first_labour"),
    pytest.param(False, 3, seconds(300), id="later_labour"),
]


@pytest.mark.parametrize(
    ("first_labour", "count", "max_gap"), PREPARE_FOR_HOSPITAL_LIMITS
)
def test_prepare_for_hospital_at_limits(
    first_labour: bool, count: int, max_gap: timedelta
) -> None:
    contractions = run(count, seconds(60), max_gap)

    assert alert_for(contractions, first_labour, NOW) is Alert.PREPARE_FOR_HOSPITAL


@pytest.mark.parametrize(
    ("first_labour", "count", "max_gap"), PREPARE_FOR_HOSPITAL_LIMITS
)
def test_prepare_for_hospital_one_fewer_none(
    first_labour: bool, count: int, max_gap: timedelta
) -> None:
    contractions = run(count - 1, seconds(60), max_gap)

    assert alert_for(contractions, first_labour, NOW) is None


@pytest.mark.parametrize(
    ("first_labour", "count", "max_gap"), PREPARE_FOR_HOSPITAL_LIMITS
)
def test_prepare_for_hospital_wide_gap_none(
    first_labour: bool, count: int, max_gap: timedelta
) -> None:
    contractions = run(count, seconds(60), max_gap)
    # Widen the gap between the two oldest contractions of the run.
    contractions[0] = completed(
        contractions[1].start_time - max_gap - MICROSECOND, seconds(60)
    )

    assert alert_for(contractions, first_labour, NOW) is None


@pytest.mark.parametrize(
    ("first_labour", "count", "max_gap"), PREPARE_FOR_HOSPITAL_LIMITS
)
def test_prepare_for_hospital_short_contraction_none(
    first_labour: bool, count: int, max_gap: timedelta
) -> None:
    contractions = run(count, seconds(60), max_gap)
    # Shorten the newest contraction of the run.
    contractions[-1] = completed(contractions[-1].start_time, seconds(60) - MICROSECOND)

    assert alert_for(contractions, first_labour, NOW) is None


def test_prepare_for_hospital_first_labour_needs_closer_gaps() -> None:
    contractions = run(5, seconds(60), seconds(300))

    assert alert_for(contractions, True, NOW) is None


# Alerts: patterns use only the newest completed contractions


def test_pattern_ignores_contractions_older_than_run() -> None:
    # A short contraction long before the newest three breaks neither the
    # duration nor the gap rule.
    contractions = [
        completed(NOW - timedelta(hours=3), seconds(20)),
        *run(3, seconds(60), seconds(300)),
    ]

    assert alert_for(contractions, False, NOW) is Alert.PREPARE_FOR_HOSPITAL


def test_pattern_ignores_active_contraction() -> None:
    # Counted as the newest, the active contraction would fail the duration rule.
    contractions = [
        *run(3, seconds(60), seconds(300), newest_start=NOW - seconds(200)),
        active(NOW - seconds(10)),
    ]

    assert alert_for(contractions, False, NOW) is Alert.PREPARE_FOR_HOSPITAL


def test_pattern_gap_measured_between_start_times() -> None:
    # 90 s contractions 300 s apart leave 210 s between one end and the next
    # start, but the rule measures start to start.
    contractions = run(3, seconds(90), seconds(300) + MICROSECOND)

    assert alert_for(contractions, False, NOW) is None


def test_alert_sorts_by_start_time_not_insertion_order() -> None:
    # The short contraction was inserted last but started first, so the newest
    # three by start time match the pattern.
    contractions = [
        *run(3, seconds(60), seconds(300)),
        completed(NOW - timedelta(hours=2), seconds(20)),
    ]

    assert alert_for(contractions, False, NOW) is Alert.PREPARE_FOR_HOSPITAL


def test_alert_shuffled_input_matches_sorted_input() -> None:
    ordered = run(6, seconds(60), seconds(300))
    shuffled = [ordered[index] for index in (3, 0, 5, 1, 4, 2)]

    assert alert_for(shuffled, False, NOW) is Alert.GO_TO_HOSPITAL


# Alerts: precedence


def test_alert_call_midwife_before_go_to_hospital() -> None:
    contractions = run(6, seconds(121), seconds(300))

    assert alert_for(contractions, False, NOW) is Alert.CALL_MIDWIFE


def test_alert_call_midwife_before_prepare_for_hospital() -> None:
    contractions = run(3, seconds(60), seconds(300))
    contractions.insert(0, completed(NOW - timedelta(hours=3), seconds(121)))

    assert alert_for(contractions, False, NOW) is Alert.CALL_MIDWIFE


def test_alert_go_to_hospital_before_prepare_for_hospital() -> None:
    # Six contractions 300 s apart also match the three-contraction pattern.
    contractions = run(6, seconds(60), seconds(300))

    assert alert_for(contractions, False, NOW) is Alert.GO_TO_HOSPITAL


def test_alert_none_without_completed_contractions() -> None:
    contractions = [active(NOW - seconds(10))]

    assert alert_for(contractions, True, NOW) is None
