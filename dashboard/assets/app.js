// The Sluice dashboard: a single-page app over the node's JSON API. Each
// page is a function that renders into <main> and starts its pollers on an
// AbortSignal; navigating aborts the signal, which cancels the page's
// requests and timers. Routing uses the history API: the server answers
// every page path with this app.

import { APIError, get, onUnauthorized, setToken, token } from "/api.js";
import { drawStatus, showNode } from "/live.js";
import { h } from "/ui.js";
import { overviewPage } from "/pages/overview.js";
import { handlerPage } from "/pages/handler.js";
import { dlqPage } from "/pages/dlq.js";
import { topicsPage } from "/pages/topics.js";
import { fleetPage } from "/pages/fleet.js";

const routes = [
  [/^\/$/, overviewPage, "overview"],
  [/^\/handlers\/([^/]+)\/?$/, handlerPage, "overview"],
  [/^\/handlers\/([^/]+)\/dlq\/?$/, dlqPage, "overview"],
  [/^\/topics\/?$/, topicsPage, "topics"],
  [/^\/fleet\/?$/, fleetPage, "fleet"],
];

let pageScope = null;

function render() {
  if (pageScope) pageScope.abort();
  pageScope = new AbortController();
  const signal = pageScope.signal;
  const main = document.getElementById("main");
  main.replaceChildren();
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  const path = location.pathname;
  for (const [re, page, nav] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    let params;
    try {
      params = m.slice(1).map(decodeURIComponent);
    } catch {
      break;
    }
    page(main, signal, ...params);
    return;
  }
  document.title = "Not found · Sluice";
  main.append(
    h("h1", {}, "Page not found"),
    h("p", {}, "There is no dashboard page at ", h("code", {}, path), ". ", h("a", { href: "/" }, "Go to the handlers.")),
  );
}

function go(url) {
  history.pushState(null, "", url);
  render();
  window.scrollTo(0, 0);
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[href]");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  if (a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/v1/")) return;
  ev.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) go(url.pathname + url.search);
});

window.addEventListener("popstate", render);

// Sign-in: a 401 from any request opens the token dialog; a token that
// works is kept for the tab's session and the page starts over with it.
let asking = false;
function askToken(message) {
  if (asking) return;
  asking = true;
  const dlg = document.getElementById("login");
  const err = document.getElementById("login-error");
  err.hidden = !message;
  err.textContent = message || "";
  dlg.showModal();
  document.getElementById("login-token").focus();
}
onUnauthorized(() => askToken(token() ? "That token is not valid (or no longer is)." : ""));
document.getElementById("login").addEventListener("cancel", (ev) => ev.preventDefault());
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const t = document.getElementById("login-token").value.trim();
  setToken(t);
  try {
    await get("/v1/whoami");
  } catch (e) {
    const err = document.getElementById("login-error");
    err.hidden = false;
    err.textContent = e instanceof APIError && e.status === 401 ? "That token is not valid." : e.message;
    return;
  }
  location.reload();
});
document.getElementById("signout").addEventListener("click", () => {
  setToken("");
  location.reload();
});

// The role decides which actions are shown (see app.css, data-need).
get("/v1/whoami")
  .then((w) => {
    document.body.dataset.role = w.role;
    if (w.auth) {
      document.getElementById("whoami-role").textContent = w.role;
      document.getElementById("whoami").hidden = false;
    }
  })
  .catch(() => {
    // A 401 opened the sign-in dialog; other failures show in the pages.
  });

drawStatus();
render();
// The header names the node on every page, whichever page loads first.
get("/v1/overview")
  .then((o) => showNode(o.node))
  .catch(() => {
    // The pages' own polling reports an unreachable node.
  });
