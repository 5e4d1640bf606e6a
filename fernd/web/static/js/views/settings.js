// The settings tab of a subscriber: how to be notified, and unsubscribing.

import { busy, confirmAction, formError, h, replace, showMessage } from "../dom.js";
import { CONTACT_METHODS, ROLES } from "../format.js";
import { navigate } from "../router.js";

const METHOD_HINTS = {
  EMAIL: "To the email address of your account.",
  SMS: "To the mobile number of your account.",
  WHATSAPP: "To the mobile number of your account.",
};

function methodsForm(store) {
  const chosen = new Set(store.own ? store.own.contact_methods : []);
  const boxes = Object.entries(CONTACT_METHODS).map(([value, label]) => {
    const id = `method-${value}`;
    return h(
      "div",
      { class: "choice" },
      h("input", { type: "checkbox", id, value, checked: chosen.has(value), "aria-describedby": `${id}-hint` }),
      h("label", { for: id, text: label }),
      h("p", { class: "hint", id: `${id}-hint`, text: METHOD_HINTS[value] }),
    );
  });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Save" });
  return h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            const methods = boxes
              .map((box) => box.querySelector("input"))
              .filter((input) => input.checked)
              .map((input) => input.value);
            await store.send("Subscriber", "UpdateNotificationMethods", {
              subscription_id: store.own.subscription_id,
              notification_methods: methods,
            });
            showMessage("Notification settings saved.", { kind: "info", timeout: 4000 });
          },
          error,
        );
      },
    },
    h(
      "fieldset",
      { class: "choices" },
      h("legend", { text: "Tell me when labour begins, for announcements and when the baby arrives, by:" }),
      boxes,
    ),
    error,
    submit,
  );
}

export function settingsTab(container, store) {
  const body = h("div");
  container.append(body);

  function render() {
    if (!store.own) {
      replace(body, h("p", { class: "muted", text: "Loading…" }));
      return;
    }
    const unsubscribe = h("button", {
      type: "button",
      class: "danger",
      text: "Unsubscribe",
      onclick: async () => {
        const confirmed = await confirmAction(
          "Stop following this labour?",
          "You stop seeing updates at once. To follow again you need the share link and a new approval.",
          "Unsubscribe",
          { danger: true },
        );
        if (!confirmed) {
          return;
        }
        const done = await busy(unsubscribe, async () => {
          await store.send("Subscriber", "Unsubscribe", { subscription_id: store.own.subscription_id });
          return true;
        });
        if (done) {
          navigate("/", { replace: true });
        }
      },
    });
    replace(
      body,
      h("section", { class: "card" }, h("h2", { text: "Notifications" }), methodsForm(store)),
      h(
        "section",
        { class: "card" },
        h("h2", { text: "Your access" }),
        h("p", { text: `You follow this labour as a ${ROLES[store.own.role].toLowerCase()}.` }),
        unsubscribe,
      ),
    );
  }

  const onChange = (event) => {
    if (event.detail === "own" || event.detail === "role") {
      // Only rebuilt when nothing in it has focus, so a change from another
      // device does not undo the choices being made here.
      if (!body.contains(document.activeElement)) {
        render();
      }
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
