// @ts-check
/* Every request goes through api(): same-origin cookies, the CSRF header, JSON, and errors as
 * ApiError. Also the status region (say), the alarm announcement and busy buttons. */
import { $ } from "./dom.js";
import { sessionLost } from "./main.js";
import { API, state } from "./state.js";

// ---------------------------------------------------------------- api()

/** A refused or failed request: the HTTP status (0 when the server could not be reached). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {unknown} [data]
   */
  constructor(status, code, message, data) {
    super(sentence(message));
    this.status = status;
    this.code = code;
    /** @type {any} The parsed error body, for callers that want more than the message. */
    this.data = data;
  }
}

/**
 * What a failed action threw, as an ApiError, so callers can read `.status` and `.message`.
 * Anything else (a bug in this page, not an answer from the server) gets status -1, which no
 * caller treats as a network failure or an expired session, and keeps its own message.
 * @param {unknown} err
 * @returns {ApiError}
 */
export function failure(err) {
  if (err instanceof ApiError) return err;
  const e = new ApiError(-1, "client_error", "");
  e.message = err instanceof Error ? err.message : String(err);
  return e;
}

/**
 * Server messages are lower-case clauses ("already claimed by Ann"); show them as sentences.
 * @param {unknown} text
 */
function sentence(text) {
  const t = String(text || "");
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** @type {Record<number, string>} */
const DEFAULT_ERRORS = {
  400: "The server could not accept that input.",
  401: "Your session has ended. Please sign in again.",
  403: "You are not allowed to do that.",
  404: "Not found. It may have been removed.",
  409: "Someone else changed this first.",
  413: "That is too large to send.",
  429: "Too many attempts. Please wait and try again.",
};

/**
 * One place for every request: same-origin cookies, the CSRF header on anything that is not
 * GET/HEAD (except login), JSON in and out, and errors as ApiError with the server's message.
 * A 401 anywhere but login ends the session in the UI.
 *
 * The answer is the parsed JSON as `any`: callers name its shape with a typedef from
 * types.js (`/** @type {QueueResponse} *\/ const q = await api("GET", "/queue")`).
 * @param {"GET" | "HEAD" | "POST" | "PUT" | "DELETE"} method
 * @param {string} path below /api/v1, starting with "/"
 * @param {unknown} [body] sent as JSON, or as it is with `opts.contentType`
 * @param {{ contentType?: string, no401?: boolean, retried?: boolean }} [opts]
 * @returns {Promise<any>}
 */
export async function api(method, path, body, opts = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  /** @type {BodyInit | undefined} */
  let payload;
  if (body !== undefined) {
    if (opts.contentType) {
      headers["Content-Type"] = opts.contentType;
      payload = /** @type {BodyInit} */ (body);
    } else {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
  }
  if (method !== "GET" && method !== "HEAD" && path !== "/login" && state.csrf) {
    headers["X-CSRF-Token"] = state.csrf;
  }
  let res;
  try {
    res = await fetch(API + path, { method, headers, body: payload, credentials: "same-origin", cache: "no-store" });
  } catch (_) {
    throw new ApiError(0, "network", "Cannot reach the server. Check the network connection and try again.");
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      data = text;
    }
  }
  if (!res.ok) {
    const code = (data && data.error) || `http_${res.status}`;
    const message = (data && data.message) || DEFAULT_ERRORS[res.status] || `The server answered ${res.status}.`;
    if (res.status === 401 && path !== "/login" && !opts.no401) sessionLost();
    // A stale CSRF token (e.g. the session was renewed in another tab): fetch the current
    // one and try once more rather than making the operator reload mid-call.
    if (res.status === 403 && /csrf/i.test(message) && !opts.retried && path !== "/login") {
      const me = await api("GET", "/me").catch(() => null);
      if (me && me.csrf_token) {
        state.csrf = me.csrf_token;
        return api(method, path, body, Object.assign({}, opts, { retried: true }));
      }
    }
    throw new ApiError(res.status, code, message, data);
  }
  return data;
}

export const enc = encodeURIComponent;

// ---------------------------------------------------------------- status messages

/** @type {ReturnType<typeof setTimeout> | undefined} */
let messageTimer;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let messageShowTimer;

/**
 * Put a message in the polite live region. The region is emptied first and filled on the next
 * frame so that a screen reader announces the same text twice in a row too.
 * @param {string} text
 * @param {"info" | "success" | "error"} [kind]
 */
export function say(text, kind = "info") {
  const m = $("message");
  clearTimeout(messageTimer);
  clearTimeout(messageShowTimer);
  m.textContent = "";
  m.dataset.kind = kind;
  messageShowTimer = setTimeout(() => {
    m.textContent = text;
  }, 30);
  messageTimer = setTimeout(() => {
    m.textContent = "";
    m.dataset.kind = "";
  }, kind === "error" ? 30000 : 12000);
}

/** Empties the status region and cancels its timers, so a new session starts with no message. */
export function clearMessage() {
  clearTimeout(messageTimer);
  clearTimeout(messageShowTimer);
  $("message").textContent = "";
}

/** @param {unknown} err */
export function sayError(err) {
  say(err instanceof ApiError || err instanceof Error ? err.message : String(err), "error");
}

/**
 * Assertive announcement, used only for new life-critical alarms.
 * @param {string} text
 */
export function alarmAnnounce(text) {
  const a = $("alert");
  a.textContent = "";
  setTimeout(() => {
    a.textContent = text;
  }, 30);
}

/**
 * Run an async action with its button disabled, reporting failures in the status region.
 * @template T
 * @param {HTMLButtonElement | null | undefined} button
 * @param {() => Promise<T>} fn
 * @returns {Promise<T | undefined>}
 */
export async function busy(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) sayError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

