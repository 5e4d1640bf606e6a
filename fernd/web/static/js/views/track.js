// The contractions tab: the start and stop button with its stopwatch, the
// statistics and alert, and the list of contractions.

import { busy, confirmAction, field, formError, h, openDialog, replace } from "../dom.js";
import {
  formatClock,
  formatDuration,
  fromLocalInput,
  isoTime,
  spokenDuration,
  toLocalInput,
} from "../format.js";
import { uuid7 } from "../ids.js";
import { STATS_RANGES } from "../store.js";

const INTENSITIES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
// How often the stopwatch is redrawn, in milliseconds.
const TICK_MS = 250;

const RANGE_LABELS = { "30mins": "30 min", "60mins": "1 hour", all: "All" };

function alertText(alert, firstLabour) {
  switch (alert) {
    case "callMidwife":
      return [
        "Call your midwife",
        "A contraction lasted more than 2 minutes, or 6 or more contractions started within 10 minutes.",
      ];
    case "goToHospital":
      return [
        "Time to go to the hospital",
        firstLabour
          ? "The last 20 contractions each lasted at least a minute and started at most 3 minutes apart."
          : "The last 6 contractions each lasted at least a minute and started at most 5 minutes apart.",
      ];
    case "prepareForHospital":
      return [
        "Get ready to go to the hospital",
        firstLabour
          ? "The last 5 contractions each lasted at least a minute and started at most 3 minutes apart."
          : "The last 3 contractions each lasted at least a minute and started at most 5 minutes apart.",
      ];
    default:
      return null;
  }
}

function dismissedKey(labourId) {
  return `fernd.dismissed-alert.${labourId}`;
}

// Ask for the intensity of the contraction that just ended. Resolves with
// 0 to 10, or with null when the user cancels and the contraction goes on.
function chooseIntensity() {
  return openDialog("How strong was it?", (close) => [
    h("p", { class: "hint", text: "0 is barely noticeable, 10 the strongest you can imagine." }),
    h(
      "div",
      { class: "intensity-grid", role: "group", "aria-label": "Intensity from 0 to 10" },
      INTENSITIES.map((value) =>
        h("button", {
          type: "button",
          class: "intensity",
          text: String(value),
          "aria-label": `Intensity ${value}`,
          onclick: () => close(value),
        }),
      ),
    ),
    h(
      "div",
      { class: "dialog-actions" },
      h("button", {
        type: "button",
        class: "secondary",
        text: "Cancel, keep timing",
        onclick: () => close(null),
      }),
    ),
  ]);
}

function editContraction(store, item) {
  return openDialog("Edit contraction", (close) => {
    const start = h("input", { type: "datetime-local", step: 1, required: true, value: toLocalInput(item.start) });
    const end = h("input", { type: "datetime-local", step: 1, required: true, value: toLocalInput(item.end) });
    // The values as the inputs show them, which browsers may shorten.
    const startShown = start.value;
    const endShown = end.value;
    const intensity = h("input", {
      type: "number",
      min: 0,
      max: 10,
      step: 1,
      required: true,
      inputmode: "numeric",
      value: item.intensity ?? "",
    });
    const error = formError();
    const save = h("button", { type: "submit", class: "primary", text: "Save" });
    return h(
      "form",
      {
        class: "stack",
        onsubmit: (event) => {
          event.preventDefault();
          busy(
            save,
            async () => {
              const startTime = fromLocalInput(start.value);
              const endTime = fromLocalInput(end.value);
              if (startTime === null || endTime === null) {
                throw new Error("Enter both the start and the end time.");
              }
              const fields = { contraction_id: item.id, intensity: Number(intensity.value) };
              // The inputs show whole seconds, so a time is sent only when it
              // was changed and an unchanged one keeps its milliseconds.
              if (start.value !== startShown) {
                fields.start_time = isoTime(startTime);
              }
              if (end.value !== endShown) {
                fields.end_time = isoTime(endTime);
              }
              await store.send("Contraction", "UpdateContraction", fields);
              close(true);
            },
            error,
          );
        },
      },
      field("Started", start),
      field("Ended", end),
      field("Intensity (0 to 10)", intensity),
      error,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => close(null) }),
        save,
      ),
    );
  });
}

function statsTable(store) {
  const stats = store.stats;
  if (!STATS_RANGES.every((range) => stats[range])) {
    return h("p", { class: "muted", text: "Loading statistics…" });
  }
  const row = (label, format) =>
    h(
      "tr",
      {},
      h("th", { scope: "row", text: label }),
      STATS_RANGES.map((range) => h("td", { text: format(stats[range]) })),
    );
  const orDash = (value, format) => (value > 0 ? format(value) : "–");
  return h(
    "table",
    { class: "stats" },
    h("caption", { text: "Averages over the last 30 minutes, the last hour and the whole labour" }),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col", text: "" }),
        STATS_RANGES.map((range) => h("th", { scope: "col", text: RANGE_LABELS[range] })),
      ),
    ),
    h(
      "tbody",
      {},
      row("Count", (item) => String(item.contraction_count)),
      row("Duration", (item) => orDash(item.average_duration, formatDuration)),
      row("Interval", (item) => orDash(item.average_frequency, formatDuration)),
      row("Intensity", (item) => orDash(item.average_intensity, (value) => value.toFixed(1))),
    ),
  );
}

function fact(label, value) {
  return h("div", {}, h("dt", { text: label }), h("dd", { text: value }));
}

export function trackTab(container, store) {
  const alertBox = h("div", { class: "alert-box" });
  const stopwatch = h("p", { class: "stopwatch", "aria-live": "off" });
  const stopwatchLabel = h("p", { class: "stopwatch-label" });
  const controls = h("div", { class: "track-controls" });
  const statsBox = h("section", { class: "card" }, h("h2", { text: "Statistics" }));
  const statsBody = h("div", { class: "table-scroll" });
  statsBox.append(statsBody);
  const list = h("ol", { class: "contractions", "aria-label": "Contractions, newest first" });
  const more = h("div");
  container.append(
    alertBox,
    h("section", { class: "card track-card" }, stopwatchLabel, stopwatch, controls),
    statsBox,
    h("section", { class: "card" }, h("h2", { text: "Contractions" }), list, more),
  );

  let button = null;
  let stopping = false;
  let shownAlert = null;

  function renderAlert() {
    const alert = STATS_RANGES.map((range) => store.stats[range]?.alert).find(Boolean) || null;
    const dismissed = localStorage.getItem(dismissedKey(store.labourId));
    if (!alert) {
      localStorage.removeItem(dismissedKey(store.labourId));
    }
    if (!alert || dismissed === alert) {
      alertBox.replaceChildren();
      shownAlert = null;
      return;
    }
    if (shownAlert === alert) {
      return;
    }
    shownAlert = alert;
    const [title, text] = alertText(alert, store.labour?.first_labour);
    replace(
      alertBox,
      h(
        "div",
        { class: `alert alert-${alert}`, role: "alert" },
        h("p", {}, h("strong", { text: title })),
        h("p", { text }),
        h("button", {
          type: "button",
          class: "secondary",
          text: "Dismiss",
          "aria-label": `Dismiss: ${title}`,
          onclick: () => {
            localStorage.setItem(dismissedKey(store.labourId), alert);
            renderAlert();
          },
        }),
      ),
    );
  }

  function tick() {
    const active = store.activeContraction();
    if (active) {
      const seconds = (store.now() - active.start) / 1000;
      stopwatch.textContent = formatDuration(seconds);
      stopwatch.setAttribute("aria-label", `Contraction running for ${spokenDuration(seconds)}`);
      stopwatchLabel.textContent = active.pending
        ? "Contraction in progress (waiting to be sent)"
        : "Contraction in progress";
    } else {
      const last = store.contractionItems()[0];
      stopwatch.textContent = last ? formatDuration((store.now() - last.end) / 1000) : "0:00";
      stopwatch.setAttribute(
        "aria-label",
        last ? `${spokenDuration((store.now() - last.end) / 1000)} since the last contraction` : "No contractions yet",
      );
      stopwatchLabel.textContent = last ? "Since the last contraction ended" : "No contractions yet";
    }
    stopwatch.classList.toggle("running", Boolean(active));
  }

  async function start() {
    store.queue("Contraction", "StartContraction", {
      contraction_id: uuid7(),
      start_time: isoTime(store.now()),
    });
  }

  async function stop(active) {
    // The end is the moment the button was pressed, not when the intensity
    // was chosen.
    const endTime = Math.max(store.now(), active.start);
    stopping = true;
    renderControls();
    try {
      const intensity = await chooseIntensity();
      if (intensity === null) {
        return;
      }
      store.queue("Contraction", "EndContraction", {
        contraction_id: active.id,
        end_time: isoTime(endTime),
        intensity,
      });
    } finally {
      stopping = false;
      renderControls();
      if (button) {
        button.focus();
      }
    }
  }

  function renderControls() {
    if (!store.canTrack) {
      replace(controls);
      button = null;
      return;
    }
    if (store.isComplete) {
      replace(controls, h("p", { class: "muted", text: "This labour is complete." }));
      button = null;
      return;
    }
    const active = store.activeContraction();
    button = h("button", {
      type: "button",
      class: active ? "big-button stop" : "big-button start",
      text: active ? "Stop" : "Start",
      "aria-label": active ? "Stop contraction" : "Start contraction",
      "data-key": "track-button",
      disabled: stopping,
      onclick: () => (active ? stop(active) : start()),
    });
    const hint =
      store.labour && store.labour.current_phase === "PLANNED"
        ? h("p", { class: "hint", text: "Starting the first contraction begins the labour." })
        : null;
    replace(controls, button, hint);
  }

  function renderList() {
    const items = store.contractionItems();
    if (items.length === 0) {
      replace(list, h("li", { class: "muted empty", text: "No contractions yet." }));
      more.replaceChildren();
      return;
    }
    const editable = store.canTrack && !store.isComplete;
    replace(
      list,
      items.map((item, index) => {
        const previous = items[index + 1];
        const time = formatClock(item.start);
        const duration = item.active ? "running" : formatDuration((item.end - item.start) / 1000);
        const interval = previous ? formatDuration((item.start - previous.start) / 1000) : "–";
        const actions =
          editable && !item.active && !item.pending
            ? h(
                "div",
                { class: "item-actions" },
                h("button", {
                  type: "button",
                  class: "secondary small",
                  text: "Edit",
                  "aria-label": `Edit contraction at ${time}`,
                  "data-key": `edit-${item.id}`,
                  onclick: () => editContraction(store, item),
                }),
                h("button", {
                  type: "button",
                  class: "danger-outline small",
                  text: "Delete",
                  "aria-label": `Delete contraction at ${time}`,
                  "data-key": `delete-${item.id}`,
                  onclick: async (event) => {
                    const confirmed = await confirmAction(
                      "Delete contraction?",
                      `The contraction that started at ${time} will be removed.`,
                      "Delete",
                      { danger: true },
                    );
                    if (confirmed) {
                      await busy(event.target, () =>
                        store.send("Contraction", "DeleteContraction", { contraction_id: item.id }),
                      );
                    }
                  },
                }),
              )
            : null;
        return h(
          "li",
          { class: `contraction${item.active ? " active" : ""}${item.pending ? " pending" : ""}` },
          h(
            "div",
            { class: "contraction-head" },
            h("span", { class: "contraction-time", text: time }),
            item.pending ? h("span", { class: "badge", text: "Waiting to send" }) : null,
          ),
          h(
            "dl",
            { class: "facts" },
            fact("Duration", duration),
            fact("Interval", interval),
            fact("Intensity", item.intensity === null || item.intensity === undefined ? "–" : `${item.intensity}/10`),
          ),
          actions,
        );
      }),
    );
    replace(
      more,
      store.contractionsHaveMore
        ? h("button", {
            type: "button",
            class: "secondary",
            text: "Show older contractions",
            onclick: (event) => busy(event.target, () => store.loadMore("contractions")),
          })
        : null,
    );
  }

  function renderStats() {
    replace(statsBody, statsTable(store));
    renderAlert();
  }

  function renderAll() {
    renderControls();
    renderList();
    renderStats();
    tick();
  }

  const onChange = (event) => {
    switch (event.detail) {
      case "contractions":
      case "outbox":
        renderControls();
        renderList();
        tick();
        break;
      case "stats":
        renderStats();
        break;
      case "labour":
      case "role":
        renderAll();
        break;
      case "clock":
        tick();
        break;
      default:
        break;
    }
  };
  store.addEventListener("change", onChange);
  renderAll();
  const timer = setInterval(tick, TICK_MS);

  return {
    unmount() {
      clearInterval(timer);
      store.removeEventListener("change", onChange);
    },
  };
}
