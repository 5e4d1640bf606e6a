"""Routes of the web app: the page at `/` and at each path the app shows,
its assets under `/app/<version>/`, the service worker at `/sw.js`, the web
app manifest, and `/app/qr.svg`, the QR code of a share link.

Assets come from the fixed list in `fernd.web.ASSETS`, held in memory; no file
path is ever built from a request.
"""

import io
import logging
import re
from typing import Final
from urllib.parse import urlsplit

import segno
from quart import Response, request
from quart_trio import QuartTrio

from fernd.api.app import Api, _json
from fernd.api.errors import error_body, invalid_request
from fernd.domain.constants import (
    SUBSCRIPTION_TOKEN_ALPHABET,
    SUBSCRIPTION_TOKEN_LENGTH,
)
from fernd.web import StaticFile, WebBuild, load_build

logger = logging.getLogger(__name__)

# Paths the app routes in the browser. fernd returns the page for each.
APP_PATHS: Final = (
    "/",
    "/sign-in",
    "/sign-up",
    "/forgot-password",
    "/reset-password",
    "/account",
    "/plan",
    "/labours",
    "/labours/<labour_id>",
    "/labours/<labour_id>/<any(track, updates, share, subscribers, settings, "
    "complete):tab>",
    "/s/<labour_id>/<token>",
)
# The page and the service worker are checked on every load, so a new build
# reaches browsers on their next visit.
REVALIDATE: Final = "no-cache"
# Asset URLs contain the build version, so a URL's content never changes.
IMMUTABLE: Final = "public, max-age=31536000, immutable"
# A QR code carries a share token, so only the browser that asked keeps it.
QR_CACHE_CONTROL: Final = "private, max-age=300"
# Modules per QR code pixel and light modules around it, as in ISO/IEC 18004.
QR_SCALE: Final = 4
QR_BORDER: Final = 4
INVALID_SHARE_LINK: Final = (
    "Invalid share link: expected {origin}/s/{labour_id}/{token}"
)

_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_SHARE_PATH = re.compile(
    rf"/s/(?:{_UUID}|[0-9A-Fa-f]{{32}})"
    rf"/[{SUBSCRIPTION_TOKEN_ALPHABET}]{{{SUBSCRIPTION_TOKEN_LENGTH}}}"
)
# A Host header fit to be written into the Content-Security-Policy: a DNS
# name or an IPv4 or bracketed IPv6 address, with an optional port.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def content_security_policy(host: str | None) -> str:
    """Return the Content-Security-Policy of the app's page.

    Scripts, styles and images come only from this server and no inline
    script runs. `connect-src` names ws: and wss: of `host` as well, because
    browsers before CSP level 3 do not count them as 'self'.
    """
    connect = "'self'"
    if host is not None and _HOST.fullmatch(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {connect}",
            "manifest-src 'self'",
            "worker-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def is_own_share_link(data: str, hosts: set[str]) -> bool:
    """Return whether `data` is a share link of this server: http or https,
    one of `hosts` as the host and port, and the path `/s/{labour_id}/{token}`
    with a UUID and a token of the share token alphabet."""
    try:
        parts = urlsplit(data)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and parts.netloc.lower() in hosts
        and not parts.query
        and not parts.fragment
        and data == f"{parts.scheme}://{parts.netloc}{parts.path}"
        and _SHARE_PATH.fullmatch(parts.path) is not None
    )


def render_qr_svg(data: str) -> bytes:
    """Render `data` as a QR code in SVG, scalable by CSS, dark on light."""
    code = segno.make_qr(data, error="m")
    buffer = io.BytesIO()
    code.save(
        buffer,
        kind="svg",
        scale=QR_SCALE,
        border=QR_BORDER,
        dark="#000",
        light="#fff",
        xmldecl=False,
        omitsize=True,
        title="QR code of the share link",
    )
    return buffer.getvalue()


def _respond(file: StaticFile, cache_control: str) -> Response:
    if request.if_none_match.contains_weak(file.etag.strip('"')):
        response = Response(b"", status=304)
    else:
        response = Response(file.body, status=200, content_type=file.content_type)
    response.headers["ETag"] = file.etag
    response.headers["Cache-Control"] = cache_control
    return response


class WebRoutes:
    """The views of the web app's routes, over one loaded build."""

    def __init__(self, api: Api, build: WebBuild) -> None:
        self.api = api
        self.build = build
        public = urlsplit(api.settings.public_url)
        self.public_host = public.netloc.lower()

    async def page(self, **_path: str) -> Response:
        response = _respond(self.build.index, REVALIDATE)
        response.headers["Content-Security-Policy"] = content_security_policy(
            request.host
        )
        return response

    async def not_found_page(self) -> Response:
        """Return the page with status 404; the app shows its "Page not
        found" view for the unknown path."""
        index = self.build.index
        response = Response(index.body, status=404, content_type=index.content_type)
        response.headers["Cache-Control"] = REVALIDATE
        response.headers["Content-Security-Policy"] = content_security_policy(
            request.host
        )
        return response

    async def service_worker(self) -> Response:
        response = _respond(self.build.service_worker, REVALIDATE)
        response.headers["Content-Security-Policy"] = "default-src 'self'"
        return response

    async def manifest(self) -> Response:
        return _respond(self.build.manifest, REVALIDATE)

    async def asset(self, version: str, name: str) -> Response:
        file = self.build.assets.get(name)
        if version != self.build.version or file is None:
            return _json(404, error_body("not_found", "Not Found"))
        return _respond(file, IMMUTABLE)

    async def qr_code(self) -> Response:
        data = request.args.get("data", "")
        hosts = {self.public_host, request.host.lower()}
        if not is_own_share_link(data, hosts):
            raise invalid_request(INVALID_SHARE_LINK)
        response = Response(
            render_qr_svg(data), status=200, content_type="image/svg+xml"
        )
        response.headers["Cache-Control"] = QR_CACHE_CONTROL
        return response


def register(app: QuartTrio, api: Api) -> None:
    """Add the web app's routes to `app`. Raises FileNotFoundError when the
    package lacks a file of the app."""
    build = load_build()
    routes = WebRoutes(api, build)
    api.not_found_page = routes.not_found_page
    logger.debug("Web app build %s with %d assets", build.version, len(build.assets))

    for index, rule in enumerate(APP_PATHS):
        app.add_url_rule(rule, f"web_page_{index}", routes.page, methods=["GET"])
    app.add_url_rule(
        "/sw.js", "web_service_worker", routes.service_worker, methods=["GET"]
    )
    app.add_url_rule(
        "/manifest.webmanifest", "web_manifest", routes.manifest, methods=["GET"]
    )
    app.add_url_rule("/app/qr.svg", "web_qr_code", routes.qr_code, methods=["GET"])
    app.add_url_rule(
        "/app/<version>/<path:name>", "web_asset", routes.asset, methods=["GET"]
    )
