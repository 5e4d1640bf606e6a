"""The routes that serve the web app, over HTTP: the page and its paths,
assets, service worker, manifest and QR codes."""

import json
import re
import struct
from importlib import resources
from urllib.parse import quote

import httpx
import pytest

from fernd.web import ASSETS, INDEX_FILE, MANIFEST_FILE, SERVICE_WORKER_FILE
from tests.conftest import FerndServer

LABOUR_ID = "0190f5a2-7c3e-7a41-9b2d-5e8f1c2a3b4d"
TOKEN = "K7QX2MPA"
APP_PATHS = [
    "/",
    "/sign-in",
    "/sign-up",
    "/forgot-password",
    "/reset-password?token=abc",
    "/account",
    "/plan",
    "/labours",
    f"/labours/{LABOUR_ID}",
    f"/labours/{LABOUR_ID}/track",
    f"/labours/{LABOUR_ID}/subscribers",
    f"/s/{LABOUR_ID}/{TOKEN}",
]
CONTENT_TYPES = {
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "png": "image/png",
    "svg": "image/svg+xml",
}


@pytest.fixture(scope="module")
def client(server: FerndServer) -> httpx.Client:
    with httpx.Client(base_url=server.base_url, timeout=30) as instance:
        yield instance


def asset_prefix(client: httpx.Client) -> str:
    page = client.get("/").text
    match = re.search(r'href="(/app/[0-9a-f]{12}/)app\.css"', page)
    assert match, page
    return match.group(1)


def host_of(server: FerndServer) -> str:
    return server.base_url.removeprefix("http://")


@pytest.mark.parametrize("path", APP_PATHS)
def test_app_path_serves_page(client: httpx.Client, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="/app/' in reply.text


def test_page_content_security_policy(
    client: httpx.Client, server: FerndServer
) -> None:
    policy = client.get("/").headers["content-security-policy"]
    directives = {}
    for part in policy.split("; "):
        name, _, value = part.partition(" ")
        directives[name] = value
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    host = host_of(server)
    assert directives["connect-src"] == f"'self' ws://{host} wss://{host}"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy


def test_page_has_no_inline_script(client: httpx.Client) -> None:
    page = client.get("/").text
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.DOTALL)
    assert scripts == [""]
    assert " style=" not in page
    assert "__FERND_VERSION__" not in page


def test_content_security_policy_skips_unusual_host(client: httpx.Client) -> None:
    policy = client.get("/", headers={"Host": "bad host;x"}).headers[
        "content-security-policy"
    ]
    assert "connect-src 'self';" in policy


def test_unknown_tab_is_not_found(client: httpx.Client) -> None:
    reply = client.get(f"/labours/{LABOUR_ID}/nonsense")
    assert reply.status_code == 404
    assert reply.json() == {"message": "Not Found", "code": "not_found"}


@pytest.mark.parametrize("name", ASSETS)
def test_asset_served_with_type_and_long_cache(client: httpx.Client, name: str) -> None:
    reply = client.get(asset_prefix(client) + name)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == CONTENT_TYPES[name.rsplit(".", 1)[1]]
    assert reply.headers["cache-control"] == "public, max-age=31536000, immutable"
    expected = resources.files("fernd.web").joinpath("static", name).read_bytes()
    assert reply.content == expected


def test_asset_revalidation_returns_not_modified(client: httpx.Client) -> None:
    url = asset_prefix(client) + "app.css"
    etag = client.get(url).headers["etag"]
    reply = client.get(url, headers={"If-None-Match": etag})
    assert reply.status_code == 304
    assert reply.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/app/000000000000/app.css",
        "{prefix}missing.js",
        "{prefix}../../pyproject.toml",
        "{prefix}%2e%2e/%2e%2e/pyproject.toml",
        "{prefix}js/../../web/__init__.py",
        "{prefix}index.html",
    ],
)
def test_asset_outside_list_not_found(client: httpx.Client, path: str) -> None:
    url = path.format(prefix=asset_prefix(client))
    reply = client.get(url)
    assert reply.status_code == 404
    assert reply.json()["code"] == "not_found"


def test_every_static_file_is_listed() -> None:
    static = resources.files("fernd.web").joinpath("static")
    found: set[str] = set()

    def walk(directory, prefix: str) -> None:  # type: ignore[no-untyped-def]
        for entry in directory.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            else:
                found.add(prefix + entry.name)

    walk(static, "")
    root_files = {INDEX_FILE, SERVICE_WORKER_FILE, MANIFEST_FILE}
    assert found - root_files == set(ASSETS)


def test_service_worker_names_this_build(client: httpx.Client) -> None:
    reply = client.get("/sw.js")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/javascript; charset=utf-8"
    assert reply.headers["cache-control"] == "no-cache"
    version = asset_prefix(client).split("/")[2]
    assert f'const VERSION = "{version}";' in reply.text
    assert "__FERND_" not in reply.text
    shell = json.loads(re.search(r"const SHELL = (\[.*?\]);", reply.text).group(1))
    assert shell[:2] == ["/", "/manifest.webmanifest"]
    assert sorted(shell[2:]) == sorted(f"/app/{version}/{name}" for name in ASSETS)


def test_manifest_fields_and_icons(client: httpx.Client) -> None:
    reply = client.get("/manifest.webmanifest")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/manifest+json"
    manifest = reply.json()
    assert manifest["name"]
    assert manifest["start_url"] == "/"
    assert manifest["display"] == "standalone"
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["theme_color"])
    sizes = {icon["sizes"]: icon for icon in manifest["icons"]}
    assert set(sizes) == {"any", "192x192", "512x512"}
    assert sizes["any"]["type"] == "image/svg+xml"
    for size in (192, 512):
        icon = sizes[f"{size}x{size}"]
        image = client.get(icon["src"])
        assert image.status_code == 200
        assert image.content[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", image.content[16:24])
        assert (width, height) == (size, size)


def test_qr_code_of_share_link(client: httpx.Client, server: FerndServer) -> None:
    link = f"{server.base_url}/s/{LABOUR_ID}/{TOKEN}"
    reply = client.get(f"/app/qr.svg?data={quote(link, safe='')}")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/svg+xml"
    assert reply.headers["cache-control"] == "private, max-age=300"
    assert reply.text.startswith("<svg")
    assert "viewBox" in reply.text


@pytest.mark.parametrize(
    "data",
    [
        "",
        "https://example.org/s/{labour}/{token}",
        "{base}/s/not-a-uuid/{token}",
        "{base}/s/{labour}/K7QX2MP",
        "{base}/s/{labour}/k7qx2mpa",
        "{base}/s/{labour}/K7QX2MPI",
        "{base}/s/{labour}/{token}?next=x",
        "{base}/s/{labour}/{token}#x",
        "{base}/s/{labour}/{token}/extra",
        "{base}/labours/{labour}",
        "javascript:alert(1)//{host}/s/{labour}/{token}",
        "ftp://{host}/s/{labour}/{token}",
        "http://user@{host}/s/{labour}/{token}",
    ],
)
def test_qr_code_rejects_other_data(
    client: httpx.Client, server: FerndServer, data: str
) -> None:
    text = data.format(
        base=server.base_url, host=host_of(server), labour=LABOUR_ID, token=TOKEN
    )
    reply = client.get("/app/qr.svg", params={"data": text})
    assert reply.status_code == 400
    assert reply.json() == {
        "message": "Invalid share link: expected {origin}/s/{labour_id}/{token}",
        "code": "invalid_request",
    }


def test_unknown_page_gets_the_app_with_404(client: httpx.Client) -> None:
    page = client.get("/nowhere/at-all", headers={"Accept": "text/html"})
    api = client.get("/api/v1/nowhere", headers={"Accept": "text/html"})
    script = client.get("/nowhere/at-all", headers={"Accept": "*/*"})

    assert page.status_code == 404
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert api.status_code == 404
    assert api.json() == {"message": "Not Found", "code": "not_found"}
    assert script.status_code == 404
    assert script.json() == {"message": "Not Found", "code": "not_found"}
