// Number, duration and time formats of the pages.

const nf = new Intl.NumberFormat("en-US");

export function fmtInt(n) {
  return n == null ? "–" : nf.format(n);
}

export function fmtRate(x) {
  if (x == null) return "–";
  if (x === 0) return "0";
  if (x < 1) return x.toFixed(2);
  if (x < 100) return x.toFixed(1);
  return nf.format(Math.round(x));
}

export function fmtMs(ms) {
  if (!ms) return "–";
  if (ms < 10) return ms.toFixed(1) + " ms";
  if (ms < 1000) return Math.round(ms) + " ms";
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

export function fmtAge(s) {
  if (!s) return "–";
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.round(s % 60)} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${m % 60} m`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

export function fmtTime(iso) {
  if (!iso || iso.startsWith("0001-")) return "–";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtAgo(iso) {
  if (!iso || iso.startsWith("0001-")) return "";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 5) return "just now";
  return fmtAge(s) + " ago";
}
