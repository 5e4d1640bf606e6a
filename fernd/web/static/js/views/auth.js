// Sign-up, sign-in, password reset and the account page.

import * as api from "../api.js";
import { busy, field, formError, h, setTitle, showMessage } from "../dom.js";
import { navigate, safeNext } from "../router.js";
import {
  clearSession,
  loadSession,
  refreshSession,
  saveSession,
  sessionFromTokenPair,
} from "../session.js";

// fernd rejects shorter passwords.
const MIN_PASSWORD_LENGTH = 10;
// E.164: a plus sign and up to 15 digits, the first not zero.
const PHONE_PATTERN = "\\+[1-9][0-9]{1,14}";

function joinNotice(next) {
  if (next.startsWith("/s/")) {
    return h("p", {
      class: "notice",
      text: "Sign in or create an account to follow this labour. You come back to it afterwards.",
    });
  }
  return null;
}

function input(attributes) {
  return h("input", attributes);
}

function withNext(path, next) {
  return next === "/" ? path : `${path}?next=${encodeURIComponent(next)}`;
}

export function signInView(main, match, url) {
  setTitle("Sign in");
  const next = safeNext(url.searchParams.get("next"));
  const email = input({ type: "email", name: "email", autocomplete: "username", required: true });
  const password = input({
    type: "password",
    name: "password",
    autocomplete: "current-password",
    required: true,
  });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Sign in" });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            const pair = await api.accounts.login(email.value.trim(), password.value);
            saveSession(sessionFromTokenPair(pair));
            navigate(next, { replace: true });
          },
          error,
        );
      },
    },
    field("Email", email),
    field("Password", password),
    error,
    submit,
  );
  main.append(
    h(
      "section",
      { class: "card narrow" },
      h("h1", { text: "Sign in" }),
      joinNotice(next),
      form,
      h("p", {}, h("a", { href: "/forgot-password", text: "Forgot your password?" })),
      h("p", {}, "New here? ", h("a", { href: withNext("/sign-up", next), text: "Create an account" })),
    ),
  );
}

export function signUpView(main, match, url) {
  setTitle("Create an account");
  const next = safeNext(url.searchParams.get("next"));
  const name = input({ type: "text", name: "name", autocomplete: "name", maxlength: 200 });
  const email = input({ type: "email", name: "email", autocomplete: "email", required: true });
  const password = input({
    type: "password",
    name: "new-password",
    autocomplete: "new-password",
    minlength: MIN_PASSWORD_LENGTH,
    required: true,
  });
  const phone = input({
    type: "tel",
    name: "phone",
    autocomplete: "tel",
    pattern: PHONE_PATTERN,
    placeholder: "+447700900123",
  });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Create account" });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            const fields = { email: email.value.trim(), password: password.value };
            if (name.value.trim()) {
              fields.name = name.value.trim();
            }
            if (phone.value.trim()) {
              fields.phone_number = phone.value.trim();
            }
            const pair = await api.accounts.register(fields);
            saveSession(sessionFromTokenPair(pair));
            navigate(next, { replace: true });
          },
          error,
        );
      },
    },
    field("Your name", name, "Shown to the people who follow your labour."),
    field("Email", email),
    field("Password", password, `At least ${MIN_PASSWORD_LENGTH} characters.`),
    field(
      "Mobile number (optional)",
      phone,
      "Only needed for SMS or WhatsApp messages. Write it with the country code, as +447700900123.",
    ),
    error,
    submit,
  );
  const section = h(
    "section",
    { class: "card narrow" },
    h("h1", { text: "Create an account" }),
    joinNotice(next),
    form,
    h("p", {}, "Have an account? ", h("a", { href: withNext("/sign-in", next), text: "Sign in" })),
  );
  main.append(section);
  api.accounts
    .options()
    .then((options) => {
      if (!options.registration) {
        form.replaceWith(
          h("p", {
            class: "notice",
            text: "This server does not accept new accounts. Ask the person who runs it to create one for you.",
          }),
        );
      }
    })
    .catch((failure) => {
      error.textContent = failure.message;
    });
}

export function forgotPasswordView(main) {
  setTitle("Reset your password");
  const email = input({ type: "email", name: "email", autocomplete: "email", required: true });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Send reset link" });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            await api.accounts.requestPasswordReset(email.value.trim());
            form.replaceWith(
              h("p", {
                class: "notice",
                role: "status",
                text: "If an account uses this address, an email with a link to reset the password is on its way. The link works for one hour.",
              }),
            );
          },
          error,
        );
      },
    },
    field("Email", email),
    error,
    submit,
  );
  main.append(
    h(
      "section",
      { class: "card narrow" },
      h("h1", { text: "Reset your password" }),
      form,
      h("p", {}, h("a", { href: "/sign-in", text: "Back to sign in" })),
    ),
  );
  api.accounts
    .options()
    .then((options) => {
      if (!options.password_reset) {
        form.replaceWith(
          h("p", {
            class: "notice",
            text: "This server cannot send email. Ask the person who runs it to reset your password.",
          }),
        );
      }
    })
    .catch(() => {
      // The form stays; sending it shows what went wrong.
    });
}

function newPasswordFields() {
  const password = input({
    type: "password",
    name: "new-password",
    autocomplete: "new-password",
    minlength: MIN_PASSWORD_LENGTH,
    required: true,
  });
  const repeat = input({
    type: "password",
    name: "repeat-password",
    autocomplete: "new-password",
    minlength: MIN_PASSWORD_LENGTH,
    required: true,
  });
  const check = () => {
    if (password.value !== repeat.value) {
      throw new Error("The two passwords differ. Type the same password twice.");
    }
  };
  return { password, repeat, check };
}

export function resetPasswordView(main, match, url) {
  setTitle("Choose a new password");
  const token = url.searchParams.get("token");
  const section = h("section", { class: "card narrow" }, h("h1", { text: "Choose a new password" }));
  main.append(section);
  if (!token) {
    section.append(
      h("p", { text: "This link has no reset code. Open the link from the email again, or ask for a new one." }),
      h("p", {}, h("a", { href: "/forgot-password", text: "Ask for a new link" })),
    );
    return;
  }
  const { password, repeat, check } = newPasswordFields();
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Save password" });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            check();
            await api.accounts.confirmPasswordReset(token, password.value);
            form.replaceWith(
              h(
                "p",
                { class: "notice", role: "status" },
                "Your password has been changed. ",
                h("a", { href: "/sign-in", text: "Sign in" }),
              ),
            );
          },
          error,
        );
      },
    },
    field("New password", password, `At least ${MIN_PASSWORD_LENGTH} characters.`),
    field("Repeat the new password", repeat),
    error,
    submit,
  );
  section.append(form);
}

function profileForm(account) {
  const name = input({ type: "text", autocomplete: "name", value: account.name || "", maxlength: 200 });
  const firstName = input({
    type: "text",
    autocomplete: "given-name",
    value: account.first_name || "",
    maxlength: 100,
  });
  const lastName = input({
    type: "text",
    autocomplete: "family-name",
    value: account.last_name || "",
    maxlength: 100,
  });
  const phone = input({
    type: "tel",
    autocomplete: "tel",
    pattern: PHONE_PATTERN,
    value: account.phone_number || "",
    placeholder: "+447700900123",
  });
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Save profile" });
  return h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            await api.accounts.updateMe({
              name: name.value.trim() || null,
              first_name: firstName.value.trim() || null,
              last_name: lastName.value.trim() || null,
              phone_number: phone.value.trim() || null,
            });
            // The new names reach the access token's claims on a refresh.
            if (loadSession()?.refresh_token) {
              await refreshSession();
            }
            showMessage("Profile saved.", { kind: "info", timeout: 5000 });
          },
          error,
        );
      },
    },
    h("h2", { text: "Profile" }),
    field("Name", name),
    field("First name", firstName),
    field("Last name", lastName),
    field("Mobile number", phone, "With the country code, as +447700900123. Used for SMS and WhatsApp."),
    error,
    submit,
  );
}

function passwordForm() {
  const current = input({ type: "password", autocomplete: "current-password", required: true });
  const { password, repeat, check } = newPasswordFields();
  const error = formError();
  const submit = h("button", { type: "submit", class: "primary", text: "Change password" });
  return h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        busy(
          submit,
          async () => {
            check();
            await api.accounts.changePassword(current.value, password.value);
            // Changing the password ends every login of the account.
            clearSession();
            showMessage("Password changed. Sign in with the new password.", { kind: "info" });
            navigate("/sign-in", { replace: true });
          },
          error,
        );
      },
    },
    h("h2", { text: "Password" }),
    field("Current password", current),
    field("New password", password, `At least ${MIN_PASSWORD_LENGTH} characters.`),
    field("Repeat the new password", repeat),
    error,
    submit,
  );
}

export function accountView(main) {
  setTitle("Account");
  const session = loadSession();
  const section = h(
    "section",
    { class: "card" },
    h("h1", { text: "Account" }),
    h("p", { class: "muted", text: session.user.email || session.user.name || session.user.user_id }),
  );
  main.append(section);
  const status = h("p", { class: "muted", text: "Loading your profile…" });
  section.append(status);
  api.accounts
    .me()
    .then((account) => {
      status.replaceWith(profileForm(account), passwordForm());
    })
    .catch((error) => {
      status.textContent = `Your profile could not be loaded: ${error.message}`;
    });
}
