// The share tab (mother only): the share link and its QR code, invites by
// email, and a new share token.

import * as api from "../api.js";
import { busy, confirmAction, field, formError, h, replace, showMessage } from "../dom.js";

export function shareLink(labourId, token) {
  return `${location.origin}/s/${labourId}/${token}`;
}

async function copy(text, input) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
  } else {
    // Without a secure context there is no Clipboard API, so the text is
    // selected for the user to copy.
    input.select();
    document.execCommand("copy");
  }
  showMessage("Link copied.", { kind: "info", timeout: 3000 });
}

function inviteForm(store) {
  const email = h("input", { type: "email", autocomplete: "off", required: true, maxlength: 254 });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Send invite" });
  return h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            await store.send("Labour", "SendLabourInvite", { invite_email: email.value.trim() });
            showMessage("Invite sent.", { kind: "info", timeout: 5000 });
            email.value = "";
          },
          error,
        );
      },
    },
    field("Email address", email, "They get an email with a link to this app. Open the share link on their phone, or send it yourself."),
    error,
    submit,
  );
}

// The invite form, or a note when fernd has no email channel to send invites
// with. fernd offers password reset by email exactly when an email channel is
// configured, so the account options show whether invites can go out.
function inviteSection(store) {
  const body = h("div", {}, inviteForm(store));
  api.accounts
    .options()
    .then((options) => {
      if (!options.password_reset) {
        replace(
          body,
          h("p", {
            class: "muted",
            text: "This server cannot send email, so invites are off. Copy the link and send it yourself.",
          }),
        );
      }
    })
    .catch(() => {
      // The form stays; a failed invite shows its own error.
    });
  return h("section", { class: "card" }, h("h2", { text: "Invite by email" }), body);
}

export function shareTab(container, store) {
  const linkBox = h("div", { class: "share-link" });
  const regenerate = h("button", {
    type: "button",
    class: "secondary",
    text: "Make a new link",
    onclick: async () => {
      const confirmed = await confirmAction(
        "Make a new link?",
        "The current link stops working. People already following keep access; anyone who has not asked yet needs the new link.",
        "Make new link",
      );
      if (confirmed) {
        await busy(regenerate, () => store.send("Subscription", "InvalidateSubscriptionToken"));
      }
    },
  });
  const complete = store.isComplete;
  container.append(
    h(
      "section",
      { class: "card" },
      h("h2", { text: "Share link" }),
      h("p", {
        text: "Send this link to the people you want to follow your labour. They ask to follow it, and you approve each of them under Subscribers.",
      }),
      linkBox,
      complete ? h("p", { class: "muted", text: "Nobody can ask to follow a completed labour." }) : regenerate,
    ),
    complete ? null : inviteSection(store),
  );

  function render() {
    if (!store.token) {
      replace(linkBox, h("p", { class: "muted", text: "Making a share link…" }));
      return;
    }
    const link = shareLink(store.labourId, store.token);
    const input = h("input", { type: "text", readOnly: true, value: link, id: "share-link-input" });
    const actions = [
      h("button", {
        type: "button",
        class: "primary",
        text: "Copy link",
        "data-key": "copy-link",
        onclick: () => copy(link, input).catch((error) => showMessage(error.message)),
      }),
    ];
    if (navigator.share) {
      actions.push(
        h("button", {
          type: "button",
          class: "secondary",
          text: "Share…",
          onclick: () =>
            navigator.share({ title: "Follow my labour", url: link }).catch(() => {
              // Closing the share sheet is not an error.
            }),
        }),
      );
    }
    replace(
      linkBox,
      field("Link", input),
      h("div", { class: "button-row" }, actions),
      h("img", {
        class: "qr",
        src: `/app/qr.svg?data=${encodeURIComponent(link)}`,
        alt: "QR code of the share link. Scan it with a phone camera to open the link.",
        width: 240,
        height: 240,
      }),
    );
  }

  const onChange = (event) => {
    if (event.detail === "token") {
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
