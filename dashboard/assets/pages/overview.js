// The overview: every handler at a glance, refreshed every 1.5 s.

import { get } from "/api.js";
import { fmtAge, fmtInt, fmtMs, fmtRate } from "/format.js";
import { every, showNode } from "/live.js";
import { badge, cell, emptyRow, h, handlerURL, keyedRows, setBadge, setNum, table } from "/ui.js";

const POLL_MS = 1500;

export function overviewPage(main, signal) {
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
    const queue = x.source && x.source !== "kafka";
    tr.querySelector(".topic").textContent = queue ? `${x.source}:${x.topic}` : x.topic;
    tr.querySelector(".invoker").textContent = x.invoker === "go" ? "Go function" : x.invoker;
    tr.querySelector(".invoker").title = x.invoker;
    setBadge(q("state"), x.state, x.stateSince);
    tr.dataset.state = x.state;
    setNum(q("rate-in"), x.rateIn, fmtRate(x.rateIn));
    setNum(q("rate-out"), x.rateOut, fmtRate(x.rateOut));
    setNum(q("p50"), x.p50Ms, fmtMs(x.p50Ms));
    setNum(q("p99"), x.p99Ms, fmtMs(x.p99Ms));
    setNum(q("error-rate"), x.errorRate, fmtRate(x.errorRate));
    q("error-rate").classList.toggle("bad", x.errorRate > 0);
    setNum(q("lag"), x.lag, x.lag < 0 ? "–" : fmtInt(x.lag));
    const unacked = x.unacked ?? 0;
    q("lag").title = !queue
      ? ""
      : x.lag < 0
        ? `${x.source} does not answer`
        : unacked >= 0
          ? `${fmtInt(x.lag)} waiting in ${x.source}, ${fmtInt(unacked)} delivered and not yet acknowledged`
          : `${fmtInt(x.lag)} waiting in ${x.source}`;
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
    // Starting and rejoining are a group forming, which is normal for a few
    // seconds; stalled, error, breaker-open and unavailable need someone.
    const problems = o.handlers.length - count("running") - count("paused") - count("starting") - count("rejoining");
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

  every(signal, POLL_MS, "overview", async (sig) => {
    const o = await get("/v1/overview", sig);
    o.handlers = (o.handlers || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    last = o;
    showNode(o.node);
    drawSummary(o);
    draw();
    main.dataset.loaded = "overview";
  });
}
