"""The quart-trio application: routes 1 to 8 of the HTTP API, CORS, security
headers, authentication, the error model, and the limit on wrong share tokens
in RequestAccess."""

import contextlib
import importlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import msgspec
import trio
from quart import Response, g, request, websocket
from quart.typing import ResponseTypes
from quart_trio import QuartTrio
from uuid6 import uuid7
from werkzeug.exceptions import HTTPException

from fernd import observability
from fernd.api.contact import (
    CONTACT_LIMIT,
    CONTACT_WINDOW_SECONDS,
    ContactMessage,
    RateLimiter,
    validate_contact,
)
from fernd.api.errors import (
    NOT_AUTHENTICATED,
    VERIFICATION_FAILED,
    ApiError,
    error_body,
    invalid_request,
)
from fernd.api.queries import parse_limit_text, parse_query, run_query
from fernd.auth.accounts import AccountService
from fernd.auth.tokens import (
    AuthenticationError,
    VerifiedToken,
    bearer_token,
)
from fernd.auth.verifier import MultiIssuerVerifier
from fernd.config import Settings, parse_networks
from fernd.domain import commands as cmd
from fernd.domain.authorization import Caller
from fernd.domain.constants import IDEMPOTENCY_KEY_MAX_LENGTH, MAX_REQUEST_BODY_BYTES
from fernd.domain.datetimes import AwareDateTime, format_datetime, to_utc
from fernd.domain.errors import AuthorizationDenied, InvalidCommand, LabourError
from fernd.runtime.messages import CommandRequest, Outcome, outcome_of
from fernd.runtime.metrics import Metrics
from fernd.runtime.registry import LabourRegistry
from fernd.runtime.sockets import SocketHub
from fernd.storage.labour_db import RecordedOutcome
from fernd.storage.shared_db import SharedDatabase

logger = logging.getLogger(__name__)

JSON = "application/json"
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Content-Type, Authorization, Idempotency-Key"
EXPOSE_HEADERS = "Idempotency-Replayed, Retry-After"
# Browsers may cache a preflight response this long, in seconds.
PREFLIGHT_MAX_AGE = "86400"
# The mother's name when her token carries no `name` claim.
UNKNOWN_MOTHER_NAME = "unknown"
# Sent on every HTTP response: browsers must not guess a reply's content type,
# must not send fernd's URLs to other sites in Referer, and must not show a
# reply inside another site's frame.
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Replies under this path carry personal data and change with every command,
# so no browser or proxy cache may store them.
API_PATH_PREFIX = "/api/"
API_CACHE_CONTROL = "no-store"
# The client address when the server gives no peer address, as with a Unix socket.
UNKNOWN_ADDRESS = "unknown"
# The reply of a RequestAccess whose share token is wrong. The limit on wrong
# tokens recognises a failure by this reply, so the token rule stays in the
# domain.
WRONG_SHARE_TOKEN_OUTCOME: Final = outcome_of(
    InvalidCommand("Incorrect subscription token")
)
REQUEST_ACCESS_LIMITED_MESSAGE = (
    "Rate limit exceeded: Too many incorrect subscription tokens, try again later"
)

_encoder = msgspec.json.Encoder()


class PlanBody(msgspec.Struct, kw_only=True):
    first_labour: bool
    due_date: AwareDateTime
    labour_name: str | None = None

    def __post_init__(self) -> None:
        self.due_date = to_utc(self.due_date)


class PlanReply(msgspec.Struct):
    labour_id: UUID


class TimestampReply(msgspec.Struct):
    server_timestamp: datetime


# Modules whose `register(app, api)` adds routes to the app.
_ROUTE_MODULES: tuple[str, ...] = (
    "fernd.api.health_routes",
    "fernd.api.export_routes",
    "fernd.api.admin_routes",
    "fernd.api.jwks_routes",
    "fernd.api.account_routes",
    "fernd.api.web_routes",
)
_LOG_STATUSES = frozenset({"REQUESTED", "RENDERED", "SENT", "FAILED", "SKIPPED"})
_CHANNELS = frozenset({"EMAIL", "SMS", "WHATSAPP"})
_plan_decoder = msgspec.json.Decoder(PlanBody)
_contact_decoder = msgspec.json.Decoder(ContactMessage)


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, content_type=JSON, headers=headers)


def _empty(status: int, headers: dict[str, str]) -> Response:
    response = Response(b"", status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def _outcome_response(outcome: Outcome) -> Response:
    headers = {}
    if outcome.replayed:
        headers["Idempotency-Replayed"] = "true"
    if outcome.retry_after is not None:
        headers["Retry-After"] = str(outcome.retry_after)
    if outcome.body is None:
        return _empty(outcome.status, headers)
    return _json(outcome.status, outcome.body, headers)


def parse_idempotency_key(value: str | None) -> str | None:
    """Return the key, or None when absent; raise ApiError(400) unless it is 1
    to 255 visible ASCII characters."""
    if value is None:
        return None
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX_LENGTH or not all(
        "\x21" <= character <= "\x7e" for character in value
    ):
        raise invalid_request("Invalid idempotency key")
    return value


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_address(text: str) -> IPAddress | None:
    """Return the address in `text`, an IPv4-mapped IPv6 address as IPv4, or
    None when `text` is no bare IP address."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress | None, networks: Iterable[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(
    peer: str | None,
    forwarded_for: Iterable[str],
    trusted_proxies: tuple[IPNetwork, ...],
) -> str:
    """Return the address of the client that sent a request.

    `peer` is the TCP peer and `forwarded_for` the `X-Forwarded-For` header
    values in the order received. When the peer is a trusted proxy, the client
    is the rightmost hop that is not a trusted proxy: each proxy appends the
    address it received from, so hops left of that one may be forged by the
    client. Otherwise the header is ignored and the peer is the client.
    """
    peer_text = peer or UNKNOWN_ADDRESS
    if not _is_trusted(_parse_address(peer_text), trusted_proxies):
        return peer_text
    hops = [
        hop.strip()
        for value in forwarded_for
        for hop in value.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        address = _parse_address(hop)
        if not _is_trusted(address, trusted_proxies):
            # A hop that is no IP address (such as "unknown") stays a key as
            # written: a trusted proxy wrote it.
            return hop if address is None else str(address)
    # Every hop is a trusted proxy, so the request started at one of them.
    return hops[0] if hops else peer_text


def parse_labour_id(text: str) -> UUID:
    try:
        return msgspec.json.decode(_encoder.encode(text), type=UUID)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_request("Invalid labour id") from None


class Api:
    """Everything the routes need: settings, registry, shared store, verifier."""

    def __init__(
        self,
        settings: Settings,
        registry: LabourRegistry,
        shared: SharedDatabase,
        verifier: MultiIssuerVerifier,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.shared = shared
        self.verifier = verifier
        self.allowed_origins = frozenset(settings.allowed_origins)
        self._plan_locks: dict[tuple[str, str], trio.Lock] = {}
        self.metrics_source: Metrics | None = None
        self.contact_limiter = RateLimiter(CONTACT_LIMIT, CONTACT_WINDOW_SECONDS)
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        # Wrong share tokens per user id, across all labours. The counts live
        # in memory, so a restart of fernd resets them and each process of
        # several would count on its own.
        self.request_access_limiter = RateLimiter(
            settings.request_access_failures_limit,
            settings.request_access_window,
            REQUEST_ACCESS_LIMITED_MESSAGE,
        )
        # When each user's last rejection was logged, by time.monotonic().
        self._request_access_logged_at: dict[str, float] = {}
        # Set by the web app's routes: the reply to a browser's GET of an
        # unknown page, so a mistyped address shows the app, not JSON.
        self.not_found_page: Callable[[], Awaitable[Response]] | None = None
        # Set by the server: fernd's own accounts.
        self.accounts: AccountService | None = None
        # Called with each stored contact message to forward it to the operator.
        self.forward_contact: Callable[[str, ContactMessage], None] | None = None

    def client_address(self) -> str:
        """Return the address of the client of the current request, read from
        `X-Forwarded-For` only when the peer is in `trusted_proxies`."""
        return client_address(
            request.remote_addr,
            request.headers.getlist("X-Forwarded-For"),
            self.trusted_proxies,
        )

    def reserve_request_access(self, user_id: str) -> float:
        """Count a RequestAccess of `user_id` as a wrong share token until
        `settle_request_access` learns its outcome; return the reservation.

        Counting before the command runs keeps concurrent or pipelined guesses
        within the limit. Raises ApiError(429, rate_limited) with Retry-After
        when the user already had `request_access_failures_limit` wrong tokens,
        or requests still unsettled, within `request_access_window` seconds.
        """
        try:
            return self.request_access_limiter.check(user_id)
        except ApiError:
            self._log_request_access_limited(user_id)
            raise

    def _log_request_access_limited(self, user_id: str) -> None:
        """Log a rejected RequestAccess, at most once per user and window, so
        a client that keeps guessing does not flood the log."""
        now = time.monotonic()
        window = self.settings.request_access_window
        logged_at = self._request_access_logged_at.get(user_id)
        if logged_at is not None and now - logged_at < window:
            return
        self._request_access_logged_at = {
            user: moment
            for user, moment in self._request_access_logged_at.items()
            if now - moment < window
        }
        self._request_access_logged_at[user_id] = now
        logger.warning(
            "Rejecting RequestAccess of user %s: limit of %d incorrect share "
            "tokens within %d s reached; logged once per window",
            user_id,
            self.settings.request_access_failures_limit,
            window,
        )

    def settle_request_access(
        self, user_id: str, reservation: float, outcome: Outcome | None
    ) -> None:
        """Keep the reservation only when `outcome` is a new wrong share token
        or None. None means the outcome is unknown (the client went away or
        the request failed) and the command may still have checked the token,
        so it counts."""
        if outcome is None:
            return
        wrong_token = (
            not outcome.replayed
            and outcome.status == WRONG_SHARE_TOKEN_OUTCOME.status
            and outcome.body == WRONG_SHARE_TOKEN_OUTCOME.body
        )
        if not wrong_token:
            self.release_request_access(user_id, reservation)

    def release_request_access(self, user_id: str, reservation: float) -> None:
        """Drop a reservation of `reserve_request_access` whose command never
        reached the labour or did not fail on the share token."""
        self.request_access_limiter.cancel(user_id, reservation)

    async def verify_bearer_token(self) -> None:
        """Verify the request's bearer token, if any, and keep the result for
        `authenticate`. Verification may wait for an issuer's keys, so it
        runs before the route, which calls `authenticate` without awaiting."""
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return
        try:
            g.verified_token = await self.verifier.verify(token)
        except AuthenticationError:
            g.verified_token = None

    def authenticate(self) -> VerifiedToken:
        header = request.headers.get("Authorization")
        if header is None:
            raise ApiError(401, "unauthenticated", NOT_AUTHENTICATED)
        verified: VerifiedToken | None = g.get("verified_token")
        if verified is None:
            raise ApiError(401, "unauthenticated", VERIFICATION_FAILED)
        return verified

    @staticmethod
    def caller_of(verified: VerifiedToken) -> Caller:
        user = verified.user
        return Caller(
            user_id=user.user_id, issuer=user.issuer, is_admin=verified.is_admin
        )

    @staticmethod
    async def body() -> bytes:
        length = request.content_length
        if length is not None and length > MAX_REQUEST_BODY_BYTES:
            raise ApiError(413, "payload_too_large", "Request body too large")
        return await request.get_data(cache=False)

    # Routes

    async def plan(self) -> Response:
        verified = self.authenticate()
        now = datetime.now(UTC)
        key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
        body = await self.body()
        try:
            plan = _plan_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise invalid_request() from None
        fingerprint = cmd.command_fingerprint(
            cmd.PlanLabour(
                labour_id=UUID(int=0),
                first_labour=plan.first_labour,
                due_date=to_utc(plan.due_date),
                labour_name=plan.labour_name,
            )
        )
        user = verified.user
        if key is None:
            return _outcome_response(await self._plan(verified, plan, now))

        lock_key = (user.user_id, key)
        lock = self._plan_locks.setdefault(lock_key, trio.Lock())
        try:
            async with lock:
                recorded = self.shared.plan_outcome(user.user_id, key)
                if recorded is not None:
                    if recorded.fingerprint != fingerprint:
                        raise invalid_request(
                            "Idempotency key reused with a different command"
                        )
                    return _outcome_response(
                        Outcome(
                            status=recorded.status, body=recorded.body, replayed=True
                        )
                    )
                outcome = await self._plan(verified, plan, now)
                if outcome.status in (200, 400, 403, 404, 409) and (
                    outcome.status != 400
                    or b'"validation_error"' in (outcome.body or b"")
                ):
                    self.shared.record_plan_outcome(
                        user.user_id,
                        key,
                        RecordedOutcome(fingerprint, outcome.status, outcome.body),
                        now,
                    )
                return _outcome_response(outcome)
        finally:
            if lock.statistics().tasks_waiting == 0 and not lock.locked():
                self._plan_locks.pop(lock_key, None)

    async def _plan(
        self, verified: VerifiedToken, plan: PlanBody, now: datetime
    ) -> Outcome:
        user = verified.user
        labour_id = uuid7()
        command = cmd.PlanLabour(
            labour_id=labour_id,
            mother_id=user.user_id,
            mother_name=user.name or UNKNOWN_MOTHER_NAME,
            first_labour=plan.first_labour,
            due_date=to_utc(plan.due_date),
            labour_name=plan.labour_name,
        )
        outcome = await self.registry.plan(
            CommandRequest(command, user, self.caller_of(verified), now)
        )
        if outcome.status == 204:
            return Outcome(status=200, body=_encoder.encode(PlanReply(labour_id)))
        return outcome

    async def command(self) -> Response:
        verified = self.authenticate()
        now = datetime.now(UTC)
        key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
        body = await self.body()
        try:
            command = cmd.decode_command(body)
        except cmd.CommandParseError:
            raise invalid_request() from None
        return _outcome_response(await self.run_command(command, verified, now, key))

    async def run_command(
        self,
        command: cmd.AnyCommand,
        verified: VerifiedToken,
        now: datetime,
        key: str | None,
    ) -> Outcome:
        """Fill the server-side fields of `command` and run it on its labour."""
        g.labour_id = command.target_labour_id
        fingerprint = cmd.command_fingerprint(command) if key is not None else None
        user = verified.user
        if isinstance(command, cmd.PlanLabour):
            command.mother_id = user.user_id
            command.mother_name = user.name or UNKNOWN_MOTHER_NAME
        elif isinstance(command, cmd.RequestAccess):
            command.subscriber_id = user.user_id
        request_ = CommandRequest(
            command, user, self.caller_of(verified), now, key, fingerprint
        )
        if isinstance(command, cmd.PlanLabour):
            return await self.registry.plan(request_)
        if not isinstance(command, cmd.RequestAccess):
            return await self.registry.execute(command.target_labour_id, request_)

        reservation = self.reserve_request_access(user.user_id)
        outcome = None
        try:
            outcome = await self.registry.execute(command.target_labour_id, request_)
        finally:
            self.settle_request_access(user.user_id, reservation, outcome)
        return outcome

    async def query(self) -> Response:
        verified = self.authenticate()
        now = datetime.now(UTC)
        body = await self.body()
        parsed = parse_query(body)
        return _json(200, await self.run_query(parsed, verified, now))

    async def run_query(
        self, parsed: Any, verified: VerifiedToken, now: datetime
    ) -> bytes:
        caller = self.caller_of(verified)
        g.labour_id = parsed.query.labour_id

        def run(actor: Any) -> bytes:
            return _encoder.encode(run_query(actor, parsed, verified.user, caller, now))

        try:
            result = await self.registry.query(parsed.query.labour_id, run)
        except (LabourError, AuthorizationDenied) as error:
            raise ApiError(error.status, error.code, error.message) from None
        if result is None:
            raise ApiError(404, "not_found", "Labour not found")
        return result

    async def history(self) -> Response:
        verified = self.authenticate()
        limit = parse_limit_text(request.args.get("limit"))
        rows = self.shared.labour_history(verified.user.user_id, limit)
        return _json(200, _encoder.encode(rows))

    async def active(self) -> Response:
        verified = self.authenticate()
        return _json(
            200, _encoder.encode(self.shared.active_labour(verified.user.user_id))
        )

    async def subscriptions(self) -> Response:
        verified = self.authenticate()
        limit = parse_limit_text(request.args.get("limit"))
        rows = self.shared.subscriptions_of(verified.user.user_id, limit)
        return _json(200, _encoder.encode(rows))

    async def subscribed_labours(self) -> Response:
        verified = self.authenticate()
        limit = parse_limit_text(request.args.get("limit"))
        rows = self.shared.subscriptions_of(verified.user.user_id, limit)
        labours = self.shared.labour_statuses([row.labour_id for row in rows])
        return _json(200, _encoder.encode(labours))

    def require_admin(self) -> VerifiedToken:
        verified = self.authenticate()
        if not verified.is_admin:
            raise ApiError(
                403,
                "forbidden",
                "Authorization failed: Missing required capability: Administer",
            )
        return verified

    async def contact_us(self) -> Response:
        now = datetime.now(UTC)
        user_id = None
        if request.headers.get("Authorization") is not None:
            user_id = self.authenticate().user.user_id
        body = await self.body()
        try:
            message = _contact_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise invalid_request() from None
        validate_contact(message)
        self.contact_limiter.check(self.client_address())
        message_id = str(uuid7())
        self.shared.save_contact_message(
            message_id,
            name=message.name,
            email=message.email,
            category=message.category,
            message=message.message,
            user_id=user_id,
            now=now,
        )
        logger.info("Contact message %s received (%s)", message_id, message.category)
        if self.forward_contact is not None:
            self.forward_contact(message_id, message)
        return _json(200, _encoder.encode({"id": message_id}))

    async def admin_notifications(self) -> Response:
        self.require_admin()
        labour_id = request.args.get("labour_id")
        for name, allowed in (("status", _LOG_STATUSES), ("channel", _CHANNELS)):
            value = request.args.get(name)
            if value is not None and value not in allowed:
                raise invalid_request(
                    f"{name} must be one of {', '.join(sorted(allowed))}"
                )
        rows = self.shared.notifications(
            labour_id=parse_labour_id(labour_id) if labour_id else None,
            status=request.args.get("status"),
            channel=request.args.get("channel"),
            limit=parse_limit_text(request.args.get("limit")),
        )
        return _json(200, _encoder.encode(rows))

    async def admin_contact_messages(self) -> Response:
        self.require_admin()
        rows = self.shared.contact_messages(parse_limit_text(request.args.get("limit")))
        return _json(200, _encoder.encode(rows))

    async def metrics(self) -> Response:
        self.require_admin()
        if self.metrics_source is None:
            raise ApiError(404, "not_found", "Not Found")
        return _json(200, _encoder.encode(self.metrics_source.snapshot()))

    async def timestamp(self, labour_id: str) -> Response:
        self.authenticate()
        parse_labour_id(labour_id)
        reply = TimestampReply(datetime.now(UTC))
        return _json(200, _encoder.encode(reply))


def create_app(api: Api, hub: SocketHub) -> QuartTrio:
    """Build the quart-trio app serving `api`, with WebSockets held by `hub`."""
    from fernd.api.websocket import connect

    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BODY_BYTES
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["RESPONSE_TIMEOUT"] = None
    app.extensions["fernd"] = api

    # Registered first, so it runs before any hook that returns an early response.
    @app.before_request
    async def start_request_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    async def observe_request(response: Response) -> Response:
        started = g.get("request_started")
        elapsed = time.perf_counter() - started if started is not None else None
        rule = request.url_rule.rule if request.url_rule is not None else None
        observability.observe_http_request(
            request.method, rule, response.status_code, elapsed
        )
        return response

    routes: list[tuple[str, str, Callable[..., Awaitable[Response]]]] = [
        ("/api/v1/labour/plan", "POST", api.plan),
        ("/api/v1/labour/history", "GET", api.history),
        ("/api/v1/labour/active", "GET", api.active),
        ("/api/v1/subscriptions/list", "GET", api.subscriptions),
        ("/api/v1/subscriptions/labours", "GET", api.subscribed_labours),
        ("/api/v1/command", "POST", api.command),
        ("/api/v1/query", "POST", api.query),
        ("/api/v1/timestamp/<labour_id>", "GET", api.timestamp),
        ("/api/v1/admin/metrics", "GET", api.metrics),
        ("/api/v1/admin/notifications", "GET", api.admin_notifications),
        ("/api/v1/admin/contact-messages", "GET", api.admin_contact_messages),
        ("/api/v1/contact-us", "POST", api.contact_us),
    ]
    for rule, method, view in routes:
        app.add_url_rule(rule, view.__name__, view, methods=[method, "OPTIONS"])
    # Further routes live in their own modules, each with `register(app, api)`.
    for module_name in _ROUTE_MODULES:
        importlib.import_module(module_name).register(app, api)

    async def connect_socket(labour_id: str) -> Response | None:
        return await connect(api, hub, labour_id)

    async def upgrade_required(labour_id: str) -> Response:
        return _json(426, error_body("invalid_request", "Upgrade Required"))

    app.add_websocket("/api/v1/connect/<labour_id>", "connect", connect_socket)
    app.add_url_rule(
        "/api/v1/connect/<labour_id>",
        "upgrade_required",
        upgrade_required,
        methods=["GET"],
    )

    @app.before_request
    async def check_origin() -> Response | None:
        if request.endpoint == "upgrade_required":
            # The connect route checks the Upgrade header before the origin.
            return None
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and api.allowed_origins
            and origin not in api.allowed_origins
        ):
            return _json(403, error_body("forbidden", "Forbidden"))
        if request.method == "OPTIONS" and request.url_rule is not None:
            return Response(
                b"", status=200, headers={"Access-Control-Max-Age": PREFLIGHT_MAX_AGE}
            )
        return None

    # Registered after check_origin, so a request from a refused origin or a
    # preflight of a known route gets its reply without verifying a token.
    @app.before_request
    async def verify_bearer_token() -> None:
        await api.verify_bearer_token()

    @app.after_request
    async def add_headers(response: Response) -> Response:
        _add_security_headers(response, request.path)
        origin = request.headers.get("Origin")
        if origin is not None and (
            not api.allowed_origins or origin in api.allowed_origins
        ):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return response

    @app.after_websocket
    async def add_rejection_headers(
        response: ResponseTypes | None,
    ) -> ResponseTypes | None:
        # A connect request rejected before the upgrade gets an HTTP response.
        if response is not None:
            _add_security_headers(response, websocket.path)
        return response

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        await _discard_body()
        response = _json(
            error.status, error_body(error.code, error.message), error.headers
        )
        return _close_if_body_unread(response)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status != 413:
            await _discard_body()
        if status == 404:
            if api.not_found_page is not None and _wants_page():
                return await api.not_found_page()
            return _json(404, error_body("not_found", "Not Found"))
        if status == 405:
            return _json(405, error_body("invalid_request", "Method Not Allowed"))
        if status == 413:
            response = _json(
                413, error_body("payload_too_large", "Request body too large")
            )
            response.headers["Connection"] = "close"
            return response
        if status < 500:
            return _json(
                400, error_body("invalid_request", "Failed to parse request body")
            )
        return _json(500, error_body("internal_error", "Internal server error"))

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        labour_id = _labour_id_hint()
        logger.exception(
            "Unexpected error on %s %s (labour %s)",
            request.method,
            request.path,
            labour_id,
        )
        return _json(500, error_body("internal_error", "Internal server error"))

    return app


def _add_security_headers(response: ResponseTypes, path: str) -> None:
    response.headers.update(SECURITY_HEADERS)
    if path.startswith(API_PATH_PREFIX):
        response.headers["Cache-Control"] = API_CACHE_CONTROL


def _wants_page() -> bool:
    """Tell whether the request is a browser's GET of a page outside the API."""
    return (
        request.method == "GET"
        and not request.path.startswith(API_PATH_PREFIX)
        and "text/html" in request.headers.get("Accept", "")
    )


def _close_if_body_unread(response: Response) -> Response:
    """Ask to close the connection when a refused request's body is larger
    than fernd reads, because the client may still be sending it."""
    length = request.content_length
    if length is not None and length > MAX_REQUEST_BODY_BYTES:
        response.headers["Connection"] = "close"
    return response


async def _discard_body() -> None:
    """Read the rest of a refused request's body, at most 64 KiB, so the
    connection is ready for the client's next request when the reply goes
    out. Replying before the body arrived left the next request on a
    keep-alive connection waiting now and then."""
    length = request.content_length
    if length is not None and length > MAX_REQUEST_BODY_BYTES:
        return
    with contextlib.suppress(Exception):
        await request.get_data(cache=False)


def _labour_id_hint() -> str:
    """Return the labour id the request named, in its body or path, for logs."""
    labour_id = g.get("labour_id")
    if labour_id is None:
        labour_id = (request.view_args or {}).get("labour_id", "unknown")
    return str(labour_id)


__all__ = ["Api", "create_app", "format_datetime"]
