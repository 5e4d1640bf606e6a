"""The ``fernd`` command line: ``fernd serve`` and ``fernd token``."""

import argparse
import importlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fernd import __version__
from fernd.auth.tokens import LocalTokenIssuer, SigningKeyError
from fernd.config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_settings
from fernd.storage.sqlite import StorageError

if TYPE_CHECKING:
    from fernd.storage.shared_db import SharedDatabase

logger = logging.getLogger(__name__)

# Modules whose `register(commands, admin_commands)` adds operator commands.
_OPERATOR_COMMAND_MODULES: tuple[str, ...] = (
    "fernd.ops.backup_cli",
    "fernd.ops.data_cli",
    "fernd.auth.key_cli",
    "fernd.auth.account_cli",
    "fernd.ops.admin_client_cli",
)

SHARED_DATABASE_FILE: Final = "fernd.db"
# Exit status for invalid usage or configuration, as argparse uses.
EXIT_USAGE: Final = 2
# Exit status after Ctrl+C: 128 + SIGINT, as shells report it.
EXIT_INTERRUPTED: Final = 130

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Name of the stderr handler that configure_logging installs on the root logger.
_LOG_HANDLER_NAME: Final = "fernd-stderr"

_DEFAULTS: Final = Settings()

_PRECEDENCE = (
    "Settings come from the config file, then FERND_* environment variables "
    "(e.g. FERND_HIBERNATE_AFTER=0.5), then command-line options; a later "
    "source overrides an earlier one."
)


def _positive_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of seconds"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, got {value}")
    return value


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=(
            f"TOML config file (default: ./{DEFAULT_CONFIG_PATH} if it exists, "
            "else built-in defaults)"
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the parser for ``fernd`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="fernd",
        description="fernd: a self-hosted labour tracker.",
        epilog=_PRECEDENCE,
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP and WebSocket server until interrupted",
        description="Run the HTTP and WebSocket server until interrupted.",
        epilog=_PRECEDENCE,
    )
    _add_config_option(serve)
    serve.add_argument(
        "--bind",
        metavar="HOST:PORT",
        help=(
            "address and TCP port to listen on, [HOST]:PORT for IPv6, port 0 for "
            f"any free port (default: the bind setting, {_DEFAULTS.bind})"
        ),
    )
    serve.add_argument(
        "--data-dir",
        metavar="DIR",
        help=(
            "directory for the databases and the signing key "
            f"(default: the data_dir setting, {_DEFAULTS.data_dir})"
        ),
    )
    serve.set_defaults(handler=_serve)

    token = commands.add_parser(
        "token",
        help="print a token signed by this installation's key",
        description=(
            "Print a JWT for one user, signed by the key in the data directory. "
            "Use the same data directory as the server that will verify it."
        ),
        epilog=_PRECEDENCE,
    )
    token.add_argument(
        "--data-dir",
        metavar="DIR",
        help=(
            "data directory whose signing key signs the token, created with a new "
            f"key if missing (default: the data_dir setting, {_DEFAULTS.data_dir})"
        ),
    )
    token.add_argument(
        "--user-id",
        required=True,
        type=_non_empty,
        metavar="ID",
        help="user id, the sub claim",
    )
    token.add_argument(
        "--name",
        required=True,
        type=_non_empty,
        metavar="NAME",
        help="display name, the name claim",
    )
    token.add_argument(
        "--first-name", metavar="X", help="first name claim (default: none)"
    )
    token.add_argument(
        "--last-name", metavar="X", help="last name claim (default: none)"
    )
    token.add_argument(
        "--email", metavar="X", help="email address claim (default: none)"
    )
    token.add_argument(
        "--phone-number",
        metavar="X",
        help="phone number claim, e.g. +447700900123 (default: none)",
    )
    token.add_argument(
        "--admin",
        action="store_true",
        help=(
            "add the fernd_admin claim, which makes the token an administrator's "
            "like a user id in admin_user_ids; anyone who can read the data "
            "directory's signing key can mint such a token (default: off)"
        ),
    )
    token.add_argument(
        "--ttl",
        type=_positive_seconds,
        metavar="SECONDS",
        help=(
            "lifetime of the token in seconds (default: the token_lifetime "
            f"setting, {_DEFAULTS.token_lifetime})"
        ),
    )
    _add_config_option(token)
    token.set_defaults(handler=_token)

    admin = commands.add_parser(
        "admin",
        help="operate on a data directory: notification log, contact messages, erasure",
        description="Operator commands on a data directory. The listing commands"
        " only read and are safe while fernd serves it; purge-labour writes and"
        " refuses while a server holds the labour.",
    )
    admin_commands = admin.add_subparsers(
        dest="admin_command", metavar="ADMIN", required=True
    )
    notifications = admin_commands.add_parser(
        "notifications",
        help="list the notification log, newest first, as JSON lines",
        description="List the notification log, newest first, one JSON object"
        " per line.",
    )
    notifications.add_argument("--labour-id", help="only this labour (a UUID)")
    notifications.add_argument(
        "--status",
        choices=["REQUESTED", "RENDERED", "SENT", "FAILED", "SKIPPED"],
        help="only notifications in this status",
    )
    notifications.add_argument(
        "--channel", choices=["EMAIL", "SMS", "WHATSAPP"], help="only this channel"
    )
    contact = admin_commands.add_parser(
        "contact-messages",
        help="list contact-us messages, newest first, as JSON lines",
        description="List contact-us messages, newest first, one JSON object per line.",
    )
    for subparser in (notifications, contact):
        subparser.add_argument(
            "--data-dir",
            metavar="DIR",
            help="data directory (default: the data_dir setting)",
        )
        subparser.add_argument(
            "--limit",
            type=_positive_seconds,
            default=100,
            help="at most this many rows (default: 100)",
        )
        _add_config_option(subparser)
    notifications.set_defaults(handler=_admin_notifications)
    contact.set_defaults(handler=_admin_contact_messages)

    # Operator commands live in their own modules; each adds its subcommands
    # through `register(commands, admin_commands)`.
    for module_name in _OPERATOR_COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(commands, admin_commands)
    return parser


def configure_logging(
    level: str,
    log_format: str = "text",
    log_levels: Mapping[str, str] | None = None,
) -> None:
    """Send log records at ``level`` and above to stderr.

    ``log_format`` "text" writes ``LOG_FORMAT`` lines and "json" one JSON
    object per line. ``log_levels`` maps logger names to their own level.
    A second call replaces the handler of the first.
    """
    formatter: logging.Formatter
    if log_format == "json":
        # Imported here so that text logging never loads prometheus-client.
        from fernd.observability import JsonFormatter

        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(LOG_FORMAT)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name(_LOG_HANDLER_NAME)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.name == _LOG_HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
    for name, logger_level in (log_levels or {}).items():
        logging.getLogger(name).setLevel(logger_level)


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(
        args.config,
        os.environ,
        {"bind": args.bind, "data_dir": args.data_dir},
    )
    configure_logging(settings.log_level, settings.log_format, settings.log_levels)
    # Imported here so `fernd token` and `--help` never load the server stack.
    from fernd.server import serve

    logger.info("Starting fernd %s on %s", __version__, settings.bind)
    serve(settings)
    logger.info("fernd stopped")
    return 0


def _token(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, os.environ, {"data_dir": args.data_dir})
    issuer = LocalTokenIssuer(Path(settings.data_dir))
    ttl = args.ttl if args.ttl is not None else settings.token_lifetime
    token = issuer.issue(
        args.user_id,
        name=args.name,
        first_name=args.first_name,
        last_name=args.last_name,
        email=args.email,
        phone_number=args.phone_number,
        admin=args.admin,
        ttl_seconds=ttl,
    )
    print(token)
    return 0


def require_data_dir(path: Path) -> None:
    """Raise ConfigError unless `path` contains a shared database, so that an
    operator command never creates files in a mistyped directory."""
    if not (path / SHARED_DATABASE_FILE).is_file():
        raise ConfigError(
            f"No fernd data directory at {path} ({SHARED_DATABASE_FILE} is"
            " missing); give the directory the server uses with --data-dir"
        )


def _open_shared(args: argparse.Namespace) -> "SharedDatabase":
    from fernd.storage.shared_db import SharedDatabase

    settings = load_settings(args.config, os.environ, {"data_dir": args.data_dir})
    path = Path(settings.data_dir)
    require_data_dir(path)
    return SharedDatabase.open(path, settings.sqlite_synchronous)


def _print_rows(rows: list[dict[str, object]]) -> None:
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


def _admin_notifications(args: argparse.Namespace) -> int:
    labour_id = None
    if args.labour_id is not None:
        try:
            labour_id = uuid.UUID(args.labour_id)
        except ValueError:
            raise ConfigError(f"--labour-id {args.labour_id!r} is not a UUID") from None
    shared = _open_shared(args)
    try:
        _print_rows(
            shared.notifications(
                labour_id=labour_id,
                status=args.status,
                channel=args.channel,
                limit=args.limit,
            )
        )
    finally:
        shared.close()
    return 0


def _admin_contact_messages(args: argparse.Namespace) -> int:
    shared = _open_shared(args)
    try:
        _print_rows(shared.contact_messages(args.limit))
    finally:
        shared.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status: 0 on success and 2 for invalid usage, an invalid
    setting, or a data directory or signing key that cannot be used. Those
    errors print one line to stderr, without a traceback.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        # argparse exits for --help, --version and usage errors.
        code = exit_request.code
        return code if isinstance(code, int) else EXIT_USAGE

    try:
        status: int = args.handler(args)
    except (ConfigError, SigningKeyError, StorageError, OSError) as error:
        print(f"fernd: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return status
