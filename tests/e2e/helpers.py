"""Request builders and waits shared by the end-to-end tests.

Every helper talks to a real `fernd serve` over HTTP. Helpers that set up
state (a planned labour, an approved subscriber) raise AssertionError with the
server's reply when a step fails, so a broken setup names its cause.
"""

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from uuid6 import uuid7

from tests.conftest import FerndServer

T = TypeVar("T")

# Shared read models (history, active labour, subscription lists) and the share
# token are written after the reply, so tests poll them for at most this long.
EVENTUAL_TIMEOUT_SECONDS = 5.0
# Pause between two polls of an eventually consistent read model.
POLL_INTERVAL_SECONDS = 0.02
# The largest `limit` a page query accepts.
MAX_PAGE_SIZE = 100


def tagged(group: str, name: str, **payload: Any) -> dict[str, Any]:
    """Build the two-level tagged JSON of a public command or query."""
    return {"type": group, "payload": {"type": name, "payload": payload}}


def send(
    client: httpx.Client,
    group: str,
    name: str,
    *,
    key: str | None = None,
    **payload: Any,
) -> httpx.Response:
    """POST a command to `/api/v1/command`, with `key` as Idempotency-Key."""
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(
        "/api/v1/command", json=tagged(group, name, **payload), headers=headers
    )


def ask(client: httpx.Client, group: str, name: str, **payload: Any) -> httpx.Response:
    """POST a query to `/api/v1/query`."""
    return client.post("/api/v1/query", json=tagged(group, name, **payload))


def expect_status(response: httpx.Response, status: int) -> httpx.Response:
    """Return `response`, or raise AssertionError naming the request and reply."""
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path} returned "
            f"{response.status_code} {response.text!r}, expected {status}"
        )
    return response


def error(message: str, code: str) -> dict[str, str]:
    """Build the error body fernd sends for `message` and `code`."""
    return {"message": message, "code": code}


def denied(reason: str) -> dict[str, str]:
    """Build the 403 body of an authorization failure."""
    return error(f"Authorization failed: {reason}", "forbidden")


def unique_user(prefix: str) -> str:
    """Return a user id no other test uses, so module-scoped servers stay clean."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wire_time(value: datetime) -> str:
    """Write `value` as fernd writes datetimes: UTC, `Z`, and six fractional
    digits only when the microsecond part is not zero."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_wire_time(text: str) -> datetime:
    """Parse a datetime written by fernd (always UTC with `Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Split a `next_cursor` into its datetime and id texts.

    The cursor is URL-safe base64 without padding of `<datetime>|<id>`. Raises
    AssertionError when it carries padding or lacks the separator.
    """
    if "=" in cursor:
        raise AssertionError(f"cursor {cursor!r} carries base64 padding")
    padded = cursor + "=" * (-len(cursor) % 4)
    text = base64.urlsafe_b64decode(padded).decode()
    key, separator, item_id = text.partition("|")
    if not separator:
        raise AssertionError(f"cursor {cursor!r} decodes to {text!r}, no '|'")
    return key, item_id


def eventually(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float = EVENTUAL_TIMEOUT_SECONDS,
) -> T:
    """Call `fetch` until `done` holds for its result or `timeout` seconds pass;
    return the last result either way, so the caller's assert reports it."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(POLL_INTERVAL_SECONDS)


def plan_labour(
    client: httpx.Client,
    *,
    first_labour: bool = True,
    labour_name: str | None = None,
    due_date: str = "2024-05-03T00:00:00Z",
) -> str:
    """Plan a labour through `/api/v1/labour/plan` and return its id."""
    body = {
        "first_labour": first_labour,
        "due_date": due_date,
        "labour_name": labour_name,
    }
    reply = expect_status(client.post("/api/v1/labour/plan", json=body), 200)
    labour_id: str = reply.json()["labour_id"]
    return labour_id


def share_token(client: httpx.Client, labour_id: str) -> str:
    """Wait for the labour's share token, which the process manager sets after
    the plan, and return it."""
    reply = eventually(
        lambda: ask(
            client, "Subscription", "GetSubscriptionToken", labour_id=labour_id
        ),
        lambda response: response.status_code == 200,
    )
    token: str = expect_status(reply, 200).json()["token"]
    return token


def subscriptions(mother: httpx.Client, labour_id: str) -> list[dict[str, Any]]:
    """Return every subscription of the labour, read with the mother's client."""
    reply = ask(mother, "Subscription", "GetLabourSubscriptions", labour_id=labour_id)
    data: list[dict[str, Any]] = expect_status(reply, 200).json()["data"]
    return data


@dataclass(frozen=True)
class Member:
    """A subscriber set up by `join`: their user id, token and subscription."""

    user_id: str
    token: str
    subscription_id: str


def join(
    server: FerndServer,
    mother: httpx.Client,
    labour_id: str,
    user_id: str,
    *,
    role: str | None = "LOVED_ONE",
    **claims: Any,
) -> Member:
    """Make `user_id` a subscriber of the labour.

    The user sends RequestAccess with the share token. When `role` is None the
    subscription stays REQUESTED; otherwise the mother approves it and, for a
    role other than LOVED_ONE, sets the role.
    """
    token = server.token(user_id, **claims)
    code = share_token(mother, labour_id)
    with server.client(token) as client:
        reply = send(
            client, "Subscriber", "RequestAccess", labour_id=labour_id, token=code
        )
        expect_status(reply, 204)
    rows = subscriptions(mother, labour_id)
    subscription_id = next(
        row["subscription_id"] for row in rows if row["subscriber_id"] == user_id
    )
    if role is not None:
        reply = send(
            mother,
            "Subscription",
            "ApproveSubscriber",
            labour_id=labour_id,
            subscription_id=subscription_id,
        )
        expect_status(reply, 204)
    if role not in (None, "LOVED_ONE"):
        reply = send(
            mother,
            "Subscription",
            "UpdateSubscriberRole",
            labour_id=labour_id,
            subscription_id=subscription_id,
            role=role,
        )
        expect_status(reply, 204)
    return Member(user_id, token, subscription_id)


def _single_page(reply: httpx.Response) -> list[dict[str, Any]]:
    page = expect_status(reply, 200).json()
    if page["has_more"]:
        raise AssertionError(f"expected one page, got has_more: {reply.text!r}")
    data: list[dict[str, Any]] = page["data"]
    return data


def all_contractions(client: httpx.Client, labour_id: str) -> list[dict[str, Any]]:
    """Return the labour's contractions, which must fit on one page of the
    maximum size."""
    reply = ask(
        client,
        "Contraction",
        "GetContractions",
        labour_id=labour_id,
        limit=MAX_PAGE_SIZE,
    )
    return _single_page(reply)


def all_labour_updates(client: httpx.Client, labour_id: str) -> list[dict[str, Any]]:
    """Return the labour updates the caller may see, which must fit on one page
    of the maximum size."""
    reply = ask(
        client,
        "LabourUpdate",
        "GetLabourUpdates",
        labour_id=labour_id,
        limit=MAX_PAGE_SIZE,
    )
    return _single_page(reply)


def new_id() -> str:
    """Return a fresh UUID v7 text, as clients make contraction ids."""
    return str(uuid7())
