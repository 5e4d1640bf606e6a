// HTTP calls to fernd: commands, queries, the labour lists and the accounts
// API. Every failure becomes an ApiError carrying the reason fernd gave, or a
// NetworkError when the server could not be reached.

import {
  SessionEnded,
  accessToken,
  clearSession,
  loadSession,
  refreshSession,
} from "./session.js";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export class NetworkError extends Error {
  constructor(message = "No connection to the server. Check your connection and try again.") {
    super(message);
    this.name = "NetworkError";
  }
}

// HTTP statuses of fernd's error codes, for errors that arrive over the
// WebSocket without a status.
export const STATUS_OF_CODE = {
  invalid_request: 400,
  validation_error: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  rate_limited: 429,
  internal_error: 500,
};

// Whether `error` means the request may succeed when sent again later: the
// network failed, or fernd was overloaded or failed inside.
export function isRetryable(error) {
  if (error instanceof NetworkError) {
    return true;
  }
  return error instanceof ApiError && (error.status >= 500 || error.status === 429);
}

// fernd names the kind of a refusal before its reason, as in "Domain error:
// Invalid command: Too soon since last announcement". People are shown the
// reason alone.
const MESSAGE_PREFIX =
  /^(?:Domain error: )?(?:(?:Validation error|Invalid command|Rate limit exceeded|Authorization failed): )?/;

export function plainMessage(text) {
  const reason = text.replace(MESSAGE_PREFIX, "");
  return reason.charAt(0).toUpperCase() + reason.slice(1);
}

// "Try again in 15 minutes." for a Retry-After of 900 seconds.
function retryAdvice(seconds) {
  if (seconds >= 120) {
    return `Try again in ${Math.ceil(seconds / 60)} minutes.`;
  }
  return `Try again in ${seconds} second${seconds === 1 ? "" : "s"}.`;
}

async function errorOf(response) {
  let message = `The request failed with status ${response.status}.`;
  let code = "internal_error";
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") {
      message = plainMessage(body.message);
      code = body.code || code;
    }
  } catch {
    // Not JSON: keep the message naming the status.
  }
  const retryAfter = response.headers.get("Retry-After");
  const seconds = Number.parseInt(retryAfter, 10);
  if (response.status === 429 && seconds > 0) {
    const reason = message.replace(/,? try again later\.?$/i, "").replace(/[.!]?$/, ".");
    message = `${reason} ${retryAdvice(seconds)}`;
  }
  return new ApiError(response.status, code, message, retryAfter);
}

// Run `call`, which reads or refreshes the session. A refresh that did not
// reach fernd is raised as NetworkError and one that fernd failed as
// ApiError, so that callers retry it like any other request.
async function withSession(call) {
  try {
    return await call();
  } catch (error) {
    if (error instanceof SessionEnded) {
      throw error;
    }
    if (error.network) {
      throw new NetworkError();
    }
    throw new ApiError(error.status || 500, "internal_error", error.message);
  }
}

// Send one request and return the parsed JSON reply, or null for a reply
// without a body. With `auth`, the session's access token is sent, refreshed
// first when it is about to expire, and refreshed once more on a 401.
export async function request(method, path, { body, auth = true, idempotencyKey } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = {};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    if (idempotencyKey) {
      headers["Idempotency-Key"] = idempotencyKey;
    }
    let token = null;
    if (auth) {
      token = await withSession(accessToken);
      headers.Authorization = `Bearer ${token}`;
    }
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw new NetworkError();
    }
    if (response.status === 401 && auth) {
      const session = loadSession();
      if (attempt === 0 && session && session.refresh_token) {
        await withSession(refreshSession);
        continue;
      }
      if (session && session.access_token === token) {
        clearSession();
      }
      throw new SessionEnded();
    }
    if (!response.ok) {
      throw await errorOf(response);
    }
    if (response.status === 204 || response.status === 202) {
      return null;
    }
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }
}

export function tagged(group, name, payload) {
  return { type: group, payload: { type: name, payload } };
}

export function command(group, name, payload, idempotencyKey) {
  return request("POST", "/api/v1/command", {
    body: tagged(group, name, payload),
    idempotencyKey,
  });
}

export function query(group, name, payload) {
  return request("POST", "/api/v1/query", { body: tagged(group, name, payload) });
}

export function planLabour(plan, idempotencyKey) {
  return request("POST", "/api/v1/labour/plan", { body: plan, idempotencyKey });
}

export function labourHistory() {
  return request("GET", "/api/v1/labour/history?limit=100");
}

export function activeLabour() {
  return request("GET", "/api/v1/labour/active");
}

export function followedLabours() {
  return request("GET", "/api/v1/subscriptions/labours?limit=100");
}

export function serverTimestamp(labourId) {
  return request("GET", `/api/v1/timestamp/${labourId}`);
}

// The accounts API. These calls send no token unless they act on the
// signed-in account.
export const accounts = {
  options: () => request("GET", "/api/v1/auth/options", { auth: false }),
  register: (fields) =>
    request("POST", "/api/v1/auth/register", { body: fields, auth: false }),
  login: (email, password) =>
    request("POST", "/api/v1/auth/login", { body: { email, password }, auth: false }),
  logout: (refreshToken) =>
    request("POST", "/api/v1/auth/logout", {
      body: { refresh_token: refreshToken },
      auth: false,
    }),
  me: () => request("GET", "/api/v1/me"),
  updateMe: (fields) => request("PATCH", "/api/v1/me", { body: fields }),
  changePassword: (currentPassword, newPassword) =>
    request("POST", "/api/v1/me/password", {
      body: { current_password: currentPassword, new_password: newPassword },
    }),
  requestPasswordReset: (email) =>
    request("POST", "/api/v1/auth/password-reset", { body: { email }, auth: false }),
  confirmPasswordReset: (token, newPassword) =>
    request("POST", "/api/v1/auth/password-reset/confirm", {
      body: { token, new_password: newPassword },
      auth: false,
    }),
};
