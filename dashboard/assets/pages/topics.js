// The topics, and a form to publish a test message.

import { enc, get, post } from "/api.js";
import { fmtInt } from "/format.js";
import { every } from "/live.js";
import { emptyRow, h, icon, keyedRows, setNum, table } from "/ui.js";

const POLL_MS = 3000;

export function topicsPage(main, signal) {
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
    { class: "publish", "data-testid": "publish-form", "data-need": "publisher", novalidate: true },
    h("div", { class: "row" }, field("Topic", topicIn), field("Key", keyIn), field("Partition", partIn, "Empty: chosen by key")),
    field("Value", valueIn, "Sent as the UTF-8 text you type."),
    field("Headers", headersIn, "One name=value per line."),
    h("div", { class: "actions" }, sendBtn),
    result,
  );

  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Topics"), h("label", { class: "check-label" }, showInternal, " Show internal topics")),
    table(
      "grid cards topics",
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
        icon("ok"),
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
          h("td", { class: "topic-name", "data-label": "Topic" }, h("span", { class: "mono" }, t.name), t.internal ? h("span", { class: "tag" }, "internal") : null),
          h("td", { class: "num", "data-label": "Partitions" }),
          h("td", { class: "num", "data-label": "Messages", "data-testid": `topic-messages-${t.name}` }),
          h("td", { class: "offsets mono", "data-label": "End offsets by partition" }),
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

  const refresh = every(signal, POLL_MS, "topics", async (sig) => {
    const tl = await get("/v1/topics", sig);
    last = tl.topics || [];
    draw();
    main.dataset.loaded = "topics";
  });
}
