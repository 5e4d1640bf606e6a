// Opening a share link: ask to follow the labour, then wait for the mother's
// approval. A request cannot read the labour or open its socket until it is
// approved, so approval is noticed by asking for the own subscription.

import * as api from "../api.js";
import { h, replace, setTitle } from "../dom.js";
import { idempotencyKey } from "../ids.js";
import { navigate } from "../router.js";

// How often a waiting request checks whether it was approved, in milliseconds.
const POLL_MS = 2_000;
const UUID_PATTERN = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

async function ownSubscription(labourId) {
  try {
    return await api.query("Subscription", "GetUserSubscription", { labour_id: labourId });
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 403) {
      return null;
    }
    throw error;
  }
}

// Plain explanations of the refusals a share link can meet, by the end of
// fernd's message.
const REFUSALS = [
  ["Incorrect subscription token", "This share link no longer works. Ask the mother for her new link."],
  ["Cannot subscribe to completed labour", "This labour is complete, so nobody new can follow it."],
  ["Labour has no subscription token set", "This share link does not work yet. Try again in a minute."],
  ["Labour not found", "This labour does not exist or was deleted."],
];

function explain(message) {
  const known = REFUSALS.find(([ending]) => message.endsWith(ending));
  return known ? known[1] : message;
}

export function joinView(main, match) {
  setTitle("Follow a labour");
  const labourId = match[1].toLowerCase();
  const token = match[2].toUpperCase();
  const status = h("div", { role: "status", "aria-live": "polite" });
  main.append(h("section", { class: "card narrow" }, h("h1", { text: "Follow a labour" }), status));
  let timer = null;
  let stopped = false;

  const show = (...children) => replace(status, ...children);
  const fail = (message) =>
    show(
      h("p", { class: "form-error", text: explain(message) }),
      h("a", { href: "/", text: "Go to the start page" }),
    );
  const open = () => navigate(`/labours/${labourId}/track`, { replace: true });

  async function poll() {
    if (stopped) {
      return;
    }
    try {
      const own = await ownSubscription(labourId);
      if (own && own.status === "SUBSCRIBED") {
        open();
        return;
      }
    } catch (error) {
      if (!(error instanceof api.NetworkError)) {
        fail(error.message);
        return;
      }
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function wait() {
    show(
      h("p", { class: "notice", text: "Waiting for approval." }),
      h("p", {
        text: "Your request has been sent. This page moves on by itself as soon as the mother approves it, so you can keep it open.",
      }),
    );
    poll();
  }

  async function request() {
    if (!UUID_PATTERN.test(labourId)) {
      fail("This share link is incomplete. Ask for the link again.");
      return;
    }
    show(h("p", { class: "muted", text: "Sending your request…" }));
    try {
      await api.command("Subscriber", "RequestAccess", { labour_id: labourId, token }, idempotencyKey());
      wait();
    } catch (error) {
      if (error instanceof api.ApiError && error.message.endsWith("Cannot subscribe to own labour")) {
        open();
      } else if (error instanceof api.ApiError && error.message.endsWith("Cannot subscribe to labour")) {
        // Already asked, already following, or blocked.
        const own = await ownSubscription(labourId).catch(() => null);
        if (own && own.status === "SUBSCRIBED") {
          open();
        } else {
          wait();
        }
      } else {
        fail(error.message);
      }
    }
  }

  request();
  return {
    unmount() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
