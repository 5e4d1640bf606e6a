// The page of one labour: its title and phase, the tabs the reader's role
// allows, and the connection line.

import { h, replace, setTitle, showMessage } from "../dom.js";
import { PHASES, ROLES, labourTitle } from "../format.js";
import { navigate } from "../router.js";
import { loadSession } from "../session.js";
import { LabourStore } from "../store.js";
import { completeTab } from "./complete.js";
import { settingsTab } from "./settings.js";
import { shareTab } from "./share.js";
import { subscribersTab } from "./subscribers.js";
import { trackTab } from "./track.js";
import { updatesTab } from "./updates.js";

const TAB_VIEWS = {
  track: trackTab,
  updates: updatesTab,
  share: shareTab,
  subscribers: subscribersTab,
  settings: settingsTab,
  complete: completeTab,
};

function tabsFor(store) {
  if (store.isMother) {
    return [
      ["track", "Track"],
      ["updates", "Updates"],
      ["share", "Share"],
      ["subscribers", "Subscribers"],
      ["complete", "Labour"],
    ];
  }
  return [
    ["track", "Track"],
    ["updates", "Updates"],
    ["settings", "Settings"],
  ];
}

const STATUS_TEXTS = {
  "not-found": "This labour does not exist or was deleted.",
  "no-access":
    "You cannot see this labour. If you asked to follow it, the mother has not approved your request yet.",
  ended: "You no longer have access to this labour.",
  offline: "You are offline. The labour opens as soon as the connection returns.",
};

function connectionText(store) {
  const waiting = store.pending().length;
  const changes = `${waiting} change${waiting === 1 ? "" : "s"}`;
  switch (store.connectionState) {
    case "open":
      return waiting > 0 ? `Sending ${changes}…` : "";
    case "offline":
      return waiting > 0
        ? `Offline. ${changes} saved on this device, sent when the connection returns.`
        : "Offline. New changes are saved on this device and sent when the connection returns.";
    case "reconnecting":
      return waiting > 0 ? `Reconnecting… ${changes} waiting to be sent.` : "Reconnecting…";
    case "connecting":
      return "Connecting…";
    default:
      return "";
  }
}

export function labourView(main, match) {
  const labourId = match[1];
  const store = new LabourStore(labourId, loadSession().user);
  let tab = match[2] || "track";
  let tabView = null;

  const heading = h("h1", { text: "Labour" });
  const summary = h("p", { class: "labour-summary muted" });
  const tabs = h("nav", { class: "tabs", "aria-label": "Sections of this labour" });
  const body = h("div", { class: "tab-body" }, h("p", { class: "muted", text: "Loading…" }));
  main.append(h("div", { class: "labour-header" }, heading, summary), tabs, body);

  const line = document.getElementById("connection");
  line.dataset.owner = "labour";

  function renderHeader() {
    if (!store.labour) {
      return;
    }
    heading.textContent = labourTitle(store.labour);
    setTitle(labourTitle(store.labour));
    const parts = [PHASES[store.labour.current_phase] || store.labour.current_phase];
    if (!store.isMother && store.role) {
      if (store.labour.labour_name) {
        parts.push(`${store.labour.mother_name}'s labour`);
      }
      parts.push(`you follow as a ${ROLES[store.role].toLowerCase()}`);
    }
    summary.textContent = parts.join(" · ");
  }

  function renderTabs() {
    const allowed = tabsFor(store);
    replace(
      tabs,
      h(
        "ul",
        {},
        allowed.map(([id, label]) =>
          h(
            "li",
            {},
            h("a", {
              href: `/labours/${labourId}/${id}`,
              text: label,
              "data-key": `tab-${id}`,
              "aria-current": id === tab ? "page" : null,
            }),
          ),
        ),
      ),
    );
  }

  function mountTab() {
    if (tabView && tabView.unmount) {
      tabView.unmount();
    }
    tabView = null;
    body.replaceChildren();
    if (!tabsFor(store).some(([id]) => id === tab)) {
      tab = "track";
      history.replaceState(null, "", `/labours/${labourId}/track`);
      renderTabs();
    }
    tabView = TAB_VIEWS[tab](body, store) || null;
  }

  function renderConnection() {
    const text = store.status === "ready" ? connectionText(store) : "";
    line.textContent = text;
    line.hidden = text === "";
    line.classList.toggle("warning", store.connectionState !== "open");
  }

  function renderStatus() {
    if (store.status === "ready") {
      renderHeader();
      renderTabs();
      mountTab();
      renderConnection();
      return;
    }
    if (tabView && tabView.unmount) {
      tabView.unmount();
    }
    tabView = null;
    tabs.replaceChildren();
    if (store.status === "error") {
      replace(
        body,
        h("p", { class: "form-error", text: `The labour could not be loaded: ${store.statusMessage}` }),
        h("button", { type: "button", class: "secondary", text: "Try again", onclick: () => location.reload() }),
      );
    } else {
      replace(
        body,
        h("p", { text: STATUS_TEXTS[store.status] || store.statusMessage }),
        h("a", { class: "button secondary", href: "/", text: "Go to the start page" }),
      );
    }
    renderConnection();
  }

  store.addEventListener("change", (event) => {
    switch (event.detail) {
      case "status":
        renderStatus();
        break;
      case "labour":
        renderHeader();
        break;
      case "role":
        renderHeader();
        renderTabs();
        mountTab();
        break;
      case "connection":
      case "outbox":
        renderConnection();
        break;
      default:
        break;
    }
  });
  store.addEventListener("session-ended", (event) => {
    showMessage(event.detail.message);
    navigate(`/sign-in?next=${encodeURIComponent(location.pathname)}`, { replace: true });
  });
  store.start();

  return {
    update(nextMatch) {
      tab = nextMatch[2] || "track";
      if (store.status === "ready") {
        renderTabs();
        mountTab();
      }
      window.scrollTo(0, 0);
    },
    unmount() {
      if (tabView && tabView.unmount) {
        tabView.unmount();
      }
      store.stop();
      delete line.dataset.owner;
      line.hidden = navigator.onLine;
      line.textContent = navigator.onLine ? "" : "You are offline.";
      line.classList.remove("warning");
    },
  };
}
