// The state of one open labour, as the signed-in user may see it: the labour,
// its contractions, statistics, updates and, for the mother, subscribers and
// share token. It keeps them current from the labour's WebSocket pushes and
// sends commands over the socket when it is open, else over HTTP.

import * as api from "./api.js";
import { LabourConnection, NotConnected, ReplyTimeout, retryDelay } from "./connection.js";
import { showMessage } from "./dom.js";
import { parseTime } from "./format.js";
import { idempotencyKey } from "./ids.js";
import { Outbox, describeEntry } from "./outbox.js";
import { SessionEnded } from "./session.js";

export const STATS_RANGES = ["30mins", "60mins", "all"];
// The largest page fernd returns.
const PAGE_LIMIT = 100;
// Statistics and alerts depend on the current time, so they are fetched
// again this often even without new events, in milliseconds.
const STATS_REFRESH_MS = 30_000;
// While the live connection is not open, as when a proxy refuses WebSockets,
// every list is fetched over HTTP this often, in milliseconds.
const POLL_MS = 10_000;
// Pushes that arrive together cause one fetch per list, in milliseconds.
const REFETCH_DELAY_MS = 30;
// The process manager sets a new share token shortly after the old one is
// invalidated. Until its push arrives, the token is fetched again this often.
const TOKEN_RETRY_MS = 1_000;
// A subscriber without a stored profile is fetched again this often, at
// most USER_RETRY_LIMIT times in a row.
const USER_RETRY_MS = 1_000;
const USER_RETRY_LIMIT = 3;

const CONTRACTION_RESOURCES = ["contractions", "stats"];
const LABOUR_RESOURCES = ["labour", "stats"];
const UPDATE_RESOURCES = ["updates"];

// The lists to fetch again after each pushed event. Subscriber events are
// handled apart: they concern the mother's list or the reader's own
// subscription.
const RESOURCES_OF_EVENT = {
  LabourPlanned: LABOUR_RESOURCES,
  LabourPlanUpdated: LABOUR_RESOURCES,
  LabourBegun: LABOUR_RESOURCES,
  LabourCompleted: LABOUR_RESOURCES,
  LabourPhaseChanged: ["labour"],
  ContractionStarted: CONTRACTION_RESOURCES,
  ContractionEnded: CONTRACTION_RESOURCES,
  ContractionUpdated: CONTRACTION_RESOURCES,
  ContractionDeleted: ["stats"],
  LabourUpdatePosted: UPDATE_RESOURCES,
  LabourUpdateMessageUpdated: UPDATE_RESOURCES,
  LabourUpdateTypeUpdated: UPDATE_RESOURCES,
  SubscriptionTokenSet: ["token"],
  SubscriptionTokenInvalidated: ["token"],
};

const RESOURCES_OF_GROUP = {
  Labour: LABOUR_RESOURCES,
  Contraction: CONTRACTION_RESOURCES,
  LabourUpdate: UPDATE_RESOURCES,
  Subscription: ["subscriptions"],
  Subscriber: ["own"],
};

function isUnsent(error) {
  return (
    error instanceof NotConnected ||
    error instanceof ReplyTimeout ||
    error instanceof api.NetworkError
  );
}

// Events dispatched: "change" with detail naming what changed ("status",
// "labour", "contractions", "stats", "updates", "subscriptions", "token",
// "own", "role", "outbox", "connection", "clock"), and "session-ended".
export class LabourStore extends EventTarget {
  constructor(labourId, user) {
    super();
    this.labourId = labourId;
    this.user = user;
    this.outbox = new Outbox(user.user_id);
    this.connection = null;
    this.connectionState = "connecting";
    this.offset = 0;
    this.status = "loading";
    this.statusMessage = "";
    this.role = null;
    this.labour = null;
    this.contractions = [];
    this.contractionsCursor = null;
    this.contractionsHaveMore = false;
    this.stats = {};
    this.updates = [];
    this.updatesCursor = null;
    this.updatesHaveMore = false;
    this.subscriptions = [];
    this.users = new Map();
    this.userRetries = 0;
    this.token = undefined;
    this.own = null;
    this.running = new Map();
    this.again = new Set();
    this.due = new Set();
    this.refetchTimer = null;
    this.statsTimer = null;
    this.pollTimer = null;
    this.tokenTimer = null;
    this.flushing = false;
    this.flushAgain = false;
    this.flushAttempt = 0;
    this.flushTimer = null;
    this.stopped = false;
    this.onOutboxChange = () => this.changed("outbox");
    this.onOnline = () => this.flush();
  }

  get isMother() {
    return this.role === "MOTHER";
  }

  // The mother and birth partners track contractions, post updates and see
  // private notes.
  get canTrack() {
    return this.role === "MOTHER" || this.role === "BIRTH_PARTNER";
  }

  get isComplete() {
    return this.labour !== null && this.labour.current_phase === "COMPLETE";
  }

  // The server's current time, in milliseconds since the epoch.
  now() {
    return Date.now() + this.offset;
  }

  changed(part) {
    this.dispatchEvent(new CustomEvent("change", { detail: part }));
  }

  setStatus(status, message = "") {
    this.status = status;
    this.statusMessage = message;
    if (!["ready", "loading", "offline"].includes(status) && this.connection) {
      // The labour is gone or no longer readable: stop reconnecting.
      this.connection.stop();
    }
    this.changed("status");
  }

  async start() {
    if (this.stopped) {
      return;
    }
    try {
      this.labour = await api.query("Labour", "GetLabour", { labour_id: this.labourId });
      await this.resolveRole();
    } catch (error) {
      this.failStart(error);
      return;
    }
    if (this.status !== "loading" || this.stopped) {
      return;
    }
    this.setStatus("ready");
    this.outbox.addEventListener("change", this.onOutboxChange);
    window.addEventListener("online", this.onOnline);
    this.connect();
    this.refetchAll();
    this.syncClockOverHttp();
    this.statsTimer = setInterval(() => this.refetch("stats"), STATS_REFRESH_MS);
    this.pollTimer = setInterval(() => this.poll(), POLL_MS);
    this.flush();
  }

  failStart(error) {
    if (error instanceof api.NetworkError) {
      // Opened without a connection: try again as soon as there is one.
      window.addEventListener(
        "online",
        () => {
          this.status = "loading";
          this.start();
        },
        { once: true },
      );
      this.setStatus("offline", error.message);
    } else if (error instanceof SessionEnded) {
      this.dispatchEvent(new CustomEvent("session-ended", { detail: error }));
    } else if (error instanceof api.ApiError && error.status === 404) {
      this.setStatus("not-found", error.message);
    } else if (error instanceof api.ApiError && error.status === 403) {
      this.setStatus("no-access", error.message);
    } else {
      this.setStatus("error", error.message);
    }
  }

  async resolveRole() {
    if (this.labour.mother_id === this.user.user_id) {
      this.role = "MOTHER";
      return;
    }
    this.own = await api.query("Subscription", "GetUserSubscription", {
      labour_id: this.labourId,
    });
    this.role = this.own.role;
  }

  stop() {
    this.stopped = true;
    clearInterval(this.statsTimer);
    clearInterval(this.pollTimer);
    clearTimeout(this.refetchTimer);
    clearTimeout(this.tokenTimer);
    clearTimeout(this.flushTimer);
    window.removeEventListener("online", this.onOnline);
    this.outbox.removeEventListener("change", this.onOutboxChange);
    this.outbox.close();
    if (this.connection) {
      this.connection.stop();
    }
  }

  connect() {
    const connection = new LabourConnection(this.labourId);
    this.connection = connection;
    connection.addEventListener("state", (event) => {
      this.connectionState = event.detail;
      this.changed("connection");
    });
    connection.addEventListener("open", () => {
      // Fetch everything again: pushes missed while disconnected arrive as a
      // backlog too, but the lists may also have changed in ways no longer
      // visible as events, such as a role granted meanwhile.
      this.refetchAll();
      this.flush();
    });
    connection.addEventListener("push", (event) => this.applyPush(event.detail));
    connection.addEventListener("clock", (event) => {
      this.offset = event.detail;
      this.changed("clock");
    });
    connection.addEventListener("refused", () => this.checkAccess());
    connection.addEventListener("access-ended", () =>
      this.setStatus("ended", "You no longer have access to this labour."),
    );
    connection.addEventListener("deleted", () =>
      this.setStatus("not-found", "This labour was deleted."),
    );
    connection.addEventListener("session-ended", (event) =>
      this.dispatchEvent(new CustomEvent("session-ended", { detail: event.detail })),
    );
    connection.start();
  }

  // Fetch every list over HTTP when no pushes can arrive.
  poll() {
    const live = this.connection && this.connection.isOpen;
    if (!live && navigator.onLine && this.status === "ready") {
      this.refetchAll();
    }
  }

  // The socket was refused before it opened: ask over HTTP whether the
  // labour still exists and this user may still read it.
  async checkAccess() {
    try {
      this.labour = await api.query("Labour", "GetLabour", { labour_id: this.labourId });
      this.changed("labour");
    } catch (error) {
      this.handleFetchError(error);
    }
  }

  async syncClockOverHttp() {
    try {
      const sent = Date.now();
      const reply = await api.serverTimestamp(this.labourId);
      const received = Date.now();
      if (!this.connection || !this.connection.isOpen) {
        this.offset = parseTime(reply.server_timestamp) - (sent + received) / 2;
        this.changed("clock");
      }
    } catch {
      // The previous offset stays until the socket corrects it.
    }
  }

  applyPush(event) {
    const data = event.data || {};
    if (event.type === "ContractionDeleted") {
      this.contractions = this.contractions.filter(
        (item) => item.contraction_id !== data.contraction_id,
      );
      this.changed("contractions");
    } else if (event.type === "LabourUpdateDeleted") {
      this.updates = this.updates.filter(
        (item) => item.labour_update_id !== data.labour_update_id,
      );
      this.changed("updates");
    } else if (event.type === "LabourDeleted") {
      this.setStatus("not-found", "This labour was deleted.");
      return;
    } else if (event.type.startsWith("Subscriber")) {
      this.schedule([this.isMother ? "subscriptions" : "own"]);
      return;
    }
    this.schedule(RESOURCES_OF_EVENT[event.type] || []);
  }

  // The names of the lists this user reads.
  resourceNames() {
    const names = ["labour", "contractions", "stats", "updates"];
    if (this.isMother) {
      names.push("subscriptions", "token");
    } else {
      names.push("own");
    }
    return names;
  }

  refetchAll() {
    this.schedule(this.resourceNames());
  }

  schedule(names) {
    for (const name of names) {
      this.due.add(name);
    }
    if (this.refetchTimer === null) {
      this.refetchTimer = setTimeout(() => {
        this.refetchTimer = null;
        const due = [...this.due];
        this.due.clear();
        for (const name of due) {
          this.refetch(name);
        }
      }, REFETCH_DELAY_MS);
    }
  }

  // Fetch one list. A fetch asked for while the same one runs starts again
  // once it ends, so the newest state always wins.
  refetch(name) {
    if (!this.resourceNames().includes(name)) {
      return Promise.resolve();
    }
    if (this.running.has(name)) {
      this.again.add(name);
      return this.running.get(name);
    }
    const run = (async () => {
      try {
        do {
          this.again.delete(name);
          await this.fetchers[name].call(this);
          this.changed(name);
        } while (this.again.has(name));
      } catch (error) {
        this.handleFetchError(error);
      } finally {
        this.running.delete(name);
      }
    })();
    this.running.set(name, run);
    return run;
  }

  handleFetchError(error) {
    if (error instanceof SessionEnded) {
      this.dispatchEvent(new CustomEvent("session-ended", { detail: error }));
    } else if (error instanceof api.NetworkError) {
      // The connection line shows it, and the lists are fetched again on
      // reconnect.
    } else if (error instanceof api.ApiError && error.status === 404 && error.message === "Labour not found") {
      this.setStatus("not-found", "This labour no longer exists.");
    } else if (error instanceof api.ApiError && error.status === 403) {
      this.setStatus("ended", "You no longer have access to this labour.");
    } else {
      showMessage(error.message);
    }
  }

  async query(group, name, payload = {}) {
    const fields = { labour_id: this.labourId, ...payload };
    if (this.connection && this.connection.isOpen) {
      try {
        return await this.connection.query(api.tagged(group, name, fields));
      } catch (error) {
        if (!isUnsent(error)) {
          throw error;
        }
      }
    }
    return api.query(group, name, fields);
  }

  // Send a command over the socket, or over HTTP when the socket is closed or
  // does not reply in time. The same idempotency key goes with both, so a
  // command that reached fernd over the socket is not applied again.
  async send(group, name, payload = {}, key = idempotencyKey()) {
    const fields = { labour_id: this.labourId, ...payload };
    let sent = false;
    if (this.connection && this.connection.isOpen) {
      try {
        await this.connection.command(api.tagged(group, name, fields), key);
        sent = true;
      } catch (error) {
        if (!isUnsent(error)) {
          throw error;
        }
      }
    }
    if (!sent) {
      await api.command(group, name, fields, key);
    }
    this.schedule(RESOURCES_OF_GROUP[group] || []);
    if (name === "InvalidateSubscriptionToken") {
      this.token = null;
      this.changed("token");
      this.schedule(["token"]);
    }
  }

  // Queue a command that must not be lost while offline, and send the queue.
  queue(group, name, payload) {
    const entry = this.outbox.add(group, name, { labour_id: this.labourId, ...payload });
    this.flush();
    return entry;
  }

  pending() {
    return this.outbox.forLabour(this.labourId);
  }

  // Send queued commands one at a time, oldest first. A command fernd
  // rejects is dropped with a message. A command that could not be delivered
  // stays and is sent again later with the same idempotency key.
  async flush() {
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = true;
    clearTimeout(this.flushTimer);
    try {
      for (;;) {
        const entry = this.pending()[0];
        if (!entry || !navigator.onLine || this.status !== "ready") {
          break;
        }
        try {
          await this.send(entry.group, entry.name, entry.payload, entry.key);
          // Fetch the lists before dropping the entry, so the item does not
          // vanish between leaving the queue and arriving from fernd.
          await Promise.all((RESOURCES_OF_GROUP[entry.group] || []).map((name) => this.refetch(name)));
          this.outbox.remove(entry.id);
          this.flushAttempt = 0;
        } catch (error) {
          if (error instanceof SessionEnded) {
            break;
          }
          if (api.isRetryable(error) || isUnsent(error)) {
            this.flushTimer = setTimeout(() => this.flush(), retryDelay(this.flushAttempt));
            this.flushAttempt += 1;
            break;
          }
          this.outbox.remove(entry.id);
          showMessage(`${describeEntry(entry)} failed: ${error.message}`);
        }
      }
    } finally {
      this.flushing = false;
      if (this.flushAgain) {
        this.flushAgain = false;
        this.flush();
      }
    }
  }

  async loadMore(list) {
    try {
      if (list === "contractions" && this.contractionsCursor) {
        const page = await this.query("Contraction", "GetContractions", {
          limit: PAGE_LIMIT,
          cursor: this.contractionsCursor,
        });
        this.contractions = [...this.contractions, ...page.data];
        this.setContractionCursor(page);
      } else if (list === "updates" && this.updatesCursor) {
        const page = await this.query("LabourUpdate", "GetLabourUpdates", {
          limit: PAGE_LIMIT,
          cursor: this.updatesCursor,
        });
        this.updates = [...this.updates, ...page.data];
        this.setUpdateCursor(page);
      }
      this.changed(list);
    } catch (error) {
      this.handleFetchError(error);
    }
  }

  setContractionCursor(page) {
    this.contractionsHaveMore = page.has_more;
    const last = page.data[page.data.length - 1];
    this.contractionsCursor =
      page.has_more && last
        ? { id: last.contraction_id, updated_at: last.duration.start_time }
        : null;
  }

  setUpdateCursor(page) {
    this.updatesHaveMore = page.has_more;
    const last = page.data[page.data.length - 1];
    this.updatesCursor =
      page.has_more && last ? { id: last.labour_update_id, updated_at: last.created_at } : null;
  }

  // Contractions to show, newest first: fernd's list with the queued starts
  // and ends applied. Each item has id, start and end (milliseconds),
  // intensity, pending and active.
  contractionItems() {
    const items = this.contractions.map((item) => ({
      id: item.contraction_id,
      start: parseTime(item.duration.start_time),
      end: parseTime(item.duration.end_time),
      intensity: item.intensity,
      pending: false,
    }));
    for (const entry of this.pending()) {
      const payload = entry.payload;
      if (entry.name === "StartContraction") {
        if (!items.some((item) => item.id === payload.contraction_id)) {
          const start = parseTime(payload.start_time);
          items.push({ id: payload.contraction_id, start, end: start, intensity: null, pending: true });
        }
      } else if (entry.name === "EndContraction") {
        const item = items.find((candidate) => candidate.id === payload.contraction_id);
        if (item && item.end === item.start) {
          item.end = parseTime(payload.end_time);
          item.intensity = payload.intensity;
          item.pending = true;
        }
      }
    }
    items.sort((a, b) => b.start - a.start);
    for (const item of items) {
      item.active = item.start === item.end;
    }
    return items;
  }

  activeContraction() {
    return this.contractionItems().find((item) => item.active) || null;
  }

  // Updates to show, newest first, with queued posts first and marked
  // pending.
  updateItems() {
    const queued = this.pending()
      .filter((entry) => entry.name === "PostLabourUpdate")
      .map((entry) => ({
        labour_update_id: entry.id,
        labour_update_type: entry.payload.labour_update_type,
        message: entry.payload.message,
        edited: false,
        application_generated: false,
        created_at: new Date(entry.queued_at).toISOString(),
        pending: true,
      }));
    return [...queued.reverse(), ...this.updates];
  }

  userName(userId) {
    const user = this.users.get(userId);
    if (!user) {
      return "Unknown user";
    }
    const joined = [user.first_name, user.last_name].filter(Boolean).join(" ");
    return user.name || joined || user.email || "Unknown user";
  }
}

LabourStore.prototype.fetchers = {
  async labour() {
    this.labour = await this.query("Labour", "GetLabour");
  },
  async contractions() {
    const limit = Math.min(PAGE_LIMIT, Math.max(50, this.contractions.length));
    const page = await this.query("Contraction", "GetContractions", { limit });
    this.contractions = page.data;
    this.setContractionCursor(page);
  },
  async stats() {
    const results = await Promise.all(
      STATS_RANGES.map((range) => this.query("Contraction", "GetContractionStatistics", { range })),
    );
    this.stats = Object.fromEntries(STATS_RANGES.map((range, index) => [range, results[index]]));
  },
  async updates() {
    const limit = Math.min(PAGE_LIMIT, Math.max(50, this.updates.length));
    const page = await this.query("LabourUpdate", "GetLabourUpdates", { limit });
    this.updates = page.data;
    this.setUpdateCursor(page);
  },
  async subscriptions() {
    const [page, users] = await Promise.all([
      this.query("Subscription", "GetLabourSubscriptions"),
      this.query("User", "GetUsers"),
    ]);
    this.subscriptions = page.data;
    this.users = new Map(users.map((user) => [user.user_id, user]));
    // fernd stores a subscriber's profile after their request is handled,
    // which may be after its push arrived, so a missing name is fetched again.
    const missing = this.subscriptions.some((item) => !this.users.has(item.subscriber_id));
    if (missing && this.userRetries < USER_RETRY_LIMIT) {
      this.userRetries += 1;
      setTimeout(() => this.refetch("subscriptions"), USER_RETRY_MS);
    } else if (!missing) {
      this.userRetries = 0;
    }
  },
  async token() {
    clearTimeout(this.tokenTimer);
    try {
      const reply = await this.query("Subscription", "GetSubscriptionToken");
      this.token = reply.token;
    } catch (error) {
      if (!(error instanceof api.ApiError && error.status === 404)) {
        throw error;
      }
      this.token = null;
      this.tokenTimer = setTimeout(() => this.refetch("token"), TOKEN_RETRY_MS);
    }
  },
  async own() {
    const previousRole = this.role;
    this.own = await this.query("Subscription", "GetUserSubscription");
    this.role = this.own.role;
    if (this.role !== previousRole) {
      // Private notes are for the mother and birth partners only, so they
      // are dropped at once for a reader who lost that role. The updates are
      // fetched again for a reader who gained it.
      if (!this.canTrack) {
        this.updates = this.updates.filter(
          (update) => update.labour_update_type !== "PRIVATE_NOTE",
        );
      }
      this.schedule(["updates"]);
      this.changed("role");
    }
  },
};
