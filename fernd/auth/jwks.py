"""The public keys of an external token issuer: a JWKS (RFC 7517) fetched
with httpx or read from a file, kept in memory and refreshed.

The keys are refreshed in the background every ``jwks_max_age`` seconds, and
at once when a token names a kid that is not cached, at most once per
``UNKNOWN_KID_REFRESH_INTERVAL_SECONDS`` so that a flood of made-up kids
cannot hammer the provider. A failed refresh keeps the cached keys.
"""

import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
import trio
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey

from fernd.auth.settings import IssuerSettings

logger = logging.getLogger(__name__)

# Maximum duration of a JWKS fetch, in seconds. Requests whose token names an
# unknown kid wait for the fetch, so it is kept short.
FETCH_TIMEOUT_SECONDS: Final = 10.0
# Real JWKS documents are a few kilobytes; anything far larger is refused.
MAX_JWKS_BYTES: Final = 1024 * 1024
# A token naming an unknown kid refreshes its issuer's keys at most this often.
UNKNOWN_KID_REFRESH_INTERVAL_SECONDS: Final = 30.0
# Seconds until the next try after a failed background refresh, or
# jwks_max_age when that is shorter.
RETRY_AFTER_FAILURE_SECONDS: Final = 60.0
# RSA keys shorter than this are skipped. joserfc 1.8 warns about any shorter
# RSA key as too weak.
MIN_RSA_KEY_BITS: Final = 2048

# The key type and the curves that each algorithm verifies with; None means
# any key of that type.
_ALGORITHM_KEYS: Final[Mapping[str, tuple[type[Key], frozenset[str] | None]]] = {
    "RS256": (RSAKey, None),
    "RS384": (RSAKey, None),
    "RS512": (RSAKey, None),
    "PS256": (RSAKey, None),
    "ES256": (ECKey, frozenset({"P-256"})),
    "ES384": (ECKey, frozenset({"P-384"})),
    "EdDSA": (OKPKey, frozenset({"Ed25519", "Ed448"})),
    "Ed25519": (OKPKey, frozenset({"Ed25519"})),
}
_ASYMMETRIC_KEY_TYPES: Final = frozenset({"RSA", "EC", "OKP"})


class JwksError(Exception):
    """A JWKS could not be fetched or contains no usable key."""


def display_source(source: str) -> str:
    """Return a JWKS URL without its query and fragment, which may carry
    credentials, for log lines; a file path is returned as it is."""
    parts = urlsplit(source)
    if not parts.scheme or not parts.netloc:
        return source
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _public_key(entry: dict[str, Any]) -> Key:
    """Import one JWK as a public key; raise ValueError when it is unusable."""
    kty = entry.get("kty")
    # Symmetric keys ("oct") are never used: a JWKS is public, so its secret
    # would be known to everyone.
    if kty not in _ASYMMETRIC_KEY_TYPES:
        raise ValueError(f"key type {kty!r} is not RSA, EC or OKP")
    use = entry.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"key use {use!r} is not sig")
    try:
        with warnings.catch_warnings():
            # joserfc warns about short RSA keys, which are rejected below.
            warnings.simplefilter("ignore", SecurityWarning)
            key = JWKRegistry.import_key(entry)
    except (JoseError, ValueError, TypeError, RecursionError) as error:
        raise ValueError(f"invalid JWK: {error}") from None
    if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_KEY_BITS:
        raise ValueError(
            f"RSA key of {key.public_key.key_size} bits is shorter than "
            f"{MIN_RSA_KEY_BITS}"
        )
    # Only the public part is kept, whatever the provider published.
    return JWKRegistry.import_key(key.as_dict(private=False))


def parse_jwks(data: bytes) -> list[Key]:
    """Return the usable signature keys of a JWKS document.

    Keys that are symmetric, meant for encryption, malformed or RSA keys
    below ``MIN_RSA_KEY_BITS`` are skipped with a warning. Raises
    ``JwksError`` when the document is not a JWKS or has no usable key.
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("the response is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError('the response is not a JWKS: no "keys" list')

    keys: list[Key] = []
    for index, entry in enumerate(document["keys"]):
        if not isinstance(entry, dict):
            logger.warning("Skipping JWKS entry %d: not a JSON object", index)
            continue
        try:
            keys.append(_public_key(entry))
        except ValueError as error:
            logger.warning(
                "Skipping JWKS entry %d (kid %r): %s", index, entry.get("kid"), error
            )
    if not keys:
        raise JwksError("the JWKS has no usable signature key")
    return keys


def _key_fits(key: Key, kid: str | None, algorithm: str) -> bool:
    if kid is not None and key.kid != kid:
        return False
    key_class, curves = _ALGORITHM_KEYS[algorithm]
    if not isinstance(key, key_class):
        return False
    if (
        curves is not None
        and isinstance(key, ECKey | OKPKey)
        and key.curve_name not in curves
    ):
        return False
    # A JWK that names an algorithm verifies only tokens of that algorithm.
    declared = key.get("alg")
    return declared is None or declared == algorithm


class JwksSource:
    """The cached keys of one external issuer and the rules for refreshing them."""

    def __init__(
        self,
        settings: IssuerSettings,
        *,
        unknown_kid_interval: float = UNKNOWN_KID_REFRESH_INTERVAL_SECONDS,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.settings = settings
        self._unknown_kid_interval = unknown_kid_interval
        self._clock = clock
        self._keys: list[Key] = []
        # Held for every load, so concurrent requests wait for one load.
        self._lock = trio.Lock()
        self._unknown_kid_refreshed_at = -math.inf
        self._source = display_source(settings.jwks_source)

    @property
    def keys(self) -> list[Key]:
        """The keys of the last successful load; empty before the first."""
        return list(self._keys)

    async def keys_for(self, kid: str | None, algorithm: str) -> list[Key]:
        """Return the cached keys that may have signed a token with ``kid``
        (None: any kid) and ``algorithm``, an algorithm in
        ``fernd.auth.settings.SUPPORTED_ALGORITHMS``.

        When none fits, the keys are refreshed first unless a refresh for an
        unknown kid ran within the last ``unknown_kid_interval`` seconds.
        """
        keys = self._fitting(kid, algorithm)
        if keys:
            return keys
        async with self._lock:
            # Another task may have refreshed the keys while this one waited.
            keys = self._fitting(kid, algorithm)
            if keys:
                return keys
            now = self._clock()
            if now - self._unknown_kid_refreshed_at < self._unknown_kid_interval:
                return []
            self._unknown_kid_refreshed_at = now
            await self._refresh()
        return self._fitting(kid, algorithm)

    async def refresh(self) -> bool:
        """Load the keys again; return whether the load succeeded."""
        async with self._lock:
            return await self._refresh()

    async def refresh_periodically(self) -> None:
        """Load the keys now and then every ``jwks_max_age`` seconds, until
        cancelled. A failed load is tried again after at most
        ``RETRY_AFTER_FAILURE_SECONDS``."""
        max_age = float(self.settings.jwks_max_age)
        while True:
            loaded = await self.refresh()
            await trio.sleep(
                max_age if loaded else min(max_age, RETRY_AFTER_FAILURE_SECONDS)
            )

    def has_key(self, kid: str | None, algorithm: str) -> bool:
        """Return whether a cached key may have signed a token with ``kid``
        and ``algorithm``, without loading the keys again."""
        return bool(self._fitting(kid, algorithm))

    def _fitting(self, kid: str | None, algorithm: str) -> list[Key]:
        return [key for key in self._keys if _key_fits(key, kid, algorithm)]

    async def _refresh(self) -> bool:
        try:
            keys = parse_jwks(await self._load())
        except JwksError as error:
            logger.warning(
                "Cannot load the keys of issuer %s from %s: %s; keeping %d cached keys",
                self.settings.issuer,
                self._source,
                error,
                len(self._keys),
            )
            return False

        old_kids = sorted(str(key.kid) for key in self._keys)
        new_kids = sorted(str(key.kid) for key in keys)
        self._keys = keys
        level = logging.INFO if old_kids != new_kids else logging.DEBUG
        logger.log(
            level,
            "Loaded %d keys of issuer %s from %s (kids %s)",
            len(keys),
            self.settings.issuer,
            self._source,
            ", ".join(new_kids),
        )
        return True

    async def _load(self) -> bytes:
        if self.settings.jwks_url is not None:
            return await _fetch(self.settings.jwks_url)
        assert self.settings.jwks_file is not None
        return await _read_file(self.settings.jwks_file)


async def _fetch(url: str) -> bytes:
    # The deadline covers the whole fetch, so a provider that sends its reply
    # a byte at a time cannot hold the lock on the keys.
    try:
        with trio.fail_after(FETCH_TIMEOUT_SECONDS):
            return await _fetch_within_deadline(url)
    except trio.TooSlowError:
        raise JwksError(f"timed out after {FETCH_TIMEOUT_SECONDS:g} s") from None


async def _fetch_within_deadline(url: str) -> bytes:
    try:
        async with (
            httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as reply,
        ):
            if reply.status_code != httpx.codes.OK:
                raise JwksError(f"HTTP status {reply.status_code}")
            body = bytearray()
            async for chunk in reply.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(
                        f"the response is larger than {MAX_JWKS_BYTES} bytes"
                    )
            return bytes(body)
    except (httpx.HTTPError, httpx.StreamError) as error:
        raise JwksError(f"{type(error).__name__}: {error}") from None


async def _read_file(path: str) -> bytes:
    try:
        file = trio.Path(path)
        if (await file.stat()).st_size > MAX_JWKS_BYTES:
            raise JwksError(f"the file is larger than {MAX_JWKS_BYTES} bytes")
        return await file.read_bytes()
    except OSError as error:
        raise JwksError(error.strerror or str(error)) from None
