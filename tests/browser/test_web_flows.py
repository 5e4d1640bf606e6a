"""The web app in Chromium against a real `fernd serve`, in the conditions
people meet: a sign-in refresh that cannot reach fernd, a role taken away
while the page is open, announcements queued offline, contraction edits,
refused share links, a server without email, no WebSocket, and keyboard
use."""

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from playwright.sync_api import BrowserContext, Page, WebSocketRoute, expect

from tests.browser.conftest import Account, api_client, register, sign_in
from tests.conftest import FerndServer
from tests.e2e.helpers import (
    all_contractions,
    all_labour_updates,
    eventually,
    expect_status,
    new_id,
    plan_labour,
    send,
    share_token,
    subscriptions,
    wire_time,
)

Launch = Callable[..., BrowserContext]

# The app fetches every list over HTTP every 10 s while no WebSocket is open.
POLL_DEADLINE_MS = 15_000


def track_path(labour_id: str) -> str:
    return f"/labours/{labour_id}/track"


def follow(
    server: FerndServer, mother: Account, labour_id: str, name: str, role: str
) -> tuple[Account, str]:
    """Register `name`, have them ask to follow the labour and the mother
    approve them with `role`; return the account and the subscription id."""
    member = register(server, name)
    with api_client(server, mother) as mother_api:
        token = share_token(mother_api, labour_id)
        with api_client(server, member) as member_api:
            reply = send(
                member_api,
                "Subscriber",
                "RequestAccess",
                labour_id=labour_id,
                token=token,
            )
            expect_status(reply, 204)
        subscription_id = next(
            row["subscription_id"]
            for row in subscriptions(mother_api, labour_id)
            if row["subscriber_id"] == member.user_id
        )
        steps: list[tuple[str, dict[str, str]]] = [("ApproveSubscriber", {})]
        if role != "LOVED_ONE":
            # Approved followers are loved ones until given another role.
            steps.append(("UpdateSubscriberRole", {"role": role}))
        for command, fields in steps:
            reply = send(
                mother_api,
                "Subscription",
                command,
                labour_id=labour_id,
                subscription_id=subscription_id,
                **fields,
            )
            expect_status(reply, 204)
    return member, subscription_id


def close_socket(socket: WebSocketRoute) -> None:
    # No live connection: commands and lists go over HTTP.
    socket.close(code=1011, reason="Closed by the test")


def without_websocket(launch: Launch, name: str) -> Page:
    """Open a page whose WebSockets close at once. Without a service worker,
    every request of the page reaches page.route."""
    page = launch(name, service_workers="block").new_page()
    page.route_web_socket(re.compile(r"/api/v1/connect/"), close_socket)
    return page


def test_queued_start_survives_failed_refresh(
    server: FerndServer, launch: Launch
) -> None:
    mother = register(server, "Alex Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
    page = without_websocket(launch, "mother")
    sign_in(page, server, mother, track_path(labour_id))
    expect(page.get_by_role("button", name="Start contraction")).to_be_visible()

    # The access token has run out and fernd cannot be reached to refresh it.
    page.route("**/api/v1/auth/refresh", lambda route: route.abort("failed"))
    page.evaluate(
        """() => {
          const session = JSON.parse(localStorage.getItem("fernd.session"));
          session.expires_at = Date.now() - 1000;
          localStorage.setItem("fernd.session", JSON.stringify(session));
        }"""
    )
    page.get_by_role("button", name="Start contraction").click()
    expect(page.locator(".contraction.pending")).to_have_count(1)
    page.wait_for_timeout(1_500)
    expect(page.locator(".contraction.pending")).to_have_count(1)
    expect(page.locator("#messages")).to_have_text("")

    page.unroute("**/api/v1/auth/refresh")
    expect(page.locator(".contraction.pending")).to_have_count(0)
    expect(page.get_by_role("button", name="Stop contraction")).to_be_visible()
    with api_client(server, mother) as mother_api:
        contractions = all_contractions(mother_api, labour_id)
    assert len(contractions) == 1, contractions


def test_demoted_partner_loses_private_notes(
    server: FerndServer, launch: Launch
) -> None:
    mother = register(server, "Alex Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
        for kind, message in (
            ("PRIVATE_NOTE", "Only for us"),
            ("STATUS_UPDATE", "All fine"),
        ):
            reply = send(
                mother_api,
                "LabourUpdate",
                "PostLabourUpdate",
                labour_id=labour_id,
                labour_update_type=kind,
                message=message,
            )
            expect_status(reply, 204)
    partner, subscription_id = follow(
        server, mother, labour_id, "Pat Morgan", "BIRTH_PARTNER"
    )
    page = launch("partner").new_page()
    sign_in(page, server, partner, f"/labours/{labour_id}/updates")
    messages = page.locator(".update-message")
    expect(messages).to_have_text(["All fine", "Only for us"])

    def set_role(role: str) -> None:
        with api_client(server, mother) as mother_api:
            reply = send(
                mother_api,
                "Subscription",
                "UpdateSubscriberRole",
                labour_id=labour_id,
                subscription_id=subscription_id,
                role=role,
            )
            expect_status(reply, 204)

    set_role("LOVED_ONE")
    expect(page.get_by_role("button", name="Post update")).to_have_count(0)
    expect(messages).to_have_text(["All fine"])
    set_role("BIRTH_PARTNER")
    expect(page.get_by_role("button", name="Post update")).to_be_visible()
    expect(messages).to_have_text(["All fine", "Only for us"])


def test_queued_announcement_holds_next_one(
    server: FerndServer, launch: Launch
) -> None:
    mother = register(server, "Alex Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
    context = launch("mother")
    page = context.new_page()
    sign_in(page, server, mother, f"/labours/{labour_id}/updates")
    expect(page.locator("#connection")).to_be_hidden()

    context.set_offline(True)
    expect(page.locator("#connection")).to_contain_text("Offline")
    page.get_by_label("Message").fill("Off to the hospital")
    page.get_by_label("Announcement").check()
    page.get_by_role("button", name="Post update").click()
    expect(page.locator(".update.pending")).to_have_count(1)
    # fernd would refuse a second announcement sent right after the first,
    # and the message would be lost.
    page.get_by_label("Message").fill("Baby is coming")
    expect(page.get_by_role("button", name="Post update")).to_be_disabled()
    expect(page.get_by_text("Your last announcement is waiting")).to_be_visible()
    page.get_by_label("Status update").check()
    expect(page.get_by_role("button", name="Post update")).to_be_enabled()

    context.set_offline(False)
    expect(page.locator(".update.pending")).to_have_count(0)
    expect(page.locator(".update-message")).to_have_text(["Off to the hospital"])
    expect(page.locator("#messages")).to_have_text("")
    expect(page.get_by_label("Message")).to_have_value("Baby is coming")


def test_intensity_edit_keeps_exact_times(server: FerndServer, launch: Launch) -> None:
    mother = register(server, "Alex Morgan")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    # The second contraction starts in the second the first one ends, so
    # times cut to whole seconds would overlap.
    times = [
        (base + timedelta(seconds=1, milliseconds=100), base + timedelta(seconds=50)),
        (
            base + timedelta(seconds=50, milliseconds=400),
            base + timedelta(seconds=90, milliseconds=700),
        ),
    ]
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
        for start, end in times:
            contraction_id = new_id()
            for command, fields in (
                ("StartContraction", {"start_time": wire_time(start)}),
                ("EndContraction", {"end_time": wire_time(end), "intensity": 4}),
            ):
                reply = send(
                    mother_api,
                    "Contraction",
                    command,
                    labour_id=labour_id,
                    contraction_id=contraction_id,
                    **fields,
                )
                expect_status(reply, 204)
        before = all_contractions(mother_api, labour_id)
    page = launch("mother").new_page()
    sign_in(page, server, mother, track_path(labour_id))

    page.get_by_role("button", name=re.compile("^Edit contraction")).first.click()
    dialog = page.get_by_role("dialog", name="Edit contraction")
    dialog.get_by_label("Intensity (0 to 10)").fill("8")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    expect(page.locator(".contraction .facts").first).to_contain_text("8/10")

    with api_client(server, mother) as mother_api:
        after = all_contractions(mother_api, labour_id)
    assert [item["duration"] for item in after] == [item["duration"] for item in before]
    assert [item["intensity"] for item in after] == [8, 4]


def test_refusals_read_plainly(server: FerndServer, launch: Launch) -> None:
    mother = register(server, "Alex Morgan")
    visitor = register(server, "Sam Rivers")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
        old_token = share_token(mother_api, labour_id)
        reply = send(
            mother_api,
            "Subscription",
            "InvalidateSubscriptionToken",
            labour_id=labour_id,
        )
        expect_status(reply, 204)
    page = launch("visitor").new_page()
    sign_in(page, server, visitor, "/")

    page.goto(f"{server.base_url}/s/{labour_id}/{old_token}")
    expect(page.locator(".form-error")).to_have_text(
        "This share link no longer works. Ask the mother for her new link."
    )
    page.goto(f"{server.base_url}/labours/not-a-labour/track")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()

    # The intensity dialog's own error, from fernd's refusal.
    with api_client(server, mother) as mother_api:
        contraction_id = new_id()
        ids = {"labour_id": labour_id, "contraction_id": contraction_id}
        reply = send(mother_api, "Contraction", "StartContraction", **ids)
        expect_status(reply, 204)
        reply = send(mother_api, "Contraction", "EndContraction", intensity=5, **ids)
        expect_status(reply, 204)
    mother_page = launch("mother").new_page()
    sign_in(mother_page, server, mother, track_path(labour_id))
    mother_page.get_by_role("button", name=re.compile("^Edit contraction")).click()
    dialog = mother_page.get_by_role("dialog", name="Edit contraction")
    dialog.get_by_label("Ended").fill("2020-01-01T00:00:00")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".form-error")).to_have_text(
        "Contraction start time cannot be after end time"
    )


def test_invites_off_without_email(server: FerndServer, launch: Launch) -> None:
    mother = register(server, "Alex Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
    page = launch("mother").new_page()
    sign_in(page, server, mother, f"/labours/{labour_id}/share")
    expect(page.get_by_role("textbox", name="Link")).to_be_visible()
    expect(page.get_by_text("This server cannot send email")).to_be_visible()
    expect(page.get_by_role("button", name="Send invite")).to_have_count(0)


def test_lists_poll_without_websocket(server: FerndServer, launch: Launch) -> None:
    mother = register(server, "Alex Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
    loved_one, _ = follow(server, mother, labour_id, "Grandma Jo", "LOVED_ONE")
    page = without_websocket(launch, "loved-one")
    sign_in(page, server, loved_one, f"/labours/{labour_id}/updates")
    expect(page.get_by_text("No updates yet.")).to_be_visible()

    with api_client(server, mother) as mother_api:
        reply = send(
            mother_api,
            "LabourUpdate",
            "PostLabourUpdate",
            labour_id=labour_id,
            labour_update_type="STATUS_UPDATE",
            message="Waters broke",
        )
        expect_status(reply, 204)
        updates = eventually(
            lambda: all_labour_updates(mother_api, labour_id),
            lambda rows: len(rows) == 1,
        )
    assert len(updates) == 1, updates
    expect(page.locator(".update-message")).to_have_text(
        ["Waters broke"], timeout=POLL_DEADLINE_MS
    )


def press_tab_until(page: Page, name: str, limit: int = 40) -> None:
    """Press Tab until the focused element's accessible name starts with
    `name`; raise AssertionError after `limit` presses."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => {
              const element = document.activeElement;
              const labels = element.labels ? [...element.labels] : [];
              return element.getAttribute("aria-label")
                || labels.map((label) => label.textContent).join(" ")
                || element.textContent.trim();
            }"""
        )
        if focused.startswith(name):
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_keyboard_role_change_and_completion(
    server: FerndServer, launch: Launch
) -> None:
    mother = register(server, "Alex Morgan")
    with api_client(server, mother) as mother_api:
        labour_id = plan_labour(mother_api)
    follow(server, mother, labour_id, "Pat Morgan", "BIRTH_PARTNER")
    page = launch("mother").new_page()
    sign_in(page, server, mother, f"/labours/{labour_id}/subscribers")
    role = page.get_by_label("Role of Pat Morgan")
    expect(role).to_have_value("BIRTH_PARTNER")

    press_tab_until(page, "Role of Pat Morgan")
    page.keyboard.press("ArrowDown")
    expect(role).to_have_value("SUPPORT_PERSON")
    expect(role).to_be_enabled()
    expect(role).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(role).to_have_value("LOVED_ONE")
    with api_client(server, mother) as mother_api:
        rows = eventually(
            lambda: subscriptions(mother_api, labour_id),
            lambda rows: rows[0]["role"] == "LOVED_ONE",
        )
    assert rows[0]["role"] == "LOVED_ONE", rows

    page.goto(f"{server.base_url}/labours/{labour_id}/complete")
    press_tab_until(page, "A note for your followers")
    page.keyboard.type("Baby Mia, 3.4 kg")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="Complete the labour?")).to_be_visible()
    press_tab_until(page, "Complete labour")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Completed")).to_be_visible()
    expect(page.get_by_text("Baby Mia, 3.4 kg")).to_be_visible()
