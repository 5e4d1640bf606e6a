"""The Idempotency-Key header of `/api/v1/command` and `/api/v1/labour/plan`.

A key is scoped to the caller and the labour (to the caller alone for the plan
route). Repeating it with the same command returns the recorded status and
body with `Idempotency-Replayed: true` and appends nothing; repeating it with
another command is a 400. Successes and the failures of authorization and of
the command's preconditions are recorded. Malformed requests, the invite rate
limit and an unknown labour are not recorded, so they can be retried with the
key.
"""

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import FerndServer
from tests.e2e.helpers import (
    all_contractions,
    all_labour_updates,
    denied,
    error,
    eventually,
    expect_status,
    join,
    new_id,
    plan_labour,
    send,
    tagged,
    unique_user,
)

REPLAYED = "Idempotency-Replayed"
REUSED_MESSAGE = "Idempotency key reused with a different command"
# Invites allowed per labour in any 24 hours; the next one is rate limited.
INVITE_LIMIT = 10
CONCURRENT_REQUESTS = 20
# The maximum key length; one more character makes a key invalid.
MAX_KEY_LENGTH = 255


@dataclass
class Labour:
    """A freshly planned labour and an open client of its mother."""

    server: FerndServer
    labour_id: str
    mother_token: str
    mother: httpx.Client

    def post(self, message: str, key: str | None, **extra: Any) -> httpx.Response:
        return send(
            self.mother,
            "LabourUpdate",
            "PostLabourUpdate",
            key=key,
            labour_id=self.labour_id,
            labour_update_type="STATUS_UPDATE",
            message=message,
            **extra,
        )

    def start(self, contraction_id: str, key: str | None = None) -> httpx.Response:
        return send(
            self.mother,
            "Contraction",
            "StartContraction",
            key=key,
            labour_id=self.labour_id,
            contraction_id=contraction_id,
        )

    def end(self, contraction_id: str, key: str | None = None) -> httpx.Response:
        return send(
            self.mother,
            "Contraction",
            "EndContraction",
            key=key,
            labour_id=self.labour_id,
            contraction_id=contraction_id,
            intensity=5,
        )


@pytest.fixture
def labour(fernd_server: FerndServer) -> Iterator[Labour]:
    token = fernd_server.token(unique_user("idem-mother"), name="Alex Morgan")
    with fernd_server.client(token) as mother:
        yield Labour(fernd_server, plan_labour(mother), token, mother)


# Repeats of one command


def test_repeat_key_replays_success(labour: Labour) -> None:
    first = labour.post("Waters broke", key="post-1")
    second = labour.post("Waters broke", key="post-1")
    assert first.status_code == 204
    assert REPLAYED not in first.headers
    assert second.status_code == 204
    assert second.content == first.content
    assert second.headers[REPLAYED] == "true"


def test_repeat_key_appends_no_update(labour: Labour) -> None:
    for _ in range(3):
        expect_status(labour.post("Waters broke", key="post-1"), 204)
    messages = [
        row["message"] for row in all_labour_updates(labour.mother, labour.labour_id)
    ]
    assert messages == ["Waters broke"]


def test_repeat_key_start_contraction_once(labour: Labour) -> None:
    contraction_id = new_id()
    first = labour.start(contraction_id, key="start-1")
    # Without the key this repeat would fail: a contraction is in progress.
    second = labour.start(contraction_id, key="start-1")
    assert first.status_code == 204
    assert second.status_code == 204
    assert second.headers[REPLAYED] == "true"
    assert len(all_contractions(labour.mother, labour.labour_id)) == 1


def test_repeat_key_null_equals_omitted(labour: Labour) -> None:
    contraction_id = new_id()
    expect_status(labour.start(contraction_id, key="start-null"), 204)
    second = send(
        labour.mother,
        "Contraction",
        "StartContraction",
        key="start-null",
        labour_id=labour.labour_id,
        contraction_id=contraction_id,
        start_time=None,
    )
    assert second.status_code == 204
    assert second.headers[REPLAYED] == "true"


def test_key_reused_different_command(labour: Labour) -> None:
    expect_status(labour.post("Waters broke", key="shared"), 204)
    reply = labour.start(new_id(), key="shared")
    assert reply.status_code == 400
    assert reply.json() == error(REUSED_MESSAGE, "invalid_request")
    assert all_contractions(labour.mother, labour.labour_id) == []


def test_key_reused_different_field(labour: Labour) -> None:
    expect_status(labour.post("Waters broke", key="shared"), 204)
    reply = labour.post("Contractions started", key="shared")
    assert reply.status_code == 400
    assert reply.json() == error(REUSED_MESSAGE, "invalid_request")
    assert len(all_labour_updates(labour.mother, labour.labour_id)) == 1


# Scope of a key


def test_key_scoped_per_user(labour: Labour) -> None:
    partner = join(
        labour.server,
        labour.mother,
        labour.labour_id,
        unique_user("idem-partner"),
        role="BIRTH_PARTNER",
    )
    expect_status(labour.post("Same words", key="scoped"), 204)
    with labour.server.client(partner.token) as client:
        reply = send(
            client,
            "LabourUpdate",
            "PostLabourUpdate",
            key="scoped",
            labour_id=labour.labour_id,
            labour_update_type="STATUS_UPDATE",
            message="Same words",
        )
    assert reply.status_code == 204
    assert REPLAYED not in reply.headers
    assert len(all_labour_updates(labour.mother, labour.labour_id)) == 2


def test_key_scoped_per_labour(labour: Labour) -> None:
    other_id = plan_labour(labour.mother)
    expect_status(labour.post("Same words", key="scoped"), 204)
    reply = send(
        labour.mother,
        "LabourUpdate",
        "PostLabourUpdate",
        key="scoped",
        labour_id=other_id,
        labour_update_type="STATUS_UPDATE",
        message="Same words",
    )
    assert reply.status_code == 204
    assert REPLAYED not in reply.headers
    assert len(all_labour_updates(labour.mother, other_id)) == 1


# Recorded failures


def test_recorded_conflict_replayed(labour: Labour) -> None:
    active_id = new_id()
    waiting_id = new_id()
    expect_status(labour.start(active_id), 204)
    first = labour.start(waiting_id, key="conflict")
    assert first.status_code == 409
    expect_status(labour.end(active_id), 204)
    # The contraction could start now, but the key returns the recorded 409.
    second = labour.start(waiting_id, key="conflict")
    assert second.status_code == 409
    assert second.json() == first.json()
    assert second.headers[REPLAYED] == "true"
    assert len(all_contractions(labour.mother, labour.labour_id)) == 1


def test_recorded_not_found_replayed(labour: Labour) -> None:
    contraction_id = new_id()
    first = labour.end(contraction_id, key="missing")
    assert first.status_code == 404
    assert first.json() == error(
        "Domain error: Invalid command: Contraction not found", "not_found"
    )
    expect_status(labour.start(contraction_id), 204)
    second = labour.end(contraction_id, key="missing")
    assert second.status_code == 404
    assert second.json() == first.json()
    assert second.headers[REPLAYED] == "true"
    assert all_contractions(labour.mother, labour.labour_id)[0]["intensity"] is None


def test_recorded_validation_error_replayed(labour: Labour) -> None:
    first = labour.post("   ", key="blank")
    second = labour.post("   ", key="blank")
    assert first.status_code == 400
    assert first.json() == error(
        "Domain error: Validation error: Message cannot be empty", "validation_error"
    )
    assert second.status_code == 400
    assert second.json() == first.json()
    assert second.headers[REPLAYED] == "true"


def test_recorded_forbidden_replayed(labour: Labour) -> None:
    member = join(
        labour.server, labour.mother, labour.labour_id, unique_user("idem-aunt")
    )
    body = {"labour_update_type": "STATUS_UPDATE", "message": "Hi"}
    with labour.server.client(member.token) as aunt:
        first = send(
            aunt,
            "LabourUpdate",
            "PostLabourUpdate",
            key="denied",
            labour_id=labour.labour_id,
            **body,
        )
        assert first.status_code == 403
        assert first.json() == denied(
            "Missing required capability: ExecuteLabourCommand"
        )
        promote = send(
            labour.mother,
            "Subscription",
            "UpdateSubscriberRole",
            labour_id=labour.labour_id,
            subscription_id=member.subscription_id,
            role="BIRTH_PARTNER",
        )
        expect_status(promote, 204)
        second = send(
            aunt,
            "LabourUpdate",
            "PostLabourUpdate",
            key="denied",
            labour_id=labour.labour_id,
            **body,
        )
    assert second.status_code == 403
    assert second.json() == first.json()
    assert second.headers[REPLAYED] == "true"
    assert all_labour_updates(labour.mother, labour.labour_id) == []


# Failures that are not recorded


def test_invalid_request_not_recorded(labour: Labour) -> None:
    malformed = send(
        labour.mother,
        "LabourUpdate",
        "PostLabourUpdate",
        key="retry",
        labour_id=labour.labour_id,
        labour_update_type="STATUS_UPDATE",
    )
    assert malformed.status_code == 400
    assert malformed.json() == error("Failed to parse request body", "invalid_request")
    reply = labour.post("Now complete", key="retry")
    assert reply.status_code == 204
    assert REPLAYED not in reply.headers
    assert len(all_labour_updates(labour.mother, labour.labour_id)) == 1


def test_rate_limited_not_recorded(labour: Labour) -> None:
    def invite(key: str | None) -> httpx.Response:
        return send(
            labour.mother,
            "Labour",
            "SendLabourInvite",
            key=key,
            labour_id=labour.labour_id,
            invite_email="friend@example.org",
        )

    for _ in range(INVITE_LIMIT):
        expect_status(invite(None), 204)
    first = invite("invite-11")
    second = invite("invite-11")
    message = (
        "Domain error: Rate limit exceeded: Too many invites sent, try again later"
    )
    assert first.status_code == 429
    assert first.json() == error(message, "rate_limited")
    assert 0 < int(first.headers["Retry-After"]) <= 86400
    assert second.status_code == 429
    assert REPLAYED not in second.headers
    assert "Retry-After" in second.headers


def test_labour_not_found_not_recorded(labour: Labour) -> None:
    labour_id = new_id()
    contraction_id = new_id()

    def start() -> httpx.Response:
        return send(
            labour.mother,
            "Contraction",
            "StartContraction",
            key="early",
            labour_id=labour_id,
            contraction_id=contraction_id,
        )

    first = start()
    assert first.status_code == 404
    assert first.json() == error("Labour not found", "not_found")
    planned = send(
        labour.mother,
        "Labour",
        "PlanLabour",
        labour_id=labour_id,
        first_labour=True,
        due_date="2024-05-03T00:00:00Z",
    )
    expect_status(planned, 204)
    second = start()
    assert second.status_code == 204
    assert REPLAYED not in second.headers
    assert len(all_contractions(labour.mother, labour_id)) == 1


# Concurrent repeats


def test_concurrent_same_key_one_effect(labour: Labour) -> None:
    barrier = threading.Barrier(CONCURRENT_REQUESTS)
    clients = [
        labour.server.client(labour.mother_token) for _ in range(CONCURRENT_REQUESTS)
    ]
    command = tagged(
        "LabourUpdate",
        "PostLabourUpdate",
        labour_id=labour.labour_id,
        labour_update_type="STATUS_UPDATE",
        message="Once only",
    )

    def post(client: httpx.Client) -> httpx.Response:
        barrier.wait()
        return client.post(
            "/api/v1/command", json=command, headers={"Idempotency-Key": "together"}
        )

    try:
        with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
            replies = list(pool.map(post, clients))
    finally:
        for client in clients:
            client.close()
    assert [reply.status_code for reply in replies] == [204] * CONCURRENT_REQUESTS
    replayed = [reply.headers.get(REPLAYED) == "true" for reply in replies]
    assert replayed.count(False) == 1
    assert len(all_labour_updates(labour.mother, labour.labour_id)) == 1


# The plan route


PLAN_BODY = {"first_labour": True, "due_date": "2024-05-03T00:00:00Z"}


def _plan(client: httpx.Client, key: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/api/v1/labour/plan", json=body, headers={"Idempotency-Key": key}
    )


def test_plan_key_returns_same_labour(fernd_server: FerndServer) -> None:
    token = fernd_server.token(unique_user("idem-planner"))
    with fernd_server.client(token) as mother:
        first = _plan(mother, "plan-once", PLAN_BODY)
        second = _plan(mother, "plan-once", PLAN_BODY)
        history = eventually(
            lambda: mother.get("/api/v1/labour/history").json(),
            lambda rows: len(rows) >= 1,
        )
    assert first.status_code == 200
    assert second.status_code == 200
    assert second.json() == first.json()
    assert second.headers[REPLAYED] == "true"
    assert [row["labour_id"] for row in history] == [first.json()["labour_id"]]


def test_plan_key_reused_different_body(fernd_server: FerndServer) -> None:
    token = fernd_server.token(unique_user("idem-planner"))
    with fernd_server.client(token) as mother:
        expect_status(_plan(mother, "plan-once", PLAN_BODY), 200)
        reply = _plan(mother, "plan-once", {**PLAN_BODY, "first_labour": False})
    assert reply.status_code == 400
    assert reply.json() == error(REUSED_MESSAGE, "invalid_request")


def test_plan_key_scoped_per_user(fernd_server: FerndServer) -> None:
    first_token = fernd_server.token(unique_user("idem-planner"))
    second_token = fernd_server.token(unique_user("idem-planner"))
    with fernd_server.client(first_token) as first_mother:
        first = expect_status(_plan(first_mother, "plan-shared", PLAN_BODY), 200)
    with fernd_server.client(second_token) as second_mother:
        second = expect_status(_plan(second_mother, "plan-shared", PLAN_BODY), 200)
    assert second.json()["labour_id"] != first.json()["labour_id"]
    assert REPLAYED not in second.headers


def test_plan_key_validation_error_replayed(fernd_server: FerndServer) -> None:
    token = fernd_server.token(unique_user("idem-planner"))
    body = {**PLAN_BODY, "labour_name": "x" * 256}
    with fernd_server.client(token) as mother:
        first = _plan(mother, "plan-long", body)
        second = _plan(mother, "plan-long", body)
    assert first.status_code == 400
    assert first.json()["code"] == "validation_error"
    assert second.json() == first.json()
    assert second.headers[REPLAYED] == "true"


# Malformed keys

BAD_KEYS: list[str | bytes] = [
    "",
    "k" * (MAX_KEY_LENGTH + 1),
    "two words",
    "clé".encode(),
    b"tab\tinside",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=["empty", "256", "space", "utf8", "tab"])
def test_command_bad_key_rejected(labour: Labour, key: str | bytes) -> None:
    reply = labour.mother.post(
        "/api/v1/command",
        json=tagged(
            "LabourUpdate",
            "PostLabourUpdate",
            labour_id=labour.labour_id,
            labour_update_type="STATUS_UPDATE",
            message="Hello",
        ),
        headers={"Idempotency-Key": key},
    )
    assert reply.status_code == 400
    assert reply.json() == error("Invalid idempotency key", "invalid_request")
    assert all_labour_updates(labour.mother, labour.labour_id) == []


@pytest.mark.parametrize("key", BAD_KEYS, ids=["empty", "256", "space", "utf8", "tab"])
def test_plan_bad_key_rejected(fernd_server: FerndServer, key: str | bytes) -> None:
    token = fernd_server.token(unique_user("idem-planner"))
    with fernd_server.client(token) as mother:
        reply = mother.post(
            "/api/v1/labour/plan", json=PLAN_BODY, headers={"Idempotency-Key": key}
        )
    assert reply.status_code == 400
    assert reply.json() == error("Invalid idempotency key", "invalid_request")


def test_longest_key_accepted(labour: Labour) -> None:
    key = "~" * MAX_KEY_LENGTH
    first = labour.post("Long key", key=key)
    second = labour.post("Long key", key=key)
    assert first.status_code == 204
    assert second.headers[REPLAYED] == "true"


def test_query_ignores_key(labour: Labour) -> None:
    reply = labour.mother.post(
        "/api/v1/query",
        json=tagged("Labour", "GetLabour", labour_id=labour.labour_id),
        headers={"Idempotency-Key": "not valid"},
    )
    assert reply.status_code == 200
