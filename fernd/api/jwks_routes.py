"""`GET /.well-known/jwks.json`: the public keys that verify fernd's own
tokens, as a JWK Set (RFC 7517), for services that accept them.

The set contains the current signing key and every retired key whose tokens
may still be unexpired. It needs no token and carries no user data.
"""

import msgspec
from quart import Response
from quart_trio import QuartTrio

from fernd.api.app import JSON, Api

# Caches may keep the set for five minutes. Tokens signed with a new key
# appear within seconds of a rotation, so a consumer should fetch the set
# again when a token names a kid it does not hold.
JWKS_CACHE_CONTROL = "public, max-age=300"

_encoder = msgspec.json.Encoder()


def register(app: QuartTrio, api: Api) -> None:
    """Add `/.well-known/jwks.json` to `app`."""

    async def jwks() -> Response:
        body = _encoder.encode(api.verifier.jwks())
        return Response(
            body,
            status=200,
            content_type=JSON,
            headers={"Cache-Control": JWKS_CACHE_CONTROL},
        )

    app.add_url_rule("/.well-known/jwks.json", "jwks", jwks, methods=["GET"])
