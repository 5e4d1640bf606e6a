"""Account routes: sign-up, sign-in, token refresh, sign-out, profile,
password change and reset, and the administrators' account list.

| Method | Path | Success |
|---|---|---|
| GET | `/api/v1/auth/options` | 200 `{"registration", "password_reset"}` |
| POST | `/api/v1/auth/register` | 201 token pair |
| POST | `/api/v1/auth/login` | 200 token pair |
| POST | `/api/v1/auth/refresh` | 200 token pair |
| POST | `/api/v1/auth/logout` | 204 |
| GET, PATCH | `/api/v1/me` | 200 account |
| POST | `/api/v1/me/password` | 204 |
| POST | `/api/v1/auth/password-reset` | 202 |
| POST | `/api/v1/auth/password-reset/confirm` | 204 |
| GET | `/api/v1/admin/accounts` | 200 list, email addresses masked |

Rate limits, each rejecting with 429 `rate_limited` and `Retry-After`, are
counted in memory, so a restart of fernd resets them: wrong passwords per
account and per client address (`login_failures_per_account`,
`login_failures_per_address` within `login_window`), and registrations and
reset emails per client address (`registrations_per_address`,
`password_resets_per_address` within `account_request_window`). A wrong
current password on `/api/v1/me/password` counts as a failed login of the
account.
"""

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Final, TypeVar

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from fernd.api.app import Api, _json
from fernd.api.contact import RateLimiter
from fernd.api.errors import ApiError, error_body, invalid_request
from fernd.auth.accounts import (
    ACCOUNT_NOT_FOUND,
    Account,
    AccountRefused,
    AccountService,
    Credentials,
    PasswordChange,
    ProfileChanges,
    RefreshRequest,
    Registration,
    ResetConfirmation,
    ResetRequest,
    email_key,
)
from fernd.auth.tokens import DEFAULT_ISSUER

logger = logging.getLogger(__name__)

LOGIN_LIMITED: Final = "Rate limit exceeded: Too many failed logins, try again later"
REGISTRATION_LIMITED: Final = (
    "Rate limit exceeded: Too many accounts created, try again later"
)
RESET_LIMITED: Final = (
    "Rate limit exceeded: Too many password reset requests, try again later"
)
ACCOUNTS_UNAVAILABLE: Final = "Accounts are not available on this server"
ADMIN_LIST_DEFAULT_LIMIT: Final = 50
ADMIN_LIST_MAX_LIMIT: Final = 500
# Methods of /api/v1/me for cross-origin callers; the other routes keep the
# app's list.
ME_ALLOW_METHODS: Final = "GET, PATCH, OPTIONS"
MAX_ERROR_DETAIL_LENGTH: Final = 200

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


class MaskedAccount(msgspec.Struct, kw_only=True):
    """An account as the administrators' list shows it."""

    user_id: str
    email: str
    name: str | None
    created_at: datetime


class AccountList(msgspec.Struct, kw_only=True):
    accounts: list[MaskedAccount]
    total: int
    next_after: str | None


def mask_email(address: str) -> str:
    """Keep the first character of the local part and the domain:
    `alex@example.org` becomes `a***@example.org`."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _decode(body: bytes, kind: type[T]) -> T:
    """Decode an account route's body, or raise 400 invalid_request naming
    the field at fault. A key given twice is rejected too, because msgspec
    would keep the last value."""
    try:
        decoded = msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        # msgspec names the field and the expected type, never the value. A
        # field name can be as long as the body, so the message is cut.
        detail = str(error)[:MAX_ERROR_DETAIL_LENGTH]
        raise invalid_request(f"Failed to parse request body: {detail}") from None
    except (msgspec.DecodeError, RecursionError):
        raise invalid_request() from None
    try:
        json.loads(body, object_pairs_hook=_reject_duplicate_keys)
    except ValueError:
        raise invalid_request(
            "Failed to parse request body: a key appears more than once"
        ) from None
    return decoded


def _empty(status: int) -> Response:
    """Return a reply without a body or a Content-Type."""
    response = Response(b"", status=status)
    del response.headers["Content-Type"]
    return response


def _limit_key(email: str) -> str:
    """Return the key of an account in the login limit: a digest of the
    compared form of its email address. Keys then have a fixed size, and the
    limiter contains no address."""
    return hashlib.sha256(email_key(email).encode()).hexdigest()


class AccountRoutes:
    """The handlers; limits are built from the settings once."""

    def __init__(self, api: Api) -> None:
        self.api = api
        settings = api.settings
        self.login_by_account = RateLimiter(
            settings.login_failures_per_account, settings.login_window, LOGIN_LIMITED
        )
        self.login_by_address = RateLimiter(
            settings.login_failures_per_address, settings.login_window, LOGIN_LIMITED
        )
        self.registrations = RateLimiter(
            settings.registrations_per_address,
            settings.account_request_window,
            REGISTRATION_LIMITED,
        )
        self.resets = RateLimiter(
            settings.password_resets_per_address,
            settings.account_request_window,
            RESET_LIMITED,
        )

    @property
    def service(self) -> AccountService:
        service = self.api.accounts
        if service is None:
            raise ApiError(503, "unavailable", ACCOUNTS_UNAVAILABLE)
        return service

    def _account_user_id(self) -> str:
        """The user id of the caller's token, which must be one fernd issued."""
        verified = self.api.authenticate()
        if verified.user.issuer != DEFAULT_ISSUER:
            raise ApiError(404, "not_found", ACCOUNT_NOT_FOUND)
        return verified.user.user_id

    def _reserve_login(self, key: str) -> tuple[float, float]:
        """Count one failed login for the client address and the account
        until the outcome is known; raise 429 when either limit is reached."""
        address = self.api.client_address()
        address_stamp = self.login_by_address.check(address)
        try:
            account_stamp = self.login_by_account.check(key)
        except ApiError:
            self.login_by_address.cancel(address, address_stamp)
            raise
        return address_stamp, account_stamp

    def _release_login(self, key: str, stamps: tuple[float, float]) -> None:
        self.login_by_address.cancel(self.api.client_address(), stamps[0])
        self.login_by_account.cancel(key, stamps[1])

    # Handlers

    async def options(self) -> Response:
        return _json(200, _encoder.encode(self.service.options))

    async def register(self) -> Response:
        service = self.service
        registration = _decode(await self.api.body(), Registration)
        # Checked before the limit, so attempts on a closed server do not count.
        service.check_registration_open()
        self.registrations.check(self.api.client_address())
        pair = await service.register(registration, datetime.now(UTC))
        return _json(201, _encoder.encode(pair))

    async def login(self) -> Response:
        service = self.service
        credentials = _decode(await self.api.body(), Credentials)
        key = _limit_key(credentials.email)
        stamps = self._reserve_login(key)
        try:
            pair = await service.login(credentials, datetime.now(UTC))
        except AccountRefused:
            logger.info("Failed login from %s", self.api.client_address())
            raise
        except BaseException:
            # Cancelled or failed before a result, so the guess was not checked.
            self._release_login(key, stamps)
            raise
        self._release_login(key, stamps)
        return _json(200, _encoder.encode(pair))

    async def refresh(self) -> Response:
        body = _decode(await self.api.body(), RefreshRequest)
        pair = self.service.refresh(body.refresh_token, datetime.now(UTC))
        return _json(200, _encoder.encode(pair))

    async def logout(self) -> Response:
        body = _decode(await self.api.body(), RefreshRequest)
        self.service.logout(body.refresh_token, datetime.now(UTC))
        return _empty(204)

    async def me_route(self) -> Response:
        if request.method == "PATCH":
            return await self.update_me()
        return await self.me()

    async def me(self) -> Response:
        account: Account = self.service.account(self._account_user_id())
        return _json(200, _encoder.encode(account))

    async def update_me(self) -> Response:
        service = self.service
        user_id = self._account_user_id()
        changes = _decode(await self.api.body(), ProfileChanges)
        account = service.update_profile(user_id, changes, datetime.now(UTC))
        return _json(200, _encoder.encode(account))

    async def change_password(self) -> Response:
        service = self.service
        user_id = self._account_user_id()
        change = _decode(await self.api.body(), PasswordChange)
        key = _limit_key(service.account(user_id).email)
        stamps = self._reserve_login(key)
        try:
            await service.change_password(user_id, change, datetime.now(UTC))
        except AccountRefused as error:
            # Only a wrong current password counts as a failed login.
            if error.status != 403:
                self._release_login(key, stamps)
            raise
        except BaseException:
            self._release_login(key, stamps)
            raise
        self._release_login(key, stamps)
        return _empty(204)

    async def request_reset(self) -> Response:
        service = self.service
        body = _decode(await self.api.body(), ResetRequest)
        # Checked before the limit, so requests to a server without email
        # do not count.
        service.check_reset_available()
        self.resets.check(self.api.client_address())
        service.request_reset(body.email, datetime.now(UTC))
        return _empty(202)

    async def confirm_reset(self) -> Response:
        body = _decode(await self.api.body(), ResetConfirmation)
        await self.service.confirm_reset(body, datetime.now(UTC))
        return _empty(204)

    async def list_accounts(self) -> Response:
        service = self.service
        self.api.require_admin()
        limit = _parse_limit(request.args.get("limit"))
        after = request.args.get("after") or None
        rows, total = service.list_accounts(limit, after)
        accounts = [
            MaskedAccount(
                user_id=row.user_id,
                email=mask_email(row.email),
                name=row.name,
                created_at=row.created_at,
            )
            for row in rows
        ]
        next_after = rows[-1].user_id if len(rows) == limit else None
        return _json(
            200,
            _encoder.encode(
                AccountList(accounts=accounts, total=total, next_after=next_after)
            ),
        )


def _parse_limit(text: str | None) -> int:
    if text is None:
        return ADMIN_LIST_DEFAULT_LIMIT
    if (
        not text.isascii()
        or not text.isdigit()
        or not (1 <= int(text) <= ADMIN_LIST_MAX_LIMIT)
    ):
        raise invalid_request(f"limit must be between 1 and {ADMIN_LIST_MAX_LIMIT}")
    return int(text)


def register(app: QuartTrio, api: Api) -> None:
    """Add the account routes to `app`."""
    routes = AccountRoutes(api)
    rules = [
        ("/api/v1/auth/options", "auth_options", routes.options, "GET"),
        ("/api/v1/auth/register", "auth_register", routes.register, "POST"),
        ("/api/v1/auth/login", "auth_login", routes.login, "POST"),
        ("/api/v1/auth/refresh", "auth_refresh", routes.refresh, "POST"),
        ("/api/v1/auth/logout", "auth_logout", routes.logout, "POST"),
        ("/api/v1/me/password", "change_password", routes.change_password, "POST"),
        ("/api/v1/auth/password-reset", "reset_request", routes.request_reset, "POST"),
        (
            "/api/v1/auth/password-reset/confirm",
            "reset_confirm",
            routes.confirm_reset,
            "POST",
        ),
        ("/api/v1/admin/accounts", "admin_accounts", routes.list_accounts, "GET"),
    ]
    for path, endpoint, handler, method in rules:
        app.add_url_rule(path, endpoint, handler, methods=[method, "OPTIONS"])
    app.add_url_rule(
        "/api/v1/me", "me", routes.me_route, methods=["GET", "PATCH", "OPTIONS"]
    )

    @app.errorhandler(AccountRefused)
    async def account_refused(error: AccountRefused) -> Response:
        # Every account route reads its body before the service can refuse.
        return _json(error.status, error_body(error.code, error.message))

    @app.after_request
    async def allow_patch_on_me(response: Response) -> Response:
        if request.path == "/api/v1/me" and (
            "Access-Control-Allow-Methods" in response.headers
        ):
            response.headers["Access-Control-Allow-Methods"] = ME_ALLOW_METHODS
        return response
