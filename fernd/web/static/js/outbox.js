// Commands waiting to be sent: contraction starts and ends and posted
// updates, kept in localStorage so they survive a closed tab or a lost
// connection. Each entry keeps the idempotency key it was given when queued,
// so sending it again after an unclear failure applies it only once.

import { idempotencyKey, uuid7 } from "./ids.js";

const STORAGE_PREFIX = "fernd.outbox.";

// Entries dispatch "change" when added or removed, in this tab or another.
export class Outbox extends EventTarget {
  constructor(userId) {
    super();
    this.storageKey = STORAGE_PREFIX + userId;
    this.onStorage = (event) => {
      if (event.key === this.storageKey) {
        this.dispatchEvent(new Event("change"));
      }
    };
    window.addEventListener("storage", this.onStorage);
  }

  close() {
    window.removeEventListener("storage", this.onStorage);
  }

  all() {
    try {
      const entries = JSON.parse(localStorage.getItem(this.storageKey));
      return Array.isArray(entries) ? entries : [];
    } catch {
      return [];
    }
  }

  save(entries) {
    if (entries.length === 0) {
      localStorage.removeItem(this.storageKey);
    } else {
      localStorage.setItem(this.storageKey, JSON.stringify(entries));
    }
    this.dispatchEvent(new Event("change"));
  }

  // The entries of one labour, oldest first: the order they must be sent in.
  forLabour(labourId) {
    return this.all().filter((entry) => entry.labour_id === labourId);
  }

  add(group, name, payload) {
    const entry = {
      id: uuid7(),
      labour_id: payload.labour_id,
      group,
      name,
      payload,
      key: idempotencyKey(),
      queued_at: Date.now(),
    };
    this.save([...this.all(), entry]);
    return entry;
  }

  remove(id) {
    this.save(this.all().filter((entry) => entry.id !== id));
  }
}

export function describeEntry(entry) {
  switch (entry.name) {
    case "StartContraction":
      return "Starting a contraction";
    case "EndContraction":
      return "Ending a contraction";
    case "PostLabourUpdate":
      return "Posting an update";
    default:
      return entry.name;
  }
}
