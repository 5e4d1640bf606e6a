"""Who may do what on a labour, over HTTP: subscribers by role and status,
strangers, the ownership rule, private notes, stored profiles, the subscriber
lists and the administrator's rebuild."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import FerndServer
from tests.e2e.helpers import (
    Member,
    all_labour_updates,
    ask,
    denied,
    error,
    eventually,
    expect_status,
    join,
    new_id,
    plan_labour,
    send,
    share_token,
    unique_user,
)

MISSING_EXECUTE = "Missing required capability: ExecuteLabourCommand"
NOT_ASSOCIATED = "Not associated with this labour"
NOT_OWN_SUBSCRIPTION = "Can only manage your own subscription"


@dataclass(frozen=True)
class Circle:
    """A labour with a mother, an approved loved one, a birth partner, a
    subscriber still waiting for approval and a stranger."""

    server: FerndServer
    labour_id: str
    mother_id: str
    mother_token: str
    loved_one: Member
    partner: Member
    requested: Member
    stranger_id: str
    stranger_token: str
    contraction_id: str
    private_note_id: str
    status_update_id: str

    def client(self, token: str) -> httpx.Client:
        return self.server.client(token)


@pytest.fixture(scope="module")
def circle(fernd_server: FerndServer) -> Iterator[Circle]:
    mother_id = unique_user("access-mother")
    mother_token = fernd_server.token(
        mother_id, name="Alex Morgan", email="alex@example.org", first_name="Alex"
    )
    stranger_id = unique_user("access-stranger")
    stranger_token = fernd_server.token(stranger_id, name="Eve Stranger")
    contraction_id = new_id()
    with fernd_server.client(mother_token) as mother:
        labour_id = plan_labour(mother, labour_name="Baby A")
        loved_one = join(
            fernd_server,
            mother,
            labour_id,
            unique_user("access-grandma"),
            first_name="Pat",
            last_name="Morgan",
            email="pat@example.org",
            phone_number="+447700900123",
        )
        partner = join(
            fernd_server,
            mother,
            labour_id,
            unique_user("access-partner"),
            role="BIRTH_PARTNER",
            name="Sam Morgan",
        )
        requested = join(
            fernd_server, mother, labour_id, unique_user("access-waiting"), role=None
        )
        for group, name, payload in [
            ("Contraction", "StartContraction", {"contraction_id": contraction_id}),
            (
                "Contraction",
                "EndContraction",
                {"contraction_id": contraction_id, "intensity": 4},
            ),
            (
                "LabourUpdate",
                "PostLabourUpdate",
                {"labour_update_type": "PRIVATE_NOTE", "message": "Mucus plug gone"},
            ),
            (
                "LabourUpdate",
                "PostLabourUpdate",
                {"labour_update_type": "STATUS_UPDATE", "message": "All calm here"},
            ),
        ]:
            reply = send(mother, group, name, labour_id=labour_id, **payload)
            expect_status(reply, 204)
        updates = {row["message"]: row for row in all_labour_updates(mother, labour_id)}
    with fernd_server.client(stranger_token) as stranger:
        reply = ask(stranger, "Labour", "GetLabour", labour_id=labour_id)
        expect_status(reply, 403)
    yield Circle(
        fernd_server,
        labour_id,
        mother_id,
        mother_token,
        loved_one,
        partner,
        requested,
        stranger_id,
        stranger_token,
        contraction_id,
        updates["Mucus plug gone"]["labour_update_id"],
        updates["All calm here"]["labour_update_id"],
    )


def _write_commands(circle: Circle) -> list[tuple[str, str, dict[str, Any]]]:
    """Every contraction and labour-update command, with valid fields."""
    return [
        ("Contraction", "StartContraction", {"contraction_id": new_id()}),
        (
            "Contraction",
            "EndContraction",
            {"contraction_id": circle.contraction_id, "intensity": 5},
        ),
        (
            "Contraction",
            "UpdateContraction",
            {"contraction_id": circle.contraction_id, "intensity": 6},
        ),
        ("Contraction", "DeleteContraction", {"contraction_id": circle.contraction_id}),
        (
            "LabourUpdate",
            "PostLabourUpdate",
            {"labour_update_type": "STATUS_UPDATE", "message": "Hello"},
        ),
        (
            "LabourUpdate",
            "UpdateLabourUpdateMessage",
            {"labour_update_id": circle.status_update_id, "message": "Edited"},
        ),
        (
            "LabourUpdate",
            "UpdateLabourUpdateType",
            {
                "labour_update_id": circle.status_update_id,
                "labour_update_type": "PRIVATE_NOTE",
            },
        ),
        (
            "LabourUpdate",
            "DeleteLabourUpdate",
            {"labour_update_id": circle.status_update_id},
        ),
    ]


WRITE_NAMES = [
    "StartContraction",
    "EndContraction",
    "UpdateContraction",
    "DeleteContraction",
    "PostLabourUpdate",
    "UpdateLabourUpdateMessage",
    "UpdateLabourUpdateType",
    "DeleteLabourUpdate",
]


def _write(circle: Circle, name: str) -> tuple[str, str, dict[str, Any]]:
    return next(entry for entry in _write_commands(circle) if entry[1] == name)


# Loved one: reads only, no private notes


@pytest.mark.parametrize("name", WRITE_NAMES)
def test_loved_one_write_rejected(circle: Circle, name: str) -> None:
    group, name, payload = _write(circle, name)
    with circle.client(circle.loved_one.token) as loved_one:
        reply = send(loved_one, group, name, labour_id=circle.labour_id, **payload)
    assert reply.status_code == 403
    assert reply.json() == denied(MISSING_EXECUTE)


@pytest.mark.parametrize(
    ("group", "name", "payload", "capability"),
    [
        ("Labour", "BeginLabour", {}, "ManageLabour"),
        ("Labour", "CompleteLabour", {}, "ManageLabour"),
        (
            "Labour",
            "SendLabourInvite",
            {"invite_email": "friend@example.org"},
            "ManageLabour",
        ),
        ("Labour", "DeleteLabour", {}, "ManageLabour"),
        (
            "Labour",
            "UpdateLabourPlan",
            {"first_labour": False, "due_date": "2024-05-03T00:00:00Z"},
            "ManageLabour",
        ),
        ("Subscription", "InvalidateSubscriptionToken", {}, "ManageLabour"),
        (
            "Subscriber",
            "UpdateAccessLevel",
            {"subscription_id": new_id(), "access_level": "SUPPORTER"},
            "UpdateSubscriptionAccessLevel",
        ),
    ],
)
def test_loved_one_labour_command_rejected(
    circle: Circle,
    group: str,
    name: str,
    payload: dict[str, Any],
    capability: str,
) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = send(loved_one, group, name, labour_id=circle.labour_id, **payload)
    assert reply.status_code == 403
    assert reply.json() == denied(f"Missing required capability: {capability}")


@pytest.mark.parametrize(
    "name",
    [
        "ApproveSubscriber",
        "RemoveSubscriber",
        "BlockSubscriber",
        "UnblockSubscriber",
    ],
)
def test_loved_one_subscription_command_rejected(circle: Circle, name: str) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = send(
            loved_one,
            "Subscription",
            name,
            labour_id=circle.labour_id,
            subscription_id=circle.requested.subscription_id,
        )
    assert reply.status_code == 403
    assert reply.json() == denied(
        "Missing required capability: ManageLabourSubscriptions"
    )


def test_loved_one_write_leaves_no_trace(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = send(
            loved_one,
            "LabourUpdate",
            "PostLabourUpdate",
            labour_id=circle.labour_id,
            labour_update_type="STATUS_UPDATE",
            message="Loved one says hi",
        )
    assert reply.status_code == 403
    with circle.client(circle.mother_token) as mother:
        messages = [
            row["message"] for row in all_labour_updates(mother, circle.labour_id)
        ]
    assert "Loved one says hi" not in messages


def test_loved_one_private_notes_hidden(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        rows = all_labour_updates(loved_one, circle.labour_id)
    ids = [row["labour_update_id"] for row in rows]
    assert circle.private_note_id not in ids
    assert circle.status_update_id in ids
    assert all(row["labour_update_type"] != "PRIVATE_NOTE" for row in rows)


def test_loved_one_private_note_by_id_not_found(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = ask(
            loved_one,
            "LabourUpdate",
            "GetLabourUpdateById",
            labour_id=circle.labour_id,
            labour_update_id=circle.private_note_id,
        )
    assert reply.status_code == 404
    assert reply.json() == error("LabourUpdate not found", "not_found")


def test_loved_one_status_update_by_id(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = ask(
            loved_one,
            "LabourUpdate",
            "GetLabourUpdateById",
            labour_id=circle.labour_id,
            labour_update_id=circle.status_update_id,
        )
    assert reply.status_code == 200
    body = reply.json()
    assert [row["labour_update_id"] for row in body["data"]] == [
        circle.status_update_id
    ]
    assert body["next_cursor"] is None
    assert body["has_more"] is False


def test_partner_sees_private_note(circle: Circle) -> None:
    with circle.client(circle.partner.token) as partner:
        rows = all_labour_updates(partner, circle.labour_id)
    assert circle.private_note_id in [row["labour_update_id"] for row in rows]


def test_partner_reads_private_note_by_id(circle: Circle) -> None:
    with circle.client(circle.partner.token) as partner:
        reply = ask(
            partner,
            "LabourUpdate",
            "GetLabourUpdateById",
            labour_id=circle.labour_id,
            labour_update_id=circle.private_note_id,
        )
    assert reply.status_code == 200


# Subscribers not yet approved, strangers and other people's subscriptions

READ_QUERIES = [
    ("Labour", "GetLabour", {}),
    ("Contraction", "GetContractions", {}),
    ("Contraction", "GetContractionStatistics", {}),
    ("LabourUpdate", "GetLabourUpdates", {}),
    ("Subscription", "GetUserSubscription", {}),
    ("Subscription", "GetSubscriptionToken", {}),
    ("User", "GetUsers", {}),
]


@pytest.mark.parametrize(("group", "name", "payload"), READ_QUERIES)
def test_requested_subscriber_read_rejected(
    circle: Circle, group: str, name: str, payload: dict[str, Any]
) -> None:
    with circle.client(circle.requested.token) as requested:
        reply = ask(requested, group, name, labour_id=circle.labour_id, **payload)
    assert reply.status_code == 403
    assert reply.json() == denied(NOT_ASSOCIATED)


def test_requested_subscriber_unsubscribe_rejected(circle: Circle) -> None:
    with circle.client(circle.requested.token) as requested:
        reply = send(
            requested,
            "Subscriber",
            "Unsubscribe",
            labour_id=circle.labour_id,
            subscription_id=circle.requested.subscription_id,
        )
    assert reply.status_code == 403
    assert reply.json() == denied(NOT_ASSOCIATED)


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("Unsubscribe", {}),
        ("UpdateNotificationMethods", {"notification_methods": ["EMAIL"]}),
    ],
)
def test_subscriber_other_subscription_rejected(
    circle: Circle, name: str, payload: dict[str, Any]
) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = send(
            loved_one,
            "Subscriber",
            name,
            labour_id=circle.labour_id,
            subscription_id=circle.partner.subscription_id,
            **payload,
        )
    assert reply.status_code == 403
    assert reply.json() == denied(NOT_OWN_SUBSCRIPTION)


def test_subscriber_unknown_subscription_rejected(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = send(
            loved_one,
            "Subscriber",
            "Unsubscribe",
            labour_id=circle.labour_id,
            subscription_id=new_id(),
        )
    assert reply.status_code == 403
    assert reply.json() == denied(NOT_OWN_SUBSCRIPTION)


def test_subscriber_own_notification_methods(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = send(
            loved_one,
            "Subscriber",
            "UpdateNotificationMethods",
            labour_id=circle.labour_id,
            subscription_id=circle.loved_one.subscription_id,
            notification_methods=["EMAIL", "SMS"],
        )
        assert reply.status_code == 204
        own = ask(
            loved_one, "Subscription", "GetUserSubscription", labour_id=circle.labour_id
        ).json()
    assert own["contact_methods"] == ["EMAIL", "SMS"]


@pytest.mark.parametrize(("group", "name", "payload"), READ_QUERIES)
def test_stranger_query_rejected(
    circle: Circle, group: str, name: str, payload: dict[str, Any]
) -> None:
    with circle.client(circle.stranger_token) as stranger:
        reply = ask(stranger, group, name, labour_id=circle.labour_id, **payload)
    assert reply.status_code == 403
    assert reply.json() == denied(NOT_ASSOCIATED)


def test_stranger_command_rejected(circle: Circle) -> None:
    with circle.client(circle.stranger_token) as stranger:
        reply = send(
            stranger,
            "Contraction",
            "StartContraction",
            labour_id=circle.labour_id,
            contraction_id=new_id(),
        )
    assert reply.status_code == 403
    assert reply.json() == denied(NOT_ASSOCIATED)


# Own subscription and stored profiles


def test_user_subscription_own(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        reply = ask(
            loved_one, "Subscription", "GetUserSubscription", labour_id=circle.labour_id
        )
    assert reply.status_code == 200
    body = reply.json()
    assert body["subscription_id"] == circle.loved_one.subscription_id
    assert body["subscriber_id"] == circle.loved_one.user_id
    assert body["labour_id"] == circle.labour_id
    assert body["role"] == "LOVED_ONE"
    assert body["status"] == "SUBSCRIBED"
    assert body["access_level"] == "BASIC"


def test_user_subscription_mother_rejected(circle: Circle) -> None:
    with circle.client(circle.mother_token) as mother:
        reply = ask(
            mother, "Subscription", "GetUserSubscription", labour_id=circle.labour_id
        )
    assert reply.status_code == 403
    assert reply.json() == denied("Missing required capability: ReadOwnSubscription")


def test_users_stored_from_claims(circle: Circle) -> None:
    with circle.client(circle.mother_token) as mother:
        reply = ask(mother, "User", "GetUsers", labour_id=circle.labour_id)
    assert reply.status_code == 200
    users = reply.json()
    expected_ids = sorted(
        [
            circle.mother_id,
            circle.loved_one.user_id,
            circle.partner.user_id,
            circle.requested.user_id,
        ]
    )
    assert [user["user_id"] for user in users] == expected_ids
    mother = next(user for user in users if user["user_id"] == circle.mother_id)
    assert mother == {
        "user_id": circle.mother_id,
        "issuer": "fernd",
        "email": "alex@example.org",
        "phone_number": None,
        "first_name": "Alex",
        "last_name": None,
        "name": "Alex Morgan",
    }


def test_user_name_joined_from_first_and_last(circle: Circle) -> None:
    with circle.client(circle.mother_token) as mother:
        reply = ask(
            mother,
            "User",
            "GetUser",
            labour_id=circle.labour_id,
            user_id=circle.loved_one.user_id,
        )
    assert reply.json() == [
        {
            "user_id": circle.loved_one.user_id,
            "issuer": "fernd",
            "email": "pat@example.org",
            "phone_number": "+447700900123",
            "first_name": "Pat",
            "last_name": "Morgan",
            "name": "Pat Morgan",
        }
    ]


def test_stranger_profile_not_stored(circle: Circle) -> None:
    with circle.client(circle.mother_token) as mother:
        reply = ask(
            mother,
            "User",
            "GetUser",
            labour_id=circle.labour_id,
            user_id=circle.stranger_id,
        )
    assert reply.status_code == 200
    assert reply.json() == []


def test_user_profile_rewritten_on_new_claims(circle: Circle) -> None:
    user_id = circle.partner.user_id
    token = circle.server.token(user_id, name="Sam Morgan", email="sam@example.org")
    with circle.client(token) as partner:
        reply = ask(partner, "Labour", "GetLabour", labour_id=circle.labour_id)
        assert reply.status_code == 200
    with circle.client(circle.mother_token) as mother:
        reply = ask(
            mother, "User", "GetUser", labour_id=circle.labour_id, user_id=user_id
        )
    assert reply.json()[0]["email"] == "sam@example.org"


# The subscriber's lists


def test_subscriber_lists_subscriptions(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        rows = eventually(
            lambda: loved_one.get("/api/v1/subscriptions/list").json(),
            lambda rows: len(rows) == 1,
        )
    assert len(rows) == 1
    row = rows[0]
    assert row["subscription_id"] == circle.loved_one.subscription_id
    assert row["labour_id"] == circle.labour_id
    assert row["subscriber_id"] == circle.loved_one.user_id
    assert row["status"] == "SUBSCRIBED"


def test_subscriber_lists_labours(circle: Circle) -> None:
    with circle.client(circle.loved_one.token) as loved_one:
        rows = eventually(
            lambda: loved_one.get("/api/v1/subscriptions/labours").json(),
            lambda rows: len(rows) == 1,
        )
    assert [row["labour_id"] for row in rows] == [circle.labour_id]
    assert rows[0]["mother_id"] == circle.mother_id
    assert rows[0]["labour_name"] == "Baby A"


def test_requested_subscriber_lists_empty(circle: Circle) -> None:
    with circle.client(circle.requested.token) as requested:
        subscribed = requested.get("/api/v1/subscriptions/list")
        labours = requested.get("/api/v1/subscriptions/labours")
    assert subscribed.json() == []
    assert labours.json() == []


def test_unsubscribed_leaves_lists(fernd_server: FerndServer) -> None:
    with fernd_server.client(fernd_server.token(unique_user("lists-mother"))) as mother:
        labour_id = plan_labour(mother)
        member = join(fernd_server, mother, labour_id, unique_user("lists-friend"))
    with fernd_server.client(member.token) as friend:
        eventually(
            lambda: friend.get("/api/v1/subscriptions/list").json(),
            lambda rows: len(rows) == 1,
        )
        reply = send(
            friend,
            "Subscriber",
            "Unsubscribe",
            labour_id=labour_id,
            subscription_id=member.subscription_id,
        )
        assert reply.status_code == 204
        rows = eventually(
            lambda: friend.get("/api/v1/subscriptions/list").json(),
            lambda rows: rows == [],
        )
    assert rows == []


# Administration


def test_rebuild_read_models_non_admin_rejected(circle: Circle) -> None:
    with circle.client(circle.mother_token) as mother:
        reply = send(
            mother, "Admin", "RebuildReadModels", aggregate_id=circle.labour_id
        )
    assert reply.status_code == 403
    assert reply.json() == denied("Missing required capability: Administer")


def _read_models(
    server: FerndServer, labour_id: str, mother_token: str, member: Member
) -> dict[str, Any]:
    """Every read model of the labour, as the mother and the subscriber see
    them."""
    with server.client(mother_token) as mother:
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
        views["active"] = mother.get("/api/v1/labour/active").json()
    with server.client(member.token) as subscriber:
        views["subscriptions"] = subscriber.get("/api/v1/subscriptions/list").json()
        views["labours"] = subscriber.get("/api/v1/subscriptions/labours").json()
        views["own"] = ask(
            subscriber, "Subscription", "GetUserSubscription", labour_id=labour_id
        ).json()
    return views


def test_rebuild_read_models_by_admin(fresh_server: FerndServer) -> None:
    fresh_server.env["FERND_ADMIN_USER_IDS"] = "admin1"
    fresh_server.start()
    mother_token = fresh_server.token("rebuild-mother", name="Alex Morgan")
    with fresh_server.client(mother_token) as mother:
        labour_id = plan_labour(mother, labour_name="Baby R")
        member = join(fresh_server, mother, labour_id, "rebuild-friend", name="Pat")
        contraction_id = new_id()
        for group, name, payload in [
            ("Contraction", "StartContraction", {"contraction_id": contraction_id}),
            (
                "Contraction",
                "EndContraction",
                {"contraction_id": contraction_id, "intensity": 7},
            ),
            (
                "LabourUpdate",
                "PostLabourUpdate",
                {"labour_update_type": "ANNOUNCEMENT", "message": "Baby soon"},
            ),
        ]:
            expect_status(
                send(mother, group, name, labour_id=labour_id, **payload), 204
            )
        share_token(mother, labour_id)
    with fresh_server.client(member.token) as subscriber:
        eventually(
            lambda: subscriber.get("/api/v1/subscriptions/labours").json(),
            lambda rows: len(rows) == 1 and rows[0]["current_phase"] == "EARLY",
        )
    before = _read_models(fresh_server, labour_id, mother_token, member)

    with fresh_server.client(fresh_server.token("admin1", name="Root")) as admin:
        reply = send(admin, "Admin", "RebuildReadModels", aggregate_id=labour_id)
        assert reply.status_code == 204
        assert reply.content == b""
        read = ask(admin, "Labour", "GetLabour", labour_id=labour_id)
        assert read.status_code == 403
        assert read.json() == denied(NOT_ASSOCIATED)

    after = _read_models(fresh_server, labour_id, mother_token, member)
    assert after == before
    assert "admin1" not in [user["user_id"] for user in after["GetUsers"]]
