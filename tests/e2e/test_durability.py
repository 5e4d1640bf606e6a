"""Durability over real process restarts.

A command acknowledged with 204 is on disk before the reply, so it survives
SIGKILL. A SIGTERM restart loses nothing. Work still pending at a crash, such
as the share token of a new labour, resumes after the restart.
"""

import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import FerndServer
from tests.e2e.helpers import (
    all_contractions,
    all_labour_updates,
    ask,
    expect_status,
    join,
    new_id,
    plan_labour,
    send,
    share_token,
    subscriptions,
)

BURST_SIZE = 50
# Threads that send the burst; each command is still acknowledged on its own.
BURST_THREADS = 10
# Labours planned right before a kill, so some share tokens are still pending.
PENDING_LABOURS = 5


def _mother(server: FerndServer) -> str:
    return server.token("durable-mother", name="Alex Morgan")


def test_acknowledged_command_survives_kill(fresh_server: FerndServer) -> None:
    fresh_server.start()
    contraction_id = new_id()
    with fresh_server.client(_mother(fresh_server)) as mother:
        labour_id = plan_labour(mother)
        reply = send(
            mother,
            "Contraction",
            "StartContraction",
            labour_id=labour_id,
            contraction_id=contraction_id,
            start_time="2024-05-01T10:00:02.75Z",
        )
        assert reply.status_code == 204
    fresh_server.kill()

    fresh_server.start()
    with fresh_server.client(_mother(fresh_server)) as mother:
        reply = ask(
            mother,
            "Contraction",
            "GetContractionById",
            labour_id=labour_id,
            contraction_id=contraction_id,
        )
    assert reply.status_code == 200
    assert reply.json()["duration"]["start_time"] == "2024-05-01T10:00:02.750000Z"


def test_labour_continues_after_kill(fresh_server: FerndServer) -> None:
    fresh_server.start()
    contraction_id = new_id()
    with fresh_server.client(_mother(fresh_server)) as mother:
        labour_id = plan_labour(mother)
        reply = send(
            mother,
            "Contraction",
            "StartContraction",
            labour_id=labour_id,
            contraction_id=contraction_id,
        )
        expect_status(reply, 204)
    fresh_server.kill()

    fresh_server.start()
    with fresh_server.client(_mother(fresh_server)) as mother:
        # The contraction is still active after the restart, so it can end.
        reply = send(
            mother,
            "Contraction",
            "EndContraction",
            labour_id=labour_id,
            contraction_id=contraction_id,
            intensity=6,
        )
        assert reply.status_code == 204
        rows = all_contractions(mother, labour_id)
    assert [row["intensity"] for row in rows] == [6]


def test_acknowledged_burst_survives_kill(fresh_server: FerndServer) -> None:
    fresh_server.start()
    token = _mother(fresh_server)
    with fresh_server.client(token) as mother:
        labour_id = plan_labour(mother)
    messages = [f"burst {index:02d}" for index in range(BURST_SIZE)]

    def post(batch: list[str]) -> list[int]:
        statuses = []
        with fresh_server.client(token) as client:
            for message in batch:
                reply = send(
                    client,
                    "LabourUpdate",
                    "PostLabourUpdate",
                    labour_id=labour_id,
                    labour_update_type="STATUS_UPDATE",
                    message=message,
                )
                statuses.append(reply.status_code)
        return statuses

    batches = [messages[index::BURST_THREADS] for index in range(BURST_THREADS)]
    with ThreadPoolExecutor(BURST_THREADS) as pool:
        statuses = [status for result in pool.map(post, batches) for status in result]
    fresh_server.kill()
    assert statuses == [204] * BURST_SIZE

    fresh_server.start()
    with fresh_server.client(token) as mother:
        rows = all_labour_updates(mother, labour_id)
    assert sorted(row["message"] for row in rows) == messages


def test_idempotency_record_survives_kill(fresh_server: FerndServer) -> None:
    fresh_server.start()
    token = _mother(fresh_server)

    def post(client: httpx.Client, labour_id: str) -> httpx.Response:
        return send(
            client,
            "LabourUpdate",
            "PostLabourUpdate",
            key="before-kill",
            labour_id=labour_id,
            labour_update_type="STATUS_UPDATE",
            message="Once",
        )

    with fresh_server.client(token) as mother:
        labour_id = plan_labour(mother)
        expect_status(post(mother, labour_id), 204)
    fresh_server.kill()

    fresh_server.start()
    with fresh_server.client(token) as mother:
        reply = post(mother, labour_id)
        rows = all_labour_updates(mother, labour_id)
    assert reply.headers.get("Idempotency-Replayed") == "true"
    assert len(rows) == 1


def _read_models(server: FerndServer, token: str, labour_id: str) -> dict[str, Any]:
    with server.client(token) as mother:
        views = {
            name: expect_status(
                ask(mother, group, name, labour_id=labour_id), 200
            ).json()
            for group, name in [
                ("Labour", "GetLabour"),
                ("Contraction", "GetContractions"),
                ("LabourUpdate", "GetLabourUpdates"),
                ("Subscription", "GetLabourSubscriptions"),
                ("Subscription", "GetSubscriptionToken"),
                ("User", "GetUsers"),
            ]
        }
        views["history"] = mother.get("/api/v1/labour/history").json()
    return views


def test_sigterm_restart_keeps_everything(fresh_server: FerndServer) -> None:
    fresh_server.start()
    token = _mother(fresh_server)
    with fresh_server.client(token) as mother:
        labour_id = plan_labour(mother, labour_name="Baby T")
        join(fresh_server, mother, labour_id, "durable-friend", name="Pat")
        for index in range(3):
            contraction_id = new_id()
            for name, extra in [
                ("StartContraction", {}),
                ("EndContraction", {"intensity": index + 4}),
            ]:
                reply = send(
                    mother,
                    "Contraction",
                    name,
                    labour_id=labour_id,
                    contraction_id=contraction_id,
                    **extra,
                )
                expect_status(reply, 204)
        reply = send(
            mother,
            "LabourUpdate",
            "PostLabourUpdate",
            labour_id=labour_id,
            labour_update_type="ANNOUNCEMENT",
            message="Not long now",
        )
        expect_status(reply, 204)
    before = _read_models(fresh_server, token, labour_id)

    fresh_server.restart()
    after = _read_models(fresh_server, token, labour_id)
    assert after == before


def test_sigterm_exits_cleanly(fresh_server: FerndServer) -> None:
    fresh_server.start()
    with fresh_server.client(_mother(fresh_server)) as mother:
        plan_labour(mother)
    assert fresh_server.stop(signal.SIGTERM) == 0


def test_share_token_arrives_after_kill(fresh_server: FerndServer) -> None:
    fresh_server.start()
    token = _mother(fresh_server)
    with fresh_server.client(token) as mother:
        labour_ids = [plan_labour(mother) for _ in range(PENDING_LABOURS)]
    # No wait: the process manager may not have set every token yet.
    fresh_server.kill()

    fresh_server.start()
    with fresh_server.client(token) as mother:
        tokens = [share_token(mother, labour_id) for labour_id in labour_ids]
    assert all(len(code) == 8 for code in tokens)


def test_subscription_after_restart(fresh_server: FerndServer) -> None:
    fresh_server.start()
    token = _mother(fresh_server)
    with fresh_server.client(token) as mother:
        labour_id = plan_labour(mother)
    fresh_server.kill()

    fresh_server.start()
    with fresh_server.client(token) as mother:
        member = join(fresh_server, mother, labour_id, "late-friend")
        rows = subscriptions(mother, labour_id)
    assert [row["subscription_id"] for row in rows] == [member.subscription_id]
    assert rows[0]["status"] == "SUBSCRIBED"
