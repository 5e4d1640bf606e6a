// The service worker of the fernd web app. fernd fills in the build version
// and the app shell's URLs when it serves this file.
//
// The app shell is cached under a name that contains the build version, and
// caches of other versions are deleted on activation. Nothing under /api/ is
// ever cached: those requests go straight to the network.

const VERSION = "__FERND_VERSION__";
const SHELL = ["__FERND_SHELL__"];
const CACHE_PREFIX = "fernd-shell-";
const CACHE_NAME = CACHE_PREFIX + VERSION;
const ASSET_PREFIX = "/app/" + VERSION + "/";
const MANIFEST_PATH = "/manifest.webmanifest";

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE_NAME)
      // Straight from the network: a copy in the HTTP cache may be one
      // fetched with another Origin header.
      .then((cache) => cache.addAll(SHELL.map((url) => new Request(url, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names
            .filter((name) => name.startsWith(CACHE_PREFIX) && name !== CACHE_NAME)
            .map((name) => caches.delete(name)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

// Pages and the manifest come from the network when it responds, else from
// the cache. Every page path gets the cached page at "/", so the app opens
// on any of its paths while offline.
async function networkFirst(request, cachedPath) {
  try {
    return await fetch(request);
  } catch (error) {
    const cache = await caches.open(CACHE_NAME);
    const cached = await cache.match(cachedPath, { ignoreVary: true });
    if (cached) {
      return cached;
    }
    throw error;
  }
}

// Asset URLs contain the build version, so a cached copy is always current.
// Module scripts are requested with an Origin header and fernd responds with
// "Vary: Origin", so the match ignores Vary.
async function asset(request) {
  const cache = await caches.open(CACHE_NAME);
  const cached = await cache.match(request, { ignoreVary: true });
  return cached || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") {
    return;
  }
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/api/")) {
    return;
  }
  if (request.mode === "navigate") {
    event.respondWith(networkFirst(request, "/"));
  } else if (url.pathname === MANIFEST_PATH) {
    event.respondWith(networkFirst(request, MANIFEST_PATH));
  } else if (url.pathname.startsWith(ASSET_PREFIX)) {
    event.respondWith(asset(request));
  }
});
