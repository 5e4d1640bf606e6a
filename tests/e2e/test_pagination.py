"""Cursor pagination of GetContractions and GetLabourUpdates, and the `limit`
parameter of the list routes, over HTTP.

Contractions are ordered by start time, newest first, then by id (as
lower-case text) descending. Labour updates are ordered by creation time,
newest first, then by id descending. A cursor is URL-safe base64 without padding of
`<datetime>|<id>` taken from the last item of a page, and the next request
sends it back as `{"id": ..., "updated_at": ...}`.
"""

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import FerndServer
from tests.e2e.helpers import (
    Member,
    ask,
    decode_cursor,
    error,
    eventually,
    expect_status,
    join,
    parse_wire_time,
    plan_labour,
    send,
    unique_user,
    wire_time,
)

CONTRACTION_COUNT = 57
# Contractions come in groups that share one start time, so page boundaries
# fall inside groups and the id decides the order within a group.
SAME_START_GROUP = 3
UPDATE_COUNT = 45
# Every third update is a private note, hidden from the loved one.
PRIVATE_EVERY = 3
PAGE_LIMIT = 10
DEFAULT_PAGE_SIZE = 20
# A page walk that has not ended after this many pages is looping.
MAX_PAGES = 50

LIMIT_MESSAGE = "limit must be between 1 and 100"


@dataclass(frozen=True)
class Pages:
    """A labour with many contractions and labour updates."""

    server: FerndServer
    labour_id: str
    mother_token: str
    loved_one: Member
    # (start time, lower-case id), in the documented order.
    contractions: list[tuple[datetime, str]]
    # Messages in posting order, with whether each is a private note.
    updates: list[tuple[str, bool]]


@pytest.fixture(scope="module")
def pages(fernd_server: FerndServer) -> Iterator[Pages]:
    generator = random.Random(20240501)
    mother_token = fernd_server.token(unique_user("pages-mother"))
    base = datetime.now(UTC) - timedelta(days=1)
    starts = [
        base + timedelta(minutes=5 * (index // SAME_START_GROUP), microseconds=250)
        for index in range(CONTRACTION_COUNT)
    ]
    # Insertion order differs from time order.
    generator.shuffle(starts)
    contractions: list[tuple[datetime, str]] = []
    updates: list[tuple[str, bool]] = []
    with fernd_server.client(mother_token) as mother:
        labour_id = plan_labour(mother)
        loved_one = join(fernd_server, mother, labour_id, unique_user("pages-friend"))
        for index, start in enumerate(starts):
            contraction_id = str(uuid.UUID(int=generator.getrandbits(128), version=4))
            # Some ids are sent in upper case; fernd writes them in lower case.
            sent_id = contraction_id.upper() if index % 7 == 0 else contraction_id
            reply = send(
                mother,
                "Contraction",
                "StartContraction",
                labour_id=labour_id,
                contraction_id=sent_id,
                start_time=start.isoformat(),
            )
            expect_status(reply, 204)
            reply = send(
                mother,
                "Contraction",
                "EndContraction",
                labour_id=labour_id,
                contraction_id=sent_id,
                end_time=(start + timedelta(seconds=45)).isoformat(),
                intensity=index % 11,
            )
            expect_status(reply, 204)
            contractions.append((start, contraction_id))
        for index in range(UPDATE_COUNT):
            private = index % PRIVATE_EVERY == 0
            message = f"update {index:02d}"
            reply = send(
                mother,
                "LabourUpdate",
                "PostLabourUpdate",
                labour_id=labour_id,
                labour_update_type="PRIVATE_NOTE" if private else "STATUS_UPDATE",
                message=message,
            )
            expect_status(reply, 204)
            updates.append((message, private))
    contractions.sort(reverse=True)
    yield Pages(fernd_server, labour_id, mother_token, loved_one, contractions, updates)


def _page(
    client: httpx.Client, group: str, name: str, labour_id: str, **payload: Any
) -> dict[str, Any]:
    reply = ask(client, group, name, labour_id=labour_id, **payload)
    body: dict[str, Any] = expect_status(reply, 200).json()
    return body


def _walk(
    client: httpx.Client, group: str, name: str, labour_id: str, limit: int
) -> list[dict[str, Any]]:
    """Follow `next_cursor` from the first page to the last; return every page."""
    walked = [_page(client, group, name, labour_id, limit=limit)]
    while walked[-1]["next_cursor"] is not None:
        if len(walked) > MAX_PAGES:
            raise AssertionError(f"no last page after {MAX_PAGES} pages")
        key, item_id = decode_cursor(walked[-1]["next_cursor"])
        cursor = {"id": item_id, "updated_at": key}
        walked.append(_page(client, group, name, labour_id, limit=limit, cursor=cursor))
    return walked


def _contraction_key(row: dict[str, Any]) -> tuple[datetime, str]:
    return parse_wire_time(row["duration"]["start_time"]), row["contraction_id"]


def _items(walked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for page in walked for item in page["data"]]


# Contractions


def test_contractions_pages_cover_all_in_order(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        walked = _walk(
            mother, "Contraction", "GetContractions", pages.labour_id, PAGE_LIMIT
        )
    keys = [_contraction_key(row) for row in _items(walked)]
    assert keys == pages.contractions


def test_contractions_pages_full_until_last(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        walked = _walk(
            mother, "Contraction", "GetContractions", pages.labour_id, PAGE_LIMIT
        )
    sizes = [len(page["data"]) for page in walked]
    assert sizes == [10, 10, 10, 10, 10, 7]
    assert [page["has_more"] for page in walked] == [True] * 5 + [False]


def test_contractions_last_page_flags(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        walked = _walk(
            mother, "Contraction", "GetContractions", pages.labour_id, PAGE_LIMIT
        )
    assert walked[-1]["has_more"] is False
    assert walked[-1]["next_cursor"] is None


def test_contractions_exact_fit_has_no_more(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        page = _page(
            mother,
            "Contraction",
            "GetContractions",
            pages.labour_id,
            limit=CONTRACTION_COUNT,
        )
    assert len(page["data"]) == CONTRACTION_COUNT
    assert page["has_more"] is False
    assert page["next_cursor"] is None


def test_contractions_first_page_default_limit(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        page = _page(mother, "Contraction", "GetContractions", pages.labour_id)
    keys = [_contraction_key(row) for row in page["data"]]
    assert keys == pages.contractions[:DEFAULT_PAGE_SIZE]
    assert page["has_more"] is True


def test_contractions_cursor_names_last_item(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        page = _page(mother, "Contraction", "GetContractions", pages.labour_id)
    last_start, last_id = pages.contractions[DEFAULT_PAGE_SIZE - 1]
    assert decode_cursor(page["next_cursor"]) == (wire_time(last_start), last_id)


def test_contractions_null_limit_and_cursor(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        page = _page(
            mother,
            "Contraction",
            "GetContractions",
            pages.labour_id,
            limit=None,
            cursor=None,
        )
    assert len(page["data"]) == DEFAULT_PAGE_SIZE


# Labour updates


def test_labour_updates_pages_for_mother(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        walked = _walk(
            mother, "LabourUpdate", "GetLabourUpdates", pages.labour_id, PAGE_LIMIT
        )
    messages = [row["message"] for row in _items(walked)]
    assert messages == [message for message, _ in reversed(pages.updates)]


def test_labour_updates_pages_skip_private_notes(pages: Pages) -> None:
    with pages.server.client(pages.loved_one.token) as loved_one:
        walked = _walk(
            loved_one,
            "LabourUpdate",
            "GetLabourUpdates",
            pages.labour_id,
            PAGE_LIMIT,
        )
    messages = [row["message"] for row in _items(walked)]
    visible = [message for message, private in reversed(pages.updates) if not private]
    assert messages == visible
    # Pages are built from visible items only, so only the last one is short.
    assert [len(page["data"]) for page in walked] == [10, 10, 10]
    assert walked[-1]["next_cursor"] is None


def test_labour_updates_order_by_created_at_then_id(pages: Pages) -> None:
    with pages.server.client(pages.mother_token) as mother:
        walked = _walk(
            mother, "LabourUpdate", "GetLabourUpdates", pages.labour_id, PAGE_LIMIT
        )
    keys = [
        (parse_wire_time(row["created_at"]), row["labour_update_id"])
        for row in _items(walked)
    ]
    assert keys == sorted(keys, reverse=True)


def test_labour_updates_first_page_for_loved_one(pages: Pages) -> None:
    with pages.server.client(pages.loved_one.token) as loved_one:
        page = _page(loved_one, "LabourUpdate", "GetLabourUpdates", pages.labour_id)
    messages = [row["message"] for row in page["data"]]
    visible = [message for message, private in reversed(pages.updates) if not private]
    assert messages == visible[:DEFAULT_PAGE_SIZE]
    assert page["has_more"] is True


def test_labour_updates_cursor_names_last_item(pages: Pages) -> None:
    with pages.server.client(pages.loved_one.token) as loved_one:
        page = _page(loved_one, "LabourUpdate", "GetLabourUpdates", pages.labour_id)
    last = page["data"][-1]
    expected = (last["created_at"], last["labour_update_id"])
    # created_at is written as fernd writes every datetime.
    assert decode_cursor(page["next_cursor"]) == expected


# Invalid limits and cursors

QUERY_NAMES = [
    ("Contraction", "GetContractions"),
    ("LabourUpdate", "GetLabourUpdates"),
]


@pytest.mark.parametrize(("group", "name"), QUERY_NAMES)
@pytest.mark.parametrize("limit", [0, 101, -1, "5", 5.0, True])
def test_query_limit_out_of_range(
    pages: Pages, group: str, name: str, limit: object
) -> None:
    with pages.server.client(pages.mother_token) as mother:
        reply = ask(mother, group, name, labour_id=pages.labour_id, limit=limit)
    assert reply.status_code == 400
    assert reply.json() == error(LIMIT_MESSAGE, "invalid_request")


@pytest.mark.parametrize("limit", [1, 100])
def test_query_limit_bounds_accepted(pages: Pages, limit: int) -> None:
    with pages.server.client(pages.mother_token) as mother:
        page = _page(
            mother, "Contraction", "GetContractions", pages.labour_id, limit=limit
        )
    assert len(page["data"]) == min(limit, CONTRACTION_COUNT)


MALFORMED_CURSORS = [
    {"id": "not-a-uuid", "updated_at": "2024-05-01T10:00:00Z"},
    {"id": "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d", "updated_at": "yesterday"},
    {"id": "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d", "updated_at": "2024-05-01T10:00:00"},
    {"id": "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d", "updated_at": "2024-05-01"},
    {"id": "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d"},
    {"updated_at": "2024-05-01T10:00:00Z"},
    {"id": 5, "updated_at": "2024-05-01T10:00:00Z"},
    "MjAyNC0wNS0wMVQwOTo1MjoxMC4yNTAwMDBafDAxOTBmNWEyLThkMTAtN2MyZS1iMWE0LTNmOWU2ZDJjN2IxNQ",
    [],
]


@pytest.mark.parametrize(("group", "name"), QUERY_NAMES)
@pytest.mark.parametrize("cursor", MALFORMED_CURSORS)
def test_query_cursor_malformed(
    pages: Pages, group: str, name: str, cursor: object
) -> None:
    with pages.server.client(pages.mother_token) as mother:
        reply = ask(mother, group, name, labour_id=pages.labour_id, cursor=cursor)
    assert reply.status_code == 400
    assert reply.json() == error("Invalid cursor", "invalid_request")


# The `limit` query-string parameter of the list routes

LIST_ROUTES = [
    "/api/v1/labour/history",
    "/api/v1/subscriptions/list",
    "/api/v1/subscriptions/labours",
]


@pytest.mark.parametrize("route", LIST_ROUTES)
@pytest.mark.parametrize("limit", ["0", "101", "-1", "5.0", "five", ""])
def test_list_route_limit_invalid(pages: Pages, route: str, limit: str) -> None:
    with pages.server.client(pages.mother_token) as mother:
        reply = mother.get(route, params={"limit": limit})
    assert reply.status_code == 400
    assert reply.json() == error(LIMIT_MESSAGE, "invalid_request")


def test_history_limit_keeps_newest(fernd_server: FerndServer) -> None:
    with fernd_server.client(fernd_server.token(unique_user("many-mother"))) as mother:
        labour_ids = [
            plan_labour(mother, labour_name=f"L{index}") for index in range(3)
        ]
        # Updating the first labour makes it the most recently updated.
        reply = send(
            mother,
            "Labour",
            "UpdateLabourPlan",
            labour_id=labour_ids[0],
            first_labour=False,
            due_date="2024-05-04T00:00:00Z",
            labour_name="L0 renamed",
        )
        expect_status(reply, 204)

        def history() -> list[dict[str, Any]]:
            reply = mother.get("/api/v1/labour/history", params={"limit": "2"})
            rows: list[dict[str, Any]] = expect_status(reply, 200).json()
            return rows

        rows = eventually(
            history, lambda rows: bool(rows) and rows[0]["labour_name"] == "L0 renamed"
        )
    assert [row["labour_id"] for row in rows] == [labour_ids[0], labour_ids[2]]
