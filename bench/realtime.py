"""Real-time figures: WebSocket pipelining, re-activation of a hibernated
labour, memory per open socket and push fan-out latency.

The WebSocket benchmarks drive a real `fernd serve` subprocess from this
process with trio-websocket clients, over loopback.
"""

import json
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url
from uuid6 import uuid7

from bench.runs import Mode, guarded, percentile, pick
from bench.server import BenchServer
from bench.wsclient import pipelined_commands_per_second
from fernd.config import Settings
from fernd.domain import commands as cmd
from fernd.domain.authorization import Caller
from fernd.domain.enums import LabourUpdateType
from fernd.domain.users import User
from fernd.runtime.messages import CommandRequest
from fernd.runtime.registry import LabourRegistry
from fernd.storage.shared_db import SharedDatabase

SUBPROTOCOL_PREFIX = "base64url.bearer.authorization.fernlabour.com."
# Opening thousands of sockets at once overflows the listen backlog and the
# clients' connect timeouts; this many handshakes at a time keeps up.
HANDSHAKES_IN_FLIGHT = 64
CONNECT_TIMEOUT_SECONDS = 120


def _raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _plan(server: BenchServer, token: str) -> str:
    reply = httpx.post(
        f"{server.base_url}/api/v1/labour/plan",
        headers={"Authorization": f"Bearer {token}"},
        json={"first_labour": True, "due_date": "2026-12-20T00:00:00Z"},
    )
    reply.raise_for_status()
    return str(reply.json()["labour_id"])


def _socket_url(server: BenchServer, labour_id: str) -> str:
    return server.base_url.replace("http://", "ws://") + f"/api/v1/connect/{labour_id}"


def _update_message(labour_id: str, index: int) -> str:
    return json.dumps(
        {
            "correlation_id": str(index),
            "kind": "Command",
            "type": "LabourUpdate",
            "payload": {
                "type": "PostLabourUpdate",
                "payload": {
                    "labour_id": labour_id,
                    "labour_update_type": "STATUS_UPDATE",
                    "message": f"update {index}",
                },
            },
        }
    )


def websocket_pipelining(mode: Mode) -> dict[str, Any]:
    commands = pick(mode, full=5000, quick=1000, smoke=200)
    rates = []
    with BenchServer() as server:
        host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
        for _ in range(pick(mode, full=3, quick=1, smoke=1)):
            token = server.token("bench-ws-mother")
            labour_id = _plan(server, token)
            rates.append(
                pipelined_commands_per_second(
                    host, int(port), labour_id, token, commands
                )
            )
    return {
        "benchmark": "commands over one WebSocket, pipelined",
        "commands": commands,
        "commands_per_second": round(statistics.median(rates)),
        "client": "raw socket with wsproto, frames encoded before timing",
        "target": ">= 5000/s",
    }


async def _reactivation(events: int, samples: int) -> list[float]:
    user = User(user_id="bench-mother", issuer="fernd", name="Bench")
    caller = Caller(user_id=user.user_id, issuer=user.issuer)
    timings = []
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(data_dir=directory, hibernate_after=0.05)
        shared = SharedDatabase.open(Path(directory), "FULL")
        registry = LabourRegistry(settings, shared)
        async with trio.open_nursery() as nursery:
            await nursery.start(registry.run)
            labour_id = uuid7()
            now = datetime.now(UTC)
            plan = cmd.PlanLabour(
                labour_id=labour_id,
                mother_id=user.user_id,
                mother_name="Bench",
                first_labour=True,
                due_date=now,
            )
            await registry.plan(CommandRequest(plan, user, caller, now))
            while True:
                head = await registry.query(labour_id, lambda actor: actor.head)
                if head is None or head >= events:
                    break
                post = cmd.PostLabourUpdate(
                    labour_id=labour_id,
                    labour_update_type=LabourUpdateType.STATUS_UPDATE,
                    message="x" * 40,
                )
                await registry.execute(
                    labour_id, CommandRequest(post, user, caller, datetime.now(UTC))
                )
            for _ in range(samples):
                while registry.active_count:
                    await trio.sleep(0.01)
                started = time.perf_counter()
                async with registry.lease(labour_id) as actor:
                    assert actor is not None
                timings.append((time.perf_counter() - started) * 1000)
            nursery.cancel_scope.cancel()
        shared.close()
    return timings


def reactivation(mode: Mode) -> list[dict[str, Any]]:
    rows = []
    sizes = pick(mode, full=(100, 500, 5000), quick=(100, 500, 5000), smoke=(20, 50))
    for events in sizes:
        timings = trio.run(_reactivation, events, pick(mode, full=40, quick=5, smoke=3))
        rows.append(
            {
                "benchmark": "re-activate a hibernated labour",
                "events": events,
                "median_ms": round(statistics.median(timings), 2),
                "p99_ms": round(percentile(timings, 0.99), 2),
                "target": "< 5 ms median at 500 events",
            }
        )
    return rows


async def _hold_sockets(server: BenchServer, count: int) -> dict[str, Any]:
    token = server.token("bench-many-mother")
    labour_ids = [_plan(server, token) for _ in range(max(1, count // 1000))]
    before = server.rss_kib()
    opened = trio.Event()
    release = trio.Event()
    connected = 0

    handshakes = trio.CapacityLimiter(HANDSHAKES_IN_FLIGHT)

    async def hold(labour_id: str) -> None:
        nonlocal connected
        await handshakes.acquire()
        async with open_websocket_url(
            _socket_url(server, labour_id),
            subprotocols=[SUBPROTOCOL_PREFIX + token],
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ):
            handshakes.release()
            connected += 1
            if connected == count:
                opened.set()
            await release.wait()

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(hold, labour_ids[index % len(labour_ids)])
            if index % 200 == 199:
                await trio.sleep(0.05)
        with trio.fail_after(300):
            await opened.wait()
        await trio.sleep(1.0)
        after = server.rss_kib()
        release.set()
    return {
        "benchmark": "memory per open WebSocket (server RSS)",
        "sockets": count,
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "kib_per_socket": round((after - before) / count, 1),
    }


def socket_memory(mode: Mode) -> dict[str, Any]:
    _raise_file_limit()
    with BenchServer() as server:
        return trio.run(
            _hold_sockets, server, pick(mode, full=10000, quick=500, smoke=50)
        )


async def _fan_out(server: BenchServer, subscribers: int, rounds: int) -> list[float]:
    token = server.token("bench-fan-mother")
    labour_id = _plan(server, token)
    url = _socket_url(server, labour_id)
    arrivals: dict[int, list[float]] = {}
    ready = 0
    all_ready = trio.Event()
    done = trio.Event()

    async def listen(handshakes: trio.CapacityLimiter) -> None:
        nonlocal ready
        await handshakes.acquire()
        async with open_websocket_url(
            url,
            subprotocols=[SUBPROTOCOL_PREFIX + token],
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ) as socket:
            handshakes.release()
            ready += 1
            if ready == subscribers:
                all_ready.set()
            while not done.is_set():
                with trio.move_on_after(1):
                    message = json.loads(await socket.get_message())
                    if message.get("type") == "LabourUpdatePosted":
                        index = int(message["data"]["message"].split()[-1])
                        arrivals.setdefault(index, []).append(time.perf_counter())

    latencies = []
    handshakes = trio.CapacityLimiter(HANDSHAKES_IN_FLIGHT)
    async with trio.open_nursery() as nursery:
        for index in range(subscribers):
            nursery.start_soon(listen, handshakes)
            if index % 200 == 199:
                await trio.sleep(0.05)
        with trio.fail_after(120):
            await all_ready.wait()
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            for index in range(rounds):
                body = json.loads(_update_message(labour_id, index))
                del body["correlation_id"], body["kind"]
                await client.post("/api/v1/command", json=body)
                replied = time.perf_counter()
                with trio.move_on_after(10):
                    while len(arrivals.get(index, [])) < subscribers:
                        await trio.sleep(0.001)
                latencies += [
                    (arrival - replied) * 1000 for arrival in arrivals.get(index, [])
                ]
                await trio.sleep(0.05)
        done.set()
    return latencies


def fan_out(mode: Mode) -> dict[str, Any]:
    _raise_file_limit()
    subscribers = pick(mode, full=1000, quick=100, smoke=10)
    with BenchServer() as server:
        latencies = trio.run(
            _fan_out, server, subscribers, pick(mode, full=30, quick=5, smoke=2)
        )
    return {
        "benchmark": "command reply to push at every subscriber",
        "subscribers": subscribers,
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "target": "p99 < 100 ms at 1000 subscribers",
        "note": "clients run in the benchmark process, on the same 2 cores",
    }


def run(mode: Mode) -> list[dict[str, Any]]:
    return [
        *guarded("commands over one WebSocket, pipelined", websocket_pipelining, mode),
        *guarded("re-activate a hibernated labour", reactivation, mode),
        *guarded("memory per open WebSocket (server RSS)", socket_memory, mode),
        *guarded("command reply to push at every subscriber", fan_out, mode),
    ]
