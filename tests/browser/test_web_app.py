"""The web app in Chromium against a real `fernd serve`: accounts, tracking
by a birth partner, joining through the share link, private notes, and
commands made offline."""

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, Route, WebSocketRoute, expect

from tests.browser.conftest import (
    PASSWORD,
    api_client,
    register,
    screenshot,
    sign_in,
    unlabelled_controls,
)
from tests.conftest import FerndServer
from tests.e2e.helpers import (
    all_contractions,
    all_labour_updates,
    eventually,
    expect_status,
    plan_labour,
    send,
    share_token,
    subscriptions,
)

# The partner's start and stop must reach the mother's screen this fast, in
# milliseconds.
PUSH_DEADLINE_MS = 2_000
# A waiting subscriber checks for approval every 2 s.
APPROVAL_DEADLINE_MS = 8_000

Launch = Callable[..., BrowserContext]

# Waits for the service worker and returns [cache name, path] for every
# cached request.
CACHED_URLS = """async () => {
  await navigator.serviceWorker.ready;
  const entries = [];
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) {
      entries.push([name, new URL(request.url).pathname]);
    }
  }
  return entries;
}"""


def track_path(labour_id: str) -> str:
    return f"/labours/{labour_id}/track"


def approve(
    mother: httpx.Client, labour_id: str, user_id: str, role: str | None = None
) -> None:
    rows = subscriptions(mother, labour_id)
    subscription_id = next(
        row["subscription_id"] for row in rows if row["subscriber_id"] == user_id
    )
    expect_status(
        send(
            mother,
            "Subscription",
            "ApproveSubscriber",
            labour_id=labour_id,
            subscription_id=subscription_id,
        ),
        204,
    )
    if role is not None:
        expect_status(
            send(
                mother,
                "Subscription",
                "UpdateSubscriberRole",
                labour_id=labour_id,
                subscription_id=subscription_id,
                role=role,
            ),
            204,
        )


def wait_until_live(page: Page) -> None:
    """Wait until the labour page is loaded and its WebSocket is open."""
    expect(page.locator("nav.tabs")).to_be_visible()
    expect(page.locator("#connection")).to_be_hidden()


def test_sign_up_sign_out_and_sign_in(server: FerndServer, launch: Launch) -> None:
    page = launch("newcomer").new_page()
    page.goto(server.base_url + "/")
    page.wait_for_url("**/sign-in")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in")

    page.get_by_role("link", name="Create an account").click()
    email = "sam-forms@example.org"
    page.get_by_label("Your name").fill("Sam Rivers")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Hello, Sam Rivers")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".form-error")).to_have_text("Invalid email or password")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Hello, Sam Rivers")).to_be_visible()
    assert unlabelled_controls(page) == []


def test_service_worker_caches_shell_only(server: FerndServer, launch: Launch) -> None:
    account = register(server, "Sam Rivers")
    context = launch("offline-reload")
    page = context.new_page()
    sign_in(page, server, account, "/")
    expect(page.get_by_role("heading", name="Hello, Sam Rivers")).to_be_visible()
    cached = page.evaluate(CACHED_URLS)
    assert cached, "the service worker cached nothing"
    assert all(name.startswith("fernd-shell-") for name, _ in cached), cached
    paths = [path for _, path in cached]
    assert "/" in paths
    assert any(path.endswith("/js/main.js") for path in paths), paths
    assert not [path for path in paths if path.startswith("/api/")]

    context.set_offline(True)
    page.reload()
    expect(page.get_by_role("heading", name="Hello, Sam Rivers")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("You are offline.")


def test_partner_tracking_shows_on_mothers_screen(
    server: FerndServer, launch: Launch
) -> None:
    mother = register(server, "Alex Morgan")
    partner = register(server, "Pat Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api, labour_name="Baby M")
        token = share_token(mother_api, labour_id)
        with api_client(server, partner) as partner_api:
            reply = send(
                partner_api,
                "Subscriber",
                "RequestAccess",
                labour_id=labour_id,
                token=token,
            )
            expect_status(reply, 204)
        approve(mother_api, labour_id, partner.user_id, "BIRTH_PARTNER")

    mother_page = launch("mother").new_page()
    partner_page = launch("partner").new_page()
    requested: list[str] = []
    for page in (mother_page, partner_page):
        page.on("request", lambda request: requested.append(request.url))
        page.on("websocket", lambda socket: requested.append(socket.url))
    sign_in(mother_page, server, mother, track_path(labour_id))
    sign_in(partner_page, server, partner, track_path(labour_id))
    wait_until_live(mother_page)
    wait_until_live(partner_page)
    assert unlabelled_controls(partner_page) == []

    partner_page.get_by_role("button", name="Start contraction").click()
    expect(mother_page.get_by_role("button", name="Stop contraction")).to_be_visible(
        timeout=PUSH_DEADLINE_MS
    )
    partner_page.get_by_role("button", name="Stop contraction").click()
    partner_page.get_by_role("button", name="Intensity 5", exact=True).click()
    expect(mother_page.locator(".contraction .facts")).to_contain_text(
        "5/10", timeout=PUSH_DEADLINE_MS
    )
    expect(mother_page.get_by_role("button", name="Start contraction")).to_be_visible(
        timeout=PUSH_DEADLINE_MS
    )
    screenshot(mother_page, "track")
    socket_url = server.base_url.replace("http", "ws", 1)
    own_origins = (server.base_url + "/", socket_url + "/")
    assert [url for url in requested if not url.startswith(own_origins)] == []


def test_loved_one_joins_without_private_notes(
    server: FerndServer, launch: Launch
) -> None:
    mother = register(server, "Alex Morgan")
    loved_one = register(server, "Grandma Jo")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api, labour_name="Baby J")
        share_token(mother_api, labour_id)

    mother_page = launch("mother").new_page()
    sign_in(mother_page, server, mother, f"/labours/{labour_id}/share")
    link = mother_page.get_by_label("Link").input_value()
    expect(mother_page.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    qr_width = eventually(
        lambda: mother_page.evaluate("document.querySelector('img.qr').naturalWidth"),
        lambda width: width > 0,
    )
    assert qr_width > 0, "the QR code image did not load"
    screenshot(mother_page, "share")

    loved_page = launch("loved-one").new_page()
    loved_page.goto(link)
    loved_page.wait_for_url("**/sign-in?next=**")
    loved_page.get_by_label("Email").fill(loved_one.email)
    loved_page.get_by_label("Password").fill(PASSWORD)
    loved_page.get_by_role("button", name="Sign in").click()
    expect(loved_page.get_by_text("Waiting for approval.")).to_be_visible()

    mother_page.get_by_role("link", name="Subscribers").click()
    approve_button = mother_page.get_by_role("button", name="Approve Grandma Jo")
    expect(approve_button).to_be_visible()
    screenshot(mother_page, "subscribers")
    assert unlabelled_controls(mother_page) == []
    approve_button.click()
    loved_page.wait_for_url(f"**{track_path(labour_id)}", timeout=APPROVAL_DEADLINE_MS)
    wait_until_live(loved_page)

    mother_page.get_by_role("link", name="Updates").click()
    mother_page.get_by_label("Message").fill("Secret: feeling scared")
    mother_page.get_by_label("Private note").check()
    mother_page.get_by_role("button", name="Post update").click()
    expect(mother_page.locator(".update-message").first).to_have_text(
        "Secret: feeling scared"
    )
    mother_page.get_by_label("Message").fill("All going well")
    mother_page.get_by_label("Status update").check()
    mother_page.get_by_role("button", name="Post update").click()

    loved_page.get_by_role("link", name="Updates").click()
    expect(loved_page.locator(".update-message")).to_have_text(
        ["All going well"], timeout=PUSH_DEADLINE_MS
    )
    expect(loved_page.get_by_text("Secret: feeling scared")).to_have_count(0)
    expect(loved_page.get_by_role("button", name="Post update")).to_have_count(0)
    write_controls = loved_page.get_by_role("button", name=re.compile("^(Edit|Delete)"))
    expect(write_controls).to_have_count(0)
    loved_page.get_by_role("link", name="Track").click()
    expect(loved_page.get_by_role("heading", name="Statistics")).to_be_visible()
    expect(loved_page.get_by_role("button", name="Start contraction")).to_have_count(0)
    screenshot(loved_page, "loved-one")
    assert unlabelled_controls(loved_page) == []

    with api_client(server, mother) as mother_api:
        updates = all_labour_updates(mother_api, labour_id)
    messages = [item["message"] for item in updates]
    assert "Secret: feeling scared" in messages


def test_offline_start_stop_one_contraction(
    server: FerndServer, launch: Launch
) -> None:
    mother = register(server, "Alex Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
    context = launch("mother")
    page = context.new_page()
    sign_in(page, server, mother, track_path(labour_id))
    wait_until_live(page)

    context.set_offline(True)
    expect(page.locator("#connection")).to_contain_text("Offline")
    start = page.get_by_role("button", name="Start contraction")
    start.focus()
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Stop contraction").click()
    page.get_by_role("button", name="Intensity 7", exact=True).click()
    expect(page.locator(".contraction.pending")).to_have_count(1)
    expect(page.locator("#connection")).to_contain_text("2 changes saved")
    outbox = page.evaluate(
        "Object.keys(localStorage).filter((key) => key.startsWith('fernd.outbox.'))"
        ".map((key) => JSON.parse(localStorage.getItem(key))).flat()"
    )
    assert [entry["name"] for entry in outbox] == ["StartContraction", "EndContraction"]
    assert all(entry["key"] for entry in outbox), outbox

    context.set_offline(False)
    expect(page.locator(".contraction.pending")).to_have_count(0)
    expect(page.locator(".contraction")).to_have_count(1)
    with api_client(server, mother) as mother_api:
        contractions = all_contractions(mother_api, labour_id)
    assert len(contractions) == 1, contractions
    assert contractions[0]["intensity"] == 7
    assert (
        contractions[0]["duration"]["end_time"]
        != contractions[0]["duration"]["start_time"]
    )


def test_command_sent_twice_is_applied_once(
    server: FerndServer, launch: Launch
) -> None:
    mother = register(server, "Alex Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
    # Without a service worker every request of the page reaches page.route.
    context = launch("mother", service_workers="block")
    page = context.new_page()
    attempts: list[dict[str, Any]] = []

    def close_socket(socket: WebSocketRoute) -> None:
        # No live connection, so commands go over HTTP.
        socket.close(code=1011, reason="Closed by the test")

    def lose_first_reply(route: Route) -> None:
        request = route.request
        body = json.loads(request.post_data or "{}")
        response = route.fetch()
        attempts.append(
            {
                "command": body["payload"]["type"],
                "key": request.headers.get("idempotency-key"),
                "status": response.status,
                "replayed": response.headers.get("idempotency-replayed"),
            }
        )
        if len(attempts) == 1:
            # fernd applied the command, but the reply never reaches the page.
            route.abort("connectionreset")
        else:
            route.fulfill(response=response)

    page.route_web_socket(re.compile(r"/api/v1/connect/"), close_socket)
    sign_in(page, server, mother, track_path(labour_id))
    page.route("**/api/v1/command", lose_first_reply)
    page.get_by_role("button", name="Start contraction").click()
    expect(page.get_by_role("button", name="Stop contraction")).to_be_visible()
    expect(page.locator(".contraction.pending")).to_have_count(0)

    assert len(attempts) == 2, attempts
    first, second = attempts
    assert first["command"] == second["command"] == "StartContraction"
    assert first["key"] is not None
    assert second["key"] == first["key"]
    assert first["status"] == 204
    assert second["status"] == 204
    assert second["replayed"] == "true"
    with api_client(server, mother) as mother_api:
        contractions = eventually(
            lambda: all_contractions(mother_api, labour_id),
            lambda rows: len(rows) >= 1,
        )
    assert len(contractions) == 1, contractions
