// The Sluice dashboard: a single-page app over the node's JSON API. Each
// page is a function that renders into <main> and starts its pollers on an
// AbortSignal; navigating aborts the signal, which cancels the page's
// requests and timers.

import { LineChart } from "/chart.js";

const OVERVIEW_MS = 1500;
const HANDLER_MS = 2000;
const SERIES_MS = 5000;
const DLQ_MS = 3000;
const TOPICS_MS = 3000;
const DLQ_PAGE_SIZE = 25;

// ---------------------------------------------------------------- DOM

// h builds an element: attrs may hold class, data-* and aria-* attributes,
// properties (value, checked, disabled...) and on* listeners; children are
// nodes, strings (as text, never HTML) or arrays of them.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k in el && !k.includes("-") && k !== "list" && k !== "form") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// icon draws a small shape so that a state reads without colour.
const ICONS = {
  running: "M3 2 L10 6 L3 10 Z",
  paused: "M3 2 H5 V10 H3 Z M7 2 H9 V10 H7 Z",
  "breaker-open": "M1 6 H4 M8 6 H11 M4 6 L8 2.5",
  error: "M3 3 L9 9 M9 3 L3 9",
  starting: "M6 1.5 A4.5 4.5 0 1 1 1.5 6",
  unavailable: "M2.8 2.8 L9.2 9.2 M6 1.5 A4.5 4.5 0 1 1 5.99 1.5",
  stopped: "M2.5 2.5 H9.5 V9.5 H2.5 Z",
  dead: "M3 3 L9 9 M9 3 L3 9",
  replayed: "M9.5 4.5 A4 4 0 1 0 10 7 M9.5 1.5 V4.5 H6.5",
  discarded: "M2 3.5 H10 M4 3.5 V10 H8 V3.5 M5 2 H7",
  unknown: "M6 1.5 A4.5 4.5 0 1 1 5.99 1.5",
};

function icon(name) {
  const s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  s.setAttribute("viewBox", "0 0 12 12");
  s.setAttribute("aria-hidden", "true");
  s.setAttribute("class", "icon");
  const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
  p.setAttribute("d", ICONS[name] || ICONS.unknown);
  s.appendChild(p);
  return s;
}

const STATE_LABELS = {
  running: "running",
  paused: "paused",
  "breaker-open": "breaker open",
  starting: "starting",
  error: "error",
  unavailable: "unavailable",
  stopped: "stopped",
  dead: "dead",
  replayed: "replayed",
  discarded: "discarded",
};

// badge shows a state as shape + word + colour.
function badge(state, testid) {
  const s = state || "unknown";
  return h(
    "span",
    { class: `badge st-${s}`, "data-testid": testid, "data-state": s },
    icon(s),
    STATE_LABELS[s] || s,
  );
}

function setBadge(el, state) {
  if (el.dataset.state === state) return;
  const fresh = badge(state, el.dataset.testid);
  el.replaceWith(fresh);
}

// ---------------------------------------------------------------- format

const nf = new Intl.NumberFormat("en-US");

function fmtInt(n) {
  return n == null ? "–" : nf.format(n);
}

function fmtRate(x) {
  if (x == null) return "–";
  if (x === 0) return "0";
  if (x < 1) return x.toFixed(2);
  if (x < 100) return x.toFixed(1);
  return nf.format(Math.round(x));
}

function fmtMs(ms) {
  if (!ms) return "–";
  if (ms < 10) return ms.toFixed(1) + " ms";
  if (ms < 1000) return Math.round(ms) + " ms";
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

function fmtAge(s) {
  if (!s) return "–";
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.round(s % 60)} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${m % 60} m`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

function fmtTime(iso) {
  if (!iso || iso.startsWith("0001-")) return "–";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function fmtAgo(iso) {
  if (!iso || iso.startsWith("0001-")) return "";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 5) return "just now";
  return fmtAge(s) + " ago";
}

// ---------------------------------------------------------------- API

class APIError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body, signal) {
  const init = { method, signal, cache: "no-store", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new APIError(`Cannot reach the Sluice node at ${location.host} (${e.message}). Is it running?`, 0);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: a proxy's error page, say. Reported below.
  }
  if (!res.ok) {
    let msg = data && data.error ? data.error : text.trim().slice(0, 200) || res.statusText;
    if (data && data.field && !msg.startsWith(data.field)) msg = `${data.field}: ${msg}`;
    if (res.status === 502 || res.status === 503 || res.status === 504) msg += " (the node cannot reach Kafka?)";
    throw new APIError(`${method} ${path} failed: ${res.status} ${msg}`, res.status);
  }
  if (data === null && text) throw new APIError(`${method} ${path}: the answer is not JSON`, res.status);
  return data;
}

const get = (path, signal) => api("GET", path, undefined, signal);
const post = (path, body) => api("POST", path, body ?? {});
const enc = encodeURIComponent;

// ---------------------------------------------------------------- status

// Polling failures are collected by source and shown in one banner until
// that source answers again; the header shows whether data is live.
const failing = new Map();
let lastOK = 0;

function reportPoll(source, err) {
  if (err) failing.set(source, err.message);
  else {
    failing.delete(source);
    lastOK = Date.now();
  }
  drawStatus();
}

function drawStatus() {
  const banner = document.getElementById("banner");
  if (failing.size) {
    banner.replaceChildren(
      h("strong", {}, icon("error"), " Problem talking to the node"),
      h("ul", {}, [...new Set(failing.values())].map((m) => h("li", {}, m))),
      h("span", { class: "retry" }, "Retrying automatically."),
    );
    banner.hidden = false;
  } else {
    banner.hidden = true;
    banner.replaceChildren();
  }
  const live = document.getElementById("live");
  const ok = failing.size === 0 && lastOK > 0;
  live.className = "live " + (ok ? "is-live" : "is-down");
  live.dataset.state = ok ? "live" : lastOK ? "down" : "connecting";
  live.replaceChildren(
    icon(ok ? "running" : "error"),
    ok ? `Live · ${new Date(lastOK).toLocaleTimeString()}` : lastOK ? "Not updating" : "Connecting…",
  );
}

let toastTimer;

// notify shows the outcome of an action the user took.
function notify(message, kind = "ok") {
  const t = document.getElementById("toast");
  clearTimeout(toastTimer);
  t.className = `toast ${kind}`;
  t.replaceChildren(
    icon(kind === "ok" ? "replayed" : "error"),
    h("span", {}, message),
    h("button", { class: "link", type: "button", "aria-label": "Dismiss", onclick: () => (t.hidden = true) }, "×"),
  );
  t.hidden = false;
  if (kind === "ok") toastTimer = setTimeout(() => (t.hidden = true), 6000);
}

// every runs fn now and then ms after each run ends, until signal aborts.
// The returned function runs it again at once (after any run in progress).
function every(signal, ms, source, fn) {
  let timer;
  let running = false;
  let again = false;
  const tick = async () => {
    clearTimeout(timer);
    if (signal.aborted) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn(signal);
      if (!signal.aborted) reportPoll(source, null);
    } catch (e) {
      if (e.name !== "AbortError" && !signal.aborted) reportPoll(source, e);
    } finally {
      running = false;
    }
    if (signal.aborted) return;
    if (again) {
      again = false;
      tick();
      return;
    }
    timer = setTimeout(tick, document.hidden ? ms * 4 : ms);
  };
  signal.addEventListener("abort", () => {
    clearTimeout(timer);
    if (failing.delete(source)) drawStatus();
  });
  tick();
  return tick;
}

// ---------------------------------------------------------------- dialogs

// confirm asks in an in-page <dialog> and resolves true when confirmed.
function confirmAction({ title, body, ok, danger = false }) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  const b = document.getElementById("confirm-body");
  b.replaceChildren();
  append(b, [body]);
  const okBtn = document.getElementById("confirm-ok");
  okBtn.textContent = ok;
  okBtn.className = danger ? "btn danger" : "btn primary";
  dlg.returnValue = "";
  dlg.showModal();
  okBtn.focus();
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
  });
}

// ---------------------------------------------------------------- tables

// keyedRows keeps a <tbody> in step with data without rebuilding rows that
// already exist, so focus, selection and hover survive a refresh. make(d)
// builds a row; fill(row, d) updates it.
function keyedRows(tbody, items, key, make, fill) {
  const existing = new Map();
  for (const tr of tbody.children) if (tr.dataset.key) existing.set(tr.dataset.key, tr);
  let prev = null;
  for (const d of items) {
    const k = key(d);
    let tr = existing.get(k);
    if (tr) existing.delete(k);
    else {
      tr = make(d);
      tr.dataset.key = k;
    }
    fill(tr, d);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of existing.values()) tr.remove();
  for (const tr of [...tbody.children]) if (!tr.dataset.key) tr.remove();
}

// cell makes a <td> labelled for the phone layout (where rows become
// cards), with a test id and, via setNum, the raw number in data-value.
function cell(label, testid, cls) {
  return h("td", { "data-label": label, "data-testid": testid, class: cls });
}

function setNum(td, value, text) {
  const v = String(value ?? "");
  if (td.dataset.value === v && td.textContent === text) return;
  td.dataset.value = v;
  td.textContent = text;
}

function table(cls, headers, tbody) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: cls },
      h("thead", {}, h("tr", {}, headers.map((x) => (x instanceof Node ? x : h("th", { scope: "col" }, x))))),
      tbody,
    ),
  );
}

function emptyRow(cols, ...text) {
  return h("tr", { class: "empty" }, h("td", { colSpan: cols }, ...text));
}

// ---------------------------------------------------------------- router

const routes = [
  [/^\/$/, overviewPage, "overview"],
  [/^\/handlers\/([^/]+)\/?$/, handlerPage, "overview"],
  [/^\/handlers\/([^/]+)\/dlq\/?$/, dlqPage, "overview"],
  [/^\/topics\/?$/, topicsPage, "topics"],
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

function go(url, replace = false) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
  if (!replace) window.scrollTo(0, 0);
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

function handlerURL(name) {
  return `/handlers/${enc(name)}`;
}

// ---------------------------------------------------------------- header

let nodeShown = false;

function showNode(node) {
  if (!node || nodeShown) return;
  nodeShown = true;
  const el = document.getElementById("node");
  el.replaceChildren(
    h("span", { title: "Node id" }, node.id || "node"),
    node.version ? h("span", { class: "muted" }, node.version) : null,
    h(
      "span",
      { class: "muted", title: (node.brokers || []).join(", ") },
      node.embedded ? "embedded broker" : `${(node.brokers || []).length} broker(s)`,
    ),
  );
}

// ---------------------------------------------------------------- overview

function overviewPage(main, signal) {
  document.title = "Handlers · Sluice";
  const tbody = h("tbody", {});
  const summary = h("div", { class: "summary", "data-testid": "overview-summary" });
  const filter = h("input", {
    type: "search",
    placeholder: "Filter by name or topic",
    "aria-label": "Filter handlers by name or topic",
    "data-testid": "overview-filter",
    oninput: () => draw(),
  });
  let last = null;

  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Handlers"), filter),
    summary,
    table(
      "grid cards overview",
      [
        h("th", { scope: "col" }, "Handler"),
        h("th", { scope: "col" }, "State"),
        h("th", { scope: "col", class: "num", title: "Messages received per second" }, "In /s"),
        h("th", { scope: "col", class: "num", title: "Messages finished (succeeded or dead-lettered) per second" }, "Out /s"),
        h("th", { scope: "col", class: "num", title: "Median invocation latency" }, "p50"),
        h("th", { scope: "col", class: "num", title: "99th percentile invocation latency" }, "p99"),
        h("th", { scope: "col", class: "num", title: "Failed invocations per second" }, "Errors /s"),
        h("th", { scope: "col", class: "num", title: "Messages not yet processed" }, "Lag"),
        h("th", { scope: "col", class: "num", title: "Age of the oldest message not yet processed" }, "Oldest"),
        h("th", { scope: "col", class: "num", title: "In flight / concurrency limit" }, "Concurrency"),
        h("th", { scope: "col", class: "num" }, "Succeeded"),
        h("th", { scope: "col", class: "num" }, "Dead-lettered"),
      ],
      tbody,
    ),
  );

  function draw() {
    if (!last) return;
    const q = filter.value.trim().toLowerCase();
    const rows = last.handlers.filter((x) => !q || x.name.includes(q) || (x.topic || "").toLowerCase().includes(q));
    if (!last.handlers.length) {
      tbody.replaceChildren(
        emptyRow(
          12,
          "No handlers yet. Register one with ",
          h("code", {}, "sluice handler apply -f handler.yaml"),
          " or ",
          h("code", {}, "PUT /v1/handlers/NAME"),
          ".",
        ),
      );
      return;
    }
    if (!rows.length) {
      tbody.replaceChildren(emptyRow(12, `No handler matches “${filter.value}”.`));
      return;
    }
    keyedRows(tbody, rows, (x) => x.name, makeRow, fillRow);
  }

  function makeRow(x) {
    const n = x.name;
    return h(
      "tr",
      { "data-testid": `handler-row-${n}` },
      h(
        "td",
        { class: "name", "data-label": "Handler" },
        h("a", { href: handlerURL(n), "data-testid": `handler-link-${n}` }, n),
        h("div", { class: "sub" }, h("span", { class: "topic" }), h("span", { class: "invoker" })),
      ),
      h("td", { "data-label": "State" }, badge(x.state, `state-${n}`)),
      cell("In /s", `rate-in-${n}`, "num"),
      cell("Out /s", `rate-out-${n}`, "num"),
      cell("p50", `p50-${n}`, "num"),
      cell("p99", `p99-${n}`, "num"),
      cell("Errors /s", `error-rate-${n}`, "num"),
      cell("Lag", `lag-${n}`, "num"),
      cell("Oldest", `oldest-${n}`, "num"),
      cell("Concurrency", `concurrency-${n}`, "num"),
      cell("Succeeded", `succeeded-${n}`, "num"),
      h(
        "td",
        { "data-label": "Dead-lettered", class: "num" },
        h("a", { href: `${handlerURL(n)}/dlq`, "data-testid": `dead-${n}`, title: "Open the dead-letter queue" }),
      ),
    );
  }

  function fillRow(tr, x) {
    const n = x.name;
    const q = (id) => tr.querySelector(`[data-testid="${id}-${CSS.escape(n)}"]`);
    tr.querySelector(".topic").textContent = x.topic;
    tr.querySelector(".invoker").textContent = x.invoker === "go" ? "Go function" : x.invoker;
    tr.querySelector(".invoker").title = x.invoker;
    setBadge(q("state"), x.state);
    tr.dataset.state = x.state;
    setNum(q("rate-in"), x.rateIn, fmtRate(x.rateIn));
    setNum(q("rate-out"), x.rateOut, fmtRate(x.rateOut));
    setNum(q("p50"), x.p50Ms, fmtMs(x.p50Ms));
    setNum(q("p99"), x.p99Ms, fmtMs(x.p99Ms));
    setNum(q("error-rate"), x.errorRate, fmtRate(x.errorRate));
    q("error-rate").classList.toggle("bad", x.errorRate > 0);
    setNum(q("lag"), x.lag, fmtInt(x.lag));
    setNum(q("oldest"), x.oldestAgeSeconds, fmtAge(x.oldestAgeSeconds));
    setNum(q("concurrency"), x.concurrencyLimit, `${fmtInt(x.inFlight)} / ${fmtInt(x.concurrencyLimit)}`);
    setNum(q("succeeded"), x.succeeded, fmtInt(x.succeeded));
    const dead = q("dead");
    setNum(dead, x.deadLettered, fmtInt(x.deadLettered));
    dead.classList.toggle("bad", x.deadLettered > 0);
  }

  function drawSummary(o) {
    const sum = (k) => o.handlers.reduce((a, x) => a + (x[k] || 0), 0);
    const count = (st) => o.handlers.filter((x) => x.state === st).length;
    const problems = o.handlers.length - count("running") - count("paused");
    const stat = (label, value, testid, cls) =>
      h("div", { class: `stat ${cls || ""}` }, h("span", { class: "label" }, label), h("b", { "data-testid": testid }, value));
    summary.replaceChildren(
      stat("Handlers", `${o.handlers.length}`, "summary-handlers"),
      stat("Running", `${count("running")}`, "summary-running"),
      stat("Paused", `${count("paused")}`, "summary-paused"),
      stat("Need attention", `${problems}`, "summary-problems", problems ? "bad" : ""),
      stat("In /s", fmtRate(sum("rateIn")), "summary-rate-in"),
      stat("Out /s", fmtRate(sum("rateOut")), "summary-rate-out"),
      stat("Lag", fmtInt(sum("lag")), "summary-lag"),
      stat("Dead-lettered", fmtInt(sum("deadLettered")), "summary-dead", sum("deadLettered") ? "bad" : ""),
    );
  }

  every(signal, OVERVIEW_MS, "overview", async (sig) => {
    const o = await get("/v1/overview", sig);
    o.handlers = (o.handlers || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    last = o;
    showNode(o.node);
    drawSummary(o);
    draw();
    main.dataset.loaded = "overview";
  });
}

// ---------------------------------------------------------------- handler

// effectiveState is the handler's state as the overview names it.
function effectiveState(hd) {
  if (hd.paused) return "paused";
  const st = hd.status;
  if (!st) return "starting";
  if (st.breaker && st.breaker.state === "open") return "breaker-open";
  return st.state;
}

function handlerTabs(name, active) {
  const tab = (href, label, key, testid) =>
    h("a", { href, class: "tab", "aria-current": active === key ? "page" : null, "data-testid": testid }, label);
  return h(
    "nav",
    { class: "tabs", "aria-label": "Handler" },
    tab(handlerURL(name), "Metrics & partitions", "metrics", "tab-metrics"),
    tab(`${handlerURL(name)}/dlq`, "Dead letters", "dlq", "tab-dlq"),
  );
}

function crumbs(...parts) {
  return h(
    "nav",
    { class: "crumbs", "aria-label": "Breadcrumb" },
    h("a", { href: "/" }, "Handlers"),
    parts.map((p) => [h("span", { "aria-hidden": "true" }, " / "), p]),
  );
}

function handlerPage(main, signal, name) {
  document.title = `${name} · Sluice`;
  const stateSlot = h("span", {}, badge("starting", "handler-state"));
  const pauseBtn = h("button", { class: "btn", type: "button", "data-testid": "pause-button" }, icon("paused"), "Pause");
  const resumeBtn = h("button", { class: "btn", type: "button", "data-testid": "resume-button" }, icon("running"), "Resume");
  const facts = h("dl", { class: "facts", "data-testid": "handler-facts" });
  const stats = h("div", { class: "summary", "data-testid": "handler-stats" });
  const lastError = h("div", { class: "callout bad", hidden: true, "data-testid": "handler-last-error" });
  const chartsBox = h("div", { class: "charts", "data-testid": "charts" });
  const chartsNote = h("p", { class: "muted note", "data-testid": "charts-note" });
  const partBody = h("tbody", {});
  const partNote = h("p", { class: "muted note" });
  const specPre = h("pre", { class: "code", "data-testid": "handler-spec" }, "Loading…");
  const missing = h("div", { class: "callout bad", hidden: true, "data-testid": "handler-missing" });

  main.append(
    crumbs(h("span", {}, name)),
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, name, " ", stateSlot),
      h("div", { class: "actions" }, pauseBtn, resumeBtn),
    ),
    handlerTabs(name, "metrics"),
    missing,
    facts,
    stats,
    lastError,
    h("section", {}, h("h2", {}, "Last 15 minutes"), chartsNote, chartsBox),
    h(
      "section",
      {},
      h("h2", {}, "Partitions"),
      partNote,
      table(
        "grid partitions",
        ["Topic", "Partition", "Owner", "Committed", "Log start", "Log end", "Lag", "Pending"].map((x, i) =>
          h("th", { scope: "col", class: i === 0 || i === 2 ? "" : "num" }, x),
        ),
        partBody,
      ),
    ),
    h("section", {}, h("h2", {}, "Spec"), specPre),
  );

  const f = (v) => fmtRate(v) + " /s";
  const charts = [
    new LineChart(chartsBox, {
      title: "Throughput",
      testid: "chart-throughput",
      series: [
        { key: "rateIn", label: "in" },
        { key: "rateOut", label: "out" },
      ],
      format: f,
    }),
    new LineChart(chartsBox, {
      title: "Latency",
      testid: "chart-latency",
      series: [
        { key: "p50Ms", label: "p50" },
        { key: "p99Ms", label: "p99" },
      ],
      format: fmtMs,
    }),
    new LineChart(chartsBox, {
      title: "Errors",
      testid: "chart-errors",
      series: [{ key: "errorRate", label: "failed" }],
      format: f,
    }),
    new LineChart(chartsBox, {
      title: "Lag",
      testid: "chart-lag",
      series: [{ key: "lag", label: "messages" }],
      format: fmtInt,
    }),
    new LineChart(chartsBox, {
      title: "Concurrency",
      testid: "chart-concurrency",
      series: [
        { key: "concurrencyLimit", label: "limit" },
        { key: "inFlight", label: "in flight" },
      ],
      format: fmtInt,
    }),
  ];
  signal.addEventListener("abort", () => charts.forEach((c) => c.destroy()));

  let hd = null;
  let busy = false;

  function drawButtons() {
    pauseBtn.disabled = busy || !hd || hd.paused;
    resumeBtn.disabled = busy || !hd || !hd.paused;
  }
  drawButtons();

  async function setPaused(paused) {
    busy = true;
    drawButtons();
    try {
      hd = await post(`/v1/handlers/${enc(name)}/${paused ? "pause" : "resume"}`);
      drawHandler();
      notify(`${name} ${paused ? "paused: it stops fetching and finishes what is in flight" : "resumed"}.`);
    } catch (e) {
      notify(e.message, "bad");
    } finally {
      busy = false;
      drawButtons();
      refresh();
    }
  }
  pauseBtn.addEventListener("click", () => setPaused(true));
  resumeBtn.addEventListener("click", () => setPaused(false));

  function drawHandler() {
    const st = hd.status || {};
    const sp = hd.spec || {};
    setBadge(stateSlot.firstChild, effectiveState(hd));
    drawButtons();
    const fact = (k, ...v) => [h("dt", {}, k), h("dd", {}, ...v)];
    facts.replaceChildren(
      ...fact("Topic", h("code", {}, sp.topic)),
      ...fact("Invoker", sp.http ? h("code", { class: "wrap" }, sp.http.url) : "Go function"),
      ...fact("Ordering", sp.ordering || "key"),
      ...fact("Updated", fmtTime(hd.updatedAt), ` (version ${hd.version})`),
    );
    const br = st.breaker;
    const stat = (label, value, testid, cls) =>
      h("div", { class: `stat ${cls || ""}` }, h("span", { class: "label" }, label), h("b", { "data-testid": testid }, value));
    stats.replaceChildren(
      stat("Succeeded", fmtInt(st.succeeded), "stat-succeeded"),
      stat("Failed", fmtInt(st.failed), "stat-failed", st.failed ? "bad" : ""),
      stat("Retried", fmtInt(st.retried), "stat-retried"),
      stat("Dead-lettered", fmtInt(st.deadLettered), "stat-dead", st.deadLettered ? "bad" : ""),
      stat("In flight", `${fmtInt(st.inFlight)} / ${fmtInt(st.concurrencyLimit)}`, "stat-inflight"),
      stat("Lag (this node)", fmtInt(st.lag), "stat-lag"),
      stat(
        "Breaker",
        br ? `${br.state}${br.opened ? ` · opened ${fmtInt(br.opened)}×` : ""}` : "–",
        "stat-breaker",
        br && br.state === "open" ? "bad" : "",
      ),
    );
    if (br && br.changedAt && !br.changedAt.startsWith("0001-")) stats.lastChild.title = `Changed ${fmtTime(br.changedAt)}`;
    lastError.hidden = !st.lastError;
    lastError.replaceChildren(h("strong", {}, icon("error"), " Last error: "), st.lastError || "");
    specPre.textContent = JSON.stringify(hd.spec, null, 2);
  }

  const refresh = every(signal, HANDLER_MS, "handler", async (sig) => {
    try {
      hd = await get(`/v1/handlers/${enc(name)}`, sig);
    } catch (e) {
      if (e.status === 404) {
        missing.hidden = false;
        missing.replaceChildren(
          h("strong", {}, `No handler named ${name}. `),
          "It may have been deleted. ",
          h("a", { href: "/" }, "Back to the handlers."),
        );
        return;
      }
      throw e;
    }
    missing.hidden = true;
    drawHandler();
    main.dataset.loaded = "handler";
  });

  every(signal, HANDLER_MS, "partitions", async (sig) => {
    let pl;
    try {
      pl = await get(`/v1/handlers/${enc(name)}/partitions`, sig);
    } catch (e) {
      if (e.status !== 404) throw e;
      partNote.textContent = `Partitions are not available: ${e.message}`;
      return;
    }
    const ps = (pl.partitions || []).slice().sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
    const total = ps.reduce((a, p) => a + p.lag, 0);
    const owners = new Set(ps.map((p) => p.owner).filter(Boolean));
    partNote.textContent = `${ps.length} partition(s) across the fleet, ${owners.size} consumer(s), total lag ${fmtInt(total)}.`;
    if (!ps.length) {
      partBody.replaceChildren(emptyRow(8, "No partitions yet: the topic is created on first publish."));
      return;
    }
    keyedRows(
      partBody,
      ps,
      (p) => `${p.topic}/${p.partition}`,
      (p) =>
        h(
          "tr",
          { "data-testid": `partition-${p.topic}-${p.partition}` },
          h("td", { class: "wrap" }, p.topic),
          h("td", { class: "num" }, String(p.partition)),
          h("td", { class: "owner" }),
          h("td", { class: "num" }),
          h("td", { class: "num" }),
          h("td", { class: "num" }),
          h("td", { class: "num", "data-testid": `partition-lag-${p.topic}-${p.partition}` }),
          h("td", { class: "num" }),
        ),
      (tr, p) => {
        const td = tr.children;
        td[2].textContent = p.owner || "unassigned";
        td[2].classList.toggle("muted", !p.owner);
        setNum(td[3], p.committed, p.committed < 0 ? "none" : fmtInt(p.committed));
        setNum(td[4], p.logStart, fmtInt(p.logStart));
        setNum(td[5], p.logEnd, fmtInt(p.logEnd));
        setNum(td[6], p.lag, fmtInt(p.lag));
        td[6].classList.toggle("warn", p.lag > 0);
        setNum(td[7], p.pending, fmtInt(p.pending));
      },
    );
  });

  every(signal, SERIES_MS, "series", async (sig) => {
    let s;
    try {
      s = await get(`/v1/handlers/${enc(name)}/series`, sig);
    } catch (e) {
      if (e.status !== 404) throw e;
      chartsNote.textContent = `Charts are not available: ${e.message}`;
      return;
    }
    const pts = (s.points || []).map((p) => ({ ...p, t: new Date(p.t).getTime() }));
    const to = Date.now();
    const from = to - 15 * 60e3;
    const interval = (s.intervalSeconds || 5) * 1000;
    chartsNote.textContent = pts.length
      ? `This node's samples, one every ${s.intervalSeconds || 5} s. Hover a chart for values.`
      : "No samples yet.";
    for (const c of charts) c.update(pts, from, to, interval);
    chartsBox.dataset.points = String(pts.length);
  });
}

// ---------------------------------------------------------------- dead letters

function dlqPage(main, signal, name) {
  document.title = `Dead letters of ${name} · Sluice`;
  const params = new URLSearchParams(location.search);
  const state = { error: params.get("error") || "", state: params.get("state") || "", offset: +params.get("offset") || 0 };
  const selected = new Set();
  let page = null;

  const errInput = h("input", {
    type: "search",
    value: state.error,
    placeholder: "Error contains…",
    "aria-label": "Filter by error text",
    "data-testid": "dlq-filter-error",
  });
  const stateSel = h(
    "select",
    { "aria-label": "Filter by state", "data-testid": "dlq-filter-state" },
    [
      ["", "All states"],
      ["dead", "Dead"],
      ["replayed", "Replayed"],
      ["discarded", "Discarded"],
    ].map(([v, l]) => h("option", { value: v, selected: v === state.state }, l)),
  );
  const countText = h("span", { class: "muted", "data-testid": "dlq-count" }, "Loading…");
  const prevBtn = h("button", { class: "btn", type: "button", "data-testid": "dlq-prev" }, "← Newer");
  const nextBtn = h("button", { class: "btn", type: "button", "data-testid": "dlq-next" }, "Older →");
  const selAll = h("input", { type: "checkbox", "aria-label": "Select every dead entry on this page", "data-testid": "dlq-select-page" });
  const replaySel = h("button", { class: "btn", type: "button", "data-testid": "replay-selected" }, "Replay selected");
  const discardSel = h("button", { class: "btn", type: "button", "data-testid": "discard-selected" }, "Discard selected");
  const replayAll = h("button", { class: "btn", type: "button", "data-testid": "replay-all" }, "Replay all dead");
  const discardAll = h("button", { class: "btn danger-outline", type: "button", "data-testid": "discard-all" }, "Discard all dead");
  const tbody = h("tbody", {});

  main.append(
    crumbs(h("a", { href: handlerURL(name) }, name), h("span", {}, "Dead letters")),
    h("div", { class: "page-head" }, h("h1", {}, "Dead letters of ", name)),
    handlerTabs(name, "dlq"),
    h(
      "form",
      { class: "toolbar", role: "search", onsubmit: (e) => e.preventDefault() },
      errInput,
      stateSel,
      countText,
    ),
    h("div", { class: "toolbar bulk" }, replaySel, discardSel, h("span", { class: "spacer" }), replayAll, discardAll),
    table(
      "grid cards dlq",
      [
        h("th", { scope: "col", class: "check" }, selAll),
        h("th", { scope: "col" }, "Entry"),
        h("th", { scope: "col" }, "State"),
        h("th", { scope: "col", class: "num" }, "Attempts"),
        h("th", { scope: "col" }, "Source"),
        h("th", { scope: "col" }, "Last failure"),
        h("th", { scope: "col" }, "Error"),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
      ],
      tbody,
    ),
    h("div", { class: "toolbar pager" }, prevBtn, nextBtn),
  );

  function syncURL() {
    const q = new URLSearchParams();
    if (state.error) q.set("error", state.error);
    if (state.state) q.set("state", state.state);
    if (state.offset) q.set("offset", state.offset);
    const url = location.pathname + (q.size ? "?" + q : "");
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
  }

  let debounce;
  errInput.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      state.error = errInput.value.trim();
      state.offset = 0;
      syncURL();
      refresh();
    }, 300);
  });
  signal.addEventListener("abort", () => clearTimeout(debounce));
  stateSel.addEventListener("change", () => {
    state.state = stateSel.value;
    state.offset = 0;
    syncURL();
    refresh();
  });
  prevBtn.addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - DLQ_PAGE_SIZE);
    syncURL();
    refresh();
  });
  nextBtn.addEventListener("click", () => {
    if (page && page.next) state.offset = page.next;
    syncURL();
    refresh();
  });
  selAll.addEventListener("change", () => {
    for (const e of page ? page.entries : []) {
      if (e.state !== "dead") continue;
      if (selAll.checked) selected.add(e.id);
      else selected.delete(e.id);
    }
    drawRows();
  });

  const entryLabel = (ids) => (ids.length === 1 ? `entry ${ids[0]}` : `${ids.length} entries`);

  // act replays or discards entries after confirmation. sel is {ids} or
  // {all: true}.
  async function act(replay, sel) {
    let what;
    if (sel.all) {
      let total = "every";
      try {
        const p = await get(`/v1/handlers/${enc(name)}/dlq?state=dead&limit=1`);
        total = `all ${fmtInt(p.total)}`;
        if (!p.total) {
          notify(`${name} has no dead entries to ${replay ? "replay" : "discard"}.`, "ok");
          return;
        }
      } catch {
        // Ask anyway; the count is only informative.
      }
      what = `${total} dead entries of ${name} (every page, whatever the filter)`;
    } else {
      what = entryLabel(sel.ids);
    }
    const ok = await confirmAction(
      replay
        ? {
            title: `Replay ${sel.all ? "all dead entries" : entryLabel(sel.ids)}?`,
            body: [
              `This sends ${what} to ${name} again, through its replay topic, and marks them replayed. `,
              "Other handlers of the topic do not see them.",
            ],
            ok: "Replay",
          }
        : {
            title: `Discard ${sel.all ? "all dead entries" : entryLabel(sel.ids)}?`,
            body: [`This marks ${what} discarded. They will not be delivered. The records stay in the dead-letter topic until retention removes them.`],
            ok: "Discard",
            danger: true,
          },
    );
    if (!ok) return;
    try {
      const res = await post(`/v1/handlers/${enc(name)}/dlq/${replay ? "replay" : "purge"}`, sel);
      const n = replay ? res.replayed : res.discarded;
      notify(`${replay ? "Replayed" : "Discarded"} ${fmtInt(n)} ${n === 1 ? "entry" : "entries"} of ${name}.`);
      for (const id of sel.ids || []) selected.delete(id);
      if (sel.all) selected.clear();
    } catch (e) {
      notify(e.message, "bad");
    }
    document.getElementById("entry").close();
    refresh();
  }

  replaySel.addEventListener("click", () => act(true, { ids: [...selected] }));
  discardSel.addEventListener("click", () => act(false, { ids: [...selected] }));
  replayAll.addEventListener("click", () => act(true, { all: true }));
  discardAll.addEventListener("click", () => act(false, { all: true }));

  function drawToolbar() {
    const n = selected.size;
    replaySel.disabled = discardSel.disabled = n === 0;
    replaySel.textContent = n ? `Replay ${n} selected` : "Replay selected";
    discardSel.textContent = n ? `Discard ${n} selected` : "Discard selected";
    const dead = page ? page.entries.filter((e) => e.state === "dead") : [];
    selAll.disabled = dead.length === 0;
    selAll.checked = dead.length > 0 && dead.every((e) => selected.has(e.id));
    selAll.indeterminate = !selAll.checked && dead.some((e) => selected.has(e.id));
    prevBtn.disabled = state.offset === 0;
    nextBtn.disabled = !page || !page.next;
  }

  function drawRows() {
    drawToolbar();
    if (!page) return;
    if (!page.entries.length) {
      const filtered = state.error || state.state;
      tbody.replaceChildren(emptyRow(8, filtered ? "No entries match the filter." : `${name} has no dead letters. Good.`));
      return;
    }
    keyedRows(tbody, page.entries, (e) => e.id, makeRow, fillRow);
  }

  function makeRow(e) {
    const id = e.id;
    return h(
      "tr",
      { "data-testid": `dlq-row-${id}` },
      h(
        "td",
        { class: "check", "data-label": "Select" },
        h("input", {
          type: "checkbox",
          "aria-label": `Select entry ${id}`,
          "data-testid": `select-${id}`,
          onchange: (ev) => {
            if (ev.target.checked) selected.add(id);
            else selected.delete(id);
            drawToolbar();
          },
        }),
      ),
      h(
        "td",
        { "data-label": "Entry" },
        h("button", { class: "link mono", type: "button", "data-testid": `open-${id}`, onclick: () => showEntry(id) }, id),
      ),
      h("td", { "data-label": "State" }, badge(e.state, `dlq-state-${id}`)),
      h("td", { class: "num", "data-label": "Attempts", "data-testid": `attempts-${id}` }),
      h("td", { class: "mono wrap", "data-label": "Source" }),
      h("td", { "data-label": "Last failure" }),
      h("td", { class: "error-text", "data-label": "Error" }),
      h(
        "td",
        { class: "row-actions", "data-label": "Actions" },
        h("button", { class: "btn small", type: "button", "data-testid": `replay-${id}`, onclick: () => act(true, { ids: [id] }) }, "Replay"),
        h("button", { class: "btn small", type: "button", "data-testid": `discard-${id}`, onclick: () => act(false, { ids: [id] }) }, "Discard"),
      ),
    );
  }

  function fillRow(tr, e) {
    const id = e.id;
    const td = tr.children;
    const cb = td[0].firstChild;
    cb.disabled = e.state !== "dead";
    if (e.state !== "dead") selected.delete(id);
    cb.checked = selected.has(id);
    setBadge(td[2].firstChild, e.state);
    tr.dataset.state = e.state;
    setNum(td[3], e.attempts, fmtInt(e.attempts));
    td[4].textContent = `${e.sourceTopic}/${e.sourcePartition}@${e.sourceOffset}`;
    td[4].title = `Topic ${e.sourceTopic}, partition ${e.sourcePartition}, offset ${e.sourceOffset}`;
    td[5].replaceChildren(fmtTime(e.lastFailure), h("div", { class: "sub" }, fmtAgo(e.lastFailure)));
    td[6].textContent = (e.status ? `HTTP ${e.status}: ` : "") + e.error;
    td[6].title = e.error;
    for (const b of td[7].querySelectorAll("button")) b.disabled = e.state !== "dead";
  }

  async function showEntry(id) {
    const dlg = document.getElementById("entry");
    const body = document.getElementById("entry-body");
    document.getElementById("entry-title").textContent = `Entry ${id}`;
    body.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    const foot = document.getElementById("entry-actions");
    foot.replaceChildren(h("button", { class: "btn", value: "close", "data-testid": "entry-close" }, "Close"));
    if (!dlg.open) dlg.showModal();
    let e;
    try {
      e = await get(`/v1/handlers/${enc(name)}/dlq/${enc(id)}`);
    } catch (err) {
      body.replaceChildren(h("div", { class: "callout bad" }, err.message));
      return;
    }
    const row = (k, ...v) => [h("dt", {}, k), h("dd", {}, ...v)];
    let payload = e.value;
    let note = "text";
    if (payload == null && e.valueBase64) {
      payload = e.valueBase64;
      note = "binary, shown as base64";
    } else if (payload != null) {
      try {
        payload = JSON.stringify(JSON.parse(payload), null, 2);
        note = "JSON";
      } catch {
        // Not JSON: shown as it is.
      }
    }
    const headers = Object.entries(e.headers || {}).sort(([a], [b]) => a.localeCompare(b));
    body.replaceChildren(
      h(
        "dl",
        { class: "facts" },
        row("State", badge(e.state, "entry-state")),
        row("Attempts", fmtInt(e.attempts)),
        e.status ? row("HTTP status", String(e.status)) : null,
        row("Source", h("code", {}, `${e.sourceTopic} partition ${e.sourcePartition} offset ${e.sourceOffset}`)),
        row("Key", e.key != null ? h("code", {}, e.key) : e.keyBase64 ? h("code", {}, `${e.keyBase64} (base64)`) : "none"),
        row("First failure", fmtTime(e.firstFailure)),
        row("Last failure", fmtTime(e.lastFailure)),
        e.stateChangedAt ? row("State changed", fmtTime(e.stateChangedAt)) : null,
      ),
      h("h3", {}, "Error"),
      h("pre", { class: "code error-text", "data-testid": "entry-error" }, e.error),
      h("h3", {}, `Payload `, h("span", { class: "muted" }, `(${note})`)),
      h("pre", { class: "code", "data-testid": "entry-payload" }, payload === "" ? "(empty)" : payload),
      h("h3", {}, "Headers"),
      headers.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "grid kv", "data-testid": "entry-headers" },
              h("tbody", {}, headers.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "mono wrap" }, v)))),
            ),
          )
        : h("p", { class: "muted", "data-testid": "entry-headers" }, "No headers."),
    );
    const dead = e.state === "dead";
    foot.replaceChildren(
      h("button", { class: "btn", type: "button", disabled: !dead, "data-testid": "entry-replay", onclick: () => act(true, { ids: [id] }) }, "Replay"),
      h("button", { class: "btn", type: "button", disabled: !dead, "data-testid": "entry-discard", onclick: () => act(false, { ids: [id] }) }, "Discard"),
      h("span", { class: "spacer" }),
      h("button", { class: "btn", value: "close", "data-testid": "entry-close" }, "Close"),
    );
  }

  const refresh = every(signal, DLQ_MS, "dlq", async (sig) => {
    const q = new URLSearchParams({ limit: DLQ_PAGE_SIZE, offset: state.offset });
    if (state.error) q.set("error", state.error);
    if (state.state) q.set("state", state.state);
    page = await get(`/v1/handlers/${enc(name)}/dlq?${q}`, sig);
    page.entries = page.entries || [];
    const from = page.entries.length ? state.offset + 1 : 0;
    countText.textContent = `${fmtInt(from)}–${fmtInt(state.offset + page.entries.length)} of ${fmtInt(page.total)}`;
    drawRows();
    main.dataset.loaded = "dlq";
  });
}

// ---------------------------------------------------------------- topics

function topicsPage(main, signal) {
  document.title = "Topics · Sluice";
  const tbody = h("tbody", {});
  const showInternal = h("input", { type: "checkbox", "data-testid": "show-internal" });
  const datalist = h("datalist", { id: "topic-names" });
  const result = h("div", { class: "result", "data-testid": "publish-result", role: "status" });
  const topicIn = h("input", { name: "topic", required: true, autocomplete: "off", "data-testid": "publish-topic", placeholder: "orders" });
  topicIn.setAttribute("list", "topic-names");
  const keyIn = h("input", { name: "key", autocomplete: "off", "data-testid": "publish-key", placeholder: "optional" });
  const partIn = h("input", { name: "partition", type: "number", min: 0, step: 1, "data-testid": "publish-partition", placeholder: "by key" });
  const valueIn = h("textarea", { name: "value", rows: 5, "data-testid": "publish-value", placeholder: '{"id": 1}' });
  const headersIn = h("textarea", { name: "headers", rows: 3, "data-testid": "publish-headers", placeholder: "trace=abc123\nce_type=com.example.order" });
  const sendBtn = h("button", { class: "btn primary", type: "submit", "data-testid": "publish-submit" }, "Publish");
  let last = null;

  const field = (label, input, hint) => h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", { class: "muted" }, hint) : null);
  const form = h(
    "form",
    { class: "publish", "data-testid": "publish-form", novalidate: true },
    h("div", { class: "row" }, field("Topic", topicIn), field("Key", keyIn), field("Partition", partIn, "Empty: chosen by key")),
    field("Value", valueIn, "Sent as the UTF-8 text you type."),
    field("Headers", headersIn, "One name=value per line."),
    h("div", { class: "actions" }, sendBtn),
    result,
  );

  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Topics"), h("label", { class: "check-label" }, showInternal, " Show internal topics")),
    table(
      "grid topics",
      ["Topic", "Partitions", "Messages", "End offsets"].map((x, i) => h("th", { scope: "col", class: i === 1 || i === 2 ? "num" : "" }, x)),
      tbody,
    ),
    h("section", {}, h("h2", {}, "Publish a test message"), form),
    datalist,
  );

  function parseHeaders(text) {
    const out = {};
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (!line) continue;
      const eq = line.indexOf("=");
      if (eq <= 0) throw new Error(`Headers line ${i + 1}: write name=value, got “${line}”.`);
      out[line.slice(0, eq).trim()] = line.slice(eq + 1);
    }
    return out;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const topic = topicIn.value.trim();
    const fail = (msg) => {
      result.className = "result callout bad";
      result.replaceChildren(icon("error"), " ", msg);
    };
    if (!topic) return fail("Name the topic to publish to.");
    const msg = { value: valueIn.value };
    if (keyIn.value !== "") msg.key = keyIn.value;
    if (partIn.value !== "") {
      const p = Number(partIn.value);
      if (!Number.isInteger(p) || p < 0) return fail("The partition is a whole number from 0.");
      msg.partition = p;
    }
    try {
      const hs = parseHeaders(headersIn.value);
      if (Object.keys(hs).length) msg.headers = hs;
    } catch (e) {
      return fail(e.message);
    }
    sendBtn.disabled = true;
    result.className = "result muted";
    result.textContent = "Publishing…";
    try {
      const res = await post(`/v1/topics/${enc(topic)}/messages`, { messages: [msg] });
      const r = res.results[0];
      result.className = "result callout ok";
      result.replaceChildren(
        icon("running"),
        " Published to ",
        h("code", {}, topic),
        " partition ",
        h("b", { "data-testid": "publish-partition-result" }, String(r.partition)),
        " at offset ",
        h("b", { "data-testid": "publish-offset-result" }, String(r.offset)),
        ".",
      );
      refresh();
    } catch (e) {
      fail(e.message);
    } finally {
      sendBtn.disabled = false;
    }
  });

  function draw() {
    if (!last) return;
    const ts = last.filter((t) => showInternal.checked || !t.internal);
    datalist.replaceChildren(...last.filter((t) => !t.internal).map((t) => h("option", { value: t.name })));
    if (!ts.length) {
      tbody.replaceChildren(emptyRow(4, "No topics yet. Publishing to a topic creates it."));
      return;
    }
    keyedRows(
      tbody,
      ts,
      (t) => t.name,
      (t) =>
        h(
          "tr",
          { "data-testid": `topic-row-${t.name}` },
          h("td", { class: "wrap" }, h("span", { class: "mono" }, t.name), t.internal ? h("span", { class: "tag" }, "internal") : null),
          h("td", { class: "num" }),
          h("td", { class: "num", "data-testid": `topic-messages-${t.name}` }),
          h("td", { class: "offsets mono" }),
        ),
      (tr, t) => {
        const td = tr.children;
        setNum(td[1], t.partitions, fmtInt(t.partitions));
        setNum(td[2], t.messages, fmtInt(t.messages));
        const offs = t.endOffsets || [];
        const shown = offs.slice(0, 16).map((o, i) => `${i}:${o}`).join("  ");
        td[3].textContent = offs.length > 16 ? `${shown}  … (${offs.length - 16} more)` : shown || "–";
        td[3].title = offs.map((o, i) => `partition ${i}: ${o}`).join("\n");
      },
    );
  }
  showInternal.addEventListener("change", draw);

  const refresh = every(signal, TOPICS_MS, "topics", async (sig) => {
    const tl = await get("/v1/topics", sig);
    last = tl.topics || [];
    draw();
    main.dataset.loaded = "topics";
  });
}

// ---------------------------------------------------------------- start

drawStatus();
render();
