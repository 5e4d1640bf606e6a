// Small helpers to build and update the DOM without a framework.

const BOOLEAN_PROPERTIES = new Set([
  "checked",
  "disabled",
  "hidden",
  "multiple",
  "open",
  "readOnly",
  "required",
  "selected",
]);

// Build an element. `attributes` contains attributes and properties: `class`,
// `text` (text content), `on<event>` handlers, the boolean properties above,
// `value`, `for`, and any other attribute such as `aria-label` or `data-key`.
// Children are nodes, strings, or null and false, which are skipped.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name === "class") {
      element.className = value;
    } else if (name === "text") {
      element.textContent = value;
    } else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (BOOLEAN_PROPERTIES.has(name) || name === "value") {
      element[name] = value;
    } else if (name === "for") {
      element.htmlFor = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    element.append(child instanceof Node ? child : String(child));
  }
}

// Replace the children of `container`. When the focused element was inside
// it and carried `data-key`, the new element with the same key gets focus,
// so re-rendering a list does not throw keyboard users back to the top.
export function replace(container, ...children) {
  const active = document.activeElement;
  const key =
    active && container.contains(active) && active.dataset ? active.dataset.key : null;
  container.replaceChildren();
  append(container, children);
  if (key) {
    const next = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (next) {
      next.focus();
    }
  }
}

let messageCounter = 0;

// Show `text` in the page's alert region until the user dismisses it or
// `timeout` milliseconds pass (0 keeps it).
export function showMessage(text, { kind = "error", timeout = 0 } = {}) {
  const region = document.getElementById("messages");
  messageCounter += 1;
  const id = `message-${messageCounter}`;
  const item = h(
    "div",
    { class: `message message-${kind}`, id },
    h("p", { text }),
    h("button", {
      type: "button",
      class: "link-button",
      text: "Dismiss",
      "aria-label": `Dismiss message: ${text}`,
      onclick: () => item.remove(),
    }),
  );
  region.append(item);
  if (timeout > 0) {
    setTimeout(() => item.remove(), timeout);
  }
  return item;
}

export function showError(error) {
  return showMessage(error && error.message ? error.message : String(error));
}

// Open a modal dialog built from `content` (a function that receives a
// `close(value)` callback and returns the dialog's children). Resolve with
// the value passed to close, or null when the dialog is dismissed.
export function openDialog(title, content) {
  return new Promise((resolve) => {
    let result = null;
    const headingId = `dialog-title-${++messageCounter}`;
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": headingId });
    const close = (value) => {
      result = value;
      dialog.close();
    };
    dialog.append(h("h2", { id: headingId, text: title }), ...[content(close)].flat());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Ask a yes-or-no question. Resolves true when the user confirms.
export async function confirmAction(title, text, confirmLabel, { danger = false } = {}) {
  const answer = await openDialog(title, (close) => [
    h("p", { text }),
    h(
      "div",
      { class: "dialog-actions" },
      h("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => close(false) }),
      h("button", {
        type: "button",
        class: danger ? "danger" : "primary",
        text: confirmLabel,
        onclick: () => close(true),
      }),
    ),
  ]);
  return answer === true;
}

// A labelled form field: the label, the control and an optional hint.
export function field(label, control, hint = null) {
  if (!control.id) {
    control.id = `field-${++messageCounter}`;
  }
  const children = [h("label", { for: control.id, text: label }), control];
  if (hint) {
    const hintId = `${control.id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    children.push(h("p", { class: "hint", id: hintId, text: hint }));
  }
  return h("div", { class: "field" }, children);
}

// The error line of a form, announced when it changes.
export function formError() {
  return h("p", { class: "form-error", role: "alert" });
}

// Run `action` while `button` is disabled, and show its error in `errorLine`
// (or the page's alert region) when it fails. Returns the action's result,
// or undefined after an error.
export async function busy(button, action, errorLine = null) {
  const buttons = Array.isArray(button) ? button : [button];
  const focused = buttons.find((item) => item && item === document.activeElement) || null;
  for (const item of buttons) {
    if (item) {
      item.disabled = true;
      item.setAttribute("aria-busy", "true");
    }
  }
  if (errorLine) {
    errorLine.textContent = "";
  }
  try {
    return await action();
  } catch (error) {
    if (errorLine) {
      errorLine.textContent = error.message || String(error);
    } else {
      showError(error);
    }
    return undefined;
  } finally {
    for (const item of buttons) {
      if (item) {
        item.disabled = false;
        item.removeAttribute("aria-busy");
      }
    }
    refocus(focused);
  }
}

// A control loses focus while it is disabled. Give focus back to it, or to
// the control with its `data-key` that replaced it, so that keyboard users
// keep their place.
function refocus(control) {
  if (!control || (document.activeElement && document.activeElement !== document.body)) {
    return;
  }
  const key = control.dataset.key;
  if (control.isConnected) {
    control.focus();
  } else if (key) {
    document.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
  }
}

export function setTitle(text) {
  document.title = text ? `${text} · fernd` : "fernd";
}
