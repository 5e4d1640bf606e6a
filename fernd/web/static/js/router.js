// Client-side routing with the History API. fernd serves the app's page at
// every path listed here, so a reload or a shared link opens the same view.

const routes = [];
let current = null;
let beforeEach = null;

// Add a route. `pattern` is a RegExp matched against the whole path, and
// `options.mount(main, match, url)` builds the view. The view may have
// `update(match, url)`, called instead of a new mount while
// `options.key(match)` stays the same, and `unmount()`.
export function route(pattern, options) {
  routes.push({ pattern, ...options });
}

// Call `guard(routeOptions, url)` before each view is mounted. A guard that
// returns a path redirects there instead.
export function setGuard(guard) {
  beforeEach = guard;
}

// Return `next` when it is a path of this app, else "/": a link must not be
// able to send a user who signs in to another site. Browsers read "/\" like
// "//", the start of another host.
export function safeNext(next) {
  if (typeof next === "string" && /^\/(?![\/\\])/.test(next)) {
    return next;
  }
  return "/";
}

export function navigate(path, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, "", path);
  } else {
    history.pushState(null, "", path);
  }
  render();
}

function find(pathname) {
  for (const item of routes) {
    const match = pathname.match(item.pattern);
    if (match) {
      return { item, match };
    }
  }
  return null;
}

export function render() {
  const url = new URL(location.href);
  const main = document.getElementById("main");
  const found = find(url.pathname) || find("/__not-found");
  const { item, match } = found;
  if (beforeEach) {
    const redirect = beforeEach(item, url);
    if (redirect) {
      navigate(redirect, { replace: true });
      return;
    }
  }
  const key = item.key ? `${item.pattern}:${item.key(match)}` : null;
  if (current && key && current.key === key && current.view && current.view.update) {
    current.view.update(match, url);
    return;
  }
  if (current && current.view && current.view.unmount) {
    current.view.unmount();
  }
  main.replaceChildren();
  const view = item.mount(main, match, url) || null;
  current = { key, view };
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    if (document.activeElement === document.body || !main.contains(document.activeElement)) {
      heading.focus({ preventScroll: true });
    }
  }
  window.scrollTo(0, 0);
}

function isPlainClick(event, anchor) {
  return (
    event.button === 0 &&
    !event.metaKey &&
    !event.ctrlKey &&
    !event.shiftKey &&
    !event.altKey &&
    !anchor.target &&
    !anchor.hasAttribute("download") &&
    anchor.origin === location.origin
  );
}

export function startRouter() {
  document.addEventListener("click", (event) => {
    const anchor = event.target.closest("a[href]");
    if (!anchor || !isPlainClick(event, anchor) || anchor.dataset.external !== undefined) {
      return;
    }
    if (anchor.hash && anchor.pathname === location.pathname) {
      return;
    }
    event.preventDefault();
    navigate(anchor.pathname + anchor.search);
  });
  window.addEventListener("popstate", render);
  render();
}
