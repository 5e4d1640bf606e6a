// The start page, the lists of labours, and planning a new labour.

import * as api from "../api.js";
import { busy, field, formError, h, replace, setTitle } from "../dom.js";
import { PHASES, labourTitle, parseTime, formatDateTime } from "../format.js";
import { idempotencyKey } from "../ids.js";
import { navigate } from "../router.js";
import { loadSession } from "../session.js";

function labourLink(labour, { showMother = false } = {}) {
  const details = [PHASES[labour.current_phase] || labour.current_phase];
  if (showMother) {
    details.unshift(labour.mother_name);
  }
  details.push(`updated ${formatDateTime(parseTime(labour.updated_at))}`);
  return h(
    "li",
    {},
    h(
      "a",
      { class: "list-link", href: `/labours/${labour.labour_id}/track` },
      h("span", { class: "list-title", text: labourTitle(labour) }),
      h("span", { class: "muted", text: details.join(" · ") }),
    ),
  );
}

function loadInto(container, load, render) {
  replace(container, h("p", { class: "muted", text: "Loading…" }));
  load()
    .then((result) => replace(container, render(result)))
    .catch((error) => replace(container, h("p", { class: "form-error", text: error.message })));
}

function followedSection() {
  const body = h("div");
  loadInto(body, api.followedLabours, (labours) =>
    labours.length === 0
      ? h("p", {
          class: "muted",
          text: "You follow no labour yet. Open the share link you were sent to ask to follow one.",
        })
      : h("ul", { class: "plain-list" }, labours.map((labour) => labourLink(labour, { showMother: true }))),
  );
  return h("section", { class: "card" }, h("h2", { text: "Labours you follow" }), body);
}

export function homeView(main) {
  setTitle("");
  const user = loadSession().user;
  const active = h("div");
  loadInto(active, api.activeLabour, (labour) => {
    if (!labour) {
      return [
        h("p", { text: "No labour in progress." }),
        h("a", { class: "button primary", href: "/plan", text: "Plan a labour" }),
      ];
    }
    return [
      h("p", {}, h("strong", { text: labourTitle(labour) }), ` · ${PHASES[labour.current_phase]}`),
      h("a", {
        class: "button primary",
        href: `/labours/${labour.labour_id}/track`,
        text: "Open contraction tracker",
      }),
    ];
  });
  main.append(
    h("h1", { text: user.name ? `Hello, ${user.name}` : "Hello" }),
    h("section", { class: "card" }, h("h2", { text: "Your labour" }), active),
    followedSection(),
    h("p", {}, h("a", { href: "/labours", text: "All your labours" })),
  );
}

export function historyView(main) {
  setTitle("Labours");
  const own = h("div");
  loadInto(own, api.labourHistory, (labours) =>
    labours.length === 0
      ? h("p", { class: "muted", text: "You have not planned a labour yet." })
      : h("ul", { class: "plain-list" }, labours.map((labour) => labourLink(labour))),
  );
  main.append(
    h("h1", { text: "Labours" }),
    h(
      "section",
      { class: "card" },
      h("h2", { text: "Your labours" }),
      own,
      h("a", { class: "button secondary", href: "/plan", text: "Plan a labour" }),
    ),
    followedSection(),
  );
}

export function planView(main) {
  setTitle("Plan a labour");
  const name = h("input", { type: "text", name: "labour-name", maxlength: 255 });
  const dueDate = h("input", { type: "date", name: "due-date", required: true });
  const firstLabour = h("input", { type: "checkbox", name: "first-labour", id: "first-labour" });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Plan labour" });
  // One key per form, so a repeated submit after a lost reply plans only one
  // labour.
  const key = idempotencyKey();
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            const reply = await api.planLabour(
              {
                first_labour: firstLabour.checked,
                due_date: `${dueDate.value}T00:00:00Z`,
                labour_name: name.value.trim() || null,
              },
              key,
            );
            navigate(`/labours/${reply.labour_id}/track`, { replace: true });
          },
          error,
        );
      },
    },
    field("Name (optional)", name, "For example the baby's name or a nickname."),
    field("Due date", dueDate),
    h(
      "div",
      { class: "field checkbox" },
      firstLabour,
      h("label", { for: "first-labour", text: "This is my first labour" }),
    ),
    h("p", {
      class: "hint",
      text: "A first labour usually takes longer, so the advice on when to go to hospital differs.",
    }),
    error,
    submit,
  );
  main.append(h("section", { class: "card narrow" }, h("h1", { text: "Plan a labour" }), form));
}

export function notFoundView(main) {
  setTitle("Page not found");
  main.append(
    h("h1", { text: "Page not found" }),
    h("p", {}, "This page does not exist. ", h("a", { href: "/", text: "Go to the start page" })),
  );
}
