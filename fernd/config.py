"""Settings of a fernd installation.

Each setting comes from the first of these sources that sets it, highest
precedence first: a command-line flag, an environment variable
``FERND_<SETTING IN UPPER CASE>``, the config file (``fernd.toml``), the
default written in ``Settings``.
"""

import ipaddress
import logging
import math
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NamedTuple
from urllib.parse import urlsplit

import msgspec

logger = logging.getLogger(__name__)

ENV_PREFIX: Final = "FERND_"

# Used when no config path is given and this file exists in the working directory.
DEFAULT_CONFIG_PATH: Final = Path("fernd.toml")

MAX_PORT: Final = 65535


class ConfigError(ValueError):
    """A setting, or the config file itself, is invalid."""


class BindAddress(NamedTuple):
    """The host and TCP port the server listens on."""

    host: str
    port: int


def parse_bind(value: str) -> BindAddress:
    """Split ``"HOST:PORT"`` (``"[IPV6]:PORT"`` for IPv6) into host and port.

    Port 0 lets the operating system pick a free port. Raises ``ConfigError``
    for a missing host, a missing or non-numeric port, or a port above 65535.
    """
    host, separator, port_text = value.rpartition(":")
    if not separator or not host:
        raise ConfigError(f"bind {value!r} is not of the form HOST:PORT")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ConfigError(f"bind {value!r} has an unclosed IPv6 address")
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(
            f"bind {value!r} has an IPv6 host without brackets, use [HOST]:PORT"
        )
    if not port_text.isascii() or not port_text.isdigit():
        raise ConfigError(f"bind {value!r} has a port that is not a number")
    port = int(port_text)
    if port > MAX_PORT:
        raise ConfigError(f"bind {value!r} has a port above {MAX_PORT}")
    return BindAddress(host, port)


def _describe(form: str) -> msgspec.Meta:
    # The description is the expected form that a ConfigError names.
    return msgspec.Meta(description=form)


Bind = Annotated[
    str, _describe('"HOST:PORT" with a port from 0 to 65535, e.g. "127.0.0.1:8000"')
]
DirectoryPath = Annotated[
    str, msgspec.Meta(min_length=1, description="a non-empty directory path")
]
PositiveSeconds = Annotated[
    float,
    msgspec.Meta(
        gt=0, description="a finite number of seconds above 0, fractions allowed"
    ),
]
BatchLimit = Annotated[
    int, msgspec.Meta(ge=1, le=10000, description="an integer from 1 to 10000")
]
EventCount = Annotated[
    int, msgspec.Meta(ge=1, description="a whole number of events, at least 1")
]
SqliteSynchronous = Annotated[
    Literal["FULL", "NORMAL"], _describe('"FULL" or "NORMAL"')
]
OriginList = Annotated[
    list[str],
    _describe(
        'a list of origins such as "https://app.example.com" '
        "(comma-separated in an environment variable)"
    ),
]
PublicUrl = Annotated[
    str, _describe('an http or https URL such as "https://fern.example.com"')
]
UserIdList = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1)]],
    _describe(
        "a list of non-empty user ids (comma-separated in an environment variable)"
    ),
]
PositiveWholeSeconds = Annotated[
    int, msgspec.Meta(ge=1, description="a whole number of seconds, at least 1")
]
NonNegativeWholeSeconds = Annotated[
    int, msgspec.Meta(ge=0, description="a whole number of seconds, 0 or more")
]
AttemptCount = Annotated[
    int, msgspec.Meta(ge=1, description="a whole number of attempts, at least 1")
]
ProxyList = Annotated[
    list[str],
    _describe(
        'a list of IP addresses or CIDR networks such as "10.0.0.0/8" '
        "(comma-separated in an environment variable)"
    ),
]
Switch = Annotated[bool, _describe("true or false")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    _describe('one of "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"'),
]
LogFormat = Annotated[Literal["text", "json"], _describe('"text" or "json"')]
LoggerLevels = Annotated[
    dict[Annotated[str, msgspec.Meta(min_length=1)], LogLevel],
    _describe(
        'a table of logger name to level, e.g. [log_levels] "hypercorn.error" ='
        ' "WARNING", each level one of "DEBUG", "INFO", "WARNING", "ERROR",'
        ' "CRITICAL"'
    ),
]
Table = Annotated[dict[str, Any], _describe("a TOML table")]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every setting of a fernd installation, with its default."""

    # Loopback only, so a fresh install is not reachable from the network.
    bind: Bind = "127.0.0.1:8000"
    # Relative to the working directory, next to fernd.toml in a checkout.
    data_dir: DirectoryPath = "./data"
    # Long enough to serve a burst of requests from one open labour, short
    # enough that idle labours release their database files.
    hibernate_after: PositiveSeconds = 30.0
    # Commands one group commit may hold: enough to share one fsync among
    # many commands, while bounding how long the first caller of a batch waits.
    command_batch_limit: BatchLimit = 256
    # A re-activation replays at most this many events after the snapshot.
    snapshot_interval: EventCount = 200
    # FULL: a reply means the events survive a power loss. In WAL mode NORMAL
    # can lose the last commits on a power loss, but not on a process crash.
    sqlite_synchronous: SqliteSynchronous = "FULL"
    # Empty allows every origin, which suits a local install.
    allowed_origins: OriginList = []
    # Base of the links in notifications; matches the default bind.
    public_url: PublicUrl = "http://localhost:8000"
    # No administrators until the operator names them.
    admin_user_ids: UserIdList = []
    # One day, so a token from `fernd token` lasts a working day of testing.
    token_lifetime: PositiveWholeSeconds = 86400
    # Tolerates clock drift between the token issuer and this server.
    token_leeway: NonNegativeWholeSeconds = 30
    # Ten wrong share tokens per user in the window: room for typing mistakes,
    # while guessing one of 32**8 tokens stays out of reach.
    request_access_failures_limit: AttemptCount = 10
    # One hour, the window in which request_access_failures_limit counts.
    request_access_window: PositiveWholeSeconds = 3600
    # Anyone who reaches the server may create an account. With false, only
    # `fernd admin create-user` creates accounts.
    allow_registration: Switch = True
    # Fifteen minutes: a leaked access token is useful for at most this long,
    # and the app refreshes it without the user noticing.
    access_token_lifetime: PositiveWholeSeconds = 900
    # Thirty days signed in on one device without typing the password again.
    refresh_token_lifetime: PositiveWholeSeconds = 2592000
    # One hour to follow the link of a password reset email.
    password_reset_lifetime: PositiveWholeSeconds = 3600
    # Wrong passwords for one account within login_window before every login
    # to it gets 429; slows guessing to a few passwords a minute.
    login_failures_per_account: AttemptCount = 10
    # Wrong passwords from one client address within login_window, over all
    # accounts, before its logins get 429.
    login_failures_per_address: AttemptCount = 50
    # Fifteen minutes, the window of both login limits.
    login_window: PositiveWholeSeconds = 900
    # Accounts one client address may create within account_request_window.
    registrations_per_address: AttemptCount = 20
    # Password reset emails one client address may ask for within
    # account_request_window.
    password_resets_per_address: AttemptCount = 5
    # One hour, the window of the registration and password reset limits.
    account_request_window: PositiveWholeSeconds = 3600
    # Empty: the client address is the TCP peer, and X-Forwarded-For is ignored.
    trusted_proxies: ProxyList = []
    # Records starts, stops and errors without debugging detail.
    log_level: LogLevel = "INFO"
    # Plain lines for a terminal; "json" writes one object per line for a
    # log collector.
    log_format: LogFormat = "text"
    # Levels of single loggers, overriding log_level for them; none by default.
    log_levels: LoggerLevels = {}
    # NOTE: the [auth] table is accepted and kept as written, but this
    # version of fernd does not read it yet.
    auth: Table = {}
    # Validated by fernd.notifications.settings when the server starts.
    notifications: Table = {}

    @property
    def bind_address(self) -> BindAddress:
        """The host and port of ``bind``. Raises ``ConfigError`` if malformed."""
        return parse_bind(self.bind)


_FIELDS: Final = {field.name: field for field in msgspec.structs.fields(Settings)}

# Tables can only be written in the config file.
_TABLE_SETTINGS: Final = frozenset({"auth", "notifications", "log_levels"})

_LIST_SETTINGS: Final = frozenset(
    {"allowed_origins", "admin_user_ids", "trusted_proxies"}
)


def _check_bind(value: str) -> None:
    parse_bind(value)


def _check_finite(value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{value} is not a finite number")


def _check_origins(value: list[str]) -> None:
    for origin in value:
        parts = urlsplit(origin)
        if not parts.scheme or not parts.netloc:
            raise ConfigError(f"{origin!r} has no scheme or host")
        if parts.path or parts.query or parts.fragment:
            raise ConfigError(
                f"{origin!r} has a path, query or fragment, which an origin never has"
            )


def parse_networks(
    value: list[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parse IP addresses and CIDR networks; an address becomes a network of
    one host. Raises ``ConfigError`` naming the first invalid entry, including
    a network with host bits set such as "10.0.0.1/8"."""
    networks = []
    for entry in value:
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError:
            network = _network_ignoring_host_bits(entry.strip())
            if network is not None:
                raise ConfigError(
                    f"{entry!r} has host bits set; write {str(network)!r}"
                ) from None
            raise ConfigError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def _network_ignoring_host_bits(
    entry: str,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _check_public_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{value!r} is not an http or https URL with a host")


# Checks that the field types cannot express. Each raises ConfigError, and
# any value it returns is ignored.
_EXTRA_CHECKS: Final[dict[str, Callable[[Any], object]]] = {
    "bind": _check_bind,
    "hibernate_after": _check_finite,
    "allowed_origins": _check_origins,
    "public_url": _check_public_url,
    "trusted_proxies": parse_networks,
}


class _RawValue(NamedTuple):
    value: object
    # The source of the value, as error messages name it.
    source: str
    # Environment variables are text, so numbers are parsed from strings.
    from_text: bool


def env_var_name(setting: str) -> str:
    """Return the name of the environment variable that sets ``setting``."""
    return ENV_PREFIX + setting.upper()


def _expected_form(setting: str) -> str:
    for metadata in typing.get_args(_FIELDS[setting].type)[1:]:
        if isinstance(metadata, msgspec.Meta) and metadata.description:
            return metadata.description
    raise AssertionError(f"setting {setting} has no description of its form")


def _resolve_config_path(config_path: Path | None) -> Path | None:
    if config_path is not None:
        return config_path
    if DEFAULT_CONFIG_PATH.is_file():
        return DEFAULT_CONFIG_PATH
    return None


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} not found") from None
    except OSError as error:
        raise ConfigError(
            f"Cannot read config file {path}: {error.strerror or error}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"Invalid TOML in config file {path}: {error}") from None


def _known_settings() -> str:
    return ", ".join(_FIELDS)


def _file_values(path: Path) -> dict[str, _RawValue]:
    values: dict[str, _RawValue] = {}
    for key, value in _read_config_file(path).items():
        if key not in _FIELDS:
            raise ConfigError(
                f"Unknown setting {key!r} in {path}; known settings: "
                f"{_known_settings()}"
            )
        values[key] = _RawValue(value, str(path), from_text=False)
    return values


def _env_values(environ: Mapping[str, str]) -> dict[str, _RawValue]:
    values: dict[str, _RawValue] = {}
    settable = {env_var_name(name): name for name in _FIELDS}
    for variable, text in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        name = settable.get(variable)
        if name is None or name in _TABLE_SETTINGS:
            logger.warning(
                "Ignoring environment variable %s: it sets no fernd setting "
                "(tables such as [auth] are set only in the config file)",
                variable,
            )
            continue
        value: object
        if name in _LIST_SETTINGS:
            value = [item.strip() for item in text.split(",") if item.strip()]
        else:
            value = text.strip()
        values[name] = _RawValue(
            value, f"environment variable {variable}", from_text=True
        )
    return values


def _override_values(overrides: Mapping[str, object]) -> dict[str, _RawValue]:
    values: dict[str, _RawValue] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in _FIELDS:
            raise ConfigError(
                f"Unknown setting {name!r} given as an override; known settings: "
                f"{_known_settings()}"
            )
        option = "--" + name.replace("_", "-")
        values[name] = _RawValue(value, f"command-line option {option}", False)
    return values


def _convert(name: str, raw: _RawValue) -> object:
    problem = f"Invalid setting {name} from {raw.source}"
    form = _expected_form(name)
    try:
        value = msgspec.convert(
            raw.value, type=_FIELDS[name].type, strict=not raw.from_text
        )
    except msgspec.ValidationError:
        raise ConfigError(f"{problem}: expected {form}, got {raw.value!r}") from None
    check = _EXTRA_CHECKS.get(name)
    if check is not None:
        try:
            check(value)
        except ConfigError as error:
            # The check's message already names the offending value.
            raise ConfigError(f"{problem}: {error}; expected {form}") from None
    return value


def load_settings(
    config_path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, object],
) -> Settings:
    """Load the settings from a config file, the environment and overrides.

    ``config_path`` None means ``./fernd.toml`` when that file exists, else
    defaults only; an explicit path that does not exist is an error.
    ``environ`` is searched for ``FERND_*`` variables: lists are
    comma-separated and numbers are parsed from text. ``overrides``
    contains command-line flags by setting name, and a None value means "not given".
    Raises ``ConfigError`` naming the setting, its source and the expected
    form for an unknown key, a wrong type or an out-of-range value.
    """
    raw_values: dict[str, _RawValue] = {}
    path = _resolve_config_path(config_path)
    if path is not None:
        raw_values.update(_file_values(path))
    raw_values.update(_env_values(environ))
    raw_values.update(_override_values(overrides))

    converted: dict[str, Any] = {
        name: _convert(name, raw) for name, raw in raw_values.items()
    }
    return Settings(**converted)
