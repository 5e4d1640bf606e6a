"""Silent refresh of short-lived access tokens, with two tabs of one login
open: the app refreshes before expiry, one tab at a time, and keeps working
after the first access token has expired."""

import time
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import SERVER_ENV, register, sign_in
from tests.conftest import FerndServer
from tests.e2e.helpers import eventually, plan_labour

# Access tokens live this long, in seconds, so a refresh happens within the
# test: the app refreshes a quarter of the lifetime before expiry.
ACCESS_TOKEN_LIFETIME = 4

Launch = Callable[..., BrowserContext]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    env = {**SERVER_ENV, "FERND_ACCESS_TOKEN_LIFETIME": str(ACCESS_TOKEN_LIFETIME)}
    instance = FerndServer(tmp_path_factory.mktemp("fernd-refresh") / "data", env)
    instance.start()
    yield instance
    instance.stop()


def stored_session(page: Page) -> dict[str, object] | None:
    session: dict[str, object] | None = page.evaluate(
        "JSON.parse(localStorage.getItem('fernd.session'))"
    )
    return session


def test_two_tabs_refresh_one_login(server: FerndServer, launch: Launch) -> None:
    mother = register(server, "Alex Morgan")
    with server.client(mother.access_token) as client:
        labour_id = plan_labour(client)
    context = launch("mother")
    first = context.new_page()
    path = f"/labours/{labour_id}/track"
    sign_in(first, server, mother, path)
    signed_in_at = time.monotonic()
    second = context.new_page()
    second.goto(server.base_url + path)
    for page in (first, second):
        expect(page.locator("#connection")).to_be_hidden()
    session = stored_session(first)
    assert session is not None
    first_refresh_token = session["refresh_token"]

    # Two refresh cycles: with one refresh token presented twice, fernd would
    # revoke the login and both tabs would be signed out.
    refreshed = eventually(
        lambda: stored_session(first),
        lambda stored: stored is None or stored["refresh_token"] != first_refresh_token,
        timeout=ACCESS_TOKEN_LIFETIME,
    )
    assert refreshed is not None
    assert refreshed["refresh_token"] != first_refresh_token
    time.sleep(max(0.0, signed_in_at + 2 * ACCESS_TOKEN_LIFETIME - time.monotonic()))

    for page in (first, second):
        assert stored_session(page) is not None
        assert page.url.endswith(path)
    second.get_by_role("button", name="Start contraction").click()
    expect(first.get_by_role("button", name="Stop contraction")).to_be_visible()
    expect(second.locator(".contraction.pending")).to_have_count(0)
    latest = stored_session(first)
    assert latest is not None
    assert latest["refresh_token"] != first_refresh_token
