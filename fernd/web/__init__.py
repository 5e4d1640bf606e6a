"""The web app fernd serves at `/`: hand-written HTML, CSS and ES modules
under `static/`, with no build step.

`ASSETS` lists every file the app may serve. The routes look a requested name
up in it and never build a file path from the request.
"""

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

# Files under `static/`, by their path there. Nothing outside this list is
# served.
ASSETS: Final = (
    "app.css",
    "icons/icon.svg",
    "icons/icon-192.png",
    "icons/icon-512.png",
    "js/api.js",
    "js/connection.js",
    "js/dom.js",
    "js/format.js",
    "js/ids.js",
    "js/main.js",
    "js/outbox.js",
    "js/router.js",
    "js/session.js",
    "js/store.js",
    "js/views/auth.js",
    "js/views/complete.js",
    "js/views/home.js",
    "js/views/join.js",
    "js/views/labour.js",
    "js/views/settings.js",
    "js/views/share.js",
    "js/views/subscribers.js",
    "js/views/track.js",
    "js/views/updates.js",
)
# Files served from the site root, with the build version filled in.
INDEX_FILE: Final = "index.html"
SERVICE_WORKER_FILE: Final = "sw.js"
MANIFEST_FILE: Final = "manifest.webmanifest"
# Replaced in the root files by the build version, so their asset URLs change
# whenever any asset does.
VERSION_PLACEHOLDER: Final = "__FERND_VERSION__"
# Replaced in the service worker by the JSON list of the app shell's URLs.
SHELL_PLACEHOLDER: Final = '["__FERND_SHELL__"]'
# Prefix of every asset URL. The build version follows it.
ASSET_URL_PREFIX: Final = "/app/"

CONTENT_TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
}


@dataclass(frozen=True)
class StaticFile:
    """One file of the app: its bytes, content type and entity tag."""

    body: bytes
    content_type: str
    etag: str


def content_type_of(name: str) -> str:
    """Return the content type for `name` by its extension. Raises KeyError
    for an extension the app does not use."""
    suffix = name[name.rfind(".") :]
    return CONTENT_TYPES[suffix]


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _static_file(body: bytes, name: str) -> StaticFile:
    digest = hashlib.sha256(body).hexdigest()[:32]
    return StaticFile(body, content_type_of(name), f'"{digest}"')


@dataclass(frozen=True)
class WebBuild:
    """The app as loaded from the package: assets by name, the root files with
    the version filled in, and the version itself."""

    version: str
    assets: dict[str, StaticFile]
    index: StaticFile
    service_worker: StaticFile
    manifest: StaticFile

    def asset_url(self, name: str) -> str:
        return f"{ASSET_URL_PREFIX}{self.version}/{name}"


def load_build() -> WebBuild:
    """Read every file of the app into memory and compute the build version.

    The version is a hash of all assets, so a changed file gets new URLs and
    browsers may cache each URL for good. Raises FileNotFoundError when a file
    listed in ASSETS is missing from the package.
    """
    bodies = {name: _read(name) for name in ASSETS}
    hasher = hashlib.sha256()
    for name in (*ASSETS, INDEX_FILE, SERVICE_WORKER_FILE, MANIFEST_FILE):
        body = bodies[name] if name in bodies else _read(name)
        hasher.update(name.encode() + b"\0" + body + b"\0")
    version = hasher.hexdigest()[:12]
    assets = {name: _static_file(body, name) for name, body in bodies.items()}
    shell = [
        "/",
        f"/{MANIFEST_FILE}",
        *(f"{ASSET_URL_PREFIX}{version}/{name}" for name in ASSETS),
    ]
    shell_json = "[" + ", ".join(f'"{url}"' for url in shell) + "]"

    def render(name: str) -> StaticFile:
        text = _read(name).decode()
        text = text.replace(VERSION_PLACEHOLDER, version)
        text = text.replace(SHELL_PLACEHOLDER, shell_json)
        return _static_file(text.encode(), name)

    return WebBuild(
        version=version,
        assets=assets,
        index=render(INDEX_FILE),
        service_worker=render(SERVICE_WORKER_FILE),
        manifest=render(MANIFEST_FILE),
    )
