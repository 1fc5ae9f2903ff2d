// A handler's dead-letter queue: filter and page through the entries,
// inspect one, replay or discard one, the selected or all.

import { enc, get, post } from "/api.js";
import { fmtAgo, fmtInt, fmtTime } from "/format.js";
import { every } from "/live.js";
import { badge, confirmAction, crumbs, emptyRow, h, handlerURL, handlerTabs, keyedRows, notify, setBadge, setNum, table } from "/ui.js";

const POLL_MS = 3000;
const PAGE_SIZE = 25;

export function dlqPage(main, signal, name) {
  document.title = `Dead letters of ${name} · Sluice`;
  const params = new URLSearchParams(location.search);
  const state = { error: params.get("error") || "", state: params.get("state") || "", offset: +params.get("offset") || 0, topic: params.get("topic") || "" };
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
  // The handler's other dead-letter topics (one it left, or all of a
  // deleted handler's): shown only when there are some.
  const topicSel = h("select", { "aria-label": "Dead-letter topic", "data-testid": "dlq-topic", hidden: true });
  // topicQuery is the ?topic= of every dead-letter call ("" for the
  // handler's current topic).
  const topicQuery = (sep = "?") => (state.topic ? `${sep}topic=${enc(state.topic)}` : "");
  const countText = h("span", { class: "muted", "data-testid": "dlq-count" }, "Loading…");
  const prevBtn = h("button", { class: "btn", type: "button", "data-testid": "dlq-prev" }, "← Newer");
  const nextBtn = h("button", { class: "btn", type: "button", "data-testid": "dlq-next" }, "Older →");
  const selAll = h("input", { type: "checkbox", "aria-label": "Select every dead entry on this page", "data-testid": "dlq-select-page" });
  const replaySel = h("button", { class: "btn", type: "button", "data-testid": "replay-selected", "data-need": "admin" }, "Replay selected");
  const discardSel = h("button", { class: "btn", type: "button", "data-testid": "discard-selected", "data-need": "admin" }, "Discard selected");
  const replayAll = h("button", { class: "btn", type: "button", "data-testid": "replay-all", "data-need": "admin" }, "Replay all dead");
  const discardAll = h("button", { class: "btn danger-outline", type: "button", "data-testid": "discard-all", "data-need": "admin" }, "Discard all dead");
  const tbody = h("tbody", {});

  main.append(
    crumbs(h("a", { href: handlerURL(name) }, name), h("span", {}, "Dead letters")),
    h("div", { class: "page-head" }, h("h1", {}, "Dead letters of ", name)),
    handlerTabs(name, "dlq"),
    h(
      "form",
      { class: "toolbar", role: "search", onsubmit: (e) => e.preventDefault() },
      topicSel,
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
    if (state.topic) q.set("topic", state.topic);
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
  topicSel.addEventListener("change", () => {
    state.topic = topicSel.value;
    state.offset = 0;
    selected.clear();
    syncURL();
    refresh();
  });
  // The topics are read once, before the first listing; a deleted handler
  // has no current one, so its page opens on the topic it left last.
  const topicsRead = get(`/v1/handlers/${enc(name)}/dlq/topics`, signal)
    .then((ts) => {
      const retired = (ts.retired || []).filter((r) => r.topic !== ts.current);
      if (!retired.length && !state.topic) return;
      const opts = [];
      if (ts.current) opts.push(h("option", { value: "" }, `${ts.current} (current)`));
      for (const r of retired) opts.push(h("option", { value: r.topic }, `${r.topic} (left ${fmtTime(r.retiredAt)})`));
      if (state.topic && state.topic !== ts.current && !retired.some((r) => r.topic === state.topic)) opts.push(h("option", { value: state.topic }, state.topic));
      if (!ts.current && !state.topic && retired.length) {
        state.topic = retired.reduce((a, b) => (a.retiredAt > b.retiredAt ? a : b)).topic;
        syncURL();
      }
      topicSel.replaceChildren(...opts);
      topicSel.value = state.topic === ts.current ? "" : state.topic;
      topicSel.hidden = false;
    })
    .catch(() => {
      // Without the list, the current topic is shown as before.
    });
  stateSel.addEventListener("change", () => {
    state.state = stateSel.value;
    state.offset = 0;
    syncURL();
    refresh();
  });
  prevBtn.addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
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
        const p = await get(`/v1/handlers/${enc(name)}/dlq?state=dead&limit=1${topicQuery("&")}`);
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
    const one = !sel.all && sel.ids.length === 1;
    const [it, It] = one ? ["it", "It"] : ["them", "They"];
    const ok = await confirmAction(
      replay
        ? {
            title: `Replay ${sel.all ? "all dead entries" : entryLabel(sel.ids)}?`,
            body: `This sends ${what} to ${name} again, through its replay topic, and marks ${it} replayed. Other handlers of the topic do not see ${it}.`,
            ok: "Replay",
          }
        : {
            title: `Discard ${sel.all ? "all dead entries" : entryLabel(sel.ids)}?`,
            body: `This marks ${what} discarded: ${it === "it" ? "it is" : "they are"} not delivered again. ${It} stay${one ? "s" : ""} in the dead-letter topic until its retention removes ${it}.`,
            ok: "Discard",
            danger: true,
          },
    );
    if (!ok) return;
    try {
      let res = await post(`/v1/handlers/${enc(name)}/dlq/${replay ? "replay" : "purge"}${topicQuery()}`, sel);
      document.getElementById("entry").close();
      let n = replay ? res.replayed : res.discarded;
      if (res && res.id && res.state) {
        // All (or many) run as a job in the node: follow it. It goes on
        // if this page is left.
        for (;;) {
          if (res.state !== "running") break;
          notify(`${replay ? "Replaying" : "Discarding"}: ${fmtInt(res.done)} of ${res.total ? fmtInt(res.total) : "…"} entries of ${name}…`);
          await new Promise((r) => setTimeout(r, 1000));
          if (signal.aborted) return;
          res = await get(`/v1/handlers/${enc(name)}/dlq/jobs/${enc(res.id)}`);
          refresh();
        }
        if (res.state === "failed") throw new Error(`The ${res.kind} job failed after ${fmtInt(res.done)} of ${fmtInt(res.total)} entries: ${res.error}`);
        n = res.done;
      }
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
        h("button", { class: "btn small", type: "button", "data-testid": `replay-${id}`, "data-need": "admin", onclick: () => act(true, { ids: [id] }) }, "Replay"),
        h("button", { class: "btn small", type: "button", "data-testid": `discard-${id}`, "data-need": "admin", onclick: () => act(false, { ids: [id] }) }, "Discard"),
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
    // The error usually names the status already ("HTTP 400 Bad Request: ...").
    td[6].textContent = e.status && !e.error.includes(String(e.status)) ? `HTTP ${e.status}: ${e.error}` : e.error;
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
      e = await get(`/v1/handlers/${enc(name)}/dlq/${enc(id)}${topicQuery()}`);
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
        e.duplicateOf ? row("Duplicate of", h("code", {}, e.duplicateOf), " (a further record of that entry's message; it shares its state)") : null,
        e.duplicates && e.duplicates.length ? row("Duplicate records", h("code", {}, e.duplicates.join(" "))) : null,
        e.replayOf ? row("Replay of", h("code", {}, e.replayOf)) : null,
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
      h("button", { class: "btn", type: "button", disabled: !dead, "data-testid": "entry-replay", "data-need": "admin", onclick: () => act(true, { ids: [id] }) }, "Replay"),
      h("button", { class: "btn", type: "button", disabled: !dead, "data-testid": "entry-discard", "data-need": "admin", onclick: () => act(false, { ids: [id] }) }, "Discard"),
      h("span", { class: "spacer" }),
      h("button", { class: "btn", value: "close", "data-testid": "entry-close" }, "Close"),
    );
  }

  const refresh = every(signal, POLL_MS, "dlq", async (sig) => {
    await topicsRead;
    const q = new URLSearchParams({ limit: PAGE_SIZE, offset: state.offset });
    if (state.error) q.set("error", state.error);
    if (state.state) q.set("state", state.state);
    if (state.topic) q.set("topic", state.topic);
    page = await get(`/v1/handlers/${enc(name)}/dlq?${q}`, sig);
    page.entries = page.entries || [];
    const from = page.entries.length ? state.offset + 1 : 0;
    countText.textContent = `${fmtInt(from)}–${fmtInt(state.offset + page.entries.length)} of ${fmtInt(page.total)}`;
    drawRows();
    main.dataset.loaded = "dlq";
  });
}
