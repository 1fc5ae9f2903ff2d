// A small SVG line chart for time series: a fixed time window on the x axis,
// zero-based "nice" ticks on the y axis, up to a few series told apart by
// dash pattern as well as colour, gaps where samples are missing, and a
// hover readout in the legend.

const NS = "http://www.w3.org/2000/svg";
const HEIGHT = 180;
const PAD = { top: 10, right: 12, bottom: 24, left: 52 };

function svg(tag, attrs = {}, parent) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

// niceScale returns a maximum at or above max and a step that divides it
// into about four intervals of 1, 2, 2.5 or 5 times a power of ten.
export function niceScale(max) {
  if (!(max > 0)) return { max: 1, step: 0.25 };
  const raw = max / 4;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= raw);
  return { max: Math.ceil(max / step - 1e-9) * step, step };
}

// shortNumber formats an axis label: 950, 1.5k, 12M.
export function shortNumber(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return +(v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return +(v / 1e3).toFixed(1) + "k";
  if (a >= 10 || a === 0) return String(Math.round(v));
  return String(+v.toFixed(2));
}

function clock(ms) {
  const d = new Date(ms);
  return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
}

// LineChart draws into a container element. series is a list of
// { key, label }: key names the field of each point to plot. format turns
// a value into the legend's text (with its unit).
export class LineChart {
  constructor(container, { title, series, format = shortNumber, testid }) {
    this.series = series;
    this.format = format;
    this.points = [];
    this.hover = -1;
    this.root = document.createElement("figure");
    this.root.className = "chart";
    if (testid) this.root.dataset.testid = testid;
    const cap = document.createElement("figcaption");
    const h = document.createElement("h3");
    h.textContent = title;
    this.title = title;
    this.legend = document.createElement("div");
    this.legend.className = "legend";
    cap.append(h, this.legend);
    this.svg = svg("svg", { role: "img", height: HEIGHT, class: "chart-svg" });
    this.root.append(cap, this.svg);
    container.appendChild(this.root);

    this.svg.addEventListener("pointermove", (ev) => this.onHover(ev));
    this.svg.addEventListener("pointerleave", () => {
      this.hover = -1;
      this.draw();
    });
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.root);
  }

  // update replaces the data: points oldest first, each with a t in
  // milliseconds; from and to bound the time window shown.
  update(points, from, to, intervalMs) {
    this.points = points;
    this.from = from;
    this.to = to;
    this.gap = Math.max(intervalMs * 2.5, 1);
    this.draw();
  }

  destroy() {
    this.resize.disconnect();
  }

  onHover(ev) {
    if (!this.points.length || !this.x) return;
    const box = this.svg.getBoundingClientRect();
    const t = this.x.invert(ev.clientX - box.left);
    // The nearest point in time; points are sorted.
    let lo = 0;
    let hi = this.points.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.points[mid].t < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && t - this.points[lo - 1].t < this.points[lo].t - t) lo--;
    if (lo !== this.hover) {
      this.hover = lo;
      this.draw();
    }
  }

  draw() {
    const width = Math.max(this.svg.clientWidth || this.root.clientWidth, 200);
    const s = this.svg;
    s.replaceChildren();
    s.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    const x0 = PAD.left;
    const x1 = width - PAD.right;
    const y0 = HEIGHT - PAD.bottom;
    const y1 = PAD.top;
    const from = this.from ?? Date.now() - 15 * 60e3;
    const to = this.to ?? Date.now();
    const span = Math.max(to - from, 1);
    const xOf = (t) => x0 + ((t - from) / span) * (x1 - x0);
    this.x = { invert: (px) => from + ((px - x0) / (x1 - x0)) * span };

    let max = 0;
    for (const p of this.points) for (const se of this.series) max = Math.max(max, p[se.key] || 0);
    const { max: yMax, step } = niceScale(max);
    const yOf = (v) => y0 - (v / yMax) * (y0 - y1);

    // Grid and y labels.
    const grid = svg("g", { class: "grid" }, s);
    for (let v = 0; v <= yMax + step / 2; v += step) {
      const y = yOf(v);
      svg("line", { x1: x0, x2: x1, y1: y, y2: y }, grid);
      svg("text", { x: x0 - 6, y: y + 4, "text-anchor": "end" }, grid).textContent = shortNumber(v);
    }
    // x labels at whole minutes, every 5 (or 3 when there is room).
    const minuteStep = (x1 - x0) / (span / 60e3) > 40 ? 3 : 5;
    const tickMs = minuteStep * 60e3;
    for (let t = Math.ceil(from / tickMs) * tickMs; t <= to; t += tickMs) {
      const x = xOf(t);
      svg("line", { x1: x, x2: x, y1: y0, y2: y0 + 4 }, grid);
      svg("text", { x, y: HEIGHT - 6, "text-anchor": "middle" }, grid).textContent = clock(t);
    }
    svg("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: "axis" }, s);

    // One path per series, broken where samples are missing.
    this.series.forEach((se, i) => {
      let d = "";
      let prev = null;
      for (const p of this.points) {
        if (p.t < from) continue;
        const v = p[se.key];
        if (v == null || Number.isNaN(v)) {
          prev = null;
          continue;
        }
        const cmd = prev !== null && p.t - prev <= this.gap ? "L" : "M";
        d += `${cmd}${xOf(p.t).toFixed(1)},${yOf(v).toFixed(1)}`;
        prev = p.t;
      }
      svg("path", { d, class: `line s${i}` }, s);
    });

    // Hover rule and dots.
    const hp = this.hover >= 0 ? this.points[this.hover] : null;
    if (hp) {
      const x = xOf(hp.t);
      svg("line", { x1: x, x2: x, y1: y1, y2: y0, class: "rule" }, s);
      this.series.forEach((se, i) => {
        if (hp[se.key] != null) svg("circle", { cx: x, cy: yOf(hp[se.key]), r: 3, class: `dot s${i}` }, s);
      });
    }
    // The whole plot area takes the pointer.
    svg("rect", { x: x0, y: y1, width: x1 - x0, height: y0 - y1, class: "hit" }, s);

    this.drawLegend(hp);
  }

  drawLegend(hp) {
    const p = hp || this.points[this.points.length - 1];
    const items = this.series.map((se, i) => {
      const item = document.createElement("span");
      item.className = "item";
      const sw = svg("svg", { width: 22, height: 8, "aria-hidden": "true", class: "swatch" });
      svg("line", { x1: 1, x2: 21, y1: 4, y2: 4, class: `line s${i}` }, sw);
      const label = document.createElement("span");
      label.textContent = se.label;
      const val = document.createElement("b");
      val.textContent = p && p[se.key] != null ? this.format(p[se.key]) : "–";
      item.append(sw, label, val);
      return item;
    });
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = hp ? new Date(hp.t).toLocaleTimeString() : this.points.length ? "latest" : "no samples yet";
    this.legend.replaceChildren(...items, when);
    const desc = this.series
      .map((se) => `${se.label} ${p && p[se.key] != null ? this.format(p[se.key]) : "no data"}`)
      .join(", ");
    this.svg.setAttribute("aria-label", `${this.title}, last 15 minutes. Latest: ${desc}`);
  }
}
