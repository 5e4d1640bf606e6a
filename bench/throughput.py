"""Per-labour command throughput in process, through the real actor.

Client tasks send a mix of commands to one labour through the registry, so
every command goes through the inbox, group commit, per-labour projection and
the reply. The reference, measured in the same run, is raw apsw inserts of
the same event rows with the same synchronous setting, committed in batches
of the observed average batch size: the storage ceiling.
"""

import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import apsw
import trio
from uuid6 import uuid7

from bench.runs import Mode, pick
from fernd.config import Settings
from fernd.domain import commands as cmd
from fernd.domain.authorization import Caller
from fernd.domain.enums import LabourUpdateType
from fernd.domain.users import User
from fernd.runtime.messages import CommandRequest
from fernd.runtime.registry import LabourRegistry
from fernd.storage.shared_db import SharedDatabase

MOTHER = User(user_id="bench-mother", issuer="fernd", name="Bench Mother")
MOTHER_CALLER = Caller(user_id=MOTHER.user_id, issuer=MOTHER.issuer)
# Concurrent clients of the labour; enough to fill batches of 64.
CLIENTS = 64


def command_request(command: cmd.Command) -> CommandRequest:
    """Wrap `command` as a request of the benchmark's mother, sent now."""
    return CommandRequest(command, MOTHER, MOTHER_CALLER, datetime.now(UTC))


@asynccontextmanager
async def begun_labour(
    synchronous: str, batch_limit: int
) -> AsyncIterator[tuple[LabourRegistry, UUID]]:
    """Yield a running registry in a temporary data directory and the id of
    one labour planned and begun in it. The registry stops on exit."""
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            data_dir=directory,
            sqlite_synchronous=synchronous,  # type: ignore[arg-type]
            command_batch_limit=batch_limit,
            hibernate_after=3600.0,
        )
        shared = SharedDatabase.open(Path(directory), synchronous)
        registry = LabourRegistry(settings, shared)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(registry.run)
                labour_id = uuid7()
                plan = cmd.PlanLabour(
                    labour_id=labour_id,
                    mother_id=MOTHER.user_id,
                    mother_name="Bench Mother",
                    first_labour=True,
                    due_date=datetime.now(UTC),
                )
                await registry.plan(command_request(plan))
                await registry.execute(
                    labour_id, command_request(cmd.BeginLabour(labour_id=labour_id))
                )
                yield registry, labour_id
                nursery.cancel_scope.cancel()
        finally:
            shared.close()


async def _client(
    registry: LabourRegistry,
    labour_id: Any,
    index: int,
    deadline: float,
    counts: list[int],
) -> None:
    """Send commands until `deadline`: mostly status updates; client 0 also
    starts and ends contractions, so the contraction rules run too."""
    step = 0
    while trio.current_time() < deadline:
        if index == 0 and step % 2 == 0:
            contraction_id = uuid7()
            command: cmd.Command = cmd.StartContraction(
                labour_id=labour_id, contraction_id=contraction_id
            )
            await registry.execute(labour_id, command_request(command))
            command = cmd.EndContraction(
                labour_id=labour_id, contraction_id=contraction_id, intensity=5
            )
            counts[index] += 1
        else:
            command = cmd.PostLabourUpdate(
                labour_id=labour_id,
                labour_update_type=LabourUpdateType.STATUS_UPDATE,
                message=f"update {index}-{step}",
            )
        await registry.execute(labour_id, command_request(command))
        counts[index] += 1
        step += 1


async def _fernd_run(
    synchronous: str, batch_limit: int, seconds: float
) -> dict[str, float]:
    async with begun_labour(synchronous, batch_limit) as (registry, labour_id):
        counts = [0] * CLIENTS
        started = trio.current_time()
        deadline = started + seconds
        async with trio.open_nursery() as clients:
            for index in range(CLIENTS):
                clients.start_soon(
                    _client, registry, labour_id, index, deadline, counts
                )
        elapsed = trio.current_time() - started
        head = await registry.query(labour_id, lambda actor: actor.head)
    commands = sum(counts)
    return {"commands_per_second": commands / elapsed, "events": float(head or 0)}


def _raw_apsw(synchronous: str, batch: int, seconds: float) -> float:
    """Insert event rows of the same shape with raw apsw; return rows/s."""
    with tempfile.TemporaryDirectory() as directory:
        connection = apsw.Connection(str(Path(directory) / "raw.db"))
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute(
            "CREATE TABLE events (sequence INTEGER PRIMARY KEY, aggregate_id TEXT,"
            " event_type TEXT, event_data TEXT, event_version INTEGER,"
            " created_at TEXT, user_id TEXT)"
        )
        data = (
            '{"type":"LabourUpdatePosted","data":{"labour_id":"0190f5a2-7c3e-7a41-9b2d-'
            '5e8f1c2a3b4d","labour_update_id":"0190f5c0-2e41-7b9a-9c1d-7a3e5f2b8c60",'
            '"labour_update_type":"STATUS_UPDATE","message":"update 1-1",'
            '"application_generated":false,"sent_time":"2024-05-01T09:40:12Z"}}'
        )
        rows = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            with connection:
                for _ in range(batch):
                    rows += 1
                    connection.execute(
                        "INSERT INTO events VALUES (?, ?, ?, ?, 1, ?, ?)",
                        (
                            rows,
                            "0190f5a2",
                            "LabourUpdatePosted",
                            data,
                            "2024-05-01",
                            "u",
                        ),
                    )
        elapsed = time.perf_counter() - started
        connection.close()
    return rows / elapsed


def run(mode: Mode) -> list[dict[str, Any]]:
    """Measure every configuration; return one result row each."""
    seconds = pick(mode, full=3.0, quick=0.5, smoke=0.1)
    repeats = pick(mode, full=3, quick=1, smoke=1)
    results = []
    for synchronous in ("FULL", "NORMAL"):
        for batch_limit in (1, 8, 64):
            fernd_rates = [
                trio.run(_fernd_run, synchronous, batch_limit, seconds)[
                    "commands_per_second"
                ]
                for _ in range(repeats)
            ]
            raw_rates = [
                _raw_apsw(synchronous, batch_limit, seconds) for _ in range(repeats)
            ]
            fernd_rate = statistics.median(fernd_rates)
            raw_rate = statistics.median(raw_rates)
            results.append(
                {
                    "benchmark": "per-labour commands in process",
                    "synchronous": synchronous,
                    "batch_limit": batch_limit,
                    "fernd_commands_per_second": round(fernd_rate),
                    "reference": "raw apsw event inserts, same batch and synchronous",
                    "reference_rows_per_second": round(raw_rate),
                    "fernd_over_reference": round(fernd_rate / raw_rate, 3),
                    "runs": repeats,
                    "seconds_per_run": seconds,
                }
            )
    return results
