"""External token issuers, signing-key rotation and the published JWKS,
against a real `fernd serve --config` and a JWKS provider on 127.0.0.1.

The provider is a small thread-based HTTP server serving keys generated here
with joserfc. Three issuers are configured:

* A: RS256 and ES256, audience "fernd";
* B: ES256 only, while its JWKS also publishes an RSA key;
* R: RS256, for a key rotation at the provider;
* F: ES256, for a provider that stops serving its keys.

Every rejected token must get exactly the generic 401 over HTTP and a refused
WebSocket upgrade with the same body.
"""

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from trio_websocket import ConnectionRejected

from fernd.auth.tokens import LocalTokenIssuer
from tests.conftest import FerndServer
from tests.e2e.helpers import eventually, expect_status, plan_labour, unique_user
from tests.e2e.mail_helpers import LOOPBACK, ConfiguredServer
from tests.e2e.ws_helpers import open_session

# fernd signs with "EdDSA", which joserfc warns is a deprecated name.
pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning"
)

ISSUER_A = "https://id-a.example.test/"
ISSUER_B = "https://id-b.example.test/"
ISSUER_R = "https://id-r.example.test/"
ISSUER_F = "https://id-f.example.test/"
AUDIENCE = "fernd"
# fernd's default token_leeway.
LEEWAY_SECONDS = 30
# A time offset well beyond the leeway, and one well within it.
BEYOND_LEEWAY_SECONDS = 120
WITHIN_LEEWAY_SECONDS = 10
# The retired key's retention in the server started by FerndServer: the
# repository's fernd.toml sets token_lifetime to one day.
LOCAL_RETENTION_SECONDS = 86400 + LEEWAY_SECONDS
# A server loads the provider keys and notices key rotations within seconds;
# the tests wait at most this long.
WAIT_SECONDS = 15.0
HISTORY = "/api/v1/labour/history"
UNAUTHORISED = {
    "message": "Unauthorised: User verification failed",
    "code": "unauthenticated",
}

# Generated once for the module: an RSA key takes a noticeable time to generate.
A_RSA = RSAKey.generate_key(2048, parameters={"kid": "a-rsa"})
A_EC = ECKey.generate_key("P-256", parameters={"kid": "a-ec"})
B_EC = ECKey.generate_key("P-256", parameters={"kid": "b-ec"})
B_RSA = RSAKey.generate_key(2048, parameters={"kid": "b-rsa"})
R_FIRST = RSAKey.generate_key(2048, parameters={"kid": "r-1"})
R_SECOND = RSAKey.generate_key(2048, parameters={"kid": "r-2"})
F_EC = ECKey.generate_key("P-256", parameters={"kid": "f-ec"})
# An attacker's key presented under the kid of issuer A's RSA key.
IMPOSTOR_RSA = RSAKey.generate_key(2048, parameters={"kid": "a-rsa"})


class JwksProvider:
    """An HTTP server on 127.0.0.1 serving one JWKS per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[str, bytes] = {}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with provider._lock:
                    body = provider._documents.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                # The default handler writes every request to stderr.
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def publish(self, path: str, *keys: Key) -> None:
        """Serve the public parts of `keys` as the JWKS at `path`."""
        document = {"keys": [key.as_dict(private=False) for key in keys]}
        with self._lock:
            self._documents[path] = json.dumps(document).encode()

    def withdraw(self, path: str) -> None:
        """Reply 404 at `path` from now on."""
        with self._lock:
            del self._documents[path]


def _issuer_table(issuer: str, url: str, algorithms: list[str], **extra: str) -> str:
    lines = [
        "[[auth.issuers]]",
        f"issuer = {json.dumps(issuer)}",
        f"jwks_url = {json.dumps(url)}",
        f"algorithms = {json.dumps(algorithms)}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def wait_until(condition: Callable[[], bool], description: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {WAIT_SECONDS} s waiting for {description}"
            )
        time.sleep(0.1)


@pytest.fixture(scope="module")
def provider() -> Iterator[JwksProvider]:
    provider = JwksProvider()
    provider.publish("/a/jwks.json", A_RSA, A_EC)
    provider.publish("/b/jwks.json", B_EC, B_RSA)
    provider.publish("/r/jwks.json", R_FIRST)
    provider.publish("/f/jwks.json", F_EC)
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, provider: JwksProvider
) -> Iterator[ConfiguredServer]:
    directory = tmp_path_factory.mktemp("issuers")
    config = directory / "fernd.toml"
    config.write_text(
        _issuer_table(
            ISSUER_A,
            provider.url("/a/jwks.json"),
            ["RS256", "ES256"],
            audience=AUDIENCE,
        )
        + _issuer_table(ISSUER_B, provider.url("/b/jwks.json"), ["ES256"])
        + _issuer_table(ISSUER_R, provider.url("/r/jwks.json"), ["RS256"])
        + _issuer_table(ISSUER_F, provider.url("/f/jwks.json"), ["ES256"])
    )
    server = ConfiguredServer(directory / "data", config)
    server.start()
    # The server loads every issuer's keys in the background after it starts.
    for issuer in (ISSUER_A, ISSUER_B, ISSUER_R, ISSUER_F):
        wait_until(
            lambda issuer=issuer: f"keys of issuer {issuer}" in server.log(),
            f"the keys of {issuer}",
        )
    yield server
    server.stop()


def claims_for(issuer: str = ISSUER_A, **changes: Any) -> dict[str, Any]:
    """Return valid claims for `issuer` with `changes`; None removes a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": unique_user("ext"),
        "iss": issuer,
        "iat": now,
        "exp": now + 600,
        "name": "Robin Ash",
    }
    if issuer == ISSUER_A:
        claims["aud"] = AUDIENCE
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def sign(key: Key, alg: str, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key, [alg])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode())


def hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Sign by hand, as an attacker would: joserfc refuses such secrets."""
    signing_input = f"{b64url_json({'typ': 'JWT', **header})}.{b64url_json(claims)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def history_reply(server: FerndServer, token: str) -> httpx.Response:
    with server.client(token) as client:
        return client.get(HISTORY)


def assert_unauthorised(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.json() == UNAUTHORISED


async def websocket_rejection(
    server: FerndServer, token: str
) -> tuple[int, dict[str, Any]]:
    """Connect to a labour's socket with `token`, expecting the upgrade to be
    refused, and return the status and JSON body. The token is checked before
    the labour, so the labour need not exist."""
    with pytest.raises(ConnectionRejected) as caught:
        async with open_session(server, str(uuid.uuid4()), token):
            pass
    return caught.value.status_code, json.loads(caught.value.body or b"")


def fernd_jwks(server: FerndServer) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        return client.get("/.well-known/jwks.json")


# --- good tokens --------------------------------------------------------------


@pytest.mark.parametrize(("key", "alg"), [(A_RSA, "RS256"), (A_EC, "ES256")])
def test_external_token_reaches_history(
    server: ConfiguredServer, key: Key, alg: str
) -> None:
    response = history_reply(server, sign(key, alg, claims_for()))
    assert response.status_code == 200
    assert response.json() == []


def test_external_token_of_second_issuer_accepted(server: ConfiguredServer) -> None:
    token = sign(B_EC, "ES256", claims_for(ISSUER_B))
    assert history_reply(server, token).status_code == 200


@pytest.mark.parametrize(("key", "alg"), [(A_RSA, "RS256"), (A_EC, "ES256")])
async def test_external_token_connects_websocket(
    server: ConfiguredServer, key: Key, alg: str
) -> None:
    token = sign(key, alg, claims_for())
    with server.client(token) as client:
        labour_id = plan_labour(client)
    async with open_session(server, labour_id, token) as session:
        reply = await session.request({"kind": "ServerTimestamp"})
    assert reply["success"] is True


@pytest.mark.parametrize(
    "changes",
    [
        {"exp_offset": -WITHIN_LEEWAY_SECONDS},
        {"nbf_offset": WITHIN_LEEWAY_SECONDS},
        {"iat_offset": WITHIN_LEEWAY_SECONDS},
    ],
    ids=["expired", "nbf", "iat"],
)
def test_times_within_leeway_accepted(
    server: ConfiguredServer, changes: dict[str, int]
) -> None:
    now = int(time.time())
    [(name, offset)] = changes.items()
    claim = name.removesuffix("_offset")
    token = sign(A_RSA, "RS256", claims_for(**{claim: now + offset}))
    assert history_reply(server, token).status_code == 200


def test_provider_key_rotation_picked_up(
    server: ConfiguredServer, provider: JwksProvider
) -> None:
    first = sign(R_FIRST, "RS256", claims_for(ISSUER_R))
    assert history_reply(server, first).status_code == 200

    provider.publish("/r/jwks.json", R_SECOND)
    second = sign(R_SECOND, "RS256", claims_for(ISSUER_R))
    assert history_reply(server, second).status_code == 200
    # The provider dropped the first key, so fernd no longer trusts it.
    assert_unauthorised(history_reply(server, first))


def test_failed_fetch_keeps_cached_keys(
    server: ConfiguredServer, provider: JwksProvider
) -> None:
    token = sign(F_EC, "ES256", claims_for(ISSUER_F))
    provider.withdraw("/f/jwks.json")
    # An unknown kid makes fernd fetch the keys again, which fails.
    unknown = sign(F_EC, "ES256", claims_for(ISSUER_F), kid="f-new")
    assert_unauthorised(history_reply(server, unknown))
    assert (
        f"Cannot load the keys of issuer {ISSUER_F} from "
        f"{provider.url('/f/jwks.json')}: HTTP status 404; keeping 1 cached keys"
    ) in server.log()
    assert history_reply(server, token).status_code == 200


# --- attacks ------------------------------------------------------------------


def _alg_none() -> str:
    header = b64url_json({"alg": "none", "typ": "JWT", "kid": A_RSA.kid})
    return f"{header}.{b64url_json(claims_for())}."


def _hs256_with_rsa_pem() -> str:
    pem = A_RSA.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hs256(pem, {"alg": "HS256", "kid": A_RSA.kid}, claims_for())


def _tampered() -> str:
    header, _, signature = sign(A_RSA, "RS256", claims_for()).split(".")
    return f"{header}.{b64url_json(claims_for(sub='someone-else'))}.{signature}"


def _now_plus(seconds: int) -> int:
    return int(time.time()) + seconds


ATTACKS: dict[str, Callable[[], str]] = {
    "alg_none": _alg_none,
    "hs256_with_rsa_pem": _hs256_with_rsa_pem,
    "algorithm_not_in_list": lambda: sign(B_RSA, "RS512", claims_for(ISSUER_B)),
    "rs256_for_es256_issuer": lambda: sign(B_RSA, "RS256", claims_for(ISSUER_B)),
    "wrong_issuer": lambda: sign(
        A_RSA, "RS256", claims_for(iss="https://evil.example.test/")
    ),
    "other_issuers_key": lambda: sign(A_EC, "ES256", claims_for(ISSUER_B)),
    "wrong_audience": lambda: sign(A_RSA, "RS256", claims_for(aud="other")),
    "missing_audience": lambda: sign(A_RSA, "RS256", claims_for(aud=None)),
    "missing_sub": lambda: sign(A_RSA, "RS256", claims_for(sub=None)),
    "missing_exp": lambda: sign(A_RSA, "RS256", claims_for(exp=None)),
    "expired": lambda: sign(
        A_RSA, "RS256", claims_for(exp=_now_plus(-BEYOND_LEEWAY_SECONDS))
    ),
    "nbf_in_future": lambda: sign(
        A_RSA, "RS256", claims_for(nbf=_now_plus(BEYOND_LEEWAY_SECONDS))
    ),
    "iat_in_future": lambda: sign(
        A_RSA, "RS256", claims_for(iat=_now_plus(BEYOND_LEEWAY_SECONDS))
    ),
    "tampered_payload": _tampered,
    "impostor_key_same_kid": lambda: sign(IMPOSTOR_RSA, "RS256", claims_for()),
    "unknown_kid": lambda: sign(A_RSA, "RS256", claims_for(), kid="no-such-kid"),
    "internal_issuer": lambda: sign(
        A_RSA,
        "RS256",
        claims_for(iss="internal", sub="fern-labour-internal-process-manager"),
    ),
    "not_a_jwt": lambda: "not-a-jwt",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_rejected_over_http(server: ConfiguredServer, attack: str) -> None:
    assert_unauthorised(history_reply(server, ATTACKS[attack]()))


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_rejected_over_websocket(
    server: ConfiguredServer, attack: str
) -> None:
    assert await websocket_rejection(server, ATTACKS[attack]()) == (401, UNAUTHORISED)


def _fernd_key_hs256_tokens(server: FerndServer) -> list[str]:
    """HS256 tokens for fernd's own issuer whose secret is the published
    Ed25519 key's x, as text and as the raw key bytes."""
    [jwk] = fernd_jwks(server).json()["keys"]
    x = jwk["x"]
    raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    header = {"alg": "HS256", "kid": jwk["kid"]}
    claims = claims_for(iss="fernd", aud=None)
    return [hs256(x.encode(), header, claims), hs256(raw, header, claims)]


def test_hs256_with_ed25519_x_rejected_over_http(server: ConfiguredServer) -> None:
    for token in _fernd_key_hs256_tokens(server):
        assert_unauthorised(history_reply(server, token))


async def test_hs256_with_ed25519_x_rejected_over_websocket(
    server: ConfiguredServer,
) -> None:
    for token in _fernd_key_hs256_tokens(server):
        assert await websocket_rejection(server, token) == (401, UNAUTHORISED)


def test_external_admin_claim_grants_nothing(server: ConfiguredServer) -> None:
    token = sign(A_RSA, "RS256", claims_for(fernd_admin=True))
    with server.client(token) as client:
        response = client.get("/api/v1/admin/contact-messages")
    assert response.status_code == 403


# --- fernd's published keys ---------------------------------------------------


def test_jwks_route_shape(server: ConfiguredServer) -> None:
    response = fernd_jwks(server)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    [jwk] = response.json()["keys"]
    assert set(jwk) == {"kid", "kty", "crv", "x", "alg", "use"}
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert jwk["alg"] == "EdDSA"
    assert jwk["use"] == "sig"


def test_jwks_route_needs_no_token(server: ConfiguredServer) -> None:
    with server.client("not-a-jwt") as client:
        assert client.get("/.well-known/jwks.json").status_code == 200


def test_issued_token_verifies_with_published_key(server: ConfiguredServer) -> None:
    token = server.token(unique_user("local"), name="Lee Park")
    [jwk] = fernd_jwks(server).json()["keys"]
    decoded = jwt.decode(token, OKPKey.import_key(jwk), algorithms=["EdDSA"])
    assert decoded.header["kid"] == jwk["kid"]
    assert decoded.claims["iss"] == "fernd"


# --- rotation of fernd's own key ----------------------------------------------


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[FerndServer]:
    server = FerndServer(tmp_path / "data")
    server.start()
    yield server
    server.stop()


def _published_kids(server: FerndServer) -> list[str]:
    return [jwk["kid"] for jwk in fernd_jwks(server).json()["keys"]]


def _rotate(data_dir: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fernd",
            "admin",
            "rotate-signing-key",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr


def _age_retired_keys(data_dir: Path, seconds: int) -> None:
    """Move every retired key's rotation `seconds` into the past, as if that
    much time had passed, replacing each file as fernd writes them."""
    for path in (data_dir / "keys").glob("retired-*.json"):
        record = json.loads(path.read_text())
        record["retired_at"] -= seconds
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.chmod(0o600)
        temporary.replace(path)


async def test_rotated_out_local_key_rejected(local_server: FerndServer) -> None:
    data_dir = local_server.data_dir
    old_token = LocalTokenIssuer(data_dir).issue("mum-rotation", ttl_seconds=3600)
    [old_kid] = _published_kids(local_server)

    _rotate(data_dir)
    wait_until(lambda: len(_published_kids(local_server)) == 2, "two published keys")
    assert _published_kids(local_server)[1] == old_kid
    assert history_reply(local_server, old_token).status_code == 200
    new_token = LocalTokenIssuer(data_dir).issue("mum-rotation", ttl_seconds=3600)
    assert history_reply(local_server, new_token).status_code == 200

    _age_retired_keys(data_dir, LOCAL_RETENTION_SECONDS + 60)
    wait_until(lambda: len(_published_kids(local_server)) == 1, "one published key")
    assert_unauthorised(history_reply(local_server, old_token))
    assert await websocket_rejection(local_server, old_token) == (401, UNAUTHORISED)
    assert history_reply(local_server, new_token).status_code == 200


def test_rotation_survives_restart(local_server: FerndServer) -> None:
    data_dir = local_server.data_dir
    old_token = LocalTokenIssuer(data_dir).issue("mum-restart", ttl_seconds=3600)
    _rotate(data_dir)
    local_server.restart()
    assert history_reply(local_server, old_token).status_code == 200
    assert len(_published_kids(local_server)) == 2


def test_external_user_plans_labour(server: ConfiguredServer) -> None:
    user_id = unique_user("ext-mum")
    token = sign(A_EC, "ES256", claims_for(sub=user_id, name="Sam Rowe"))
    with server.client(token) as client:
        labour_id = plan_labour(client)
        active = eventually(
            lambda: expect_status(client.get("/api/v1/labour/active"), 200).json(),
            lambda row: row is not None,
        )
    assert active["labour_id"] == labour_id
    assert active["mother_id"] == user_id
    assert active["mother_name"] == "Sam Rowe"


def test_rejected_token_not_logged(server: ConfiguredServer) -> None:
    token = sign(A_RSA, "RS256", claims_for(aud="other"))
    assert_unauthorised(history_reply(server, token))
    assert token not in server.log()
    assert token.split(".")[2] not in server.log()
