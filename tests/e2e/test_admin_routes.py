"""Administrator routes for a labour's projectors and effect ledger, the retry
of a FAILED effect, and tokens made administrators' by the `fernd_admin`
claim, all against a real server."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FerndServer
from tests.e2e.helpers import (
    eventually,
    expect_status,
    join,
    plan_labour,
    send,
    unique_user,
)
from tests.e2e.mail_helpers import ConfiguredServer, MailSink, write_config

PUBLIC_URL = "https://fernd.example.org"
# The user id the configured server lists in admin_user_ids.
CONFIGURED_ADMIN_ID = "operator-configured"
# A subscriber whose token has no email claim, so every EMAIL notification to
# them fails at once and is never retried by itself.
NO_EMAIL_SUBSCRIBER_ID = "subscriber-no-email"
INVITE_ADDRESS = "invitee@example.org"
FORBIDDEN_BODY = {
    "message": "Authorization failed: Missing required capability: Administer",
    "code": "forbidden",
}
# Notifications go out after the reply, so tests poll the ledger this long.
LEDGER_TIMEOUT_SECONDS = 15.0


def _admin_client(server: FerndServer) -> httpx.Client:
    return server.client(server.token(unique_user("admin"), name="Op", admin=True))


def _user_client(server: FerndServer) -> httpx.Client:
    return server.client(server.token(unique_user("user"), name="User"))


def _projectors_path(labour_id: str) -> str:
    return f"/api/v1/admin/labours/{labour_id}/projectors"


def _effects_path(labour_id: str) -> str:
    return f"/api/v1/admin/labours/{labour_id}/effects"


def _retry_path(labour_id: str, effect_id: str) -> str:
    return f"/api/v1/admin/labours/{labour_id}/effects/{effect_id}/retry"


@pytest.fixture(scope="module")
def labour_id(fernd_server: FerndServer) -> str:
    with _user_client(fernd_server) as mother:
        return plan_labour(mother)


# Projectors


def test_projectors_lists_checkpoints(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with _admin_client(fernd_server) as admin:
        body = expect_status(admin.get(_projectors_path(labour_id)), 200).json()
    assert body["labour_id"] == labour_id
    assert body["last_sequence"] >= 1
    assert body["projectors"] != []
    assert body["shared_projectors"] != []
    assert set(body["projectors"][0]) == {
        "projector_name",
        "last_processed_sequence",
        "status",
        "error_count",
        "error_message",
        "faulted",
    }
    assert set(body["shared_projectors"][0]) == {
        "name",
        "last_processed_sequence",
        "status",
        "error_count",
        "faulted",
    }


def test_projectors_caught_up_and_healthy(
    fernd_server: FerndServer, labour_id: str
) -> None:
    def fetch() -> dict[str, Any]:
        with _admin_client(fernd_server) as admin:
            reply = expect_status(admin.get(_projectors_path(labour_id)), 200)
        body: dict[str, Any] = reply.json()
        return body

    def caught_up(body: dict[str, Any]) -> bool:
        checkpoints = body["projectors"] + body["shared_projectors"]
        return all(
            c["last_processed_sequence"] == body["last_sequence"] for c in checkpoints
        )

    body = eventually(fetch, caught_up)
    checkpoints = body["projectors"] + body["shared_projectors"]
    assert caught_up(body)
    assert {c["status"] for c in checkpoints} == {"healthy"}
    assert {c["faulted"] for c in checkpoints} == {False}


def test_projectors_unknown_labour_not_found(fernd_server: FerndServer) -> None:
    with _admin_client(fernd_server) as admin:
        reply = admin.get(_projectors_path(str(uuid.uuid4())))
    assert reply.status_code == 404
    assert reply.json() == {"message": "Labour not found", "code": "not_found"}


def test_projectors_invalid_labour_id_rejected(fernd_server: FerndServer) -> None:
    with _admin_client(fernd_server) as admin:
        reply = admin.get(_projectors_path("not-a-uuid"))
    assert reply.status_code == 400
    assert reply.json()["message"] == "Invalid labour id"


def test_projectors_forbidden_to_non_admin(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with _user_client(fernd_server) as user:
        reply = user.get(_projectors_path(labour_id))
    assert reply.status_code == 403
    assert reply.json() == FORBIDDEN_BODY


def test_projectors_without_token_unauthenticated(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with fernd_server.client() as anonymous:
        reply = anonymous.get(_projectors_path(labour_id))
    assert reply.status_code == 401


# Effect ledger on the module's server


def test_effects_lists_ledger_without_payload(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with _admin_client(fernd_server) as admin:
        rows = expect_status(admin.get(_effects_path(labour_id)), 200).json()
    assert rows != []
    assert "effect_payload" not in rows[0]
    assert set(rows[0]) == {
        "effect_id",
        "event_sequence",
        "effect_type",
        "idempotency_key",
        "status",
        "attempts",
        "last_attempt_at",
        "next_attempt_at",
        "last_error",
        "created_at",
    }


def test_effects_filtered_by_status(fernd_server: FerndServer, labour_id: str) -> None:
    with _admin_client(fernd_server) as admin:
        rows = eventually(
            lambda: expect_status(
                admin.get(_effects_path(labour_id), params={"status": "COMPLETED"}),
                200,
            ).json(),
            lambda rows: rows != [],
        )
        failed = admin.get(_effects_path(labour_id), params={"status": "FAILED"})
    assert rows != []
    assert {row["status"] for row in rows} == {"COMPLETED"}
    assert expect_status(failed, 200).json() == []


def test_effects_unknown_status_rejected(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with _admin_client(fernd_server) as admin:
        reply = admin.get(_effects_path(labour_id), params={"status": "DONE"})
    assert reply.status_code == 400
    assert reply.json()["code"] == "invalid_request"


def test_effects_unknown_labour_not_found(fernd_server: FerndServer) -> None:
    with _admin_client(fernd_server) as admin:
        reply = admin.get(_effects_path(str(uuid.uuid4())))
    assert reply.status_code == 404
    assert reply.json()["message"] == "Labour not found"


def test_effects_invalid_labour_id_rejected(fernd_server: FerndServer) -> None:
    with _admin_client(fernd_server) as admin:
        reply = admin.get(_effects_path("12345"))
    assert reply.status_code == 400
    assert reply.json()["message"] == "Invalid labour id"


def test_effects_forbidden_to_non_admin(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with _user_client(fernd_server) as user:
        reply = user.get(_effects_path(labour_id))
    assert reply.status_code == 403
    assert reply.json() == FORBIDDEN_BODY


def test_retry_forbidden_to_non_admin(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with _user_client(fernd_server) as user:
        reply = user.post(_retry_path(labour_id, str(uuid.uuid4())))
    assert reply.status_code == 403
    assert reply.json() == FORBIDDEN_BODY


def test_retry_unknown_effect_not_found(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with _admin_client(fernd_server) as admin:
        reply = admin.post(_retry_path(labour_id, str(uuid.uuid4())))
    assert reply.status_code == 404
    assert reply.json() == {"message": "Effect not found", "code": "not_found"}


def test_retry_unknown_labour_not_found(fernd_server: FerndServer) -> None:
    with _admin_client(fernd_server) as admin:
        reply = admin.post(_retry_path(str(uuid.uuid4()), str(uuid.uuid4())))
    assert reply.status_code == 404
    assert reply.json()["message"] == "Labour not found"


def test_retry_completed_effect_conflict(
    fernd_server: FerndServer, labour_id: str
) -> None:
    with _admin_client(fernd_server) as admin:
        completed = eventually(
            lambda: admin.get(
                _effects_path(labour_id), params={"status": "COMPLETED"}
            ).json(),
            lambda rows: rows != [],
        )
        reply = admin.post(_retry_path(labour_id, completed[0]["effect_id"]))
        after = admin.get(_effects_path(labour_id)).json()
    assert reply.status_code == 409
    assert reply.json()["code"] == "conflict"
    assert "only a FAILED or SKIPPED effect can be retried" in reply.json()["message"]
    row = next(r for r in after if r["effect_id"] == completed[0]["effect_id"])
    assert row["status"] == "COMPLETED"


# Admin claim


def test_admin_claim_token_reads_metrics(fernd_server: FerndServer) -> None:
    with _admin_client(fernd_server) as admin:
        reply = admin.get("/api/v1/admin/metrics")
    assert reply.status_code == 200


def test_normal_token_metrics_forbidden(fernd_server: FerndServer) -> None:
    with _user_client(fernd_server) as user:
        reply = user.get("/api/v1/admin/metrics")
    assert reply.status_code == 403
    assert reply.json() == FORBIDDEN_BODY


def test_admin_claim_from_other_key_unauthenticated(
    fernd_server: FerndServer, tmp_path: Path
) -> None:
    other = FerndServer(tmp_path / "other")
    token = other.token(unique_user("admin"), name="Op", admin=True)
    with fernd_server.client(token) as client:
        reply = client.get("/api/v1/admin/metrics")
    assert reply.status_code == 401


# Retry of a FAILED notification, on a server that sends email


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def mailing_server(tmp_path: Path, mail_sink: MailSink) -> Iterator[ConfiguredServer]:
    """A server that sends email to `mail_sink` and lists CONFIGURED_ADMIN_ID
    in admin_user_ids."""
    config = write_config(
        tmp_path / "fernd.toml",
        public_url=PUBLIC_URL,
        admin_user_ids=[CONFIGURED_ADMIN_ID],
        smtp_port=mail_sink.port,
    )
    server = ConfiguredServer(tmp_path / "data", config)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def _configured_admin(server: ConfiguredServer) -> httpx.Client:
    return server.client(server.token(CONFIGURED_ADMIN_ID, name="Operator"))


def _ledger(server: ConfiguredServer, labour_id: str) -> list[dict[str, Any]]:
    with _configured_admin(server) as admin:
        rows: list[dict[str, Any]] = expect_status(
            admin.get(_effects_path(labour_id)), 200
        ).json()
    return rows


def _no_email_effects(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    marker = f":notify:{NO_EMAIL_SUBSCRIBER_ID}:"
    return [row for row in rows if marker in row["idempotency_key"]]


def _failed_effect_of_no_email_subscriber(server: ConfiguredServer) -> tuple[str, Any]:
    """Plan a labour whose subscriber has no email but follows by EMAIL, begin
    it, and return the labour id and the subscriber's FAILED effect row."""
    mother_token = server.token("mother-1", name="Alex", email="alex@example.org")
    with server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
        member = join(server, mother, labour_id, NO_EMAIL_SUBSCRIBER_ID, name="Robin")
        with server.client(member.token) as subscriber:
            reply = send(
                subscriber,
                "Subscriber",
                "UpdateNotificationMethods",
                labour_id=labour_id,
                subscription_id=member.subscription_id,
                notification_methods=["EMAIL"],
            )
            expect_status(reply, 204)
        expect_status(send(mother, "Labour", "BeginLabour", labour_id=labour_id), 204)
    rows = eventually(
        lambda: _no_email_effects(_ledger(server, labour_id)),
        lambda rows: any(row["status"] == "FAILED" for row in rows),
        LEDGER_TIMEOUT_SECONDS,
    )
    failed = next(row for row in rows if row["status"] == "FAILED")
    return labour_id, failed


def test_retry_failed_effect_resets_and_runs_again(
    mailing_server: ConfiguredServer,
) -> None:
    labour_id, failed = _failed_effect_of_no_email_subscriber(mailing_server)
    effect_id = failed["effect_id"]
    with _configured_admin(mailing_server) as admin:
        reply = admin.post(_retry_path(labour_id, effect_id))
    reset = expect_status(reply, 200).json()
    assert failed["attempts"] == 1
    assert reset["effect_id"] == effect_id
    assert reset["status"] == "PENDING"
    assert reset["attempts"] == 0
    assert reset["next_attempt_at"] is None
    assert reset["last_error"] == failed["last_error"]

    def effect_row() -> dict[str, Any]:
        rows = _ledger(mailing_server, labour_id)
        return next(row for row in rows if row["effect_id"] == effect_id)

    # The subscriber still has no email, so the new attempt fails again.
    after = eventually(
        effect_row,
        lambda row: row["status"] == "FAILED" and row["attempts"] == 1,
        LEDGER_TIMEOUT_SECONDS,
    )
    assert after["status"] == "FAILED"
    assert after["attempts"] == 1
    assert after["last_error"] == f"user {NO_EMAIL_SUBSCRIBER_ID} has no email"
    assert after["last_attempt_at"] > failed["last_attempt_at"]


def test_retry_pending_or_completed_effect_conflict(
    mailing_server: ConfiguredServer,
) -> None:
    labour_id, _ = _failed_effect_of_no_email_subscriber(mailing_server)
    rows = eventually(
        lambda: _ledger(mailing_server, labour_id),
        lambda rows: any(row["status"] == "COMPLETED" for row in rows),
        LEDGER_TIMEOUT_SECONDS,
    )
    completed = next(row for row in rows if row["status"] == "COMPLETED")
    with _configured_admin(mailing_server) as admin:
        reply = admin.post(_retry_path(labour_id, completed["effect_id"]))
    assert reply.status_code == 409
    assert reply.json()["code"] == "conflict"


def test_effects_redact_invite_address(
    mailing_server: ConfiguredServer, mail_sink: MailSink
) -> None:
    mother_token = mailing_server.token("mother-2", name="Alex")
    with mailing_server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
        reply = send(
            mother,
            "Labour",
            "SendLabourInvite",
            labour_id=labour_id,
            invite_email=INVITE_ADDRESS,
        )
        expect_status(reply, 204)
    rows = eventually(
        lambda: _ledger(mailing_server, labour_id),
        lambda rows: any(":notify:[redacted]:" in r["idempotency_key"] for r in rows),
        LEDGER_TIMEOUT_SECONDS,
    )
    invites = [r for r in rows if ":notify:[redacted]:" in r["idempotency_key"]]
    assert len(invites) == 1
    assert INVITE_ADDRESS not in str(rows)
    assert "@" not in str(rows)
