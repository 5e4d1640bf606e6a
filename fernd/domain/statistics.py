"""Contraction statistics over a time range, and the alert they raise."""

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import msgspec

from fernd.domain.datetimes import to_utc
from fernd.domain.enums import Alert, StatisticsRange
from fernd.domain.labour import Contraction

# A range keeps the contractions that started at most this long before `now`,
# and ALL has no limit.
RANGE_WINDOWS: Final[dict[StatisticsRange, timedelta | None]] = {
    StatisticsRange.THIRTY_MINUTES: timedelta(minutes=30),
    StatisticsRange.SIXTY_MINUTES: timedelta(minutes=60),
    StatisticsRange.ALL: None,
}

# A contraction longer than 2 minutes is unusual, so one is a reason to call the
# midwife.
CALL_MIDWIFE_DURATION_SECONDS: Final = 120
# This many contractions that started within the window below mean labour is
# moving fast, so they are also a reason to call the midwife.
CALL_MIDWIFE_RECENT_COUNT: Final = 6
# A contraction is in the window when `now - start_time` is at most this.
CALL_MIDWIFE_WINDOW_SECONDS: Final = 600


@dataclass(frozen=True, slots=True)
class AlertPattern:
    """A run of the newest `count` completed contractions, each at least
    `min_duration_seconds` long and starting at most `max_gap_seconds` after the
    one before it, that raises an alert."""

    count: int
    min_duration_seconds: float
    max_gap_seconds: float


# A later labour tends to progress faster than a first one, so its patterns
# raise an alert after fewer contractions. They also allow gaps of up to 5
# minutes, where a first labour needs contractions at most 3 minutes apart.
GO_TO_HOSPITAL_FIRST_LABOUR: Final = AlertPattern(20, 60, 180)
GO_TO_HOSPITAL_LATER_LABOUR: Final = AlertPattern(6, 60, 300)
PREPARE_FOR_HOSPITAL_FIRST_LABOUR: Final = AlertPattern(5, 60, 180)
PREPARE_FOR_HOSPITAL_LATER_LABOUR: Final = AlertPattern(3, 60, 300)

_ONE_SECOND: Final = timedelta(seconds=1)


class ContractionStatistics(msgspec.Struct, kw_only=True):
    """The response of the contraction statistics query.

    Every average is 0 when it has no inputs, and no value is rounded.
    """

    range: StatisticsRange
    contraction_count: int
    average_duration: float
    average_intensity: float
    # Mean gap in seconds between the start times of consecutive contractions.
    average_frequency: float
    alert: Alert | None
    computed_at: datetime


def _mean(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    return sum(values) / len(values)


def _in_range(
    contractions: Iterable[Contraction], range: StatisticsRange, now: datetime
) -> list[Contraction]:
    """Return the contractions with `now - start_time` within the range window,
    sorted by start_time ascending. Contractions that start after `now` are
    kept."""
    window = RANGE_WINDOWS[range]
    kept = [
        contraction
        for contraction in contractions
        if window is None or now - contraction.start_time <= window
    ]
    kept.sort(key=lambda contraction: contraction.start_time)
    return kept


def compute_statistics(
    contractions: Iterable[Contraction],
    first_labour: bool,
    range: StatisticsRange,
    now: datetime,
) -> ContractionStatistics:
    """Compute the statistics of the contractions in `range` at `now`.

    `contractions` are all current contractions of the labour, in any order,
    and `first_labour` comes from the labour's latest plan. The count and the
    frequency include an active contraction (start_time == end_time), but the
    average duration uses completed contractions only. Only positive gaps count
    towards the frequency, so contractions that start together add no gap. The
    alert is computed over all contractions, not only those in the range.
    `now` must be timezone-aware, and `computed_at` is `now` in UTC.
    """
    all_contractions = list(contractions)
    in_range = _in_range(all_contractions, range, now)

    durations = [
        contraction.duration_seconds
        for contraction in in_range
        if not contraction.is_active
    ]
    intensities = [
        float(contraction.intensity)
        for contraction in in_range
        if contraction.intensity is not None
    ]
    gaps: list[float] = []
    for earlier, later in itertools.pairwise(in_range):
        gap = (later.start_time - earlier.start_time) / _ONE_SECOND
        if gap > 0:
            gaps.append(gap)

    return ContractionStatistics(
        range=range,
        contraction_count=len(in_range),
        average_duration=_mean(durations),
        average_intensity=_mean(intensities),
        average_frequency=_mean(gaps),
        alert=alert_for(all_contractions, first_labour, now),
        computed_at=to_utc(now),
    )


def _matches_pattern(
    newest_first: Sequence[Contraction], pattern: AlertPattern
) -> bool:
    """Return whether the newest `pattern.count` completed contractions are each
    long enough and start close enough to their neighbours."""
    if len(newest_first) < pattern.count:
        return False
    run = newest_first[: pattern.count]
    for contraction in run:
        if contraction.duration_seconds < pattern.min_duration_seconds:
            return False
    for newer, older in itertools.pairwise(run):
        gap = (newer.start_time - older.start_time) / _ONE_SECOND
        if gap > pattern.max_gap_seconds:
            return False
    return True


def _should_call_midwife(newest_first: Sequence[Contraction], now: datetime) -> bool:
    window = timedelta(seconds=CALL_MIDWIFE_WINDOW_SECONDS)
    recent_count = 0
    for contraction in newest_first:
        if contraction.duration_seconds > CALL_MIDWIFE_DURATION_SECONDS:
            return True
        if now - contraction.start_time <= window:
            recent_count += 1
    return recent_count >= CALL_MIDWIFE_RECENT_COUNT


def alert_for(
    contractions: Iterable[Contraction], first_labour: bool, now: datetime
) -> Alert | None:
    """Return the most urgent alert that the completed contractions raise at
    `now`, or None.

    Active contractions are ignored. The checks run in the order callMidwife,
    goToHospital, prepareForHospital, and the first that matches is returned.
    """
    newest_first = sorted(
        (contraction for contraction in contractions if not contraction.is_active),
        key=lambda contraction: contraction.start_time,
        reverse=True,
    )
    if _should_call_midwife(newest_first, now):
        return Alert.CALL_MIDWIFE

    if first_labour:
        go_to_hospital = GO_TO_HOSPITAL_FIRST_LABOUR
        prepare_for_hospital = PREPARE_FOR_HOSPITAL_FIRST_LABOUR
    else:
        go_to_hospital = GO_TO_HOSPITAL_LATER_LABOUR
        prepare_for_hospital = PREPARE_FOR_HOSPITAL_LATER_LABOUR
    if _matches_pattern(newest_first, go_to_hospital):
        return Alert.GO_TO_HOSPITAL
    if _matches_pattern(newest_first, prepare_for_hospital):
        return Alert.PREPARE_FOR_HOSPITAL
    return None
