"""Many labours, each receiving a few commands, with hibernation on.

Client tasks plan labours through the registry, in process, and send each
one BeginLabour and one or two PostLabourUpdate commands. Every labour then
hibernates `hibernate_after` seconds after its last command. The benchmark
runs in its own process (`python -m bench.many_labours`), so its peak
resident memory and its open files are those of this workload alone: the
peak RSS is the kernel's high-water mark (VmHWM), and open files are counted
in /proc/self/fd every few milliseconds while the clients run and once more
after every labour has hibernated.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from uuid6 import uuid7

from bench.runs import Mode, pick
from bench.throughput import MOTHER, command_request
from fernd.config import Settings
from fernd.domain import commands as cmd
from fernd.domain.enums import LabourUpdateType
from fernd.runtime.registry import LabourRegistry
from fernd.storage.shared_db import SharedDatabase

TITLE = "many labours with hibernation"
# Short, so labours hibernate while the run goes on and the number of open
# databases stays bounded by the rate of new labours.
HIBERNATE_AFTER_SECONDS = 0.5
# Seconds between two samples of open files, RSS and active labours.
SAMPLE_INTERVAL_SECONDS = 0.02
# Every labour hibernates within hibernate_after plus the time to write its
# closing snapshot, so this only bounds the wait for a stuck one.
HIBERNATION_TIMEOUT_SECONDS = 60.0


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _status_kib(field: str) -> int:
    """Return a memory field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _raise_open_file_limit() -> None:
    # Each active labour keeps its database, WAL and shared-memory files open.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Peaks:
    """Highest values seen by the sampler."""

    def __init__(self) -> None:
        self.open_files = 0
        self.active_labours = 0

    def sample(self, registry: LabourRegistry) -> None:
        self.open_files = max(self.open_files, _open_files())
        self.active_labours = max(self.active_labours, registry.active_count)


async def _sampler(registry: LabourRegistry, peaks: _Peaks) -> None:
    while True:
        peaks.sample(registry)
        await trio.sleep(SAMPLE_INTERVAL_SECONDS)


async def _expect_204(registry: LabourRegistry, command: cmd.Command) -> None:
    request = command_request(command)
    if isinstance(command, cmd.PlanLabour):
        outcome = await registry.plan(request)
    else:
        outcome = await registry.execute(command.labour_id, request)
    if outcome.status != 204:
        raise RuntimeError(f"{type(command).__name__} returned {outcome.status}")


async def _client(
    registry: LabourRegistry, indexes: Iterator[int], counts: list[int]
) -> None:
    """Take labour numbers from `indexes` until none is left, and send each
    labour its plan and commands: odd-numbered labours get a second update."""
    for index in indexes:
        labour_id = uuid7()
        commands: list[cmd.Command] = [
            cmd.PlanLabour(
                labour_id=labour_id,
                mother_id=MOTHER.user_id,
                mother_name="Bench Mother",
                first_labour=True,
                due_date=datetime.now(UTC),
            ),
            cmd.BeginLabour(labour_id=labour_id),
        ]
        for update in range(1 + index % 2):
            commands.append(
                cmd.PostLabourUpdate(
                    labour_id=labour_id,
                    labour_update_type=LabourUpdateType.STATUS_UPDATE,
                    message=f"update {index}-{update}",
                )
            )
        for command in commands:
            await _expect_204(registry, command)
        counts[0] += len(commands)


async def measure(labours: int, clients: int) -> dict[str, Any]:
    """Run the workload in a temporary data directory; return the row."""
    _raise_open_file_limit()
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(data_dir=directory, hibernate_after=HIBERNATE_AFTER_SECONDS)
        shared = SharedDatabase.open(Path(directory), settings.sqlite_synchronous)
        registry = LabourRegistry(settings, shared)
        peaks = _Peaks()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(registry.run)
                open_files_start = _open_files()
                rss_start = _status_kib("VmRSS")
                nursery.start_soon(_sampler, registry, peaks)

                counts = [0]
                indexes = iter(range(labours))
                started = trio.current_time()
                async with trio.open_nursery() as client_tasks:
                    for _ in range(clients):
                        client_tasks.start_soon(_client, registry, indexes, counts)
                elapsed = trio.current_time() - started
                peaks.sample(registry)

                with trio.fail_after(HIBERNATION_TIMEOUT_SECONDS):
                    while registry.active_count:
                        await trio.sleep(SAMPLE_INTERVAL_SECONDS)
                hibernated_after = trio.current_time() - started
                open_files_end = _open_files()
                rss_end = _status_kib("VmRSS")
                nursery.cancel_scope.cancel()
        finally:
            shared.close()
    return {
        "benchmark": TITLE,
        "labours": labours,
        "commands": counts[0],
        "clients": clients,
        "hibernate_after_s": HIBERNATE_AFTER_SECONDS,
        "commands_per_second": round(counts[0] / elapsed),
        "labours_per_second": round(labours / elapsed),
        "seconds_until_all_hibernated": round(hibernated_after, 1),
        "peak_active_labours": peaks.active_labours,
        "hibernations": registry.hibernations,
        "rss_start_mib": round(rss_start / 1024, 1),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "open_files_start": open_files_start,
        "open_files_peak": peaks.open_files,
        "open_files_end": open_files_end,
    }


def run(mode: Mode) -> dict[str, Any]:
    """Run the workload in a child process; return its row."""
    labours = pick(mode, full=10_000, quick=300, smoke=50)
    clients = pick(mode, full=64, quick=64, smoke=16)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.many_labours",
            "--labours",
            str(labours),
            "--clients",
            str(clients),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"bench.many_labours exited with {completed.returncode}:"
            f" {completed.stderr.strip()[-1000:]}"
        )
    row: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.many_labours", description=__doc__
    )
    parser.add_argument("--labours", type=int, default=10_000, help="labours to plan")
    parser.add_argument(
        "--clients", type=int, default=64, help="concurrent client tasks"
    )
    args = parser.parse_args()
    print(json.dumps(trio.run(measure, args.labours, args.clients)))


if __name__ == "__main__":
    main()
