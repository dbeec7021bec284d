// Calls to the gateway's public APIs with the user's key in the Authorization header.
// The key lives in sessionStorage only: gone when the tab closes, never in localStorage
// or a cookie, never in a URL.

import { parseLossless } from "./json.js";

const KEY = "corridor.apiKey";

export const credentials = {
  get() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

/** A non-2xx answer: status, the OpenAI-style error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") query.set(k, String(v));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function call(method, path, { params, body } = {}) {
  const headers = { Authorization: `Bearer ${credentials.get() || ""}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url(path, params), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", redirect: "error",
    });
  } catch (err) {
    throw new ApiError(0, "network_error", `the gateway did not answer (${err.message})`);
  }
  const text = await response.text();
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = text.slice(0, 300) || response.statusText;
    try {
      const error = JSON.parse(text).error;
      if (error) { code = error.code || code; message = error.message || message; }
    } catch { /* not JSON: keep the text */ }
    throw new ApiError(response.status, code, message);
  }
  return text;
}

/** GET → parsed JSON. */
export async function get(path, params) { return JSON.parse(await call("GET", path, { params })); }

/** GET → JSON with every number's literal text kept (what verification hashes). */
export async function getLossless(path, params) { return parseLossless(await call("GET", path, { params })); }

/** GET → text (JSON lines, Prometheus). */
export function getText(path, params) { return call("GET", path, { params }); }

/** POST a JSON body → parsed JSON. */
export async function post(path, body = {}) { return JSON.parse(await call("POST", path, { body })); }

/** The API's answer, or null when it refuses this caller (401/403/404), so a view can hide.
 *  Any other failure also hides the view (and is logged), rather than stopping the console. */
export async function probe(path, params) {
  try {
    return await get(path, params);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (![401, 403, 404].includes(err.status)) console.warn(`${path}: ${err.status} ${err.message}`);
    return null;
  }
}
