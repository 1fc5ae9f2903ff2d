// The JSON API of the node that serves the dashboard.

export class APIError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// The API token, when the node requires one, is kept for this tab's
// session only (sessionStorage): closing the tab forgets it.
const TOKEN_KEY = "sluice.token";
export const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// onUnauthorized is called when the node answers 401 (no token, or a bad
// one); app.js asks for a token.
let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export async function api(method, path, body, signal) {
  const init = { method, signal, cache: "no-store", headers: { Accept: "application/json" } };
  if (token()) init.headers.Authorization = `Bearer ${token()}`;
  // The node refuses a change without this type: a cross-site form or
  // fetch cannot send it without the node's consent.
  if (method !== "GET") init.headers["Content-Type"] = "application/json";
  if (body !== undefined) init.body = JSON.stringify(body);
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
  if (res.status === 401) unauthorized();
  if (!res.ok) {
    let msg = data && data.error ? data.error : text.trim().slice(0, 200) || res.statusText;
    if (data && data.field && !msg.startsWith(data.field)) msg = `${data.field}: ${msg}`;
    if (res.status === 502 || res.status === 503 || res.status === 504) msg += " (the node cannot reach Kafka?)";
    throw new APIError(`${method} ${path} failed: ${res.status} ${msg}`, res.status);
  }
  if (data === null && text) throw new APIError(`${method} ${path}: the answer is not JSON`, res.status);
  return data;
}

export const get = (path, signal) => api("GET", path, undefined, signal);
export const post = (path, body) => api("POST", path, body ?? {});
export const enc = encodeURIComponent;
