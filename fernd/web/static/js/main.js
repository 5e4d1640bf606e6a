// Start the app: routes, the navigation bar, sign-out and the service worker.

import * as api from "./api.js";
import { h, replace, showMessage } from "./dom.js";
import { navigate, route, safeNext, setGuard, startRouter } from "./router.js";
import { clearSession, loadSession, onSessionChange, scheduleRefresh } from "./session.js";
import {
  accountView,
  forgotPasswordView,
  resetPasswordView,
  signInView,
  signUpView,
} from "./views/auth.js";
import { historyView, homeView, notFoundView, planView } from "./views/home.js";
import { joinView } from "./views/join.js";
import { labourView } from "./views/labour.js";

const TAB_PATTERN = "track|updates|share|subscribers|settings|complete";
// A labour id: a UUID, with or without its hyphens. Other paths show "Page
// not found" instead of a request fernd cannot parse.
const LABOUR_ID_PATTERN =
  "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}";

route(/^\/$/, { auth: true, mount: homeView });
route(/^\/sign-in$/, { guest: true, mount: signInView });
route(/^\/sign-up$/, { guest: true, mount: signUpView });
route(/^\/forgot-password$/, { mount: forgotPasswordView });
route(/^\/reset-password$/, { mount: resetPasswordView });
route(/^\/account$/, { auth: true, mount: accountView });
route(/^\/plan$/, { auth: true, mount: planView });
route(/^\/labours$/, { auth: true, mount: historyView });
route(new RegExp(`^/labours/(${LABOUR_ID_PATTERN})(?:/(${TAB_PATTERN}))?$`), {
  auth: true,
  key: (match) => match[1],
  mount: labourView,
});
route(/^\/s\/([^/]+)\/([^/]+)$/, { auth: true, mount: joinView });
route(/^\/__not-found$/, { mount: notFoundView });

setGuard((options, url) => {
  const signedIn = loadSession() !== null;
  if (options.auth && !signedIn) {
    const next = url.pathname + url.search;
    return next === "/" ? "/sign-in" : `/sign-in?next=${encodeURIComponent(next)}`;
  }
  if (options.guest && signedIn) {
    return safeNext(url.searchParams.get("next"));
  }
  return null;
});

let lastSessionUser = loadSession()?.user.user_id ?? null;

// Remove everything the app stored for the signed-in user on this device.
function forgetDevice() {
  for (const key of Object.keys(localStorage)) {
    if (key.startsWith("fernd.")) {
      localStorage.removeItem(key);
    }
  }
}

async function signOut() {
  const session = loadSession();
  if (session && session.refresh_token) {
    try {
      await api.accounts.logout(session.refresh_token);
    } catch {
      // The tokens are removed from this device either way.
    }
  }
  lastSessionUser = null;
  clearSession();
  forgetDevice();
  navigate("/sign-in");
}

function renderNav() {
  const nav = document.getElementById("app-nav");
  const session = loadSession();
  if (!session) {
    replace(
      nav,
      h("a", { href: "/sign-in", text: "Sign in" }),
      h("a", { href: "/sign-up", text: "Sign up" }),
    );
    return;
  }
  replace(
    nav,
    h("a", { href: "/labours", text: "Labours" }),
    h("a", { href: "/account", text: "Account" }),
    h("button", { type: "button", class: "link-button", text: "Sign out", onclick: signOut }),
  );
}

// Show the device's network state in the connection line, unless a labour
// view shows its own.
function renderOffline() {
  const line = document.getElementById("connection");
  if (line.dataset.owner) {
    return;
  }
  line.hidden = navigator.onLine;
  line.textContent = navigator.onLine ? "" : "You are offline.";
}

onSessionChange((session) => {
  renderNav();
  const userId = session ? session.user.user_id : null;
  if (lastSessionUser !== null && userId === null) {
    showMessage("You have been signed out.", { kind: "info", timeout: 8000 });
    navigate(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`, {
      replace: true,
    });
  }
  lastSessionUser = userId;
});

window.addEventListener("online", renderOffline);
window.addEventListener("offline", renderOffline);

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch(() => {
    // Without a service worker the app works, only not offline after a reload.
  });
}

renderNav();
renderOffline();
scheduleRefresh();
startRouter();
