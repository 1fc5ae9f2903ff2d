// DOM helpers shared by the pages: building elements, state badges,
// tables that update in place, links, the confirmation dialog and the
// toast.

import { enc } from "/api.js";

// h builds an element: attrs may hold class, data-* and aria-* attributes,
// properties (value, checked, disabled...) and on* listeners; children are
// nodes, strings (as text, never HTML) or arrays of them.
export function h(tag, attrs, ...children) {
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

export function append(el, children) {
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
  rejoining: "M6 1.5 A4.5 4.5 0 1 1 1.5 6 M1.5 3 V6 H4.5",
  stalled: "M6 1.5 L11 10.5 H1 Z M6 5 V7.5",
  unavailable: "M2.8 2.8 L9.2 9.2 M6 1.5 A4.5 4.5 0 1 1 5.99 1.5",
  stopped: "M2.5 2.5 H9.5 V9.5 H2.5 Z",
  dead: "M3 3 L9 9 M9 3 L3 9",
  replayed: "M9.5 4.5 A4 4 0 1 0 10 7 M9.5 1.5 V4.5 H6.5",
  discarded: "M2 3.5 H10 M4 3.5 V10 H8 V3.5 M5 2 H7",
  ok: "M2.5 6.5 L5 9 L9.5 3",
  unknown: "M6 1.5 A4.5 4.5 0 1 1 5.99 1.5",
};

export function icon(name) {
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
  rejoining: "rejoining",
  stalled: "stalled",
  error: "error",
  unavailable: "unavailable",
  stopped: "stopped",
  dead: "dead",
  replayed: "replayed",
  discarded: "discarded",
};

// Waiting states show how long they have lasted.
const TIMED = new Set(["starting", "rejoining", "stalled"]);

function stateLabel(s, since) {
  const word = STATE_LABELS[s] || s;
  if (!since || !TIMED.has(s)) return word;
  const t = Date.parse(since);
  if (!Number.isFinite(t) || t <= 0) return word;
  const secs = Math.max(0, Math.round((Date.now() - t) / 1000));
  const d = secs < 120 ? `${secs}s` : secs < 7200 ? `${Math.round(secs / 60)}m` : `${Math.round(secs / 3600)}h`;
  return `${word} · ${d}`;
}

// badge shows a state as shape + word + colour; since (an RFC 3339 time)
// adds how long a waiting state has lasted.
export function badge(state, testid, since) {
  const s = state || "unknown";
  const label = stateLabel(s, since);
  return h(
    "span",
    { class: `badge st-${s}`, "data-testid": testid, "data-state": s, "data-label": label, title: since && TIMED.has(s) ? `since ${since}` : "" },
    icon(s),
    label,
  );
}

export function setBadge(el, state, since) {
  if (el.dataset.state === state && el.dataset.label === stateLabel(state || "unknown", since)) return;
  const fresh = badge(state, el.dataset.testid, since);
  el.replaceWith(fresh);
}

// confirm asks in an in-page <dialog> and resolves true when confirmed.
export function confirmAction({ title, body, ok, danger = false }) {
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

// keyedRows keeps a <tbody> in step with data without rebuilding rows that
// already exist, so focus, selection and hover survive a refresh. make(d)
// builds a row; fill(row, d) updates it.
export function keyedRows(tbody, items, key, make, fill) {
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
export function cell(label, testid, cls) {
  return h("td", { "data-label": label, "data-testid": testid, class: cls });
}

export function setNum(td, value, text) {
  const v = String(value ?? "");
  if (td.dataset.value === v && td.textContent === text) return;
  td.dataset.value = v;
  td.textContent = text;
}

export function table(cls, headers, tbody) {
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

export function emptyRow(cols, ...text) {
  return h("tr", { class: "empty" }, h("td", { colSpan: cols }, ...text));
}

// Links.

export function handlerURL(name) {
  return `/handlers/${enc(name)}`;
}

export function handlerTabs(name, active) {
  const tab = (href, label, key, testid) =>
    h("a", { href, class: "tab", "aria-current": active === key ? "page" : null, "data-testid": testid }, label);
  return h(
    "nav",
    { class: "tabs", "aria-label": "Handler" },
    tab(handlerURL(name), "Metrics & partitions", "metrics", "tab-metrics"),
    tab(`${handlerURL(name)}/dlq`, "Dead letters", "dlq", "tab-dlq"),
  );
}

export function crumbs(...parts) {
  return h(
    "nav",
    { class: "crumbs", "aria-label": "Breadcrumb" },
    h("a", { href: "/" }, "Handlers"),
    parts.map((p) => [h("span", { "aria-hidden": "true" }, " / "), p]),
  );
}

let toastTimer;

// notify shows the outcome of an action the user took.
export function notify(message, kind = "ok") {
  const t = document.getElementById("toast");
  clearTimeout(toastTimer);
  t.className = `toast ${kind}`;
  t.replaceChildren(
    icon(kind === "ok" ? "ok" : "error"),
    h("span", {}, message),
    h("button", { class: "link", type: "button", "aria-label": "Dismiss", onclick: () => (t.hidden = true) }, "×"),
  );
  t.hidden = false;
  if (kind === "ok") toastTimer = setTimeout(() => (t.hidden = true), 6000);
}

