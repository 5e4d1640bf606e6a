"""The rolling-window RateLimiter, the client address read from
X-Forwarded-For, and the trusted_proxies setting."""

from pathlib import Path

import pytest

from fernd.api.app import client_address
from fernd.api.contact import RateLimiter
from fernd.api.errors import ApiError
from fernd.config import ConfigError, load_settings, parse_networks

LIMITED_MESSAGE = "Rate limit exceeded: Too many things, try again later"


@pytest.fixture(autouse=True)
def empty_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keeps the repository's own fernd.toml from being picked up by default.
    monkeypatch.chdir(tmp_path)


def _limiter(limit: int = 2, window: float = 10.0) -> RateLimiter:
    return RateLimiter(limit, window, LIMITED_MESSAGE)


# RateLimiter


def test_rate_limiter_allows_up_to_limit() -> None:
    limiter = _limiter()
    limiter.check("a", now=0.0)
    limiter.check("a", now=1.0)
    assert limiter.count("a", now=1.0) == 2


def test_rate_limiter_rejects_over_limit() -> None:
    limiter = _limiter()
    limiter.check("a", now=0.0)
    limiter.check("a", now=1.0)
    with pytest.raises(ApiError) as raised:
        limiter.check("a", now=2.0)
    assert raised.value.status == 429
    assert raised.value.code == "rate_limited"
    assert raised.value.message == LIMITED_MESSAGE


def test_rate_limiter_retry_after_until_oldest_leaves() -> None:
    limiter = _limiter()
    limiter.check("a", now=0.0)
    limiter.check("a", now=5.0)
    with pytest.raises(ApiError) as raised:
        limiter.check("a", now=2.5)
    assert raised.value.headers == {"Retry-After": "8"}


def test_rate_limiter_retry_after_at_least_one() -> None:
    limiter = _limiter()
    limiter.check("a", now=0.0)
    limiter.check("a", now=0.0)
    with pytest.raises(ApiError) as raised:
        limiter.check("a", now=9.99)
    assert raised.value.headers == {"Retry-After": "1"}


def test_rate_limiter_rejection_not_recorded() -> None:
    limiter = _limiter()
    limiter.check("a", now=0.0)
    limiter.check("a", now=1.0)
    for moment in (2.0, 3.0, 4.0):
        with pytest.raises(ApiError):
            limiter.check("a", now=moment)
    assert limiter.count("a", now=4.0) == 2


def test_rate_limiter_window_rolls() -> None:
    limiter = _limiter()
    limiter.check("a", now=0.0)
    limiter.check("a", now=1.0)
    limiter.check("a", now=10.0)
    assert limiter.count("a", now=10.0) == 2


def test_rate_limiter_keys_independent() -> None:
    limiter = _limiter(limit=1)
    limiter.check("a", now=0.0)
    limiter.check("b", now=0.0)
    assert limiter.count("b", now=0.0) == 1


def test_rate_limiter_cancel_frees_slot() -> None:
    limiter = _limiter()
    limiter.check("a", now=0.0)
    stamp = limiter.check("a", now=1.0)
    limiter.cancel("a", stamp)
    limiter.check("a", now=2.0)
    assert limiter.count("a", now=2.0) == 2


def test_rate_limiter_cancel_removes_one_of_equal_stamps() -> None:
    limiter = _limiter(limit=3)
    limiter.check("a", now=1.0)
    stamp = limiter.check("a", now=1.0)
    limiter.cancel("a", stamp)
    assert limiter.count("a", now=1.0) == 1


def test_rate_limiter_cancel_after_expiry_ignored() -> None:
    limiter = _limiter()
    stamp = limiter.check("a", now=0.0)
    limiter.check("a", now=20.0)
    limiter.cancel("a", stamp)
    assert limiter.count("a", now=20.0) == 1


def test_rate_limiter_cancel_unknown_key_ignored() -> None:
    limiter = _limiter()
    limiter.cancel("nobody", 0.0)
    assert limiter.count("nobody", now=0.0) == 0


def test_rate_limiter_default_message_for_contact() -> None:
    limiter = RateLimiter(1, 10.0)
    limiter.check("a", now=0.0)
    with pytest.raises(ApiError) as raised:
        limiter.check("a", now=1.0)
    assert raised.value.message == (
        "Rate limit exceeded: Too many messages, try again later"
    )


# client_address

LOCAL_PROXY = parse_networks(["127.0.0.1", "::1"])
PROXY_CHAIN = parse_networks(["127.0.0.1", "10.0.0.0/8"])


def test_client_address_peer_without_trusted_proxies() -> None:
    assert client_address("192.0.2.1", ["198.51.100.1"], ()) == "192.0.2.1"


def test_client_address_untrusted_peer_header_ignored() -> None:
    address = client_address("192.0.2.1", ["198.51.100.1"], LOCAL_PROXY)
    assert address == "192.0.2.1"


def test_client_address_trusted_peer_uses_header() -> None:
    address = client_address("127.0.0.1", ["198.51.100.1"], LOCAL_PROXY)
    assert address == "198.51.100.1"


def test_client_address_rightmost_untrusted_hop() -> None:
    address = client_address("127.0.0.1", ["203.0.113.9, 198.51.100.1"], LOCAL_PROXY)
    assert address == "198.51.100.1"


def test_client_address_trusted_hops_skipped() -> None:
    address = client_address(
        "127.0.0.1", ["203.0.113.9, 198.51.100.1, 10.1.2.3"], PROXY_CHAIN
    )
    assert address == "198.51.100.1"


def test_client_address_header_lines_joined_in_order() -> None:
    address = client_address(
        "127.0.0.1", ["203.0.113.9", "198.51.100.1, 10.1.2.3"], PROXY_CHAIN
    )
    assert address == "198.51.100.1"


def test_client_address_missing_header_gives_peer() -> None:
    assert client_address("127.0.0.1", [], LOCAL_PROXY) == "127.0.0.1"


def test_client_address_blank_entries_skipped() -> None:
    address = client_address("127.0.0.1", [" , 198.51.100.1 ,"], LOCAL_PROXY)
    assert address == "198.51.100.1"


def test_client_address_all_hops_trusted_gives_leftmost() -> None:
    address = client_address("127.0.0.1", ["10.0.0.5, 10.0.0.6"], PROXY_CHAIN)
    assert address == "10.0.0.5"


def test_client_address_ipv6_peer_trusted() -> None:
    address = client_address("::1", ["2001:db8::1"], LOCAL_PROXY)
    assert address == "2001:db8::1"


def test_client_address_ipv4_mapped_peer_trusted() -> None:
    address = client_address("::ffff:127.0.0.1", ["198.51.100.1"], LOCAL_PROXY)
    assert address == "198.51.100.1"


def test_client_address_hop_normalised() -> None:
    address = client_address("127.0.0.1", ["2001:DB8:0::1"], LOCAL_PROXY)
    assert address == "2001:db8::1"


def test_client_address_non_address_hop_kept_as_written() -> None:
    address = client_address("127.0.0.1", ["unknown"], LOCAL_PROXY)
    assert address == "unknown"


def test_client_address_missing_peer() -> None:
    assert client_address(None, ["198.51.100.1"], LOCAL_PROXY) == "unknown"


# trusted_proxies setting


def test_trusted_proxies_default_empty() -> None:
    assert load_settings(None, {}, {}).trusted_proxies == []


def test_trusted_proxies_from_environment() -> None:
    settings = load_settings(
        None, {"FERND_TRUSTED_PROXIES": "127.0.0.1, ::1,10.0.0.0/8"}, {}
    )
    assert settings.trusted_proxies == ["127.0.0.1", "::1", "10.0.0.0/8"]


def test_trusted_proxies_invalid_entry_rejected() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {"FERND_TRUSTED_PROXIES": "127.0.0.1,proxy.local"}, {})
    message = str(raised.value)
    assert "trusted_proxies" in message
    assert "'proxy.local' is not an IP address or network" in message


def test_trusted_proxies_host_bits_rejected() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {"FERND_TRUSTED_PROXIES": "10.0.0.1/8"}, {})
    message = str(raised.value)
    assert "trusted_proxies" in message
    assert "write '10.0.0.0/8'" in message


def test_trusted_proxies_non_list_rejected() -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(None, {}, {"trusted_proxies": "127.0.0.1"})


def test_request_access_limit_settings_defaults() -> None:
    settings = load_settings(None, {}, {})
    assert settings.request_access_failures_limit == 10
    assert settings.request_access_window == 3600


@pytest.mark.parametrize(
    "variable", ["FERND_REQUEST_ACCESS_FAILURES_LIMIT", "FERND_REQUEST_ACCESS_WINDOW"]
)
@pytest.mark.parametrize("text", ["0", "-1", "1.5", "many"])
def test_request_access_limit_settings_invalid(variable: str, text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {variable: text}, {})
    assert variable.removeprefix("FERND_").lower() in str(raised.value)


def test_flood_of_new_keys_keeps_reached_limit() -> None:
    limiter = RateLimiter(2, 10.0, LIMITED_MESSAGE, max_keys=3)
    limiter.check("locked", now=0.0)
    limiter.check("locked", now=0.0)

    for n in range(20):
        limiter.check(f"flood-{n}", now=1.0)

    with pytest.raises(ApiError) as caught:
        limiter.check("locked", now=2.0)
    assert caught.value.status == 429
    assert limiter.count("locked", now=2.0) == 2


def test_full_limiter_forgets_expired_keys_first() -> None:
    limiter = RateLimiter(2, 10.0, LIMITED_MESSAGE, max_keys=2)
    limiter.check("old", now=0.0)
    limiter.check("below", now=5.0)

    limiter.check("new", now=11.0)

    assert limiter.count("old", now=11.0) == 0
    assert limiter.count("below", now=11.0) == 1
    assert limiter.count("new", now=11.0) == 1
