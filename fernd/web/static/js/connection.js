// One WebSocket to one labour: pushes of new events, commands and queries
// with one reply each, and the server clock. It reconnects after a drop with
// exponential backoff and resumes from the last event sequence it received.

import { ApiError, NetworkError, STATUS_OF_CODE, plainMessage } from "./api.js";
import { parseTime } from "./format.js";
import { correlationId } from "./ids.js";
import { SessionEnded, accessToken } from "./session.js";

// Browsers cannot set headers on a WebSocket, so the token travels as a
// subprotocol entry with this prefix.
const TOKEN_SUBPROTOCOL_PREFIX = "base64url.bearer.authorization.fernlabour.com.";
// A reply that has not arrived after this long is given up on, and the caller
// sends the request over HTTP instead, in milliseconds.
const REPLY_TIMEOUT_MS = 5_000;
// Reconnect delays: 1 s, doubling up to 30 s, each varied by up to ±20 % so
// that many clients dropped together do not return together.
const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;
const JITTER = 0.2;
// A socket that stayed open this long resets the backoff.
const STABLE_MS = 10_000;

// Close codes sent by fernd.
const CLOSE_TOKEN_EXPIRED = 4401;
const CLOSE_ACCESS_ENDED = 4403;
const CLOSE_LABOUR_DELETED = 4404;

export class NotConnected extends Error {
  constructor() {
    super("The live connection is not open.");
    this.name = "NotConnected";
  }
}

export class ReplyTimeout extends Error {
  constructor() {
    super("The server did not reply in time.");
    this.name = "ReplyTimeout";
  }
}

export function retryDelay(attempt) {
  const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** attempt);
  const varied = base * (1 - JITTER + Math.random() * 2 * JITTER);
  return Math.min(MAX_RETRY_MS, varied);
}

// Events dispatched: "state" (detail: "connecting", "open", "reconnecting",
// "offline", "ended"), "open" (detail: {resumed}), "push" (detail: the event),
// "clock" (detail: offset in milliseconds), "refused" (the socket closed
// before it opened), "access-ended", "deleted", "session-ended".
export class LabourConnection extends EventTarget {
  constructor(labourId) {
    super();
    this.labourId = labourId;
    this.socket = null;
    this.pending = new Map();
    this.lastSequence = null;
    this.attempt = 0;
    this.stopped = false;
    this.state = "connecting";
    this.openedAt = 0;
    this.retryTimer = null;
    this.onOnline = () => {
      this.attempt = 0;
      clearTimeout(this.retryTimer);
      if (!this.socket) {
        this.connect();
      }
    };
    this.onOffline = () => {
      // The browser has no network: close now instead of waiting for pings
      // to time out, and reconnect when it is back.
      this.setState("offline");
      if (this.socket) {
        this.socket.close(1000, "Offline");
      }
    };
  }

  start() {
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    if (this.socket) {
      this.socket.close(1000, "Closed by the app");
      this.socket = null;
    }
    this.failPending(new NotConnected());
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  setState(state) {
    if (this.state !== state) {
      this.state = state;
      this.dispatchEvent(new CustomEvent("state", { detail: state }));
    }
  }

  async connect() {
    if (this.stopped || this.socket) {
      return;
    }
    if (!navigator.onLine) {
      this.setState("offline");
      return;
    }
    let token;
    try {
      token = await accessToken();
    } catch (error) {
      if (error instanceof SessionEnded) {
        this.dispatchEvent(new CustomEvent("session-ended", { detail: error }));
        return;
      }
      this.scheduleReconnect();
      return;
    }
    if (this.stopped || this.socket) {
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const since = this.lastSequence === null ? "" : `?since=${this.lastSequence}`;
    const url = `${scheme}//${location.host}/api/v1/connect/${this.labourId}${since}`;
    const socket = new WebSocket(url, [TOKEN_SUBPROTOCOL_PREFIX + token]);
    this.socket = socket;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      this.openedAt = Date.now();
      this.setState("open");
      this.dispatchEvent(new CustomEvent("open", { detail: { resumed: since !== "" } }));
      this.syncClock();
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => this.closed(socket, event, opened));
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message && "success" in message && "correlation_id" in message) {
      this.settle(message);
      return;
    }
    if (message && typeof message.type === "string") {
      if (Number.isInteger(message.sequence)) {
        this.lastSequence = Math.max(this.lastSequence ?? 0, message.sequence);
      }
      this.dispatchEvent(new CustomEvent("push", { detail: message }));
    }
  }

  settle(reply) {
    const waiting = this.pending.get(reply.correlation_id);
    if (!waiting) {
      return;
    }
    this.pending.delete(reply.correlation_id);
    clearTimeout(waiting.timer);
    if (reply.success) {
      waiting.resolve(reply.data);
    } else {
      const status = STATUS_OF_CODE[reply.code] || 500;
      waiting.reject(new ApiError(status, reply.code, plainMessage(String(reply.error))));
    }
  }

  failPending(error) {
    for (const waiting of this.pending.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(error);
    }
    this.pending.clear();
  }

  closed(socket, event, opened) {
    if (socket !== this.socket) {
      return;
    }
    this.socket = null;
    this.failPending(new NetworkError());
    if (this.stopped) {
      return;
    }
    if (event.code === CLOSE_ACCESS_ENDED) {
      this.stopped = true;
      this.setState("ended");
      this.dispatchEvent(new CustomEvent("access-ended"));
      return;
    }
    if (event.code === CLOSE_LABOUR_DELETED) {
      this.stopped = true;
      this.setState("ended");
      this.dispatchEvent(new CustomEvent("deleted"));
      return;
    }
    if (!navigator.onLine) {
      this.setState("offline");
      return;
    }
    if (event.code === CLOSE_TOKEN_EXPIRED) {
      // The token the socket opened with expired. The session has usually
      // been refreshed by now; connect() refreshes it first if not.
      this.attempt = 0;
      this.connect();
      return;
    }
    if (opened && Date.now() - this.openedAt > STABLE_MS) {
      this.attempt = 0;
    }
    if (!opened) {
      // fernd refuses the upgrade with an HTTP error the browser hides; the
      // listener may find out why over HTTP.
      this.dispatchEvent(new CustomEvent("refused"));
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped) {
      return;
    }
    clearTimeout(this.retryTimer);
    const delay = retryDelay(this.attempt);
    this.attempt += 1;
    this.setState("reconnecting");
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // Send one message and resolve with its reply's data. Reject with
  // NotConnected when the socket is not open, ReplyTimeout after
  // REPLY_TIMEOUT_MS, or ApiError when fernd replied with an error.
  send(message) {
    if (!this.isOpen) {
      return Promise.reject(new NotConnected());
    }
    const id = correlationId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ReplyTimeout());
      }, REPLY_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.send(JSON.stringify({ ...message, correlation_id: id }));
    });
  }

  command(tagged, idempotencyKey) {
    const message = { kind: "Command", ...tagged };
    if (idempotencyKey) {
      message.idempotency_key = idempotencyKey;
    }
    return this.send(message);
  }

  query(tagged) {
    return this.send({ kind: "Query", ...tagged });
  }

  // Estimate how far the server clock is ahead of this device's, from the
  // midpoint of a ServerTimestamp round trip.
  async syncClock() {
    try {
      const sent = Date.now();
      const data = await this.send({ kind: "ServerTimestamp" });
      const received = Date.now();
      const offset = parseTime(data.server_timestamp) - (sent + received) / 2;
      this.dispatchEvent(new CustomEvent("clock", { detail: offset }));
    } catch {
      // The store keeps its previous offset.
    }
  }
}
