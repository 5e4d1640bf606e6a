"""Run sizes of the suite, and one benchmark run so that its failure becomes a
result row instead of stopping the suite."""

from collections.abc import Callable
from typing import Any, Literal, TypeVar

# full: the sizes behind the figures in BENCHMARKS.md. quick: small sizes and
# single runs, about two minutes in all. smoke: tiny sizes, a second or two each, that
# prove every benchmark still runs and writes its row.
Mode = Literal["full", "quick", "smoke"]
MODES: tuple[Mode, ...] = ("full", "quick", "smoke")

T = TypeVar("T")


def pick(mode: Mode, full: T, quick: T, smoke: T) -> T:
    """Return the value for `mode`."""
    return {"full": full, "quick": quick, "smoke": smoke}[mode]


def percentile(values: list[float], fraction: float) -> float:
    """Return the value at `fraction` (0 to 1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def guarded(
    name: str, measure: Callable[[Mode], Any], mode: Mode
) -> list[dict[str, Any]]:
    """Run one benchmark and return its rows. An exception becomes one row
    with the benchmark's name and an `error` field, so the suite goes on."""
    try:
        result = measure(mode)
    except Exception as error:  # a failure is reported and the suite goes on
        return [{"benchmark": name, "error": f"{type(error).__name__}: {error}"}]
    return result if isinstance(result, list) else [result]
