"""`fernd serve`: open the shared database, start the labour registry, serve
HTTP with hypercorn on Trio, and shut down cleanly on SIGINT or SIGTERM."""

import logging
import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from fernd.api import connection_guard
from fernd.api.app import Api, create_app
from fernd.api.contact import ContactMessage
from fernd.auth.account_mail import reset_mailer
from fernd.auth.accounts import AccountService
from fernd.auth.signing_keys import max_token_lifetime
from fernd.auth.tokens import LocalTokenIssuer
from fernd.auth.verifier import build_verifier
from fernd.config import Settings
from fernd.domain.constants import MAX_REQUEST_BODY_BYTES
from fernd.notifications.channels import AppriseChannels
from fernd.notifications.render import Renderer
from fernd.notifications.service import NotificationService
from fernd.notifications.settings import load_notification_settings
from fernd.runtime.metrics import Metrics, log_metrics
from fernd.runtime.registry import LabourRegistry
from fernd.runtime.sockets import CLOSE_GOING_AWAY, SocketHub
from fernd.storage.accounts_db import AccountStore
from fernd.storage.shared_db import SharedDatabase

logger = logging.getLogger(__name__)

# Connections the kernel queues before fernd accepts them.
LISTEN_BACKLOG = 1024

# Every open WebSocket is pinged this often, in seconds.
WEBSOCKET_PING_INTERVAL_SECONDS = 30.0

# In-flight HTTP requests get this long to finish once shutdown starts, in
# seconds; fernd's requests take milliseconds. Hypercorn also waits this long
# at most for its WebSocket ping tasks, which sleep a whole ping interval.
GRACEFUL_TIMEOUT_SECONDS = 3.0
# Queued commands and catch-up cycles get this long after HTTP has stopped.
DRAIN_TIMEOUT_SECONDS = 10.0


def _raise_open_file_limit() -> None:
    """Raise the soft limit on open files to the hard limit: each socket
    takes one and each active labour three, and a soft limit of 1024 is a
    common default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:
            logger.warning("Cannot raise the open-file limit from %d: %s", soft, error)
            return
        logger.debug("Raised the open-file limit from %d to %d", soft, hard)


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    address = settings.bind_address
    host = f"[{address.host}]" if ":" in address.host else address.host
    config.bind = [f"{host}:{address.port}"]
    config.graceful_timeout = GRACEFUL_TIMEOUT_SECONDS
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # fernd replies to oversized bodies itself with a JSON 413.
    config.h11_max_incomplete_size = 64 * 1024
    config.websocket_max_message_size = MAX_REQUEST_BODY_BYTES
    # Hypercorn's default backlog of 100 drops connections when many sockets
    # reconnect at once, for example after a restart.
    config.backlog = LISTEN_BACKLOG
    # Hypercorn pings every socket but does not check for pongs. A live peer's
    # pong is a read at least every ping interval, so a connection with no
    # read for two intervals is dead and is dropped.
    config.websocket_ping_interval = WEBSOCKET_PING_INTERVAL_SECONDS
    config.read_timeout = int(2 * WEBSOCKET_PING_INTERVAL_SECONDS)
    return config


def _notification_service(
    settings: Settings, shared: SharedDatabase
) -> NotificationService:
    """Build the notification service from `[notifications]`; raise
    ConfigError for an invalid table."""
    notification_settings = load_notification_settings(settings.notifications)
    channels = AppriseChannels(notification_settings)
    return NotificationService(Renderer(settings.public_url), channels, shared)


def _account_service(
    settings: Settings,
    shared: SharedDatabase,
    issuer: LocalTokenIssuer,
    notifications: NotificationService,
    nursery: trio.Nursery,
) -> AccountService:
    """Build the account service; password reset emails go out in `nursery`."""
    mailer = reset_mailer(notifications, settings.password_reset_lifetime)
    if mailer is None:
        logger.info(
            "Password reset by email is off because no email channel is"
            " configured; `fernd admin reset-password` resets passwords"
        )
    return AccountService(
        AccountStore(shared.connection),
        issuer,
        allow_registration=settings.allow_registration,
        access_token_lifetime=settings.access_token_lifetime,
        refresh_token_lifetime=settings.refresh_token_lifetime,
        password_reset_lifetime=settings.password_reset_lifetime,
        public_url=settings.public_url,
        reset_mailer=mailer,
        spawn=nursery.start_soon,
    )


def _contact_forwarder(
    nursery: trio.Nursery, notifications: NotificationService, shared: SharedDatabase
) -> Callable[[str, ContactMessage], None]:
    """Return a function that forwards a contact message to the operator's
    Apprise URLs in the background."""

    async def forward(message_id: str, message: ContactMessage) -> None:
        title = f"fernd contact: {message.category}"
        body = f"From {message.name} <{message.email}>\n\n{message.message}"
        if await notifications.send_to_operator(title, body):
            shared.mark_contact_forwarded(message_id)
        else:
            logger.warning("Contact message %s was not forwarded", message_id)

    def start(message_id: str, message: ContactMessage) -> None:
        nursery.start_soon(forward, message_id, message)

    return start


async def _wait_for_signal(
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            logger.info("Received %s, shutting down", signal.Signals(signum).name)
            return


async def serve_async(
    settings: Settings, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until SIGINT or SIGTERM, or until cancelled.

    Reports the bound address through `task_status` once listening.
    """
    # The databases hold names, contact details and share tokens, so every
    # file and directory fernd creates is private to its user.
    os.umask(0o077)
    _raise_open_file_limit()
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # Built before the databases open, so an invalid [auth] table or signing
    # key stops the start with its message.
    issuer = LocalTokenIssuer(
        data_dir,
        max_token_lifetime=max_token_lifetime(
            settings.token_lifetime, settings.access_token_lifetime
        ),
    )
    verifier = build_verifier(settings, issuer)
    shared = SharedDatabase.open(data_dir, settings.sqlite_synchronous)
    try:
        # Built before any task starts, so an invalid [notifications] table is
        # reported as a configuration error, not from inside a nursery.
        notifications = _notification_service(settings, shared)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(verifier.refresh_keys_periodically)
            hub = SocketHub()
            registry = LabourRegistry(
                settings, shared, publishers=[hub], notification_sender=notifications
            )
            await nursery.start(registry.run)
            await registry.resume_pending_work()
            metrics = Metrics(registry, hub, shared)
            nursery.start_soon(log_metrics, metrics)

            api = Api(settings, registry, shared, verifier)
            api.metrics_source = metrics
            api.forward_contact = _contact_forwarder(nursery, notifications, shared)
            api.accounts = _account_service(
                settings, shared, issuer, notifications, nursery
            )
            app = create_app(api, hub)
            config = hypercorn_config(settings)
            shutdown = trio.Event()
            async with trio.open_nursery() as http:
                bound: list[str] = await http.start(_serve_http, app, config, shutdown)
                logger.info("fernd serving on %s with data in %s", bound[0], data_dir)
                task_status.started(bound[0])
                await _wait_for_signal()
                hub.close_all(CLOSE_GOING_AWAY, "Server shutting down")
                # Hypercorn stops accepting and lets in-flight requests finish.
                shutdown.set()
            # In-flight batches commit and reply, and catch-up cycles finish up
            # to the deadline; then every actor closes with a snapshot.
            await registry.drain(DRAIN_TIMEOUT_SECONDS)
            nursery.cancel_scope.cancel()
    finally:
        shared.close()
        logger.info("fernd stopped")


async def _serve_http(
    app: object,
    config: HypercornConfig,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    connection_guard.install()
    await hypercorn_serve(
        app,  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown.wait,
        task_status=task_status,
    )


def serve(settings: Settings) -> None:
    """Run fernd until SIGINT or SIGTERM."""
    trio.run(serve_async, settings)
