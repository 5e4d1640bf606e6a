"""`python -m bench --smoke` runs every benchmark at tiny sizes and writes
its JSON. No timing is asserted, because at these sizes the figures mean
nothing."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
# Every benchmark's title, the key of its rows in the JSON results.
BENCHMARK_TITLES = (
    "per-labour commands in process",
    "per-labour commands, fernd and the eventsourcing library",
    "commands over one WebSocket, pipelined",
    "re-activate a hibernated labour",
    "memory per open WebSocket (server RSS)",
    "command reply to push at every subscriber",
    "commands over HTTP to one labour",
    "many labours with hibernation",
)
# A smoke run takes under a minute on an idle 2-core machine; this leaves
# room for a busy one.
SMOKE_TIMEOUT_SECONDS = 280


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    results_dir = tmp_path_factory.mktemp("bench-results")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(results_dir)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr
    files = list(results_dir.glob("bench-*.json"))
    assert len(files) == 1, files
    return dict(json.loads(files[0].read_text()))


@pytest.mark.timeout(SMOKE_TIMEOUT_SECONDS + 20)
def test_smoke_run_records_mode_and_machine(smoke_results: dict[str, object]) -> None:
    assert smoke_results["mode"] == "smoke"
    assert isinstance(smoke_results["machine"], dict)


@pytest.mark.timeout(SMOKE_TIMEOUT_SECONDS + 20)
@pytest.mark.parametrize("title", BENCHMARK_TITLES)
def test_smoke_run_has_benchmark_rows(
    smoke_results: dict[str, object], title: str
) -> None:
    results = smoke_results["results"]
    assert isinstance(results, dict)
    rows = results.get(title)
    assert rows, f"no rows for {title!r}; titles: {list(results)}"
    errors = [row["error"] for row in rows if "error" in row]
    assert not errors, errors


@pytest.mark.timeout(SMOKE_TIMEOUT_SECONDS + 20)
def test_smoke_run_http_generator_matches_wrk(
    smoke_results: dict[str, object],
) -> None:
    results = smoke_results["results"]
    assert isinstance(results, dict)
    (row,) = results["commands over HTTP to one labour"]
    expected = "wrk" if shutil.which("wrk") else "Python"
    assert row["generator"].startswith(expected), row["generator"]
