// The updates tab: posting status updates, announcements and private notes,
// and the list of updates with edit and delete for those who may write.

import { busy, confirmAction, field, formError, h, openDialog, replace } from "../dom.js";
import { UPDATE_TYPES, formatDateTime, parseTime, updateMessage } from "../format.js";

// fernd accepts an announcement only when more than this many milliseconds
// have passed since the last one.
const ANNOUNCEMENT_COOLDOWN_MS = 10_000;
const MESSAGE_MAX_LENGTH = 1000;

const TYPE_HINTS = {
  STATUS_UPDATE: "Everyone who follows the labour sees it.",
  ANNOUNCEMENT: "Everyone sees it, and followers get it by email, SMS or WhatsApp as they chose.",
  PRIVATE_NOTE: "Only the mother and birth partners see it.",
};

function lastAnnouncementTime(store) {
  let latest = null;
  for (const update of store.updates) {
    if (update.labour_update_type === "ANNOUNCEMENT") {
      const time = parseTime(update.created_at);
      latest = latest === null ? time : Math.max(latest, time);
    }
  }
  return latest;
}

// Whether an announcement waits in the outbox. fernd would refuse a second
// one sent right after it, so none is queued until it has been sent.
function announcementQueued(store) {
  return store
    .pending()
    .some(
      (entry) =>
        entry.name === "PostLabourUpdate" && entry.payload.labour_update_type === "ANNOUNCEMENT",
    );
}

// Milliseconds until fernd accepts the next announcement, or 0.
function cooldownLeft(store) {
  const last = lastAnnouncementTime(store);
  if (last === null) {
    return 0;
  }
  return Math.max(0, last + ANNOUNCEMENT_COOLDOWN_MS - store.now() + 1);
}

function typeChoice(name, selected, onchange) {
  return h(
    "fieldset",
    { class: "choices" },
    h("legend", { text: "Type" }),
    Object.entries(UPDATE_TYPES).map(([value, label]) => {
      const id = `${name}-${value}`;
      return h(
        "div",
        { class: "choice" },
        h("input", {
          type: "radio",
          name,
          id,
          value,
          checked: value === selected,
          "aria-describedby": `${id}-hint`,
          onchange,
        }),
        h("label", { for: id, text: label }),
        h("p", { class: "hint", id: `${id}-hint`, text: TYPE_HINTS[value] }),
      );
    }),
  );
}

function editUpdate(store, update) {
  return openDialog("Edit update", (close) => {
    const message = h("textarea", {
      rows: 4,
      maxlength: MESSAGE_MAX_LENGTH,
      required: true,
      value: update.message,
    });
    const types = typeChoice("edit-type", update.labour_update_type, null);
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
              const type = types.querySelector("input:checked").value;
              if (message.value !== update.message) {
                await store.send("LabourUpdate", "UpdateLabourUpdateMessage", {
                  labour_update_id: update.labour_update_id,
                  message: message.value,
                });
              }
              if (type !== update.labour_update_type) {
                await store.send("LabourUpdate", "UpdateLabourUpdateType", {
                  labour_update_id: update.labour_update_id,
                  labour_update_type: type,
                });
              }
              close(true);
            },
            error,
          );
        },
      },
      field("Message", message),
      types,
      h("p", { class: "hint", text: "An announcement cannot be changed once it is sent." }),
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

function postForm(store) {
  const message = h("textarea", {
    rows: 3,
    maxlength: MESSAGE_MAX_LENGTH,
    required: true,
    name: "message",
  });
  const cooldown = h("p", { class: "hint", "aria-live": "polite" });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Post update" });
  const selected = () => form.querySelector("input[name=post-type]:checked").value;
  const refresh = () => {
    const announcing = selected() === "ANNOUNCEMENT";
    const queued = announcing && announcementQueued(store);
    const left = announcing ? cooldownLeft(store) : 0;
    if (queued) {
      cooldown.textContent =
        "Your last announcement is waiting to be sent. You can send the next one " +
        `${ANNOUNCEMENT_COOLDOWN_MS / 1000} s after it arrives.`;
    } else {
      cooldown.textContent =
        left > 0 ? `You can send the next announcement in ${Math.ceil(left / 1000)} s.` : "";
    }
    submit.disabled = queued || left > 0;
  };
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        error.textContent = "";
        if (!message.value.trim()) {
          error.textContent = "Write a message first.";
          return;
        }
        store.queue("LabourUpdate", "PostLabourUpdate", {
          labour_update_type: selected(),
          message: message.value,
        });
        message.value = "";
      },
    },
    field("Message", message),
    typeChoice("post-type", "STATUS_UPDATE", () => refresh()),
    cooldown,
    error,
    submit,
  );
  return { form, refresh };
}

export function updatesTab(container, store) {
  const list = h("ol", { class: "updates", "aria-label": "Updates, newest first" });
  const more = h("div");
  let post = null;
  if (store.canTrack) {
    post = postForm(store);
    container.append(h("section", { class: "card" }, h("h2", { text: "Post an update" }), post.form));
  }
  container.append(h("section", { class: "card" }, h("h2", { text: "Updates" }), list, more));

  function renderList() {
    const items = store.updateItems();
    if (items.length === 0) {
      replace(list, h("li", { class: "muted empty", text: "No updates yet." }));
      more.replaceChildren();
      return;
    }
    replace(
      list,
      items.map((update) => {
        const type = update.labour_update_type;
        const when = formatDateTime(parseTime(update.created_at));
        const actions =
          store.canTrack && !update.pending
            ? h(
                "div",
                { class: "item-actions" },
                type !== "ANNOUNCEMENT"
                  ? h("button", {
                      type: "button",
                      class: "secondary small",
                      text: "Edit",
                      "aria-label": `Edit update from ${when}`,
                      "data-key": `edit-${update.labour_update_id}`,
                      onclick: () => editUpdate(store, update),
                    })
                  : null,
                h("button", {
                  type: "button",
                  class: "danger-outline small",
                  text: "Delete",
                  "aria-label": `Delete update from ${when}`,
                  "data-key": `delete-${update.labour_update_id}`,
                  onclick: async (event) => {
                    const confirmed = await confirmAction(
                      "Delete update?",
                      "The update will be removed for everyone.",
                      "Delete",
                      { danger: true },
                    );
                    if (confirmed) {
                      await busy(event.target, () =>
                        store.send("LabourUpdate", "DeleteLabourUpdate", {
                          labour_update_id: update.labour_update_id,
                        }),
                      );
                    }
                  },
                }),
              )
            : null;
        return h(
          "li",
          { class: `update update-${type.toLowerCase()}${update.pending ? " pending" : ""}` },
          h(
            "div",
            { class: "update-head" },
            h("span", { class: `badge badge-${type.toLowerCase()}`, text: UPDATE_TYPES[type] || type }),
            h("span", { class: "muted", text: when }),
            update.edited ? h("span", { class: "muted", text: "edited" }) : null,
            update.pending ? h("span", { class: "badge", text: "Waiting to send" }) : null,
          ),
          h("p", { class: "update-message", text: updateMessage(update) }),
          actions,
        );
      }),
    );
    replace(
      more,
      store.updatesHaveMore
        ? h("button", {
            type: "button",
            class: "secondary",
            text: "Show older updates",
            onclick: (event) => busy(event.target, () => store.loadMore("updates")),
          })
        : null,
    );
  }

  const onChange = (event) => {
    if (["updates", "outbox", "role"].includes(event.detail)) {
      renderList();
    }
    if (post && ["updates", "outbox", "clock"].includes(event.detail)) {
      post.refresh();
    }
  };
  store.addEventListener("change", onChange);
  renderList();
  const timer = post ? setInterval(post.refresh, 1000) : null;
  if (post) {
    post.refresh();
  }
  return {
    unmount() {
      clearInterval(timer);
      store.removeEventListener("change", onChange);
    },
  };
}
