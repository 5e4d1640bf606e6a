// The labour tab (mother only): the plan, completing the labour with notes,
// and deleting a completed labour.

import { busy, confirmAction, field, formError, h, replace } from "../dom.js";
import { PHASES, formatDate, formatDateTime, parseTime } from "../format.js";
import { navigate } from "../router.js";

const NOTES_MAX_LENGTH = 5000;

function planSummary(labour) {
  const rows = [
    ["Phase", PHASES[labour.current_phase]],
    ["Due date", formatDate(parseTime(labour.due_date))],
    ["First labour", labour.first_labour ? "Yes" : "No"],
  ];
  if (labour.start_time) {
    rows.push(["Began", formatDateTime(parseTime(labour.start_time))]);
  }
  if (labour.end_time) {
    rows.push(["Completed", formatDateTime(parseTime(labour.end_time))]);
  }
  return h(
    "dl",
    { class: "summary" },
    rows.map(([label, value]) => h("div", {}, h("dt", { text: label }), h("dd", { text: value }))),
  );
}

function completeForm(store) {
  const notes = h("textarea", { rows: 4, maxlength: NOTES_MAX_LENGTH, name: "notes" });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Complete labour" });
  return h(
    "form",
    {
      class: "stack",
      onsubmit: async (event) => {
        event.preventDefault();
        const confirmed = await confirmAction(
          "Complete the labour?",
          "Contractions can no longer be tracked, and followers are told the baby has arrived.",
          "Complete labour",
        );
        if (!confirmed) {
          return;
        }
        await busy(
          submit,
          () =>
            store.send("Labour", "CompleteLabour", {
              notes: notes.value.trim() ? notes.value : null,
            }),
          error,
        );
      },
    },
    field(
      "A note for your followers (optional)",
      notes,
      "Sent with the message that the baby has arrived, for example the name and weight.",
    ),
    error,
    submit,
  );
}

function deleteButton(store) {
  const button = h("button", {
    type: "button",
    class: "danger",
    text: "Delete this labour",
    onclick: async () => {
      const confirmed = await confirmAction(
        "Delete this labour?",
        "Its contractions, updates and subscribers are removed for everyone. This cannot be undone.",
        "Delete",
        { danger: true },
      );
      if (!confirmed) {
        return;
      }
      const done = await busy(button, async () => {
        await store.send("Labour", "DeleteLabour");
        return true;
      });
      if (done) {
        navigate("/", { replace: true });
      }
    },
  });
  return button;
}

export function completeTab(container, store) {
  const body = h("div");
  container.append(body);
  let shownPhase = null;

  function render() {
    const labour = store.labour;
    shownPhase = labour.current_phase;
    const sections = [h("section", { class: "card" }, h("h2", { text: "Plan" }), planSummary(labour))];
    if (labour.current_phase === "COMPLETE") {
      sections.push(
        h(
          "section",
          { class: "card" },
          h("h2", { text: "Completed" }),
          labour.notes ? h("p", { class: "update-message", text: labour.notes }) : null,
          deleteButton(store),
        ),
      );
    } else {
      sections.push(h("section", { class: "card" }, h("h2", { text: "Complete the labour" }), completeForm(store)));
    }
    replace(body, sections);
  }

  // A change is shown at once when the labour reached another phase, and
  // otherwise only while nothing here has focus, so that notes being typed
  // stay.
  const onChange = (event) => {
    if (event.detail !== "labour") {
      return;
    }
    if (store.labour.current_phase !== shownPhase || !body.contains(document.activeElement)) {
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
