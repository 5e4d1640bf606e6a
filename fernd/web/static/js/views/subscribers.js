// The subscribers tab (mother only): requests to approve or deny, followers
// with their roles, and removed, unsubscribed and blocked users.

import { busy, confirmAction, h, replace } from "../dom.js";
import { CONTACT_METHODS, ROLES, STATUSES } from "../format.js";

const GROUPS = [
  ["REQUESTED", "Asking to follow", "Nobody is waiting for approval."],
  ["SUBSCRIBED", "Following", "Nobody follows this labour yet."],
  ["OTHER", "No access", null],
];

function groupOf(subscription) {
  return ["REQUESTED", "SUBSCRIBED"].includes(subscription.status) ? subscription.status : "OTHER";
}

function action(store, label, name, subscription, person, { danger = false, confirm = null } = {}) {
  const button = h("button", {
    type: "button",
    class: `${danger ? "danger-outline" : "secondary"} small`,
    text: label,
    "aria-label": `${label} ${person}`,
    "data-key": `${name}-${subscription.subscription_id}`,
    onclick: async () => {
      if (confirm && !(await confirmAction(`${label} ${person}?`, confirm, label, { danger }))) {
        return;
      }
      await busy(button, () =>
        store.send("Subscription", name, { subscription_id: subscription.subscription_id }),
      );
    },
  });
  return button;
}

function roleSelect(store, subscription, person) {
  const id = `role-${subscription.subscription_id}`;
  const select = h(
    "select",
    {
      id,
      "data-key": id,
      onchange: async () => {
        const role = select.value;
        const done = await busy(select, async () => {
          await store.send("Subscription", "UpdateSubscriberRole", {
            subscription_id: subscription.subscription_id,
            role,
          });
          return true;
        });
        if (!done) {
          select.value = subscription.role;
        }
      },
    },
    Object.entries(ROLES).map(([value, label]) =>
      h("option", { value, text: label, selected: value === subscription.role }),
    ),
  );
  return h(
    "div",
    { class: "inline-field" },
    h("label", { for: id, text: `Role of ${person}` }),
    select,
  );
}

function subscriberItem(store, subscription) {
  const person = store.userName(subscription.subscriber_id);
  const status = subscription.status;
  const actions = [];
  if (status === "REQUESTED") {
    actions.push(
      action(store, "Approve", "ApproveSubscriber", subscription, person),
      action(store, "Deny", "RemoveSubscriber", subscription, person, { danger: true }),
    );
  }
  if (status === "SUBSCRIBED") {
    actions.push(
      action(store, "Remove", "RemoveSubscriber", subscription, person, {
        danger: true,
        confirm: "They stop seeing the labour at once. They can ask again with the share link.",
      }),
    );
  }
  if (status === "BLOCKED") {
    actions.push(action(store, "Unblock", "UnblockSubscriber", subscription, person));
  } else {
    actions.push(
      action(store, "Block", "BlockSubscriber", subscription, person, {
        danger: true,
        confirm: "They lose access and cannot ask to follow again until you unblock them.",
      }),
    );
  }
  const methods = subscription.contact_methods.map((method) => CONTACT_METHODS[method]).join(", ");
  return h(
    "li",
    { class: "subscriber" },
    h(
      "div",
      { class: "subscriber-head" },
      h("span", { class: "list-title", text: person }),
      h("span", { class: `badge badge-status-${status.toLowerCase()}`, text: STATUSES[status] }),
    ),
    status === "SUBSCRIBED"
      ? h("p", { class: "muted", text: methods ? `Notified by ${methods}` : "Not notified by message" })
      : null,
    roleSelect(store, subscription, person),
    h("div", { class: "item-actions" }, actions),
  );
}

export function subscribersTab(container, store) {
  const body = h("div");
  container.append(
    h(
      "p",
      { class: "hint" },
      "Birth partners can track contractions, post updates and read private notes. Support people and loved ones can only follow along.",
    ),
    body,
  );

  function render() {
    const sections = GROUPS.map(([group, title, empty]) => {
      const members = store.subscriptions.filter((subscription) => groupOf(subscription) === group);
      if (members.length === 0 && empty === null) {
        return null;
      }
      return h(
        "section",
        { class: "card" },
        h("h2", { text: `${title} (${members.length})` }),
        members.length === 0
          ? h("p", { class: "muted", text: empty })
          : h(
              "ul",
              { class: "plain-list subscribers" },
              members.map((subscription) => subscriberItem(store, subscription)),
            ),
      );
    });
    replace(body, sections);
  }

  const onChange = (event) => {
    if (event.detail === "subscriptions") {
      render();
    }
  };
  store.addEventListener("change", onChange);
  render();
  return {
    unmount() {
      store.removeEventListener("change", onChange);
    },
  };
}
