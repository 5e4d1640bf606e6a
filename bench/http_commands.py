"""Commands over HTTP to one labour, beside the same stack with an empty
endpoint.

32 keep-alive clients send the command mix of the in-process benchmark as
`POST /api/v1/command` with a bearer token to a real `fernd serve`. The
reference, driven by the same load generator in the same run, is
bench/bare_app.py: quart-trio on hypercorn with fernd's hypercorn settings,
which replies to the same requests with an empty 204. The generator is wrk with
bench/wrk_commands.lua when wrk is installed (`make bench-deps`), otherwise
the worker processes of bench/httpload.py. Both run in their own processes,
but on a 2-core machine they share the cores with the server they drive.
"""

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.bare_app import SERVING_LINE
from bench.httpload import LoadResult, drive
from bench.runs import Mode, percentile, pick
from bench.server import BenchServer

TITLE = "commands over HTTP to one labour"
CONNECTIONS = 32
# Worker processes of the Python generator: one per core of a 2-core machine.
PYTHON_GENERATOR_PROCESSES = 2
WRK_SCRIPT = Path(__file__).parent / "wrk_commands.lua"
WRK_RESULT_PREFIX = "wrk-result "
# How long a starting reference server may take to print its address.
STARTUP_TIMEOUT_SECONDS = 30.0
COMMAND_PATH = "/api/v1/command"


def wrk_installed() -> bool:
    return shutil.which("wrk") is not None


class BareServer:
    """bench/bare_app.py in a subprocess on a free loopback port."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> "BareServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_app"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        assert self.process.stdout is not None
        # The app prints its address as soon as hypercorn listens.
        line = self.process.stdout.readline()
        if not line.startswith(SERVING_LINE):
            self.process.kill()
            raise RuntimeError(f"the reference app did not start: {line!r}")
        self.base_url = line.removeprefix(SERVING_LINE).strip()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _run_wrk(url: str, token: str, labour_id: str, seconds: float) -> LoadResult:
    """Run wrk with one thread per connection; return its counts."""
    completed = subprocess.run(
        [
            "wrk",
            f"-t{CONNECTIONS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            url,
            "--",
            token,
            labour_id,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    for line in completed.stdout.splitlines():
        if line.startswith(WRK_RESULT_PREFIX):
            report = json.loads(line.removeprefix(WRK_RESULT_PREFIX))
            return LoadResult(
                requests=report["requests"],
                seconds=report["duration_us"] / 1e6,
                status_errors=report["status_errors"],
                socket_errors=report["socket_errors"],
                latencies_ms=[report["p50_us"] / 1000, report["p99_us"] / 1000],
            )
    raise RuntimeError(
        f"wrk exited with {completed.returncode} and no result line:"
        f" {completed.stderr.strip()[-500:]}"
    )


def _generate(
    generator: str, url: str, token: str, labour_id: str, seconds: float
) -> LoadResult:
    if generator == "wrk":
        return _run_wrk(url, token, labour_id, seconds)
    return drive(
        url,
        token,
        labour_id,
        connections=CONNECTIONS,
        processes=PYTHON_GENERATOR_PROCESSES,
        seconds=seconds,
    )


def _begun_labour(server: BenchServer, token: str) -> str:
    """Plan and begin a labour on `server`; return its id."""
    headers = {"Authorization": f"Bearer {token}"}
    reply = httpx.post(
        f"{server.base_url}/api/v1/labour/plan",
        headers=headers,
        json={"first_labour": True, "due_date": "2026-12-20T00:00:00Z"},
    )
    reply.raise_for_status()
    labour_id = str(reply.json()["labour_id"])
    begin = {
        "type": "Labour",
        "payload": {"type": "BeginLabour", "payload": {"labour_id": labour_id}},
    }
    httpx.post(
        f"{server.base_url}{COMMAND_PATH}", headers=headers, json=begin
    ).raise_for_status()
    return labour_id


def _latency_ms(generator: str, result: LoadResult, fraction: float) -> float:
    if generator == "wrk":
        # wrk reports the percentiles itself: [p50, p99].
        return result.latencies_ms[0 if fraction == 0.5 else 1]
    return percentile(result.latencies_ms, fraction)


def _summary(generator: str, results: list[LoadResult]) -> dict[str, Any]:
    rates = [result.requests / result.seconds for result in results]
    middle = results[rates.index(statistics.median_low(rates))]
    return {
        "requests_per_second": round(statistics.median(rates)),
        "p50_ms": round(_latency_ms(generator, middle, 0.5), 1),
        "p99_ms": round(_latency_ms(generator, middle, 0.99), 1),
        "non_2xx": sum(result.status_errors for result in results),
        "socket_errors": sum(result.socket_errors for result in results),
    }


def run(mode: Mode, generator: str = "auto") -> dict[str, Any]:
    """Drive fernd and the reference in turn, the same number of runs each,
    and return one row with the medians. `generator` is "wrk", "python", or
    "auto" for wrk when it is installed."""
    seconds = pick(mode, full=10, quick=3, smoke=1)
    repeats = pick(mode, full=3, quick=1, smoke=1)
    if generator == "auto":
        generator = "wrk" if wrk_installed() else "python"

    fernd_results: list[LoadResult] = []
    bare_results: list[LoadResult] = []
    with BenchServer() as server, BareServer() as bare:
        token = server.token("bench-http-mother")
        for _ in range(repeats):
            labour_id = _begun_labour(server, token)
            fernd_results.append(
                _generate(
                    generator, server.base_url + COMMAND_PATH, token, labour_id, seconds
                )
            )
            bare_results.append(
                _generate(
                    generator, bare.base_url + COMMAND_PATH, token, labour_id, seconds
                )
            )
            time.sleep(0.5)

    fernd = _summary(generator, fernd_results)
    reference = _summary(generator, bare_results)
    if generator == "wrk":
        generator_text = f"wrk, {CONNECTIONS} threads of one connection each"
    else:
        generator_text = (
            f"Python, {PYTHON_GENERATOR_PROCESSES} processes,"
            f" {CONNECTIONS} connections in all"
        )

    return {
        "benchmark": TITLE,
        "connections": CONNECTIONS,
        "seconds_per_run": seconds,
        "runs": repeats,
        "fernd_commands_per_second": fernd["requests_per_second"],
        "fernd_p50_ms": fernd["p50_ms"],
        "fernd_p99_ms": fernd["p99_ms"],
        "fernd_non_2xx": fernd["non_2xx"],
        "reference": "empty 204, same stack and settings",
        "reference_requests_per_second": reference["requests_per_second"],
        "reference_p50_ms": reference["p50_ms"],
        "reference_p99_ms": reference["p99_ms"],
        "fernd_over_reference": round(
            fernd["requests_per_second"] / reference["requests_per_second"], 3
        ),
        "target": ">= 0.8 of the reference",
        "generator": generator_text,
        "socket_errors": fernd["socket_errors"] + reference["socket_errors"],
    }
