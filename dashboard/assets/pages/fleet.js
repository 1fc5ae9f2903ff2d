// The fleet: the live nodes with the partitions each owns, each handler's
// group with the nodes it needs and why, and desired against actual over
// the last 15 minutes (GET /v1/fleet).

import { get } from "/api.js";
import { LineChart } from "/chart.js";
import { fmtInt } from "/format.js";
import { every } from "/live.js";
import { emptyRow, h, handlerURL, keyedRows, setNum, table } from "/ui.js";

const POLL_MS = 3000;

export function fleetPage(main, signal) {
  document.title = "Fleet · Sluice";
  const nodesBody = h("tbody", {});
  const groupsBody = h("tbody", {});
  const nodesNum = h("strong", { "data-testid": "fleet-nodes" }, "–");
  const desiredNum = h("strong", { "data-testid": "fleet-desired" }, "–");
  const chartsBox = h("div", { class: "charts", "data-testid": "fleet-charts" });
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Fleet")),
    h("p", { class: "muted" }, nodesNum, " nodes live; the handlers need ", desiredNum,
      ". The autoscaler reads the same number from KEDA's external scaler (--scaler-addr) or sluice_fleet_desired_nodes."),
    chartsBox,
    h("section", {}, h("h2", {}, "Handlers"),
      table("grid cards fleet-groups",
        ["Handler", "Group state", "Nodes", "Desired", "Why"].map((x, i) => h("th", { scope: "col", class: i === 2 || i === 3 ? "num" : "" }, x)),
        groupsBody)),
    h("section", {}, h("h2", {}, "Nodes"),
      table("grid cards fleet-nodes",
        ["Node", "Version", "Host", "Partitions"].map((x, i) => h("th", { scope: "col", class: i === 3 ? "num" : "" }, x)),
        nodesBody)),
  );
  const chart = new LineChart(chartsBox, {
    title: "Nodes: desired and live",
    testid: "chart-fleet",
    series: [
      { key: "desired", label: "desired" },
      { key: "nodes", label: "live" },
    ],
    format: fmtInt,
  });

  every(signal, POLL_MS, "fleet", async (sig) => {
    const f = await get("/v1/fleet", sig);
    const nodes = f.nodes || [];
    const groups = f.groups || [];
    setNum(nodesNum, nodes.length, fmtInt(nodes.length));
    setNum(desiredNum, f.desiredNodes, fmtInt(f.desiredNodes));

    if (!groups.length) groupsBody.replaceChildren(emptyRow(5, "No handlers registered."));
    else
      keyedRows(
        groupsBody,
        groups,
        (g) => g.handler,
        (g) =>
          h("tr", { "data-testid": `fleet-group-${g.handler}` },
            h("td", { "data-label": "Handler" }, h("a", { href: handlerURL(g.handler) }, g.handler)),
            h("td", { "data-label": "Group state", "data-testid": `fleet-state-${g.handler}` }),
            h("td", { class: "num", "data-label": "Nodes", "data-testid": `fleet-members-${g.handler}` }),
            h("td", { class: "num", "data-label": "Desired", "data-testid": `fleet-desired-${g.handler}` }),
            h("td", { "data-label": "Why", "data-testid": `fleet-reason-${g.handler}` })),
        (tr, g) => {
          const [, state, members, desired, reason] = tr.children;
          state.textContent = g.error ? `unknown: ${g.error}` : g.state;
          setNum(members, g.members, fmtInt(g.members));
          setNum(desired, g.desiredNodes, fmtInt(g.desiredNodes));
          reason.textContent = g.desiredReason || "";
        },
      );

    if (!nodes.length) nodesBody.replaceChildren(emptyRow(4, "No live nodes."));
    else
      keyedRows(
        nodesBody,
        nodes,
        (n) => n.id,
        (n) =>
          h("tr", { "data-testid": `fleet-node-${n.id}` },
            h("td", { "data-label": "Node" }),
            h("td", { "data-label": "Version" }),
            h("td", { "data-label": "Host" }),
            h("td", { class: "num", "data-label": "Partitions" })),
        (tr, n) => {
          const [id, version, host, parts] = tr.children;
          id.replaceChildren(n.id);
          id.title = n.api ? `API at ${n.api}` : "";
          if (n.id === f.node) id.append(" ", h("small", { class: "muted" }, "(this node)"));
          version.textContent = n.version || "";
          host.textContent = n.host || "";
          const owned = (n.handlers || []).map((x) => `${x.name}: ${x.partitions.length}`);
          const total = (n.handlers || []).reduce((s, x) => s + x.partitions.length, 0);
          setNum(parts, total, owned.join(", ") || "0");
          parts.title = (n.handlers || []).flatMap((x) => x.partitions).join(" ");
        },
      );

    const pts = (f.history || []).map((p) => ({ ...p, t: new Date(p.time).getTime() }));
    const to = Date.now();
    chart.update(pts, to - 15 * 60e3, to, pts.length > 1 ? pts[1].t - pts[0].t : 5000);
    chartsBox.dataset.points = String(pts.length);
  });
}
