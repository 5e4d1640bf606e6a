"""Fixtures for the browser tests: a `fernd serve` process, Debian's Chromium
driven by Playwright, and accounts made through the accounts API.

Each browser user gets a persistent context with a fresh profile directory,
at the 360 x 740 viewport of a small phone.
"""

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import FerndServer
from tests.e2e.helpers import expect_status

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE_VIEWPORT = {"width": 360, "height": 740}
# Screenshots of the main screens, for a person to look at. Git ignores them.
ARTIFACTS_DIR = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"
# Each test registers several accounts from 127.0.0.1, more than the default
# limit per client address allows in an hour.
SERVER_ENV = {"FERND_REGISTRATIONS_PER_ADDRESS": "1000"}


@dataclass(frozen=True)
class Account:
    """An account registered through the API, with its first access token."""

    email: str
    name: str
    user_id: str
    access_token: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    """One fernd process per test module, with registration limits raised."""
    instance = FerndServer(tmp_path_factory.mktemp("fernd-web") / "data", SERVER_ENV)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed: run `make browser-deps`")
    with sync_playwright() as instance:
        yield instance


@pytest.fixture
def launch(
    playwright: Playwright, tmp_path: Path
) -> Iterator[Callable[..., BrowserContext]]:
    """Return a function that starts Chromium with a fresh profile and returns
    its context. Every context is closed after the test."""
    contexts: list[BrowserContext] = []

    def start(name: str, **options: object) -> BrowserContext:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / f"profile-{name}",
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=PHONE_VIEWPORT,
            **options,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield start
    for context in contexts:
        context.close()


def register(server: FerndServer, name: str) -> Account:
    """Register an account with a unique email address through the API."""
    email = f"{name.split()[0].lower()}-{uuid.uuid4().hex[:10]}@example.org"
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        reply = client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "name": name},
        )
    pair = expect_status(reply, 201).json()
    return Account(email, name, pair["user"]["user_id"], pair["access_token"])


def sign_in(page: Page, server: FerndServer, account: Account, path: str) -> None:
    """Open `path`, sign in through the form it redirects to, and wait until
    the app is back at `path`."""
    page.goto(server.base_url + path)
    page.wait_for_url("**/sign-in**")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.base_url + path)


def screenshot(page: Page, name: str) -> Path:
    """Save the visible part of `page` as artifacts/<name>.png."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    path = ARTIFACTS_DIR / f"{name}.png"
    page.screenshot(path=path)
    return path


# Lists the visible controls that have no accessible name: no label, no
# aria-label and, for links and buttons, no text.
_UNLABELLED_CONTROLS = """() =>
  [...document.querySelectorAll("a[href], button, input, select, textarea")]
    .filter((element) => element.getClientRects().length > 0)
    .filter((element) => {
      const labels = element.labels ? [...element.labels] : [];
      const text = ["A", "BUTTON"].includes(element.tagName) ? element.textContent : "";
      const name = [
        element.getAttribute("aria-label") || "",
        ...labels.map((label) => label.textContent),
        text,
      ].join("");
      return name.trim() === "";
    })
    .map((element) => element.outerHTML.slice(0, 160))
"""


def unlabelled_controls(page: Page) -> list[str]:
    """Return the start of the HTML of each visible control without a name."""
    controls: list[str] = page.evaluate(_UNLABELLED_CONTROLS)
    return controls


def api_client(server: FerndServer, account: Account) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {account.access_token}"},
        timeout=30,
    )
