// Polling, and what the header shows about it: whether data is live, the
// node's identity, and a banner while a source fails.

import { append, h, icon } from "/ui.js";

// failing holds the last error of each polling source that is failing.
const failing = new Map();
let lastOK = 0;

export function reportPoll(source, err) {
  if (err) failing.set(source, err.message);
  else {
    failing.delete(source);
    lastOK = Date.now();
  }
  drawStatus();
}

export function drawStatus() {
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
  // What the page shows is stale while a source fails: it is dimmed.
  document.body.classList.toggle("stale", failing.size > 0);
  const live = document.getElementById("live");
  const ok = failing.size === 0 && lastOK > 0;
  live.className = "live " + (ok ? "is-live" : "is-down");
  live.dataset.state = ok ? "live" : lastOK ? "down" : "connecting";
  const when = lastOK ? new Date(lastOK).toLocaleTimeString() : "";
  live.replaceChildren(
    icon(ok ? "running" : "error"),
    ok ? "Live" : lastOK ? "Not updating" : "Connecting…",
    h("span", { class: "time" }, lastOK ? (ok ? ` · ${when}` : ` · last update ${when}`) : ""),
  );
}

// every runs fn now and then ms after each run ends, until signal aborts.
// The returned function runs it again at once (after any run in progress).
export function every(signal, ms, source, fn) {
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

let nodeShown = false;

export function showNode(node) {
  if (!node || nodeShown) return;
  nodeShown = true;
  const el = document.getElementById("node");
  el.replaceChildren();
  append(el, [
    h("span", { title: "Node id" }, node.id || "node"),
    node.version ? h("span", { class: "muted", title: "Version" }, node.version) : null,
    h(
      "span",
      { class: "muted", title: (node.brokers || []).join(", ") },
      node.embedded ? "embedded broker" : `${(node.brokers || []).length} broker(s)`,
    ),
  ]);
}
