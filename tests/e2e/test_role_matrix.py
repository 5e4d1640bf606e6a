"""The authorization matrix against a real server, one test per cell: every
command and query over HTTP, and the WebSocket connect, for each kind of
caller. Also private-note visibility in queries and pushes, and the internal
command that fernd runs by itself, SetSubscriptionToken.

The callers are the mother and three SUBSCRIBED subscribers: a birth partner,
a support person and a loved one. Four subscribers are not SUBSCRIBED: one is
REQUESTED, one REMOVED, one BLOCKED and one UNSUBSCRIBED. The rest have no
subscription: a stranger, two administrators and two tokens that try to pass
as the internal user. One administrator has the `fernd_admin` claim that
`fernd token --admin` adds, and the other is listed in admin_user_ids. The
administrators have no relation to the labour, so their cells are the
unassociated caller's plus the administrator's own actions. A token whose
`sub` is an internal user id but whose issuer is fernd's is an unassociated
caller, and a token whose issuer is `internal` fails verification.

Denied and rejected commands run on one shared labour, and each test checks
that the labour's last event sequence is unchanged. A command that is allowed
and changes the labour runs on a labour set up for that test alone, with the
caller in the same relation to it.
"""

import json
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from trio_websocket import ConnectionRejected

from fernd.auth.tokens import load_or_create_signing_key
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
    subscriptions,
    unique_user,
)
from tests.e2e.ws_helpers import async_client, async_send, open_session

# The user id the server lists in admin_user_ids.
LISTED_ADMIN_ID = "matrix-operator-listed"
# The user id of the administrator whose token `fernd token --admin` makes.
CLAIM_ADMIN_ID = "matrix-operator-claim"
# The user id fernd's process manager acts as.
PROCESS_MANAGER_ID = "fern-labour-internal-process-manager"
INTERNAL_ISSUER = "internal"
TOKEN_LIFETIME_SECONDS = 3600
DUE_DATE = "2024-05-03T00:00:00Z"
LABOUR_NAME = "Baby Matrix"
PRIVATE_MESSAGE = "Matrix private note"
STATUS_MESSAGE = "Matrix status update"
# A share token: 8 characters from A-Z without I and O, and 2-9.
SHARE_TOKEN_PATTERN = re.compile(r"[A-HJ-NP-Z2-9]{8}")

NOT_ASSOCIATED_TEXT = "Not associated with this labour"
NOT_OWN_TEXT = "Can only manage your own subscription"
VERIFICATION_FAILED = "Unauthorised: User verification failed"

MOTHER = "mother"
BIRTH_PARTNER = "birth_partner"
SUPPORT_PERSON = "support_person"
LOVED_ONE = "loved_one"
REQUESTED = "requested"
REMOVED = "removed"
BLOCKED = "blocked"
UNSUBSCRIBED = "unsubscribed"
STRANGER = "stranger"
ADMIN_CLAIM = "admin_claim"
ADMIN_LISTED = "admin_listed"
INTERNAL_SUB = "internal_sub"
INTERNAL_ISS = "internal_iss"

FOLLOWERS = (SUPPORT_PERSON, LOVED_ONE)
SUBSCRIBED = (BIRTH_PARTNER, *FOLLOWERS)
LAPSED = (REQUESTED, REMOVED, BLOCKED, UNSUBSCRIBED)
ADMINS = (ADMIN_CLAIM, ADMIN_LISTED)
PRINCIPALS = (
    MOTHER,
    *SUBSCRIBED,
    *LAPSED,
    STRANGER,
    *ADMINS,
    INTERNAL_SUB,
    INTERNAL_ISS,
)
# Principals that hold a subscription, with the role `join` gives them.
SUBSCRIBER_ROLES: dict[str, str | None] = {
    BIRTH_PARTNER: "BIRTH_PARTNER",
    SUPPORT_PERSON: "SUPPORT_PERSON",
    LOVED_ONE: "LOVED_ONE",
    REQUESTED: None,
    REMOVED: "LOVED_ONE",
    BLOCKED: "LOVED_ONE",
    UNSUBSCRIBED: "LOVED_ONE",
}
# Readers of the labour, and whether they see private notes.
READERS = {MOTHER: True, BIRTH_PARTNER: True, SUPPORT_PERSON: False, LOVED_ONE: False}


# Expected outcomes


@dataclass(frozen=True)
class Expect:
    """The reply a cell expects, where the command runs, and what happens to
    the labour's events."""

    status: int
    # The exact JSON body. None means no body, or a 200 whose body the row
    # checks itself.
    body: dict[str, str] | None = None
    # Whether the cell runs on a labour made for it alone.
    own_labour: bool = False
    # True when the last event sequence must grow, False when it must stay
    # the same, and None when it is not read.
    appends: bool | None = False


def deny(reason: str) -> Expect:
    return Expect(403, denied(reason))


def missing(capability: str) -> Expect:
    return deny(f"Missing required capability: {capability}")


def rejected(status: int, message: str, code: str) -> Expect:
    return Expect(status, error(message, code))


def conflict(text: str) -> Expect:
    return rejected(409, f"Domain error: {text}", "conflict")


NOT_ASSOCIATED = deny(NOT_ASSOCIATED_TEXT)
NOT_OWN = deny(NOT_OWN_TEXT)
UNAUTHENTICATED = rejected(401, VERIFICATION_FAILED, "unauthenticated")
NOT_PARSED = rejected(400, "Failed to parse request body", "invalid_request")
# Allowed, and run on a labour of its own because it changes the labour.
DONE = Expect(204, own_labour=True, appends=True)
# Allowed, and harmless to the other cells, so run on the shared labour.
DONE_HERE = Expect(204, appends=True)
ANSWERED = Expect(200)
CONNECTED = Expect(101)


def cells(
    *,
    mother: Expect,
    partner: Expect,
    follower: Expect,
    lapsed: Expect,
    unassociated: Expect,
    admin: Expect | None = None,
    **overrides: Expect,
) -> dict[str, Expect]:
    """Expand the columns of the matrix into one expectation per principal.

    `follower` covers the support person and the loved one, `lapsed` every
    subscriber who is not SUBSCRIBED, and `unassociated` the stranger.
    `admin` defaults to `unassociated`, since the administrators have no
    relation to the labour. A token under the internal issuer, or with an
    internal user's id under fernd's issuer, is always rejected with 401.
    `overrides` sets single principals.
    """
    table = {MOTHER: mother, BIRTH_PARTNER: partner}
    table.update(dict.fromkeys(FOLLOWERS, follower))
    table.update(dict.fromkeys(LAPSED, lapsed))
    table[STRANGER] = unassociated
    table.update(dict.fromkeys(ADMINS, admin or unassociated))
    table[INTERNAL_ISS] = UNAUTHENTICATED
    table[INTERNAL_SUB] = UNAUTHENTICATED
    table.update(overrides)
    assert set(table) == set(PRINCIPALS), sorted(set(table) ^ set(PRINCIPALS))
    return table


def uniform(expect: Expect) -> dict[str, Expect]:
    return cells(
        mother=expect,
        partner=expect,
        follower=expect,
        lapsed=expect,
        unassociated=expect,
    )


# Labours and the callers around them


@dataclass(frozen=True)
class Outsider:
    """A caller with no subscription to any labour of the module."""

    user_id: str
    token: str


class Clients:
    """One open httpx client per token for the whole module, because httpx
    loads the CA bundle for every new client."""

    def __init__(self, server: FerndServer) -> None:
        self.server = server
        self._clients: dict[str, httpx.Client] = {}

    def get(self, token: str) -> httpx.Client:
        client = self._clients.get(token)
        if client is None:
            client = self._clients[token] = self.server.client(token)
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


@dataclass
class Labour:
    """A labour with its mother, its subscribers by principal, the tokens of
    callers with no subscription, and the ids of items on it."""

    server: FerndServer
    clients: Clients
    labour_id: str
    mother_id: str
    mother_token: str
    outsiders: dict[str, Outsider]
    members: dict[str, Member] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def token(self, principal: str) -> str:
        if principal == MOTHER:
            return self.mother_token
        if principal in self.members:
            return self.members[principal].token
        return self.outsiders[principal].token

    def user_id(self, principal: str) -> str:
        if principal == MOTHER:
            return self.mother_id
        if principal in self.members:
            return self.members[principal].user_id
        return self.outsiders[principal].user_id

    def client(self, principal: str) -> httpx.Client:
        return self.clients.get(self.token(principal))

    def mother(self) -> httpx.Client:
        return self.clients.get(self.mother_token)

    def own_subscription(self, principal: str) -> str:
        """The caller's own subscription, or the loved one's for a caller
        without one."""
        member = self.members.get(principal, self.members.get(LOVED_ONE))
        assert member is not None, f"{principal} has no subscription to name"
        return member.subscription_id

    def other_subscription(self, principal: str) -> str:
        """A subscription that is not the caller's own."""
        other = BIRTH_PARTNER if principal == LOVED_ONE else LOVED_ONE
        return self.members[other].subscription_id

    def add_member(self, principal: str) -> Member:
        """Make a new user a subscriber in the relation `principal` names."""
        member = join(
            self.server,
            self.mother(),
            self.labour_id,
            unique_user(f"matrix-{principal}"),
            role=SUBSCRIBER_ROLES[principal],
            name=f"Matrix {principal}",
        )
        self.members[principal] = member
        if principal == REMOVED:
            self.mother_sends(
                "Subscription",
                "RemoveSubscriber",
                subscription_id=member.subscription_id,
            )
        if principal == BLOCKED:
            self.mother_sends(
                "Subscription",
                "BlockSubscriber",
                subscription_id=member.subscription_id,
            )
        if principal == UNSUBSCRIBED:
            reply = send(
                self.client(principal),
                "Subscriber",
                "Unsubscribe",
                labour_id=self.labour_id,
                subscription_id=member.subscription_id,
            )
            expect_status(reply, 204)
        return member

    def mother_sends(self, group: str, name: str, **payload: Any) -> None:
        reply = send(self.mother(), group, name, labour_id=self.labour_id, **payload)
        expect_status(reply, 204)

    def post_update(self, kind: str, message: str) -> str:
        """Post a labour update as the mother and return its id."""
        self.mother_sends(
            "LabourUpdate",
            "PostLabourUpdate",
            labour_update_type=kind,
            message=message,
        )
        rows = all_labour_updates(self.mother(), self.labour_id)
        update_id: str = next(
            row["labour_update_id"] for row in rows if row["message"] == message
        )
        return update_id

    def last_sequence(self) -> int:
        """The labour's last event sequence, read by an administrator."""
        path = f"/api/v1/admin/labours/{self.labour_id}/projectors"
        reply = expect_status(self.client(ADMIN_CLAIM).get(path), 200)
        sequence: int = reply.json()["last_sequence"]
        return sequence


def new_labour(
    clients: Clients,
    outsiders: dict[str, Outsider],
    principals: tuple[str, ...] = (),
) -> Labour:
    """Plan a labour for a new mother, wait for its share token and add a
    subscriber for each principal in `principals` that has one."""
    server = clients.server
    mother_id = unique_user("matrix-mother")
    mother_token = server.token(mother_id, name="Alex Morgan")
    mother = clients.get(mother_token)
    labour_id = plan_labour(mother, labour_name=LABOUR_NAME, due_date=DUE_DATE)
    token = share_token(mother, labour_id)
    labour = Labour(server, clients, labour_id, mother_id, mother_token, outsiders)
    labour.ids["token"] = token
    for principal in principals:
        if principal in SUBSCRIBER_ROLES:
            labour.add_member(principal)
    return labour


def claim_admin_token(server: FerndServer) -> str:
    """Make an administrator's token with `fernd token --admin`."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fernd",
            "token",
            "--data-dir",
            str(server.data_dir),
            "--user-id",
            CLAIM_ADMIN_ID,
            "--name",
            "Matrix Operator",
            "--admin",
            "--ttl",
            str(TOKEN_LIFETIME_SECONDS),
        ],
        capture_output=True,
        check=True,
        cwd=server.data_dir.parent,
        env=server.env,
        timeout=60,
    )
    return completed.stdout.decode().strip()


def internal_issuer_token(server: FerndServer) -> str:
    """Sign, with the installation's own key, a token for the process
    manager's user id under the issuer reserved for internal users."""
    key = load_or_create_signing_key(server.data_dir)
    now = int(time.time())
    claims = {
        "sub": PROCESS_MANAGER_ID,
        "iss": INTERNAL_ISSUER,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECONDS,
    }
    with warnings.catch_warnings():
        # joserfc 1.8 warns that the name "EdDSA" is deprecated.
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(
            {"alg": "EdDSA", "kid": key.kid}, claims, key, algorithms=["EdDSA"]
        )


@dataclass(frozen=True)
class World:
    """The module's server, the callers with no subscription, and the shared
    labour on which every principal is in place."""

    server: FerndServer
    clients: Clients
    outsiders: dict[str, Outsider]
    shared: Labour

    def labour(self, principals: tuple[str, ...] = ()) -> Labour:
        return new_labour(self.clients, self.outsiders, principals)


def _set_up_shared_labour(labour: Labour) -> None:
    """Begin the labour and add one completed contraction, a private note
    and a status update, all as the mother."""
    labour.mother_sends("Labour", "BeginLabour")
    contraction_id = new_id()
    labour.mother_sends(
        "Contraction", "StartContraction", contraction_id=contraction_id
    )
    labour.mother_sends(
        "Contraction", "EndContraction", contraction_id=contraction_id, intensity=4
    )
    labour.ids["contraction_id"] = contraction_id
    labour.ids["private_note_id"] = labour.post_update("PRIVATE_NOTE", PRIVATE_MESSAGE)
    labour.ids["status_update_id"] = labour.post_update("STATUS_UPDATE", STATUS_MESSAGE)
    rows = all_labour_updates(labour.mother(), labour.labour_id)
    labour.ids["begun_note_id"] = next(
        row["labour_update_id"] for row in rows if row["message"] == "labour_begun"
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = FerndServer(
        tmp_path_factory.mktemp("fernd-matrix") / "data",
        env={"FERND_ADMIN_USER_IDS": LISTED_ADMIN_ID},
    )
    server.start()
    stranger_id = unique_user("matrix-stranger")
    outsiders = {
        STRANGER: Outsider(stranger_id, server.token(stranger_id, name="Eve")),
        ADMIN_CLAIM: Outsider(CLAIM_ADMIN_ID, claim_admin_token(server)),
        ADMIN_LISTED: Outsider(
            LISTED_ADMIN_ID, server.token(LISTED_ADMIN_ID, name="Listed Operator")
        ),
        INTERNAL_SUB: Outsider(
            PROCESS_MANAGER_ID, server.token(PROCESS_MANAGER_ID, name="Impostor")
        ),
        INTERNAL_ISS: Outsider(PROCESS_MANAGER_ID, internal_issuer_token(server)),
    }
    clients = Clients(server)
    shared = new_labour(clients, outsiders, tuple(SUBSCRIBER_ROLES))
    _set_up_shared_labour(shared)
    yield World(server, clients, outsiders, shared)
    clients.close()
    server.stop()


# Commands


Payload = Callable[[Labour, str], dict[str, Any]]
Step = Callable[[Labour], None]
Verify = Callable[[Labour, str], None]


@dataclass(frozen=True)
class CommandRow:
    """One command of the matrix. `prepare` runs on a labour made for an
    allowed cell before the command, and `verify` after it succeeds."""

    label: str
    group: str
    name: str
    payload: Payload = field(repr=False)
    cells: dict[str, Expect] = field(repr=False)
    prepare: Step | None = field(default=None, repr=False)
    verify: Verify | None = field(default=None, repr=False)


def _labour_payload(labour: Labour, principal: str) -> dict[str, Any]:
    return {"labour_id": labour.labour_id}


def _plan_payload(labour: Labour, principal: str) -> dict[str, Any]:
    return {
        "labour_id": labour.labour_id,
        "first_labour": True,
        "due_date": DUE_DATE,
        "labour_name": LABOUR_NAME,
    }


def _with(**fields: Any) -> Payload:
    """A payload of the labour id and fixed `fields`."""

    def build(labour: Labour, principal: str) -> dict[str, Any]:
        return {"labour_id": labour.labour_id, **fields}

    return build


def _with_ids(**fields: str) -> Payload:
    """A payload of the labour id and, for each field, the labour's id stored
    under the given key."""

    def build(labour: Labour, principal: str) -> dict[str, Any]:
        return {
            "labour_id": labour.labour_id,
            **{name: labour.ids[key] for name, key in fields.items()},
        }

    return build


def _extended(base: Payload, **fields: Any) -> Payload:
    def build(labour: Labour, principal: str) -> dict[str, Any]:
        return {**base(labour, principal), **fields}

    return build


def _new_contraction(labour: Labour, principal: str) -> dict[str, Any]:
    return {"labour_id": labour.labour_id, "contraction_id": new_id()}


def _member_subscription(target: str, **fields: Any) -> Payload:
    """A payload naming the subscription of the subscriber `target`."""

    def build(labour: Labour, principal: str) -> dict[str, Any]:
        return {
            "labour_id": labour.labour_id,
            "subscription_id": labour.members[target].subscription_id,
            **fields,
        }

    return build


def _own_subscription(**fields: Any) -> Payload:
    def build(labour: Labour, principal: str) -> dict[str, Any]:
        return {
            "labour_id": labour.labour_id,
            "subscription_id": labour.own_subscription(principal),
            **fields,
        }

    return build


def _other_subscription(**fields: Any) -> Payload:
    def build(labour: Labour, principal: str) -> dict[str, Any]:
        return {
            "labour_id": labour.labour_id,
            "subscription_id": labour.other_subscription(principal),
            **fields,
        }

    return build


def _rebuild_payload(labour: Labour, principal: str) -> dict[str, Any]:
    return {"aggregate_id": labour.labour_id}


def _start_contraction(labour: Labour) -> None:
    contraction_id = new_id()
    labour.mother_sends(
        "Contraction", "StartContraction", contraction_id=contraction_id
    )
    labour.ids["contraction_id"] = contraction_id


def _complete_contraction(labour: Labour) -> None:
    _start_contraction(labour)
    labour.mother_sends(
        "Contraction",
        "EndContraction",
        contraction_id=labour.ids["contraction_id"],
        intensity=4,
    )


def _post_status_update(labour: Labour) -> None:
    labour.ids["status_update_id"] = labour.post_update("STATUS_UPDATE", STATUS_MESSAGE)


def _add(principal: str) -> Step:
    def step(labour: Labour) -> None:
        labour.add_member(principal)

    return step


def _labour_view(labour: Labour) -> httpx.Response:
    return ask(labour.mother(), "Labour", "GetLabour", labour_id=labour.labour_id)


def _subscription_of(labour: Labour, user_id: str) -> dict[str, Any]:
    rows = subscriptions(labour.mother(), labour.labour_id)
    return next(row for row in rows if row["subscriber_id"] == user_id)


def _verify_complete(labour: Labour, principal: str) -> None:
    body = expect_status(_labour_view(labour), 200).json()
    assert body["current_phase"] == "COMPLETE"


def _verify_deleted(labour: Labour, principal: str) -> None:
    reply = _labour_view(labour)
    assert reply.status_code == 404
    assert reply.json() == error("Labour not found", "not_found")


def _verify_new_share_token(labour: Labour, principal: str) -> None:
    # The process manager sets a fresh token after the old one is invalidated.
    reply = eventually(
        lambda: ask(
            labour.mother(),
            "Subscription",
            "GetSubscriptionToken",
            labour_id=labour.labour_id,
        ),
        lambda response: (
            response.status_code == 200
            and response.json()["token"] != labour.ids["token"]
        ),
    )
    token = expect_status(reply, 200).json()["token"]
    assert token != labour.ids["token"]
    assert SHARE_TOKEN_PATTERN.fullmatch(token)


def _verify_status(target: str, status: str) -> Verify:
    """Check that the subscription of `target` ends in `status`. An empty
    `target` means the caller's own subscription."""

    def verify(labour: Labour, principal: str) -> None:
        member = labour.members[target or principal]
        assert _subscription_of(labour, member.user_id)["status"] == status

    return verify


def _verify_requested(labour: Labour, principal: str) -> None:
    assert _subscription_of(labour, labour.user_id(principal))["status"] == "REQUESTED"


def _verify_field(target: str, name: str, value: str) -> Verify:
    def verify(labour: Labour, principal: str) -> None:
        member = labour.members[target]
        assert _subscription_of(labour, member.user_id)[name] == value

    return verify


MANAGE_LABOUR = cells(
    mother=DONE,
    partner=missing("ManageLabour"),
    follower=missing("ManageLabour"),
    lapsed=NOT_ASSOCIATED,
    unassociated=NOT_ASSOCIATED,
)
EXECUTE = cells(
    mother=DONE,
    partner=DONE,
    follower=missing("ExecuteLabourCommand"),
    lapsed=NOT_ASSOCIATED,
    unassociated=NOT_ASSOCIATED,
)
MANAGE_SUBSCRIPTIONS = cells(
    mother=DONE,
    partner=missing("ManageLabourSubscriptions"),
    follower=missing("ManageLabourSubscriptions"),
    lapsed=NOT_ASSOCIATED,
    unassociated=NOT_ASSOCIATED,
)
CANNOT_SUBSCRIBE = conflict("Invalid command: Cannot subscribe to labour")

COMMAND_ROWS = [
    CommandRow(
        "PlanLabour",
        "Labour",
        "PlanLabour",
        _plan_payload,
        cells(
            mother=conflict("Cannot transition from state EARLY to state PLANNED"),
            partner=missing("ManageLabour"),
            follower=missing("ManageLabour"),
            lapsed=NOT_ASSOCIATED,
            unassociated=conflict(
                "Cannot transition from state EARLY to state PLANNED"
            ),
        ),
    ),
    CommandRow(
        "UpdateLabourPlan",
        "Labour",
        "UpdateLabourPlan",
        _extended(_labour_payload, first_labour=True, due_date=DUE_DATE),
        {**MANAGE_LABOUR, MOTHER: DONE_HERE},
    ),
    CommandRow(
        "BeginLabour",
        "Labour",
        "BeginLabour",
        _labour_payload,
        {
            **MANAGE_LABOUR,
            MOTHER: conflict("Cannot transition from state EARLY to state EARLY"),
        },
    ),
    CommandRow(
        "CompleteLabour",
        "Labour",
        "CompleteLabour",
        _with(notes="All done"),
        MANAGE_LABOUR,
        verify=_verify_complete,
    ),
    CommandRow(
        "DeleteLabour",
        "Labour",
        "DeleteLabour",
        _labour_payload,
        MANAGE_LABOUR,
        prepare=lambda labour: labour.mother_sends("Labour", "CompleteLabour"),
        verify=_verify_deleted,
    ),
    CommandRow(
        "SendLabourInvite",
        "Labour",
        "SendLabourInvite",
        _with(invite_email="friend@example.org"),
        {**MANAGE_LABOUR, MOTHER: DONE_HERE},
    ),
    CommandRow(
        "InvalidateSubscriptionToken",
        "Subscription",
        "InvalidateSubscriptionToken",
        _labour_payload,
        MANAGE_LABOUR,
        verify=_verify_new_share_token,
    ),
    CommandRow(
        "StartContraction",
        "Contraction",
        "StartContraction",
        _new_contraction,
        EXECUTE,
    ),
    CommandRow(
        "EndContraction",
        "Contraction",
        "EndContraction",
        _extended(_with_ids(contraction_id="contraction_id"), intensity=5),
        EXECUTE,
        prepare=_start_contraction,
    ),
    CommandRow(
        "UpdateContraction",
        "Contraction",
        "UpdateContraction",
        _extended(_with_ids(contraction_id="contraction_id"), intensity=6),
        EXECUTE,
        prepare=_complete_contraction,
    ),
    CommandRow(
        "DeleteContraction",
        "Contraction",
        "DeleteContraction",
        _with_ids(contraction_id="contraction_id"),
        EXECUTE,
        prepare=_complete_contraction,
    ),
    CommandRow(
        "PostLabourUpdate",
        "LabourUpdate",
        "PostLabourUpdate",
        _with(labour_update_type="STATUS_UPDATE", message="Hello from the matrix"),
        EXECUTE,
    ),
    CommandRow(
        "UpdateLabourUpdateMessage",
        "LabourUpdate",
        "UpdateLabourUpdateMessage",
        _extended(_with_ids(labour_update_id="status_update_id"), message="Edited"),
        EXECUTE,
        prepare=_post_status_update,
    ),
    CommandRow(
        "UpdateLabourUpdateType",
        "LabourUpdate",
        "UpdateLabourUpdateType",
        _extended(
            _with_ids(labour_update_id="status_update_id"),
            labour_update_type="PRIVATE_NOTE",
        ),
        EXECUTE,
        prepare=_post_status_update,
    ),
    CommandRow(
        "DeleteLabourUpdate",
        "LabourUpdate",
        "DeleteLabourUpdate",
        _with_ids(labour_update_id="status_update_id"),
        EXECUTE,
        prepare=_post_status_update,
    ),
    # The internal commands are not public commands, so a client sending
    # them gets a parse error whatever its rights.
    CommandRow(
        "AdvanceLabourPhase",
        "Labour",
        "AdvanceLabourPhase",
        _with(labour_phase="ACTIVE"),
        uniform(NOT_PARSED),
    ),
    CommandRow(
        "PostApplicationLabourUpdate",
        "LabourUpdate",
        "PostApplicationLabourUpdate",
        _with(message="labour_begun"),
        uniform(NOT_PARSED),
    ),
    CommandRow(
        "SetSubscriptionToken",
        "Subscription",
        "SetSubscriptionToken",
        _with(token="ABCDEFGH"),
        uniform(NOT_PARSED),
    ),
    CommandRow(
        "RequestAccess",
        "Subscriber",
        "RequestAccess",
        _with_ids(token="token"),
        cells(
            mother=conflict("Invalid command: Cannot subscribe to own labour"),
            partner=CANNOT_SUBSCRIBE,
            follower=CANNOT_SUBSCRIBE,
            lapsed=CANNOT_SUBSCRIBE,
            unassociated=DONE,
            removed=DONE,
            unsubscribed=DONE,
        ),
        verify=_verify_requested,
    ),
    CommandRow(
        "Unsubscribe",
        "Subscriber",
        "Unsubscribe",
        _own_subscription(),
        cells(
            mother=missing("ManageOwnSubscription"),
            partner=DONE,
            follower=DONE,
            lapsed=NOT_ASSOCIATED,
            unassociated=NOT_ASSOCIATED,
        ),
        verify=_verify_status("", "UNSUBSCRIBED"),
    ),
    CommandRow(
        "UpdateNotificationMethods",
        "Subscriber",
        "UpdateNotificationMethods",
        _own_subscription(notification_methods=["EMAIL"]),
        cells(
            mother=missing("ManageOwnSubscription"),
            partner=DONE_HERE,
            follower=DONE_HERE,
            lapsed=NOT_ASSOCIATED,
            unassociated=NOT_ASSOCIATED,
        ),
    ),
    CommandRow(
        "Unsubscribe-other",
        "Subscriber",
        "Unsubscribe",
        _other_subscription(),
        cells(
            mother=missing("ManageOwnSubscription"),
            partner=NOT_OWN,
            follower=NOT_OWN,
            lapsed=NOT_ASSOCIATED,
            unassociated=NOT_ASSOCIATED,
        ),
    ),
    CommandRow(
        "UpdateNotificationMethods-other",
        "Subscriber",
        "UpdateNotificationMethods",
        _other_subscription(notification_methods=["SMS"]),
        cells(
            mother=missing("ManageOwnSubscription"),
            partner=NOT_OWN,
            follower=NOT_OWN,
            lapsed=NOT_ASSOCIATED,
            unassociated=NOT_ASSOCIATED,
        ),
    ),
    CommandRow(
        "UpdateAccessLevel",
        "Subscriber",
        "UpdateAccessLevel",
        _member_subscription(LOVED_ONE, access_level="SUPPORTER"),
        cells(
            mother=missing("UpdateSubscriptionAccessLevel"),
            partner=missing("UpdateSubscriptionAccessLevel"),
            follower=missing("UpdateSubscriptionAccessLevel"),
            lapsed=NOT_ASSOCIATED,
            unassociated=NOT_ASSOCIATED,
            admin=DONE,
        ),
        prepare=_add(LOVED_ONE),
        verify=_verify_field(LOVED_ONE, "access_level", "SUPPORTER"),
    ),
    CommandRow(
        "ApproveSubscriber",
        "Subscription",
        "ApproveSubscriber",
        _member_subscription(REQUESTED),
        MANAGE_SUBSCRIPTIONS,
        prepare=_add(REQUESTED),
        verify=_verify_status(REQUESTED, "SUBSCRIBED"),
    ),
    CommandRow(
        "RemoveSubscriber",
        "Subscription",
        "RemoveSubscriber",
        _member_subscription(LOVED_ONE),
        MANAGE_SUBSCRIPTIONS,
        prepare=_add(LOVED_ONE),
        verify=_verify_status(LOVED_ONE, "REMOVED"),
    ),
    CommandRow(
        "BlockSubscriber",
        "Subscription",
        "BlockSubscriber",
        _member_subscription(LOVED_ONE),
        MANAGE_SUBSCRIPTIONS,
        prepare=_add(LOVED_ONE),
        verify=_verify_status(LOVED_ONE, "BLOCKED"),
    ),
    CommandRow(
        "UnblockSubscriber",
        "Subscription",
        "UnblockSubscriber",
        _member_subscription(BLOCKED),
        MANAGE_SUBSCRIPTIONS,
        prepare=_add(BLOCKED),
        verify=_verify_status(BLOCKED, "REMOVED"),
    ),
    CommandRow(
        "UpdateSubscriberRole",
        "Subscription",
        "UpdateSubscriberRole",
        _member_subscription(LOVED_ONE, role="SUPPORT_PERSON"),
        MANAGE_SUBSCRIPTIONS,
        prepare=_add(LOVED_ONE),
        verify=_verify_field(LOVED_ONE, "role", "SUPPORT_PERSON"),
    ),
    CommandRow(
        "RebuildReadModels",
        "Admin",
        "RebuildReadModels",
        _rebuild_payload,
        cells(
            mother=missing("Administer"),
            partner=missing("Administer"),
            follower=missing("Administer"),
            lapsed=NOT_ASSOCIATED,
            unassociated=NOT_ASSOCIATED,
            admin=Expect(204),
        ),
    ),
]


def _command_cases() -> list[Any]:
    return [
        pytest.param(row, principal, id=f"{row.label}-{principal}")
        for row in COMMAND_ROWS
        for principal in PRINCIPALS
    ]


def _labour_for(world: World, row: CommandRow, principal: str) -> Labour:
    expect = row.cells[principal]
    if not expect.own_labour:
        return world.shared
    labour = world.labour((principal,))
    if row.prepare is not None:
        row.prepare(labour)
    return labour


@pytest.mark.parametrize(("row", "principal"), _command_cases())
def test_command_cell(world: World, row: CommandRow, principal: str) -> None:
    expect = row.cells[principal]
    labour = _labour_for(world, row, principal)
    before = labour.last_sequence()

    client = labour.client(principal)
    reply = send(client, row.group, row.name, **row.payload(labour, principal))

    assert reply.status_code == expect.status, reply.text
    if expect.body is None:
        assert reply.content == b""
    else:
        assert reply.json() == expect.body
    if row.verify is not None and expect.status == 204:
        row.verify(labour, principal)
    if expect.appends is True:
        assert labour.last_sequence() > before
    if expect.appends is False:
        assert labour.last_sequence() == before


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_plan_new_labour_cell(world: World, principal: str) -> None:
    # Without a labour every caller is unassociated, and an unassociated
    # caller may plan one.
    labour = world.shared
    labour_id = new_id()
    client = labour.client(principal)

    reply = send(
        client,
        "Labour",
        "PlanLabour",
        labour_id=labour_id,
        first_labour=True,
        due_date=DUE_DATE,
    )

    if principal in (INTERNAL_ISS, INTERNAL_SUB):
        assert reply.status_code == 401
        assert reply.json() == UNAUTHENTICATED.body
        return
    assert reply.status_code == 204, reply.text
    view = expect_status(ask(client, "Labour", "GetLabour", labour_id=labour_id), 200)
    assert view.json()["mother_id"] == labour.user_id(principal)


# Queries


@dataclass(frozen=True)
class QueryRow:
    """One query of the matrix; `verify` checks the body of a 200 reply."""

    label: str
    group: str
    name: str
    payload: Payload = field(repr=False)
    cells: dict[str, Expect] = field(repr=False)
    verify: Callable[[Any, Labour, str], None] = field(repr=False)


def _read_cells(**overrides: Expect) -> dict[str, Expect]:
    """The cells of a ReadLabour query, with single principals overridden."""
    table = cells(
        mother=ANSWERED,
        partner=ANSWERED,
        follower=ANSWERED,
        lapsed=NOT_ASSOCIATED,
        unassociated=NOT_ASSOCIATED,
    )
    table.update(overrides)
    return table


def _mother_cells() -> dict[str, Expect]:
    return cells(
        mother=ANSWERED,
        partner=missing("ReadSubscriptions"),
        follower=missing("ReadSubscriptions"),
        lapsed=NOT_ASSOCIATED,
        unassociated=NOT_ASSOCIATED,
    )


def _page_ids(body: Any, key: str) -> list[str]:
    return [row[key] for row in body["data"]]


def _verify_labour(body: Any, labour: Labour, principal: str) -> None:
    assert body["labour_id"] == labour.labour_id
    assert body["mother_id"] == labour.mother_id


def _verify_contractions(body: Any, labour: Labour, principal: str) -> None:
    assert _page_ids(body, "contraction_id") == [labour.ids["contraction_id"]]


def _verify_contraction(body: Any, labour: Labour, principal: str) -> None:
    assert body["contraction_id"] == labour.ids["contraction_id"]


def _verify_statistics(body: Any, labour: Labour, principal: str) -> None:
    assert body["range"] == "all"
    assert body["contraction_count"] == 1


def _verify_updates(body: Any, labour: Labour, principal: str) -> None:
    assert labour.ids["status_update_id"] in _page_ids(body, "labour_update_id")


def _verify_single_update(key: str) -> Callable[[Any, Labour, str], None]:
    def verify(body: Any, labour: Labour, principal: str) -> None:
        assert _page_ids(body, "labour_update_id") == [labour.ids[key]]

    return verify


def _verify_own_subscription(body: Any, labour: Labour, principal: str) -> None:
    assert body["subscription_id"] == labour.members[principal].subscription_id


def _verify_share_token(body: Any, labour: Labour, principal: str) -> None:
    assert body == {"token": labour.ids["token"]}


def _verify_subscriptions(body: Any, labour: Labour, principal: str) -> None:
    expected = sorted(member.subscription_id for member in labour.members.values())
    assert sorted(_page_ids(body, "subscription_id")) == expected


def _verify_mother_user(body: Any, labour: Labour, principal: str) -> None:
    assert [user["user_id"] for user in body] == [labour.mother_id]


def _verify_users(body: Any, labour: Labour, principal: str) -> None:
    expected = sorted(
        [labour.mother_id, *(member.user_id for member in labour.members.values())]
    )
    assert [user["user_id"] for user in body] == expected


QUERY_ROWS = [
    QueryRow(
        "GetLabour",
        "Labour",
        "GetLabour",
        _labour_payload,
        _read_cells(),
        _verify_labour,
    ),
    QueryRow(
        "GetContractions",
        "Contraction",
        "GetContractions",
        _labour_payload,
        _read_cells(),
        _verify_contractions,
    ),
    QueryRow(
        "GetContractionById",
        "Contraction",
        "GetContractionById",
        _with_ids(contraction_id="contraction_id"),
        _read_cells(),
        _verify_contraction,
    ),
    QueryRow(
        "GetContractionStatistics",
        "Contraction",
        "GetContractionStatistics",
        _with(range="all"),
        _read_cells(),
        _verify_statistics,
    ),
    QueryRow(
        "GetLabourUpdates",
        "LabourUpdate",
        "GetLabourUpdates",
        _with(limit=100),
        _read_cells(),
        _verify_updates,
    ),
    QueryRow(
        "GetLabourUpdateById-status",
        "LabourUpdate",
        "GetLabourUpdateById",
        _with_ids(labour_update_id="status_update_id"),
        _read_cells(),
        _verify_single_update("status_update_id"),
    ),
    QueryRow(
        "GetLabourUpdateById-private",
        "LabourUpdate",
        "GetLabourUpdateById",
        _with_ids(labour_update_id="private_note_id"),
        _read_cells(
            **dict.fromkeys(
                FOLLOWERS, rejected(404, "LabourUpdate not found", "not_found")
            )
        ),
        _verify_single_update("private_note_id"),
    ),
    QueryRow(
        "GetUserSubscription",
        "Subscription",
        "GetUserSubscription",
        _labour_payload,
        _read_cells(mother=missing("ReadOwnSubscription")),
        _verify_own_subscription,
    ),
    QueryRow(
        "GetSubscriptionToken",
        "Subscription",
        "GetSubscriptionToken",
        _labour_payload,
        _mother_cells(),
        _verify_share_token,
    ),
    QueryRow(
        "GetLabourSubscriptions",
        "Subscription",
        "GetLabourSubscriptions",
        _labour_payload,
        _mother_cells(),
        _verify_subscriptions,
    ),
    QueryRow(
        "GetUser",
        "User",
        "GetUser",
        lambda labour, principal: {
            "labour_id": labour.labour_id,
            "user_id": labour.mother_id,
        },
        _mother_cells(),
        _verify_mother_user,
    ),
    QueryRow(
        "GetUsers",
        "User",
        "GetUsers",
        _labour_payload,
        _mother_cells(),
        _verify_users,
    ),
]


def _query_cases() -> list[Any]:
    return [
        pytest.param(row, principal, id=f"{row.label}-{principal}")
        for row in QUERY_ROWS
        for principal in PRINCIPALS
    ]


@pytest.mark.parametrize(("row", "principal"), _query_cases())
def test_query_cell(world: World, row: QueryRow, principal: str) -> None:
    expect = row.cells[principal]
    labour = world.shared

    client = labour.client(principal)
    reply = ask(client, row.group, row.name, **row.payload(labour, principal))

    assert reply.status_code == expect.status, reply.text
    if expect.body is not None:
        assert reply.json() == expect.body
    if expect.status == 200:
        row.verify(reply.json(), labour, principal)


# WebSocket connect

CONNECT_CELLS = cells(
    mother=CONNECTED,
    partner=CONNECTED,
    follower=CONNECTED,
    lapsed=NOT_ASSOCIATED,
    unassociated=NOT_ASSOCIATED,
)


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_connect_cell(world: World, principal: str) -> None:
    expect = CONNECT_CELLS[principal]
    labour = world.shared
    token = labour.token(principal)

    if expect.status == 101:
        async with open_session(labour.server, labour.labour_id, token) as session:
            reply = await session.request({"kind": "ServerTimestamp"})
        assert reply["success"] is True
        return

    with pytest.raises(ConnectionRejected) as caught:
        async with open_session(labour.server, labour.labour_id, token):
            pass
    assert caught.value.status_code == expect.status
    assert json.loads(caught.value.body or b"") == expect.body


# Visibility of private notes


@pytest.mark.parametrize("principal", list(READERS))
def test_private_notes_in_labour_updates(world: World, principal: str) -> None:
    labour = world.shared
    rows = all_labour_updates(labour.client(principal), labour.labour_id)
    ids = [row["labour_update_id"] for row in rows]

    assert labour.ids["status_update_id"] in ids
    assert (labour.ids["private_note_id"] in ids) is READERS[principal]
    assert (labour.ids["begun_note_id"] in ids) is READERS[principal]
    if not READERS[principal]:
        assert all(row["labour_update_type"] != "PRIVATE_NOTE" for row in rows)


@pytest.mark.parametrize("principal", list(READERS))
async def test_private_note_push_cell(world: World, principal: str) -> None:
    labour = world.labour((principal,))
    token = labour.token(principal)
    async with (
        open_session(labour.server, labour.labour_id, token) as reader,
        async_client(labour.server, labour.mother_token) as mother,
    ):
        # The reply shows the socket is registered before the posts.
        await reader.request({"kind": "ServerTimestamp"})
        for kind, message in [
            ("PRIVATE_NOTE", PRIVATE_MESSAGE),
            ("STATUS_UPDATE", STATUS_MESSAGE),
        ]:
            reply = await async_send(
                mother,
                "LabourUpdate",
                "PostLabourUpdate",
                labour_id=labour.labour_id,
                labour_update_type=kind,
                message=message,
            )
            assert reply.status_code == 204, reply.text
        # Pushes arrive in sequence order, so once the status update is in,
        # the private note before it has arrived or never will.
        await reader.push_where(
            lambda push: push["data"].get("message") == STATUS_MESSAGE
        )
    messages = [
        push["data"]["message"]
        for push in reader.pushes
        if push["type"] == "LabourUpdatePosted"
    ]

    if READERS[principal]:
        assert messages == [PRIVATE_MESSAGE, STATUS_MESSAGE]
    else:
        assert messages == [STATUS_MESSAGE]


# Internal commands run by fernd itself


def test_share_token_set_after_plan(world: World) -> None:
    labour = world.labour()
    assert SHARE_TOKEN_PATTERN.fullmatch(labour.ids["token"])


async def test_share_token_set_event_pushed_to_mother(world: World) -> None:
    labour = world.labour((LOVED_ONE,))
    backlogs: dict[str, list[dict[str, Any]]] = {}
    for principal in (MOTHER, LOVED_ONE):
        token = labour.token(principal)
        async with open_session(
            labour.server, labour.labour_id, token, since=0
        ) as session:
            # The backlog is queued before the socket reads any message, so
            # all of it arrives before this reply.
            await session.request({"kind": "ServerTimestamp"})
        backlogs[principal] = session.pushes

    token_sets = [
        push for push in backlogs[MOTHER] if push["type"] == "SubscriptionTokenSet"
    ]
    assert [push["data"]["token"] for push in token_sets] == [labour.ids["token"]]
    assert [push["type"] for push in backlogs[MOTHER][:3]] == [
        "LabourPlanned",
        "LabourPhaseChanged",
        "SubscriptionTokenSet",
    ]
    assert "SubscriptionTokenSet" not in [push["type"] for push in backlogs[LOVED_ONE]]


def test_share_token_effect_completed(world: World) -> None:
    labour = world.labour()
    path = f"/api/v1/admin/labours/{labour.labour_id}/effects"
    admin = labour.client(ADMIN_CLAIM)
    # The ledger marks the effect COMPLETED after the token command's commit,
    # so the row may still read DISPATCHED when the token is first seen.
    rows = eventually(
        lambda: expect_status(admin.get(path), 200).json(),
        lambda rows: all(row["status"] == "COMPLETED" for row in rows),
    )
    commands = [row for row in rows if row["effect_type"] == "COMMAND"]

    assert [row["idempotency_key"] for row in commands] == [
        f"{labour.labour_id}:1:cmd:generate_subscription_token"
    ]
    assert commands[0]["status"] == "COMPLETED"


def test_share_token_event_by_process_manager(world: World) -> None:
    labour = world.labour()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fernd",
            "export",
            "--labour",
            labour.labour_id,
            "--data-dir",
            str(labour.server.data_dir),
        ],
        capture_output=True,
        check=True,
        cwd=labour.server.data_dir.parent,
        env=labour.server.env,
        timeout=60,
    )
    events = [json.loads(line) for line in completed.stdout.decode().splitlines()]
    authors = {event["event_type"]: event["user_id"] for event in events}

    assert authors == {
        "LabourPlanned": labour.mother_id,
        "LabourPhaseChanged": labour.mother_id,
        "SubscriptionTokenSet": PROCESS_MANAGER_ID,
    }


def test_internal_user_id_token_is_rejected(world: World) -> None:
    # Principals are resolved by user id, so a token carrying the process
    # manager's id would otherwise be taken for it on its own labours.
    client = world.clients.get(world.outsiders[INTERNAL_SUB].token)

    reply = client.post(
        "/api/v1/labour/plan",
        json={"first_labour": True, "due_date": DUE_DATE, "labour_name": LABOUR_NAME},
    )

    assert reply.status_code == 401
    assert reply.json() == UNAUTHENTICATED.body
