"""A first walk through the HTTP API against a real server."""

import time

from tests.conftest import FerndServer


def _command(group: str, name: str, **payload: object) -> dict[str, object]:
    return {"type": group, "payload": {"type": name, "payload": payload}}


def test_planned_labour_gets_share_token(fernd_server: FerndServer) -> None:
    token = fernd_server.token("smoke-mother", name="Alex Morgan")
    with fernd_server.client(token) as client:
        reply = client.post(
            "/api/v1/labour/plan",
            json={"first_labour": True, "due_date": "2024-05-03T00:00:00Z"},
        )
        assert reply.status_code == 200
        labour_id = reply.json()["labour_id"]

        deadline = time.monotonic() + 1.0
        while True:
            reply = client.post(
                "/api/v1/query",
                json=_command(
                    "Subscription", "GetSubscriptionToken", labour_id=labour_id
                ),
            )
            if reply.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert reply.status_code == 200
        assert len(reply.json()["token"]) == 8
