"""Hibernation against a real server whose labours hibernate after 20 ms idle.

A hibernated labour has no actor and no open database, but its WebSockets
stay open in the SocketHub. Any command, query or socket message wakes it
again, and clients never see the difference.
"""

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import FerndServer
from tests.e2e.helpers import join, plan_labour, share_token, unique_user
from tests.e2e.ws_helpers import (
    Session,
    async_ask,
    async_client,
    async_send,
    every_labour_update,
    fetch_metrics,
    open_session,
)

ADMIN_USER_ID = "hibernation-admin"
# Idle time before a labour hibernates, in seconds: short enough that a test
# can make a labour hibernate hundreds of times within seconds.
HIBERNATE_AFTER_SECONDS = 0.02
# How long a test waits for a labour to hibernate, in seconds.
HIBERNATE_TIMEOUT_SECONDS = 5.0
# Stress run: waves of commands, one command per sender per wave.
STRESS_WAVES = 250
STRESS_HTTP_SENDERS = 3
STRESS_SOCKET_SENDERS = 3
# Each sender waits a random time up to this before its command of a wave,
# so commands land while the labour is idle, closing or activating.
STRESS_MAX_OFFSET_SECONDS = 0.02
# Pause between waves, in seconds, so the labour often has time to hibernate.
STRESS_PAUSE_SECONDS = (0.005, 0.035)
# The stress run takes about 15 s on a 2-core machine; this bounds a hang.
STRESS_TIME_LIMIT_SECONDS = 30.0
# After the last command is acknowledged, the watching socket must have every
# push within this many seconds.
PUSH_DEADLINE_SECONDS = 5.0
# The stress run must make the labour hibernate at least this often; runs on
# a 2-core machine gave 190 to 234.
STRESS_MIN_HIBERNATIONS = 100
# Open files the server may hold above its count before the stress run, as
# slack for connections that are still closing.
FD_SLACK = 3


@pytest.fixture(scope="module")
def sleepy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    """A server whose labours hibernate almost as soon as they are idle."""
    server = FerndServer(
        tmp_path_factory.mktemp("fernd-hibernation") / "data",
        env={
            "FERND_HIBERNATE_AFTER": str(HIBERNATE_AFTER_SECONDS),
            "FERND_ADMIN_USER_IDS": ADMIN_USER_ID,
        },
    )
    server.start()
    yield server
    server.stop()


def new_labour(server: FerndServer) -> tuple[str, str]:
    """Plan a labour for a new mother; return her token and the labour id."""
    token = server.token(unique_user("mum"), name="Alex Morgan")
    with server.client(token) as client:
        labour_id = plan_labour(client)
        share_token(client, labour_id)
    return token, labour_id


async def wait_hibernated(
    server: FerndServer, after: dict[str, int] | None = None
) -> dict[str, int]:
    """Wait until no labour is active and, when `after` is given, at least one
    hibernation happened since those metrics were taken; return the metrics."""
    admin = server.token(ADMIN_USER_ID)
    with trio.fail_after(HIBERNATE_TIMEOUT_SECONDS):
        while True:
            metrics = await fetch_metrics(server, admin)
            if metrics["active_labours"] == 0 and (
                after is None or metrics["hibernations"] > after["hibernations"]
            ):
                return metrics
            await trio.sleep(HIBERNATE_AFTER_SECONDS)


async def metrics_now(server: FerndServer) -> dict[str, int]:
    return await fetch_metrics(server, server.token(ADMIN_USER_ID))


def post_update(labour_id: str, message: str) -> dict[str, Any]:
    return {
        "labour_id": labour_id,
        "labour_update_type": "STATUS_UPDATE",
        "message": message,
    }


def open_files(server: FerndServer) -> int:
    assert server.process is not None
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def sequences_consecutive(pushes: list[dict[str, Any]]) -> bool:
    numbers = [push["sequence"] for push in pushes]
    return numbers == list(range(numbers[0], numbers[0] + len(numbers)))


async def test_socket_receives_pushes_across_hibernations(
    sleepy_server: FerndServer,
) -> None:
    token, labour_id = new_labour(sleepy_server)
    start = await metrics_now(sleepy_server)
    async with (
        open_session(sleepy_server, labour_id, token) as watcher,
        async_client(sleepy_server, token) as http,
    ):
        metrics = start
        for round_number in range(3):
            metrics = await wait_hibernated(sleepy_server, metrics)
            reply = await async_send(
                http,
                "LabourUpdate",
                "PostLabourUpdate",
                **post_update(labour_id, f"after sleep {round_number}"),
            )
            assert reply.status_code == 204
            push = await watcher.next_push()
            assert push["data"]["message"] == f"after sleep {round_number}"
        end = await wait_hibernated(sleepy_server, metrics)
    assert end["hibernations"] >= start["hibernations"] + 4
    assert end["activations"] >= start["activations"] + 3
    assert sequences_consecutive(watcher.pushes)


async def _wake_by_http_command(
    http: httpx.AsyncClient, session: Session, labour_id: str
) -> None:
    payload = post_update(labour_id, "woken")
    reply = await async_send(http, "LabourUpdate", "PostLabourUpdate", **payload)
    assert reply.status_code == 204, reply.text


async def _wake_by_http_query(
    http: httpx.AsyncClient, session: Session, labour_id: str
) -> None:
    reply = await async_ask(http, "Labour", "GetLabour", labour_id=labour_id)
    assert reply.status_code == 200, reply.text
    assert reply.json()["labour_id"] == labour_id


async def _wake_by_socket_query(
    http: httpx.AsyncClient, session: Session, labour_id: str
) -> None:
    reply = await session.query("Labour", "GetLabour", labour_id=labour_id)
    assert reply["success"] is True, reply
    assert reply["data"]["labour_id"] == labour_id


async def _wake_by_socket_command(
    http: httpx.AsyncClient, session: Session, labour_id: str
) -> None:
    payload = post_update(labour_id, "woken")
    reply = await session.command("LabourUpdate", "PostLabourUpdate", **payload)
    assert reply["success"] is True, reply


WAKERS = {
    "http_command": _wake_by_http_command,
    "http_query": _wake_by_http_query,
    "socket_query": _wake_by_socket_query,
    "socket_command": _wake_by_socket_command,
}


@pytest.mark.parametrize("waker", list(WAKERS))
async def test_request_wakes_hibernated_labour(
    sleepy_server: FerndServer, waker: str
) -> None:
    token, labour_id = new_labour(sleepy_server)
    async with (
        open_session(sleepy_server, labour_id, token) as session,
        async_client(sleepy_server, token) as http,
    ):
        asleep = await wait_hibernated(sleepy_server)
        await WAKERS[waker](http, session, labour_id)
        awake = await metrics_now(sleepy_server)
    assert awake["activations"] > asleep["activations"]


async def test_concurrent_clients_across_hundreds_of_hibernations(
    sleepy_server: FerndServer,
) -> None:
    mother_token, labour_id = new_labour(sleepy_server)
    with sleepy_server.client(mother_token) as mother:
        partners = [
            join(
                sleepy_server,
                mother,
                labour_id,
                unique_user("partner"),
                role="BIRTH_PARTNER",
            )
            for _ in range(STRESS_SOCKET_SENDERS)
        ]
    http_tokens = [mother_token, *(p.token for p in partners)][:STRESS_HTTP_SENDERS]
    start = await wait_hibernated(sleepy_server)
    files_before = open_files(sleepy_server)
    log_offset = len(sleepy_server.log())
    acknowledged: list[str] = []
    failures: list[Any] = []
    rng = random.Random(20240503)

    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(
            open_session(sleepy_server, labour_id, mother_token)
        )
        http_clients = [
            await stack.enter_async_context(async_client(sleepy_server, token))
            for token in http_tokens
        ]
        sockets = [
            await stack.enter_async_context(
                open_session(sleepy_server, labour_id, partner.token)
            )
            for partner in partners
        ]

        async def send_over_http(client: httpx.AsyncClient, message: str) -> None:
            reply = await async_send(
                client,
                "LabourUpdate",
                "PostLabourUpdate",
                **post_update(labour_id, message),
            )
            if reply.status_code == 204:
                acknowledged.append(message)
            else:
                failures.append((message, reply.status_code, reply.text))

        async def send_over_socket(session: Session, message: str) -> None:
            reply = await session.command(
                "LabourUpdate", "PostLabourUpdate", **post_update(labour_id, message)
            )
            if reply["success"]:
                acknowledged.append(message)
            else:
                failures.append((message, reply))

        async def sender(index: int, wave: int, delay: float) -> None:
            await trio.sleep(delay)
            message = f"wave {wave} sender {index}"
            if index < STRESS_HTTP_SENDERS:
                await send_over_http(http_clients[index], message)
            else:
                await send_over_socket(sockets[index - STRESS_HTTP_SENDERS], message)

        started = time.monotonic()
        senders = STRESS_HTTP_SENDERS + STRESS_SOCKET_SENDERS
        for wave in range(STRESS_WAVES):
            async with trio.open_nursery() as nursery:
                for index in range(senders):
                    delay = rng.uniform(0, STRESS_MAX_OFFSET_SECONDS)
                    nursery.start_soon(sender, index, wave, delay)
            await trio.sleep(rng.uniform(*STRESS_PAUSE_SECONDS))
        elapsed = time.monotonic() - started

        with trio.fail_after(PUSH_DEADLINE_SECONDS):
            while len(watcher.pushes) < len(acknowledged):
                await watcher.receive()
        updates = await every_labour_update(http_clients[0], labour_id)

    end = await wait_hibernated(sleepy_server, start)
    assert failures == []
    assert len(acknowledged) == STRESS_WAVES * senders
    stored = Counter(update["message"] for update in updates)
    assert stored == Counter(acknowledged)
    assert sequences_consecutive(watcher.pushes)
    pushed = Counter(push["data"]["message"] for push in watcher.pushes)
    assert pushed == Counter(acknowledged)
    hibernations = end["hibernations"] - start["hibernations"]
    assert hibernations >= STRESS_MIN_HIBERNATIONS, (hibernations, elapsed)
    assert elapsed < STRESS_TIME_LIMIT_SECONDS

    with trio.move_on_after(HIBERNATE_TIMEOUT_SECONDS):
        while open_files(sleepy_server) > files_before + FD_SLACK:
            await trio.sleep(0.05)
    assert open_files(sleepy_server) <= files_before + FD_SLACK
    new_log = sleepy_server.log()[log_offset:]
    assert "Traceback" not in new_log
    assert " ERROR " not in new_log
