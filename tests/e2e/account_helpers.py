"""Calls of the account routes shared by the account tests."""

from typing import Any

import httpx

from tests.e2e.helpers import expect_status

PASSWORD = "correct horse battery"


def register(
    client: httpx.Client, email: str, password: str = PASSWORD, **profile: Any
) -> dict[str, Any]:
    """Register an account and return its token pair; fail unless 201."""
    reply = client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, **profile}
    )
    body: dict[str, Any] = expect_status(reply, 201).json()
    return body


def login(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}
    )


def refresh(client: httpx.Client, refresh_token: str) -> httpx.Response:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
