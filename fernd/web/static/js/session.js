// The signed-in session: the access token, the refresh token and the user,
// shared by every tab of the app.
//
// Refresh tokens rotate: each refresh returns a new one and the old one stops
// working, and presenting an old one again revokes the whole login. So at most
// one refresh runs at a time, across tabs too (Web Locks), and the newest
// refresh token is stored before the lock is released. The refresh reads it
// from IndexedDB, whose reads see every committed write of other tabs. The
// copy in localStorage, which the rest of the app reads synchronously, can
// reach another tab's process late.

const STORAGE_KEY = "fernd.session";
const DATABASE_NAME = "fernd";
const SESSION_STORE = "session";
const SESSION_RECORD = "current";
const REFRESH_LOCK = "fernd-refresh";
// The silent refresh runs this long before the access token expires, or a
// quarter of the token's lifetime before when that is shorter, in
// milliseconds.
const REFRESH_MARGIN_MS = 60_000;
// A request refreshes the token first when less than this is left, or an
// eighth of its lifetime when that is shorter, in milliseconds.
const MIN_VALIDITY_MS = 10_000;
// setTimeout cannot wait longer than about 24.8 days, so a check is planned
// daily.
const MAX_TIMER_MS = 86_400_000;

export class SessionEnded extends Error {
  constructor(message = "Your session has ended. Please sign in again.") {
    super(message);
    this.name = "SessionEnded";
  }
}

const listeners = new Set();
let refreshing = null;
let refreshTimer = null;

function decodeBase64Url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (character) => character.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

// The claims of a JWT, read without verifying it: fernd verifies tokens, and
// the app only needs the user's id, name and the expiry.
export function tokenClaims(token) {
  try {
    return JSON.parse(decodeBase64Url(token.split(".")[1]));
  } catch {
    return null;
  }
}

function userFromClaims(claims) {
  const joined = [claims.first_name, claims.last_name].filter(Boolean).join(" ");
  return {
    user_id: claims.sub,
    name: claims.name || joined || null,
    email: claims.email || null,
  };
}

function userFromAccount(account) {
  const joined = [account.first_name, account.last_name].filter(Boolean).join(" ");
  return {
    user_id: account.user_id,
    name: account.name || joined || null,
    email: account.email || null,
  };
}

function isValid(session) {
  return (
    session &&
    typeof session.access_token === "string" &&
    typeof session.expires_at === "number" &&
    session.user &&
    typeof session.user.user_id === "string"
  );
}

// Build a session from the accounts API's token response.
export function sessionFromTokenPair(pair) {
  const claims = tokenClaims(pair.access_token) || {};
  const expiresAt =
    typeof claims.exp === "number"
      ? claims.exp * 1000
      : Date.now() + pair.expires_in * 1000;
  return {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    issued_at: typeof claims.iat === "number" ? claims.iat * 1000 : Date.now(),
    expires_at: expiresAt,
    user: pair.user ? userFromAccount(pair.user) : userFromClaims(claims),
  };
}

export function loadSession() {
  let session = null;
  try {
    session = JSON.parse(localStorage.getItem(STORAGE_KEY));
  } catch {
    session = null;
  }
  return isValid(session) ? session : null;
}

function notify() {
  const session = loadSession();
  for (const listener of listeners) {
    listener(session);
  }
}

let database = null;

function openDatabase() {
  if (!database) {
    database = new Promise((resolve, reject) => {
      const opening = indexedDB.open(DATABASE_NAME, 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore(SESSION_STORE);
      opening.onsuccess = () => resolve(opening.result);
      opening.onerror = () => reject(opening.error);
    });
  }
  return database;
}

// Write `session`, or delete it when null, to IndexedDB. Resolves once the
// write is committed. Without IndexedDB (some private windows) only
// localStorage contains the session.
async function storeDurably(session) {
  let connection;
  try {
    connection = await openDatabase();
  } catch {
    return;
  }
  await new Promise((resolve, reject) => {
    const transaction = connection.transaction(SESSION_STORE, "readwrite");
    const store = transaction.objectStore(SESSION_STORE);
    if (session) {
      store.put(session, SESSION_RECORD);
    } else {
      store.delete(SESSION_RECORD);
    }
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
  });
}

// Read the session from IndexedDB, or from localStorage when IndexedDB has
// none, as after a sign-in whose write has not committed yet.
async function readDurably() {
  try {
    const connection = await openDatabase();
    const stored = await new Promise((resolve, reject) => {
      const reading = connection
        .transaction(SESSION_STORE, "readonly")
        .objectStore(SESSION_STORE)
        .get(SESSION_RECORD);
      reading.onsuccess = () => resolve(reading.result);
      reading.onerror = () => reject(reading.error);
    });
    if (isValid(stored)) {
      return stored;
    }
  } catch {
    // Fall back to localStorage.
  }
  return loadSession();
}

// Store `session` for every tab. Resolves once it is durable.
export function saveSession(session) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  scheduleRefresh();
  notify();
  return storeDurably(session);
}

export function clearSession() {
  localStorage.removeItem(STORAGE_KEY);
  clearTimeout(refreshTimer);
  notify();
  return storeDurably(null);
}

// Call `listener(session or null)` whenever the session changes in this tab
// or another.
export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

window.addEventListener("storage", (event) => {
  if (event.key === STORAGE_KEY || event.key === null) {
    scheduleRefresh();
    notify();
  }
});

async function postRefresh(refreshToken) {
  let response;
  try {
    response = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
      cache: "no-store",
    });
  } catch {
    const error = new Error("No connection to the server");
    error.network = true;
    throw error;
  }
  if (response.status === 400 || response.status === 401) {
    clearSession();
    throw new SessionEnded();
  }
  if (!response.ok) {
    const error = new Error(`Refreshing the sign-in failed with status ${response.status}.`);
    error.status = response.status;
    throw error;
  }
  return sessionFromTokenPair(await response.json());
}

async function refreshUnderLock(staleRefreshToken) {
  const current = await readDurably();
  if (!current || !loadSession()) {
    // Signed out, in this tab or another.
    throw new SessionEnded();
  }
  if (current.refresh_token !== staleRefreshToken) {
    // Another tab refreshed while this one waited for the lock.
    return current;
  }
  if (!current.refresh_token) {
    if (current.expires_at > Date.now()) {
      return current;
    }
    clearSession();
    throw new SessionEnded();
  }
  const next = await postRefresh(current.refresh_token);
  await saveSession(next);
  return next;
}

// Refresh the access token, once at a time in this tab and across tabs.
// Resolves with the new session, or rejects with SessionEnded when the login
// is no longer valid.
export function refreshSession() {
  if (refreshing) {
    return refreshing;
  }
  const session = loadSession();
  if (!session) {
    return Promise.reject(new SessionEnded());
  }
  const stale = session.refresh_token;
  const run = () => refreshUnderLock(stale);
  const locked =
    navigator.locks && navigator.locks.request
      ? navigator.locks.request(REFRESH_LOCK, run)
      : run();
  refreshing = locked.finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function lifetimeOf(session) {
  const issuedAt = typeof session.issued_at === "number" ? session.issued_at : Date.now();
  return Math.max(session.expires_at - issuedAt, 0);
}

// Return an access token valid for at least the next few seconds,
// refreshing it first when it is about to expire.
export async function accessToken() {
  const session = loadSession();
  if (!session) {
    throw new SessionEnded("Please sign in.");
  }
  const minimum = Math.min(MIN_VALIDITY_MS, lifetimeOf(session) / 8);
  if (session.expires_at - Date.now() > minimum) {
    return session.access_token;
  }
  const next = await refreshSession();
  return next.access_token;
}

// Plan the next silent refresh for REFRESH_MARGIN_MS before the access
// token expires.
export function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const session = loadSession();
  if (!session || !session.refresh_token) {
    return;
  }
  const margin = Math.min(REFRESH_MARGIN_MS, lifetimeOf(session) / 4);
  const delay = Math.min(Math.max(session.expires_at - Date.now() - margin, 0), MAX_TIMER_MS);
  refreshTimer = setTimeout(() => {
    const latest = loadSession();
    if (!latest) {
      return;
    }
    if (latest.expires_at - Date.now() > margin + 1_000) {
      // Another tab refreshed meanwhile, or the timer fired early.
      scheduleRefresh();
      return;
    }
    refreshSession().catch(() => {
      // A failed silent refresh is tried again by the next request, or on
      // the next timer when the connection is back.
      refreshTimer = setTimeout(scheduleRefresh, 15_000);
    });
  }, delay);
}

// Timers are slowed down in background tabs, so check again when the app
// becomes visible.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") {
    scheduleRefresh();
  }
});
