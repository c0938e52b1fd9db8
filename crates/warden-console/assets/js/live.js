// @ts-check
/* The WebSocket that pushes queue changes: connect, back off and reconnect, hand incidents to
 * the queue. The queue is re-read on every (re)connection, so nothing is missed in between. */
import { api, failure, say } from "./api.js";
import { $ } from "./dom.js";
import { loadQueue, onPushedIncidents, setClock, updateAlarmIndicators } from "./queue.js";
import { API, state } from "./state.js";

// ---------------------------------------------------------------- WebSocket

/** @typedef {import("./types.js").WsMessage} WsMessage */
/** @typedef {"connecting" | "live" | "reconnecting" | "offline" | "unused"} ConnState */

/**
 * The one live connection: `wanted` while a queue role is signed in; `attempt` counts failed
 * tries since the last success (drives the backoff).
 * @type {{ sock: WebSocket | null, attempt: number, timer: ReturnType<typeof setTimeout> | undefined, wanted: boolean, connState: ConnState }}
 */
export const ws = { sock: null, attempt: 0, timer: undefined, wanted: false, connState: "offline" };

/** @type {Record<ConnState, string>} */
const CONN_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting — queue may be stale",
  offline: "Not connected",
  unused: "Live updates not used",
};

/**
 * @param {ConnState} s
 * @param {string} [detail]
 */
export function setConn(s, detail) {
  const prev = ws.connState;
  ws.connState = s;
  const el = $("conn-status");
  el.dataset.state = s;
  el.textContent = CONN_TEXT[s] + (detail ? ` (${detail})` : "");
  el.hidden = s === "unused";
  updateAlarmIndicators();
  if (prev === "live" && s === "reconnecting") say("Live updates lost. Reconnecting; the queue may be out of date.", "error");
  if (prev === "reconnecting" && s === "live") say("Live updates restored.", "success");
}

export function wsStart() {
  ws.wanted = true;
  ws.attempt = 0;
  wsConnect();
}

export function wsStop() {
  ws.wanted = false;
  clearTimeout(ws.timer);
  if (ws.sock) {
    const s = ws.sock;
    ws.sock = null;
    s.close(1000, "logout");
  }
  setConn("offline");
}

function wsConnect() {
  clearTimeout(ws.timer);
  if (!ws.wanted || ws.sock) return;
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${API}/ws`;
  if (ws.attempt === 0) setConn("connecting");
  let sock;
  try {
    sock = new WebSocket(url);
  } catch (_) {
    wsScheduleReconnect();
    return;
  }
  ws.sock = sock;
  sock.addEventListener("open", () => {
    if (ws.sock !== sock) return;
    ws.attempt = 0;
    setConn("live");
    loadQueue(); // anything that happened while we were away
  });
  sock.addEventListener("message", (ev) => {
    if (ws.sock === sock) onWsMessage(ev.data);
  });
  sock.addEventListener("close", () => {
    if (ws.sock !== sock) return;
    ws.sock = null;
    if (ws.wanted) wsScheduleReconnect();
  });
  // "error" is always followed by "close", which does the work.
}

/** Exponential backoff with jitter: 1 s, 2 s, 4 s … capped at 30 s. */
function wsScheduleReconnect() {
  ws.attempt++;
  const base = Math.min(30000, 1000 * 2 ** Math.min(ws.attempt - 1, 5));
  const delay = Math.round(base * (0.8 + Math.random() * 0.4));
  setConn("reconnecting", `attempt ${ws.attempt}, next try in ${Math.ceil(delay / 1000)} s`);
  ws.timer = setTimeout(async () => {
    // A refused upgrade looks like any other close; ask /me so an expired session shows the
    // login form instead of retrying for ever. A fresh CSRF token comes with it.
    try {
      const me = await api("GET", "/me");
      state.csrf = me.csrf_token || state.csrf;
    } catch (caught) {
      const err = failure(caught);
      if (err.status === 401) return;
    }
    wsConnect();
  }, delay);
}

export function wsForceReconnect() {
  if (!ws.sock) return;
  const s = ws.sock;
  ws.sock = null; // its late events are ignored: they no longer match ws.sock
  try {
    s.close();
  } catch (_) {
    /* already closing */
  }
  if (ws.wanted) wsScheduleReconnect();
}

export function wsRetryNow() {
  if (ws.wanted && !ws.sock) {
    ws.attempt = Math.max(ws.attempt, 1);
    wsConnect();
  }
}

/** @param {unknown} raw a text frame */
function onWsMessage(raw) {
  /** @type {WsMessage} */
  let msg;
  try {
    msg = JSON.parse(String(raw));
  } catch (_) {
    return;
  }
  if (!msg || typeof msg !== "object") return;
  if (msg.type === "hello") setClock(msg.server_time_ms);
  else if (msg.type === "incidents") {
    setClock(msg.server_time_ms);
    const list = msg.incidents || [];
    onPushedIncidents(list);
  } else if (msg.type === "resync") loadQueue();
  else if (msg.type === "degraded") {
    setClock(msg.server_time_ms);
    showDegraded(msg.since);
  }
}

/**
 * Shows (or, with null, removes) the persistent degraded-mode banner.
 * @param {string | null | undefined} since RFC 3339 time the database became unavailable
 */
export function showDegraded(since) {
  const el = $("degraded-banner");
  if (!since) {
    if (!el.hidden) say("Database available again: the queue is re-read from it.", "success");
    el.hidden = true;
    el.textContent = "";
    return;
  }
  const at = new Date(since);
  const hhmm = Number.isNaN(at.getTime())
    ? since
    : at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  el.textContent = `Database unavailable — degraded mode since ${hhmm}. Alarms still arrive and can be claimed and resolved; client records, history and reports need the database and may not open.`;
  el.hidden = false;
}

