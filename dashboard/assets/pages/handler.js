// A handler's page: state, pause and resume, charts of the last 15
// minutes, the fleet's partitions and the spec.

import { LineChart } from "/chart.js";
import { enc, get, post } from "/api.js";
import { fmtInt, fmtMs, fmtRate, fmtTime } from "/format.js";
import { every } from "/live.js";
import { badge, crumbs, emptyRow, h, handlerTabs, handlerURL, icon, keyedRows, notify, setBadge, setNum, table } from "/ui.js";

const POLL_MS = 2000;
const SERIES_MS = 5000;

// fmtConcurrency shows the spec's limit: a number, or {min, max} when it
// adapts.
function fmtConcurrency(c) {
  if (c == null) return "default";
  if (typeof c === "object") return `${c.min}–${c.max}, adaptive`;
  return String(c);
}

// effectiveState is the handler's state as the overview names it.
function effectiveState(hd) {
  if (hd.paused) return "paused";
  const st = hd.status;
  if (!st) return "starting";
  if (st.breaker && st.breaker.state === "open") return "breaker-open";
  return st.state;
}

export function handlerPage(main, signal, name) {
  document.title = `${name} · Sluice`;
  const stateSlot = h("span", {}, badge("starting", "handler-state"));
  const pauseBtn = h("button", { class: "btn", type: "button", "data-testid": "pause-button", "data-need": "admin" }, icon("paused"), "Pause");
  const resumeBtn = h("button", { class: "btn", type: "button", "data-testid": "resume-button", "data-need": "admin" }, icon("running"), "Resume");
  const facts = h("dl", { class: "facts", "data-testid": "handler-facts" });
  const stats = h("div", { class: "summary", "data-testid": "handler-stats" });
  const lastError = h("div", { class: "callout bad", hidden: true, "data-testid": "handler-last-error" });
  const chartsBox = h("div", { class: "charts", "data-testid": "charts" });
  const chartsNote = h("p", { class: "muted note", "data-testid": "charts-note" });
  const partBody = h("tbody", {});
  const partNote = h("p", { class: "muted note" });
  const specPre = h("pre", { class: "code", "data-testid": "handler-spec" }, "Loading…");
  const chainBox = h("div", { class: "chain", "data-testid": "handler-chain" });
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
    h("section", {}, h("h2", {}, "Chain"), chainBox),
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
    setBadge(stateSlot.firstChild, effectiveState(hd), (hd.status || {}).stateSince);
    drawButtons();
    const fact = (k, ...v) => [h("dt", {}, k), h("dd", {}, ...v)];
    facts.replaceChildren(
      ...fact("Topic", h("code", {}, sp.topic)),
      ...fact("Invoker", sp.http ? h("code", { class: "wrap" }, sp.http.url) : "Go function"),
      ...fact("Ordering", sp.ordering || "key"),
      ...fact("Concurrency", fmtConcurrency(sp.concurrency)),
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
      stat("Filtered", fmtInt(st.filtered), "stat-filtered"),
      stat("Emitted", fmtInt(st.emitted), "stat-emitted"),
      stat("In flight", `${fmtInt(st.inFlight)} / ${fmtInt(st.concurrencyLimit)}`, "stat-inflight"),
      ...(st.source && st.source !== "kafka"
        ? [
            stat(`Waiting in ${st.source}`, st.lag < 0 ? "–" : fmtInt(st.lag), "stat-lag"),
            stat("Unacknowledged", (st.unacked ?? 0) < 0 ? "–" : fmtInt(st.unacked ?? 0), "stat-unacked"),
          ]
        : [stat("Lag (this node)", fmtInt(st.lag), "stat-lag")]),
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

  const refresh = every(signal, POLL_MS, "handler", async (sig) => {
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

  // The chain: the handlers whose onSuccess feeds this handler's topic, the
  // topic, this handler, its onSuccess (and onFailure) topic and the
  // handlers that consume it, from the registry.
  every(signal, POLL_MS, "chain", async (sig) => {
    const all = (await get("/v1/handlers", sig)).handlers || [];
    const me = all.find((x) => x.name === name);
    if (!me) return;
    const sp = me.spec;
    const node = (x) => h("a", { class: "chain-node handler", href: handlerURL(x.name), "data-testid": `chain-handler-${x.name}` }, x.name);
    const topic = (t, testid) => h("code", { class: "chain-node topic", "data-testid": testid }, t);
    const group = (xs, none) => (xs.length ? h("span", { class: "chain-group" }, ...xs) : h("span", { class: "muted" }, none));
    const arrow = () => h("span", { class: "chain-arrow", "aria-hidden": "true" }, "→");
    const feeders = all.filter((x) => x.name !== name && x.spec.onSuccess && x.spec.onSuccess.topic === sp.topic);
    const row = [group(feeders.map(node), "producers"), arrow(), topic(sp.topic, "chain-in"), arrow(),
      h("strong", { class: "chain-node handler self" }, name)];
    for (const [label, out] of [["onSuccess", sp.onSuccess], ["onFailure", sp.onFailure]]) {
      if (!out) continue;
      const fed = all.filter((x) => x.spec.topic === out.topic);
      row.push(h("span", { class: "chain-branch", "data-testid": `chain-${label}` },
        arrow(), h("span", { class: "muted" }, label, " "), topic(out.topic, `chain-${label}-topic`), arrow(), group(fed.map(node), "no handler yet")));
    }
    if (!sp.onSuccess && !sp.onFailure) row.push(h("span", { class: "muted" }, " (no onSuccess: it emits nothing)"));
    chainBox.replaceChildren(...row);
  });

  every(signal, POLL_MS, "partitions", async (sig) => {
    let pl;
    try {
      pl = await get(`/v1/handlers/${enc(name)}/partitions`, sig);
    } catch (e) {
      if (e.status !== 404) throw e;
      partNote.textContent = `Partitions are not available: ${e.message}`;
      return;
    }
    // In the server's order: the handler's topic first, then its replay
    // and retry topics.
    const ps = pl.partitions || [];
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
          h("td", { class: "mono" }, p.topic),
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
