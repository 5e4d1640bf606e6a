"""The in-process command mix run on a peer, the `eventsourcing` library
(9.x) with its SQLite persistence, beside fernd on the same commands.

The peer's aggregate (bench/peer_app.py) enforces the rules the mix
exercises: a contraction starts only when none is active and its id is new,
ends only while it is active and with an intensity from 0 to 10, and a
status update's message is non-empty and at most 1,000 characters. Each
command is one `repository.get` and one `save`, so each command is its own
transaction, which is how the library records events. fernd runs the same
commands from 64 concurrent client tasks through the registry, which commits
them in batches up to the batch limit and writes its read models in the
same transaction.
"""

import importlib.metadata
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import trio
from uuid6 import uuid7

from bench.runs import Mode, pick
from bench.throughput import CLIENTS, begun_labour, command_request
from fernd.domain import commands as cmd
from fernd.domain.enums import LabourUpdateType
from fernd.runtime.registry import LabourRegistry

TITLE = "per-labour commands, fernd and the eventsourcing library"
CAPTION = (
    "Same commands and command mix on both, median of the same number of runs."
    " The peer (eventsourcing with eventsourcing.sqlite) runs the commands one at"
    " a time, each in its own transaction, which is how that library records"
    " events. fernd runs them from 64 concurrent client tasks and commits them in"
    " batches up to the batch limit, writing its read models in the same"
    " transaction. The library has no setting for PRAGMA synchronous, so the peer"
    " runs at SQLite's default (peer_synchronous, read from its connection) and"
    " fernd at the same setting."
)
# fernd's setting when the peer's default is one fernd does not offer.
FALLBACK_SYNCHRONOUS = "FULL"
BATCH_LIMITS = (1, 8, 64)
INTENSITY = 5


@dataclass(frozen=True)
class _Step:
    """One step of one client: a status update, or a contraction start and
    end when `contraction_id` is set."""

    client: int
    message: str
    contraction_id: UUID | None = None


def _client_steps(client: int, steps: int) -> Iterator[_Step]:
    """Yield the steps of one client: client 0 starts and ends a contraction
    on every even step, as in the deadline-bound in-process benchmark."""
    for step in range(steps):
        if client == 0 and step % 2 == 0:
            # A plain uuid.UUID: the library's JSON transcoder has no
            # transcoding for uuid6's UUID subclass.
            yield _Step(client, "", contraction_id=UUID(int=uuid7().int))
        else:
            yield _Step(client, f"update {client}-{step}")


def _command_count(steps: int) -> int:
    # A contraction step is two commands; client 0 has one every other step.
    return CLIENTS * steps + (steps + 1) // 2


def _peer_run(steps: int) -> dict[str, Any]:
    """Run every client's steps on the peer, one command at a time, the
    clients taking turns step by step. Return the rate and the synchronous
    setting the library's connection uses."""
    try:
        from bench.peer_app import open_peer
    except ModuleNotFoundError as error:
        raise RuntimeError(
            f"{error.name} is not installed: install the bench extra with"
            " `pip install -e '.[bench]'`, as `make bench` does"
        ) from error

    plans = [list(_client_steps(client, steps)) for client in range(CLIENTS)]
    with tempfile.TemporaryDirectory() as directory:
        application, synchronous = open_peer(Path(directory) / "peer.db")
        labour_id = application.plan("bench-mother")
        application.begin(labour_id)

        commands = 0
        started = time.perf_counter()
        for step in range(steps):
            for client_steps in plans:
                current = client_steps[step]
                if current.contraction_id is None:
                    application.post_status_update(labour_id, current.message)
                    commands += 1
                else:
                    application.start_contraction(labour_id, current.contraction_id)
                    application.end_contraction(
                        labour_id, current.contraction_id, INTENSITY
                    )
                    commands += 2
        elapsed = time.perf_counter() - started
        application.close()
    return {
        "commands": commands,
        "commands_per_second": commands / elapsed,
        "synchronous": synchronous,
    }


async def _fernd_client(
    registry: LabourRegistry, labour_id: UUID, steps: list[_Step]
) -> None:
    for current in steps:
        if current.contraction_id is None:
            command: cmd.Command = cmd.PostLabourUpdate(
                labour_id=labour_id,
                labour_update_type=LabourUpdateType.STATUS_UPDATE,
                message=current.message,
            )
        else:
            start = cmd.StartContraction(
                labour_id=labour_id, contraction_id=current.contraction_id
            )
            outcome = await registry.execute(labour_id, command_request(start))
            if outcome.status != 204:
                raise RuntimeError(f"StartContraction returned {outcome.status}")
            command = cmd.EndContraction(
                labour_id=labour_id,
                contraction_id=current.contraction_id,
                intensity=INTENSITY,
            )
        outcome = await registry.execute(labour_id, command_request(command))
        if outcome.status != 204:
            raise RuntimeError(f"{type(command).__name__} returned {outcome.status}")


async def _fernd_run(synchronous: str, batch_limit: int, steps: int) -> float:
    """Run every client's steps on fernd from concurrent client tasks;
    return commands per second."""
    plans = [list(_client_steps(client, steps)) for client in range(CLIENTS)]
    async with begun_labour(synchronous, batch_limit) as (registry, labour_id):
        started = trio.current_time()
        async with trio.open_nursery() as clients:
            for client_steps in plans:
                clients.start_soon(_fernd_client, registry, labour_id, client_steps)
        elapsed = trio.current_time() - started
    return _command_count(steps) / elapsed


def _peer_version() -> str:
    try:
        return importlib.metadata.version("eventsourcing")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def run(mode: Mode) -> list[dict[str, Any]]:
    """Measure the peer once per run and fernd at every batch limit; return
    one row per batch limit."""
    steps = pick(mode, full=155, quick=31, smoke=5)
    repeats = pick(mode, full=3, quick=1, smoke=1)
    peer_runs = [_peer_run(steps) for _ in range(repeats)]
    peer_rate = statistics.median(run["commands_per_second"] for run in peer_runs)
    peer_synchronous = peer_runs[0]["synchronous"]
    synchronous = (
        peer_synchronous
        if peer_synchronous in ("FULL", "NORMAL")
        else FALLBACK_SYNCHRONOUS
    )
    rows = []
    for batch_limit in BATCH_LIMITS:
        fernd_rate = statistics.median(
            trio.run(_fernd_run, synchronous, batch_limit, steps)
            for _ in range(repeats)
        )
        rows.append(
            {
                "benchmark": TITLE,
                "commands": _command_count(steps),
                "synchronous": synchronous,
                "peer_synchronous": peer_synchronous,
                "batch_limit": batch_limit,
                "fernd_commands_per_second": round(fernd_rate),
                "peer_commands_per_second": round(peer_rate),
                "fernd_over_peer": round(fernd_rate / peer_rate, 3),
                "runs": repeats,
                "peer": f"eventsourcing {_peer_version()}",
            }
        )
    return rows
