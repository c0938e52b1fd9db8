/* Warden operator console: one page, no framework, no build step.
 *
 * Organisation (top to bottom):
 *   constants and state · DOM helpers · formatting · api() · status messages ·
 *   session (boot/login/logout) · screens and roles · queue model and rendering ·
 *   ages and SLA ticking · alarm sound · WebSocket · incident panel · client record ·
 *   out-of-hours desk · clients screen · administration · audit · rejected signals ·
 *   keyboard · init.
 *
 * Security: every piece of server or user data is put into the page with textContent or
 * createElement, never innerHTML. The CSP forbids inline script and inline style attributes,
 * so all listeners are attached here and styling lives in app.css.
 */
"use strict";

(() => {
  // ---------------------------------------------------------------- constants and state

  const API = "/api/v1";
  const PRIORITIES = ["life_critical", "urgent", "technical", "information"];
  const PRIORITY_LABEL = {
    life_critical: "Life-critical",
    urgent: "Urgent",
    technical: "Technical",
    information: "Information",
  };
  const ROLE_LABEL = { operator: "Operator", supervisor: "Supervisor", admin: "Administrator", on_call: "On call" };
  // Screens each role may use (mirrors the roles in /api/openapi.json).
  const ROLE_SCREENS = {
    operator: ["queue", "ooh"],
    supervisor: ["queue", "ooh", "clients", "audit", "rejected"],
    admin: ["admin", "clients", "audit", "rejected"], // the first one is where the user lands
    on_call: ["ooh"],
  };
  const STATE_LABEL = { raised: "Raised", offered: "Offered", claimed: "Claimed", resolved: "Resolved" };
  const KIND_LABEL = { co: "Carbon monoxide", door_exit: "Door exit", fail_to_check_in: "Failed to check in" };
  const PROTOCOL_LABEL = { contact_id: "Contact ID", sia: "SIA", mqtt: "MQTT", dc09: "SIA DC-09" };
  const CONTACT_LABEL = { phone: "Phone", sms: "SMS", email: "Email", text_relay: "Text relay", letter: "Letter", visit: "Visit" };
  const JOB_STATUS_LABEL = {
    routed: "Routed", unrouted: "Unrouted", acknowledged: "Acknowledged", in_progress: "In progress", closed: "Closed",
  };
  const BEEP_EVERY_MS = 4000;
  const QUEUE_POLL_MS = 30000; // belt and braces next to the WebSocket
  const MAX_DEVICE_ROWS = 300;
  const MAX_CLIENT_ROWS = 300;
  const RESOLVED_KEEP_MS = 10 * 60 * 1000;

  const state = {
    user: null,
    csrf: null,
    screen: null,
    outcomes: [],
    categories: [],
    // Queue: incidents keyed by String(id); the original id value is kept inside the object.
    incidents: new Map(),
    counts: { life_critical: 0, urgent: 0, technical: 0, information: 0 },
    thresholds: { warn_s: 45, overflow_s: 60, critical_s: 180 },
    clockOffset: 0, // server_time_ms - Date.now(), so ages follow the server clock
    queueLoaded: false,
    seen: new Set(), // incident ids already announced
    // "resolved" is terminal in the core. Remembering which ids we saw resolved stops a late,
    // older answer (e.g. a note's reply overtaken by the resolve) from bringing a row back.
    resolved: new Map(), // id -> Date.now() when seen resolved
    selectedId: null, // queue row with the keyboard selection
    bulk: new Set(), // ids ticked for bulk resolve
    // Incident panel
    openId: null,
    openIncident: null,
    detailTimer: null,
    panelClient: null,
    // Other screens
    currentJob: null,
    currentClient: null,
    editingClientId: null,
    responders: [],
    users: [],
    devices: [],
    editingUserId: null,
    editingDeviceId: null,
  };

  // ---------------------------------------------------------------- DOM helpers

  const $ = (id) => document.getElementById(id);

  /** createElement with props: class, text, testid, dataset, on<event>, properties, attributes. */
  function h(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else if (k === "testid") e.dataset.testid = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
      else if (k === "checked" || k === "value" || k === "disabled" || k === "hidden") e[k] = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    appendAll(e, children);
    return e;
  }

  function appendAll(parent, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.firstChild.remove();
    return node;
  }

  /** A plain table: columns [{label, cell(row) -> Node|string}], rows. */
  function table(columns, rows, opts = {}) {
    const t = h("table", { class: "data-table", testid: opts.testid });
    if (opts.caption) t.append(h("caption", { class: "visually-hidden", text: opts.caption }));
    t.append(h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col", text: c.label })))));
    const body = h("tbody");
    for (const r of rows) {
      const tr = h("tr", opts.rowProps ? opts.rowProps(r) : null);
      for (const c of columns) tr.append(h("td", null, c.cell(r)));
      body.append(tr);
    }
    t.append(body);
    return h("div", { class: "table-wrap" }, t);
  }

  /** A <dl> of [label, value] pairs; empty values show a dash. */
  function facts(pairs) {
    const dl = h("dl", { class: "facts" });
    for (const [label, value, props] of pairs) {
      const dd = h("dd", props || null);
      if (value === null || value === undefined || value === "") dd.textContent = "—";
      else appendAll(dd, [value]);
      dl.append(h("div", null, h("dt", { text: label }), dd));
    }
    return dl;
  }

  function fieldValue(id) {
    return $(id).value.trim();
  }

  function emptyState(text) {
    return h("p", { class: "empty", text });
  }

  // ---------------------------------------------------------------- formatting

  const dateTimeFmt = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "medium" });
  const dateFmt = new Intl.DateTimeFormat("en-GB", { dateStyle: "long" });

  function fmtTime(s) {
    if (!s) return "—";
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? String(s) : dateTimeFmt.format(d);
  }

  function fmtDate(s) {
    if (!s) return "—";
    const d = new Date(s + (String(s).length === 10 ? "T00:00:00" : ""));
    return Number.isNaN(d.getTime()) ? String(s) : dateFmt.format(d);
  }

  function yearsSince(s) {
    const d = new Date(s);
    if (Number.isNaN(d.getTime())) return null;
    const now = new Date();
    let y = now.getFullYear() - d.getFullYear();
    if (now.getMonth() < d.getMonth() || (now.getMonth() === d.getMonth() && now.getDate() < d.getDate())) y--;
    return y;
  }

  /** "pendant" -> "Pendant", "door_exit" -> "Door exit". */
  function human(code) {
    if (code === null || code === undefined || code === "") return "—";
    const s = String(code).replace(/_/g, " ");
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  const kindLabel = (k) => KIND_LABEL[k] || human(k);
  const stateLabel = (s) => STATE_LABEL[s] || human(s);
  const outcomeLabel = (code) => (state.outcomes.find((o) => o.code === code) || {}).label || human(code);

  /** Minutes and seconds; minutes keep counting past 60 so "75:03" is 75 minutes. */
  function fmtAge(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  }

  /** 86400 -> "24 h (86400 s)"; empty -> "Not supervised". */
  function fmtInterval(s) {
    if (!s) return "Not supervised";
    if (s % 3600 === 0) return `${s / 3600} h (${s} s)`;
    if (s % 60 === 0) return `${s / 60} min (${s} s)`;
    return `${s} s`;
  }

  function nameOf(x) {
    if (!x) return "—";
    if (typeof x === "string") return x;
    return x.name || x.display_name || x.username || String(x.id ?? "—");
  }

  /** Anything (string, number, object) as readable text: used for event effects and audit data. */
  function asText(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }

  /**
   * A one-line reading of a JSON value: strings as they are, objects as "key: value" pairs
   * (one level of nesting, long output cut). Used for event effects and decoded signals,
   * whose exact shape belongs to the engine, not to this page.
   */
  function summarise(v, depth = 0) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "object") return String(v);
    if (Array.isArray(v)) return v.map((x) => summarise(x, depth + 1)).filter(Boolean).join(", ");
    for (const k of ["summary", "description", "text", "message"]) if (typeof v[k] === "string" && v[k]) return v[k];
    const parts = [];
    for (const [k, x] of Object.entries(v)) {
      if (x === null || x === "" || x === false) continue;
      if (typeof x === "object") {
        if (depth < 1) {
          const inner = summarise(x, depth + 1);
          if (inner) parts.push(`${human(k)} (${inner})`);
        }
      } else parts.push(x === true ? human(k) : `${human(k)}: ${x}`);
    }
    const out = parts.join(", ");
    return out.length > 240 ? out.slice(0, 237) + "…" : out;
  }

  function telLink(phone, testid) {
    if (!phone) return "—";
    return h("a", { href: "tel:" + String(phone).replace(/[^\d+]/g, ""), class: "tel", text: phone, testid });
  }

  // ---------------------------------------------------------------- api()

  class ApiError extends Error {
    constructor(status, code, message, data) {
      super(sentence(message));
      this.status = status;
      this.code = code;
      this.data = data; // the parsed error body, for callers that want more than the message
    }
  }

  /** Server messages are lower-case clauses ("already claimed by Ann"); show them as sentences. */
  function sentence(text) {
    const t = String(text || "");
    return t.charAt(0).toUpperCase() + t.slice(1);
  }

  const DEFAULT_ERRORS = {
    400: "The server could not accept that input.",
    401: "Your session has ended. Please sign in again.",
    403: "You are not allowed to do that.",
    404: "Not found. It may have been removed.",
    409: "Someone else changed this first.",
    413: "That is too large to send.",
    423: "This account is locked.",
    429: "Too many attempts. Please wait and try again.",
  };

  /**
   * One place for every request: same-origin cookies, the CSRF header on anything that is not
   * GET/HEAD (except login), JSON in and out, and errors as ApiError with the server's message.
   * A 401 anywhere but login ends the session in the UI.
   */
  async function api(method, path, body, opts = {}) {
    const headers = { Accept: "application/json" };
    let payload;
    if (body !== undefined) {
      if (opts.contentType) {
        headers["Content-Type"] = opts.contentType;
        payload = body;
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

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- status messages

  let messageTimer = null;
  let messageShowTimer = null;

  /**
   * Put a message in the polite live region. The region is emptied first and filled on the next
   * frame so that a screen reader announces the same text twice in a row too.
   */
  function say(text, kind = "info") {
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

  function sayError(err) {
    say(err instanceof ApiError || err instanceof Error ? err.message : String(err), "error");
  }

  /** Assertive announcement, used only for new life-critical alarms. */
  function alarmAnnounce(text) {
    const a = $("alert");
    a.textContent = "";
    setTimeout(() => {
      a.textContent = text;
    }, 30);
  }

  /** Run an async action with its button disabled, reporting failures in the status region. */
  async function busy(button, fn) {
    if (button) button.disabled = true;
    try {
      return await fn();
    } catch (err) {
      if (err.status !== 401) sayError(err);
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- session

  async function boot() {
    try {
      const me = await api("GET", "/me", undefined, { no401: true });
      startSession(me);
    } catch (err) {
      showLogin(err.status === 401 || err.status === 403 ? "" : err.message);
    }
  }

  function showLogin(errorText) {
    state.user = null;
    state.csrf = null;
    $("nav").hidden = true;
    $("session-bar").hidden = true;
    for (const s of document.querySelectorAll(".screen")) s.hidden = true;
    $("screen-login").hidden = false;
    $("login-form").reset(); // a shared desk: do not leave the last user's name behind
    $("user-info").textContent = "";
    const e = $("login-error");
    e.textContent = errorText || "";
    e.hidden = !errorText;
    document.title = "Sign in — Warden console";
    $("login-username").focus();
  }

  async function onLoginSubmit(ev) {
    ev.preventDefault();
    const username = fieldValue("login-username");
    const password = $("login-password").value;
    const err = $("login-error");
    if (!username || !password) {
      err.textContent = "Enter your username and password.";
      err.hidden = false;
      return;
    }
    unlockAudio(); // the submit is a user gesture: let the alarm sound play later
    const btn = $("login-submit");
    btn.disabled = true;
    try {
      const res = await api("POST", "/login", { username, password });
      $("login-password").value = "";
      err.hidden = true;
      startSession(res);
    } catch (e) {
      err.textContent = loginErrorText(e);
      err.hidden = false;
      $("login-password").select();
    } finally {
      btn.disabled = false;
    }
  }

  /** Plain-English sign-in problems; the server's own message is used when it sent one. */
  function loginErrorText(e) {
    const fromServer = e.code && !e.code.startsWith("http_");
    if (e.status === 423) {
      return fromServer ? e.message : "This account is locked after too many failed sign-in attempts. Wait and try again later, or ask a supervisor to unlock it.";
    }
    if (e.status === 429) return fromServer ? e.message : "Too many sign-in attempts from this computer. Please wait a minute, then try again.";
    if (e.status === 401) return fromServer ? e.message : "Wrong username or password.";
    return e.message;
  }

  function startSession(res) {
    clearTimeout(messageTimer);
    clearTimeout(messageShowTimer);
    $("message").textContent = "";
    state.user = res.user;
    state.csrf = res.csrf_token;
    $("screen-login").hidden = true;
    $("nav").hidden = false;
    $("session-bar").hidden = false;
    $("user-info").textContent = `${state.user.display_name || state.user.username} (${ROLE_LABEL[state.user.role] || human(state.user.role)})`;
    applyRoles();
    setMuted(false); // every session starts with the alarm sound on, whoever muted it before
    const screens = ROLE_SCREENS[state.user.role] || [];
    if (canQueue()) {
      loadOutcomes();
      wsStart();
    } else {
      setConn("unused");
    }
    if (screens.length === 0) {
      say("Your role has no screens in this console.", "error");
      return;
    }
    showScreen(screens[0]);
  }

  async function logout() {
    try {
      await api("POST", "/logout");
    } catch (_) {
      /* the session is gone either way */
    }
    endSession();
    showLogin("");
    say("You have logged out.");
  }

  /** Called on any 401: the cookie expired or was revoked. */
  function sessionLost() {
    if (!state.user) return;
    endSession();
    showLogin("Your session has ended. Please sign in again.");
  }

  function endSession() {
    wsStop();
    state.user = null;
    state.csrf = null;
    state.incidents.clear();
    state.seen.clear();
    state.resolved.clear();
    state.bulk.clear();
    state.queueLoaded = false;
    state.selectedId = null;
    closePanel(false);
    renderQueue();
    updateAlarmIndicators();
    resetScreens();
  }

  /** Nothing of one user's work may show in the next user's session on a shared desk. */
  function resetScreens() {
    for (const f of document.querySelectorAll("main form")) if (f.id !== "login-form") f.reset();
    for (const id of ["ooh-results", "clients-results", "client-view-record", "users-table", "devices-table", "categories-table", "import-result", "audit-table", "cf-responders", "rejected-counts", "rejected-list", "rejected-total"]) clear($(id));
    $("rejected-more").hidden = true;
    for (const id of ["ooh-result", "ooh-job", "client-view", "client-form"]) $(id).hidden = true;
    $("ooh-form").hidden = false;
    Object.assign(state, { currentJob: null, currentClient: null, editingClientId: null, responders: [], users: [], devices: [], editingUserId: null, editingDeviceId: null });
    resetUserForm();
    resetDeviceForm();
  }

  const role = () => (state.user ? state.user.role : null);
  const canQueue = () => role() === "operator" || role() === "supervisor";
  const isSupervisor = () => role() === "supervisor";
  const sameId = (a, b) => a !== null && a !== undefined && b !== null && b !== undefined && String(a) === String(b);

  // ---------------------------------------------------------------- screens and roles

  /** Show or hide every element marked data-roles="..." for the current user's role. */
  function applyRoles() {
    for (const e of document.querySelectorAll("[data-roles]")) {
      e.hidden = !e.dataset.roles.split(/\s+/).includes(role());
    }
  }

  function showScreen(name) {
    const allowed = ROLE_SCREENS[role()] || [];
    if (!allowed.includes(name)) return;
    state.screen = name;
    for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== `screen-${name}`;
    for (const b of document.querySelectorAll(".nav-btn")) {
      if (b.dataset.screen === name) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    }
    updateAlarmIndicators();
    const loaders = { queue: enterQueue, ooh: enterOoh, clients: enterClients, admin: enterAdmin, audit: enterAudit, rejected: enterRejected };
    loaders[name]();
  }

  // ---------------------------------------------------------------- queue model

  async function loadOutcomes() {
    try {
      state.outcomes = (await api("GET", "/outcomes")) || [];
    } catch (_) {
      state.outcomes = [];
    }
    for (const id of ["inc-outcome", "bulk-outcome"]) {
      const sel = $(id);
      const keep = sel.value;
      clear(sel).append(h("option", { value: "", text: "Choose an outcome…" }));
      for (const o of state.outcomes) sel.append(h("option", { value: o.code, text: o.label }));
      sel.value = keep;
    }
  }

  let queueLoading = null;
  let pendingDuringLoad = []; // WebSocket changes received while /queue was in flight

  /** Full reload of the queue; the WebSocket only carries changes after this. */
  function loadQueue() {
    if (!canQueue()) return Promise.resolve();
    if (queueLoading) return queueLoading; // coalesce reconnect + resync + poll
    queueLoading = (async () => {
      try {
        pendingDuringLoad = [];
        const q = await api("GET", "/queue");
        setClock(q.server_time_ms);
        if (q.thresholds) state.thresholds = q.thresholds;
        state.counts = Object.assign({ life_critical: 0, urgent: 0, technical: 0, information: 0 }, q.counts || {});
        const fresh = new Map();
        for (const inc of q.incidents || []) {
          const key = String(inc.id);
          if (!isResolvedLocally(key)) fresh.set(key, inc);
          else if (state.counts[inc.priority] > 0) state.counts[inc.priority]--; // snapshot predates the resolve
        }
        state.incidents = fresh;
        for (const id of state.bulk) if (!fresh.has(id)) state.bulk.delete(id);
        announceNew([...fresh.values()], !state.queueLoaded);
        state.queueLoaded = true;
        // The snapshot may predate pushes that raced it; re-applying them in order converges
        // on the newest state either way.
        const pending = pendingDuringLoad;
        pendingDuringLoad = [];
        if (pending.length) applyIncidents(pending);
        else renderQueue();
        syncOpenIncident();
      } catch (err) {
        if (err.status !== 401) say(`Could not load the queue: ${err.message}`, "error");
        // The server is unreachable but the socket may not have noticed yet (a dead network
        // can keep a socket "open" for minutes): show "reconnecting" now, not later.
        if (err.status === 0) wsForceReconnect();
      } finally {
        queueLoading = null;
      }
    })();
    return queueLoading;
  }

  function setClock(serverMs) {
    if (typeof serverMs === "number") state.clockOffset = serverMs - Date.now();
  }

  const serverNow = () => Date.now() + state.clockOffset;

  function isResolvedLocally(key) {
    const t = state.resolved.get(key);
    if (t === undefined) return false;
    if (Date.now() - t <= RESOLVED_KEEP_MS) return true;
    state.resolved.delete(key);
    return false;
  }

  /**
   * Merge changed incidents (from the WebSocket or a command response). "resolved" removes a row.
   * Lane counts are the server's numbers from /queue, adjusted by the rows that enter or leave.
   */
  function applyIncidents(list) {
    const added = [];
    for (const inc of list) {
      const key = String(inc.id);
      if (inc.state === "resolved") state.resolved.set(key, Date.now());
      else if (isResolvedLocally(key)) continue; // stale news about a finished incident
      const old = state.incidents.get(key);
      if (old && state.counts[old.priority] > 0) state.counts[old.priority]--;
      if (inc.state === "resolved") {
        state.incidents.delete(key);
        state.bulk.delete(key);
      } else {
        state.incidents.set(key, inc);
        state.counts[inc.priority] = (state.counts[inc.priority] || 0) + 1;
        if (!old) added.push(inc);
      }
      if (sameId(inc.id, state.openId)) {
        state.openIncident = inc;
        renderPanelIncident();
        scheduleDetailRefresh();
      }
    }
    announceNew(added, false);
    renderQueue();
  }

  /** Rows per lane in display order: lanes by priority, oldest first within a lane. */
  function lanes() {
    const by = Object.fromEntries(PRIORITIES.map((p) => [p, []]));
    for (const inc of state.incidents.values()) (by[inc.priority] || (by[inc.priority] = [])).push(inc);
    for (const p of Object.keys(by)) by[p].sort((a, b) => a.arrived_at_ms - b.arrived_at_ms);
    return by;
  }

  function orderedIds() {
    const by = lanes();
    return PRIORITIES.flatMap((p) => by[p].map((i) => String(i.id)));
  }

  let lastOrder = []; // row order at the previous render, to move the selection off a vanished row

  /** When the selected row disappears (resolved elsewhere), select its neighbour instead. */
  function keepSelection(ids) {
    if (!state.selectedId || ids.includes(state.selectedId)) return;
    const at = lastOrder.indexOf(state.selectedId);
    const after = lastOrder.slice(at + 1).find((id) => ids.includes(id));
    const before = lastOrder.slice(0, Math.max(at, 0)).reverse().find((id) => ids.includes(id));
    state.selectedId = at < 0 ? null : after || before || null;
  }

  const isUnclaimed = (inc) => inc.state === "raised" || inc.state === "offered";

  function unclaimedLifeCritical() {
    let n = 0;
    for (const inc of state.incidents.values()) if (inc.priority === "life_critical" && isUnclaimed(inc)) n++;
    return n;
  }

  /** "pendant, Mrs Jones, 12 High Street" — for announcements and labels. */
  function incidentWords(inc) {
    const parts = [kindLabel(inc.kind).toLowerCase()];
    if (inc.group_count) parts.push(`storm group of ${inc.group_count}`);
    if (inc.client) parts.push(inc.client.name, inc.client.address);
    else if (inc.device) parts.push(deviceName(inc.device));
    if (!inc.client && inc.area) parts.push(inc.area);
    return parts.filter(Boolean).join(", ");
  }

  const deviceName = (d) => d.label || (d.account ? `device ${d.account}` : `device #${d.id}`);

  /** Assertive announcement and an immediate beep for life-critical incidents not seen before. */
  function announceNew(list, initial) {
    const fresh = list.filter((i) => !state.seen.has(String(i.id)));
    for (const i of fresh) state.seen.add(String(i.id));
    const critical = fresh.filter((i) => i.priority === "life_critical" && isUnclaimed(i));
    if (critical.length === 0) return;
    if (initial) {
      alarmAnnounce(`${critical.length} life-critical alarm${critical.length > 1 ? "s" : ""} waiting.`);
    } else {
      alarmAnnounce(critical.map((i) => `New life-critical alarm: ${incidentWords(i)}`).join(". "));
    }
    sound.lastBeep = 0; // beep on the next tick rather than up to BEEP_EVERY_MS later
  }

  // ---------------------------------------------------------------- queue rendering

  function enterQueue() {
    loadQueue();
    if (state.openId) renderPanelClient();
  }

  function renderQueue() {
    const tableEl = $("queue-table");
    // Remember focus so a re-render does not throw the operator's place away.
    const active = document.activeElement;
    const activeRow = active && active.closest ? active.closest("tr[data-incident-id]") : null;
    const focusId = activeRow ? activeRow.dataset.incidentId : null;
    const focusOnCheckbox = !!(active && active.matches && active.matches("input[type=checkbox]") && activeRow);

    for (const tb of tableEl.querySelectorAll("tbody")) tb.remove();
    const ids = orderedIds();
    keepSelection(ids);
    lastOrder = ids;
    const by = lanes();
    const cols = isSupervisor() ? 7 : 6;
    for (const p of PRIORITIES) {
      const rows = by[p];
      const tb = h("tbody", { class: `lane lane-${p}`, testid: `lane-${p}` });
      tb.append(
        h("tr", { class: "lane-head" },
          h("th", { scope: "rowgroup", colspan: cols },
            `${PRIORITY_LABEL[p]} `,
            h("span", { class: "lane-head-count", text: `(${state.counts[p] ?? rows.length})` })))
      );
      if (rows.length === 0) {
        tb.append(h("tr", { class: "lane-empty" }, h("td", { colspan: cols, text: "Nothing waiting." })));
      }
      for (const inc of rows) tb.append(queueRow(inc));
      tableEl.append(tb);
    }
    for (const p of PRIORITIES) $(`lc-${p}`).textContent = String(state.counts[p] ?? 0);
    ensureTabStop();
    updateBulkBar();
    updateAlarmIndicators();
    tickAges();

    if (focusId) {
      const row = rowFor(focusId) || rowFor(state.selectedId);
      if (row) (focusOnCheckbox && row.querySelector("input") ? row.querySelector("input") : row).focus();
    }
  }

  function queueRow(inc) {
    const id = String(inc.id);
    const tr = h("tr", {
      class: "incident-row" + (inc.priority === "life_critical" ? " is-life-critical" : "") + (isUnclaimed(inc) ? " is-unclaimed" : ""),
      testid: "incident-row",
      dataset: { incidentId: id, priority: inc.priority, state: inc.state },
      tabindex: "-1", // roving: ensureTabStop() gives one row tabindex 0
      // No aria-label: the row's own cells (age, state, holder) are its accessible name and
      // stay current, where a label would freeze them at render time.
      onclick: (ev) => {
        if (ev.target.closest("input, a, button")) return;
        selectRow(id, false);
        openIncident(id);
      },
      onfocus: () => selectRow(id, false),
    });
    if (id === state.selectedId) tr.classList.add("is-selected");
    if (id === String(state.openId)) tr.setAttribute("aria-current", "true");

    if (isSupervisor()) {
      const cb = h("input", {
        type: "checkbox",
        testid: "bulk-select",
        checked: state.bulk.has(id),
        "aria-label": `Select for bulk resolve: ${incidentWords(inc)}`,
        dataset: { incidentId: id },
        onchange: (ev) => {
          if (ev.target.checked) state.bulk.add(id);
          else state.bulk.delete(id);
          updateBulkBar();
        },
      });
      tr.append(h("td", { class: "col-select" }, cb));
    }

    const marker = inc.priority === "life_critical" ? h("span", { class: "lc-marker", "aria-hidden": "true", text: "!" }) : null;
    tr.append(h("td", { class: "col-priority" }, marker, h("span", { class: `prio prio-${inc.priority}`, text: PRIORITY_LABEL[inc.priority] || human(inc.priority) })));
    tr.append(h("td", { class: "col-kind", text: kindLabel(inc.kind) }));
    tr.append(h("td", { class: "col-who" }, whoCell(inc)));
    tr.append(h("td", { class: "col-age" },
      h("span", { class: "age", dataset: { age: "" } }), " ",
      h("span", { class: "sla-badge", dataset: { sla: "" } })));
    tr.append(h("td", { class: "col-state" }, h("span", { class: `state state-${inc.state}`, text: stateLabel(inc.state) })));
    tr.append(h("td", { class: "col-holder", text: inc.holder ? nameOf(inc.holder) : "—" }));
    return tr;
  }

  /** Client name and address, or device / area, or the storm group size. */
  function whoCell(inc) {
    const frag = document.createDocumentFragment();
    if (inc.group_count) {
      frag.append(h("strong", { class: "storm", text: `Storm group of ${inc.group_count}` }));
      if (inc.area) frag.append(h("span", { class: "sub", text: inc.area }));
      return frag;
    }
    if (inc.client) {
      frag.append(h("strong", { text: inc.client.name || "Unnamed client" }));
      if (inc.client.address) frag.append(h("span", { class: "sub", text: inc.client.address }));
      return frag;
    }
    if (inc.device) {
      frag.append(h("strong", { text: human(deviceName(inc.device)) }));
      frag.append(h("span", { class: "sub", text: [inc.device.label && inc.device.account ? `Account ${inc.device.account}` : "", inc.area, "no client linked"].filter(Boolean).join(" · ") }));
      return frag;
    }
    frag.append(h("strong", { text: inc.area || "Unknown source" }));
    if (inc.summary) frag.append(h("span", { class: "sub", text: inc.summary }));
    return frag;
  }

  const rowFor = (id) => (id ? document.querySelector(`#queue-table tr[data-incident-id="${CSS.escape(String(id))}"]`) : null);

  /** Roving tab stop: exactly one row is reachable with Tab. */
  function ensureTabStop() {
    const rows = document.querySelectorAll("#queue-table tr[data-incident-id]");
    rows.forEach((r) => r.setAttribute("tabindex", "-1"));
    const target = rowFor(state.selectedId) || rows[0];
    if (target) target.setAttribute("tabindex", "0");
  }

  function selectRow(id, focus) {
    if (state.selectedId !== id) {
      const prev = rowFor(state.selectedId);
      if (prev) prev.classList.remove("is-selected");
      state.selectedId = id;
      const row = rowFor(id);
      if (row) row.classList.add("is-selected");
      ensureTabStop();
    }
    if (focus) {
      const row = rowFor(id);
      if (row) {
        row.focus();
        row.scrollIntoView({ block: "nearest" });
      }
    }
  }

  function moveSelection(delta) {
    const ids = orderedIds();
    if (ids.length === 0) return;
    let i = ids.indexOf(state.selectedId);
    i = i < 0 ? (delta > 0 ? 0 : ids.length - 1) : Math.min(ids.length - 1, Math.max(0, i + delta));
    selectRow(ids[i], true);
  }

  function updateBulkBar() {
    const n = state.bulk.size;
    $("bulk-count").textContent = `${n} selected`;
    $("bulk-resolve").textContent = n ? `Resolve selected (${n})` : "Resolve selected";
  }

  async function onBulkResolve(ev) {
    ev.preventDefault();
    const outcome = $("bulk-outcome").value;
    const keys = [...state.bulk];
    if (keys.length === 0) return say("Tick at least one incident first.", "error");
    if (!outcome) {
      $("bulk-outcome").focus();
      return say("Choose an outcome for the selected incidents.", "error");
    }
    // Send the ids as the server gave them (numbers stay numbers).
    const ids = keys.map((k) => (state.incidents.get(k) || { id: k }).id);
    await busy($("bulk-resolve"), async () => {
      const res = await api("POST", "/incidents/bulk-resolve", { incidents: ids, outcome });
      const resolved = res.resolved || [];
      const rejected = res.rejected || [];
      applyIncidents(resolved.map((id) => Object.assign({}, state.incidents.get(String(id)) || { id }, { state: "resolved" })));
      for (const id of resolved) state.bulk.delete(String(id));
      let text = `Resolved ${resolved.length} incident${resolved.length === 1 ? "" : "s"} as “${outcomeLabel(outcome)}”.`;
      if (rejected.length) {
        text += ` ${rejected.length} not resolved: ` + rejected.map((r) => `#${r.id}: ${r.message || human(r.error)}`).join("; ");
      }
      say(text, rejected.length ? "error" : "success");
      updateBulkBar();
      loadQueue();
    });
  }

  // ---------------------------------------------------------------- ages, SLA and the tick

  /** "normal" | "warn" | "overflow" | "critical". Server flags win; the local clock fills in between pushes. */
  function slaLevel(inc, ageS) {
    const t = state.thresholds;
    const sla = inc.sla || {};
    const unclaimed = isUnclaimed(inc);
    if (sla.critical || (unclaimed && ageS >= t.critical_s)) return "critical";
    if (sla.overflowed || (unclaimed && ageS >= t.overflow_s)) return "overflow";
    if (sla.warned || (unclaimed && ageS >= t.warn_s)) return "warn";
    return "normal";
  }

  const SLA_TEXT = { normal: "", warn: "Waiting", overflow: "Overdue", critical: "CRITICAL" };

  const ageOf = (inc) => (serverNow() - inc.arrived_at_ms) / 1000;

  /** Runs every second: ages, SLA colours and badges, the alarm sound. Touches only changed text. */
  function tickAges() {
    for (const row of document.querySelectorAll("#queue-table tr[data-incident-id]")) {
      const inc = state.incidents.get(row.dataset.incidentId);
      if (!inc) continue;
      const age = ageOf(inc);
      const level = slaLevel(inc, age);
      const ageEl = row.querySelector("[data-age]");
      const text = fmtAge(age);
      if (ageEl.textContent !== text) ageEl.textContent = text;
      if (row.dataset.sla !== level) {
        row.dataset.sla = level;
        const badge = row.querySelector("[data-sla]");
        badge.textContent = SLA_TEXT[level];
        badge.className = `sla-badge sla-${level}`;
      }
    }
    if (state.openIncident && !$("incident-panel").hidden) {
      const inc = state.openIncident;
      const age = ageOf(inc);
      const level = inc.state === "resolved" ? "normal" : slaLevel(inc, age);
      $("inc-age").textContent = fmtAge(age) + (SLA_TEXT[level] ? ` — ${SLA_TEXT[level]}` : "");
      $("inc-age").dataset.sla = level;
    }
  }

  function tick() {
    if (!state.user) return;
    tickAges();
    alarmSoundTick();
  }

  /** The header shows waiting life-critical alarms on every screen; the title does too. */
  function updateAlarmIndicators() {
    const n = state.user && canQueue() ? unclaimedLifeCritical() : 0;
    const btn = $("alarm-waiting");
    btn.hidden = n === 0 || state.screen === "queue";
    btn.textContent = n ? `${n} life-critical waiting — go to queue` : "";
    document.title = state.user ? (n ? `(${n}) LIFE-CRITICAL — Warden console` : "Warden console") : document.title;
    $("stale-banner").hidden = !state.user || !canQueue() || ws.connState === "live";
  }

  // ---------------------------------------------------------------- alarm sound

  const sound = { ctx: null, muted: false, lastBeep: 0 };

  /** Browsers only start audio after a user gesture, so the context is created/resumed on one. */
  function unlockAudio() {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    if (!sound.ctx) {
      try {
        sound.ctx = new AC();
      } catch (_) {
        return;
      }
    }
    if (sound.ctx.state === "suspended") sound.ctx.resume().catch(() => {});
    updateSoundHint();
  }

  function tone(ctx, freq, start, dur) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    // Short ramps avoid clicks; the level is firm but not piercing.
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.3, start + 0.02);
    gain.gain.setValueAtTime(0.3, start + dur - 0.04);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + dur);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start);
    osc.stop(start + dur + 0.02);
  }

  function beep() {
    const ctx = sound.ctx;
    if (!ctx || ctx.state !== "running") return false;
    const t = ctx.currentTime + 0.01;
    tone(ctx, 880, t, 0.2);
    tone(ctx, 660, t + 0.26, 0.2);
    return true;
  }

  function alarmSoundTick() {
    const waiting = canQueue() && unclaimedLifeCritical() > 0;
    updateSoundHint(waiting);
    if (!waiting || sound.muted) return;
    const now = Date.now();
    if (now - sound.lastBeep >= BEEP_EVERY_MS && beep()) sound.lastBeep = now;
  }

  function updateSoundHint(waiting = canQueue() && unclaimedLifeCritical() > 0) {
    const blocked = !sound.ctx || sound.ctx.state !== "running";
    $("sound-hint").hidden = !(waiting && blocked && !sound.muted);
  }

  function setMuted(muted) {
    sound.muted = muted;
    $("mute-toggle").setAttribute("aria-pressed", String(muted));
    updateSoundHint();
  }

  function toggleMute() {
    setMuted(!sound.muted);
    say(sound.muted ? "Alarm sound muted. Life-critical alarms will be silent until you unmute." : "Alarm sound on.");
  }

  // ---------------------------------------------------------------- WebSocket

  const ws = { sock: null, attempt: 0, timer: null, wanted: false, connState: "offline" };

  const CONN_TEXT = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting — queue may be stale",
    offline: "Not connected",
    unused: "Live updates not used",
  };

  function setConn(s, detail) {
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

  function wsStart() {
    ws.wanted = true;
    ws.attempt = 0;
    wsConnect();
  }

  function wsStop() {
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
      } catch (err) {
        if (err.status === 401) return;
      }
      wsConnect();
    }, delay);
  }

  function wsForceReconnect() {
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

  function wsRetryNow() {
    if (ws.wanted && !ws.sock) {
      ws.attempt = Math.max(ws.attempt, 1);
      wsConnect();
    }
  }

  function onWsMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (_) {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "hello") setClock(msg.server_time_ms);
    else if (msg.type === "incidents") {
      setClock(msg.server_time_ms);
      const list = msg.incidents || [];
      if (queueLoading) pendingDuringLoad.push(...list);
      if (!state.queueLoaded) loadQueue();
      else applyIncidents(list);
    } else if (msg.type === "resync") loadQueue();
  }

  // ---------------------------------------------------------------- incident panel

  async function openIncident(id) {
    const key = String(id);
    const inc = state.incidents.get(key);
    state.openId = key;
    state.openIncident = inc || null;
    state.panelClient = null;
    $("incident-panel").hidden = false;
    $("inc-note").value = "";
    $("inc-outcome").value = "";
    clear($("inc-client"));
    clear($("inc-events"));
    clear($("inc-signals"));
    for (const r of document.querySelectorAll("#queue-table tr[aria-current]")) r.removeAttribute("aria-current");
    const row = rowFor(key);
    if (row) row.setAttribute("aria-current", "true");
    if (inc) renderPanelIncident();
    $("inc-title").focus();
    await loadIncidentDetail();
    const current = state.openIncident;
    if (current && current.client && sameId(state.openId, key)) loadPanelClient(current.client.id);
    else renderPanelClient();
  }

  async function loadIncidentDetail() {
    const key = state.openId;
    if (!key) return;
    try {
      const d = await api("GET", `/incidents/${enc(key)}`);
      if (!sameId(state.openId, key)) return;
      if (d.incident.state === "resolved" || !isResolvedLocally(key)) state.openIncident = d.incident;
      renderPanelIncident();
      renderEvents(d.events || []);
      renderSignals($("inc-signals"), d.signals || [], "incident-signal");
    } catch (err) {
      if (err.status !== 401) say(`Could not load the incident: ${err.message}`, "error");
    }
  }

  /** WebSocket changes to the open incident refresh its history, at most twice a second. */
  function scheduleDetailRefresh() {
    clearTimeout(state.detailTimer);
    state.detailTimer = setTimeout(loadIncidentDetail, 500);
  }

  /** After a reload of the queue, keep the open panel in step with the new data. */
  function syncOpenIncident() {
    if (!state.openId) return;
    const inc = state.incidents.get(state.openId);
    if (inc) {
      state.openIncident = inc;
      renderPanelIncident();
    }
  }

  function renderPanelIncident() {
    const inc = state.openIncident;
    if (!inc) return;
    const me = state.user;
    const mine = inc.holder && me && sameId(inc.holder.id, me.id);
    $("inc-title").textContent = `${kindLabel(inc.kind)} — ${inc.group_count ? `storm group of ${inc.group_count}` : inc.client ? inc.client.name : inc.device ? deviceName(inc.device) : inc.area || "unknown source"}`;

    const badges = clear($("inc-badges"));
    badges.append(h("span", { class: `prio prio-${inc.priority}`, text: PRIORITY_LABEL[inc.priority] || human(inc.priority) }));
    if (inc.group_count) badges.append(" ", h("span", { class: "tag", text: `Storm group: ${inc.group_count} incidents` }));
    badges.append(" ", h("span", { class: "tag mono", text: `#${inc.id}` }));

    const st = $("inc-state");
    st.textContent = stateLabel(inc.state);
    st.dataset.state = inc.state;
    st.className = `state state-${inc.state}`;
    const holder = $("inc-holder");
    holder.textContent = inc.holder ? nameOf(inc.holder) : "Nobody";
    $("inc-holder-you").hidden = !mine;
    holder.dataset.holderId = inc.holder ? String(inc.holder.id) : "";
    $("inc-arrived").textContent = fmtTime(inc.arrived_at);
    $("inc-claimed").textContent = fmtTime(inc.claimed_at);
    $("inc-signal-count").textContent = String(inc.signal_count ?? "—");
    $("inc-device").textContent = inc.device ? [inc.device.label, inc.device.account ? `account ${inc.device.account}` : ""].filter(Boolean).join(", ") || `#${inc.device.id}` : "—";
    $("inc-area").textContent = inc.area || "—";
    $("inc-summary").textContent = inc.summary || "—";

    const resolved = inc.state === "resolved";
    const note = $("inc-resolved-note");
    note.hidden = !resolved;
    note.textContent = resolved ? `Resolved${inc.outcome ? `: ${outcomeLabel(inc.outcome)}` : ""}${inc.resolved_at ? `, ${fmtTime(inc.resolved_at)}` : ""}. It has left the queue.` : "";

    // Buttons stay focusable unless the action cannot make sense; the server has the last word.
    $("inc-claim").disabled = resolved || !!mine;
    $("inc-release").disabled = resolved || !inc.holder;
    $("inc-takeover").disabled = resolved || !inc.holder || !!mine;
    $("inc-resolve").disabled = resolved;
    $("inc-outcome").disabled = resolved;
    tickAges();
  }

  function renderEvents(events) {
    const ol = clear($("inc-events"));
    if (events.length === 0) return ol.append(h("li", { class: "empty", text: "No history yet." }));
    for (const e of events) {
      const effect = summarise(e.effect);
      ol.append(h("li", { testid: "incident-event" },
        h("time", { datetime: e.at || "", text: fmtTime(e.at) }), " ",
        h("strong", { text: human(e.kind) }),
        effect ? h("span", { class: "sub", text: effect }) : null));
    }
  }

  function renderSignals(container, signals, testid) {
    clear(container);
    if (!signals || signals.length === 0) return container.append(emptyState("No recent signals."));
    container.append(table([
      { label: "Received", cell: (s) => fmtTime(s.received_at) },
      { label: "Kind", cell: (s) => human(s.kind) },
      { label: "Source", cell: (s) => s.source || "—" },
      { label: "Summary", cell: (s) => s.summary || summarise(s.decoded) || "—" },
      { label: "Raw bytes", cell: (s) => rawToggle(s.raw) },
    ], signals, { caption: "Recent signals", rowProps: () => ({ testid }) }));
  }

  let rawSeq = 0;

  /**
   * Raw bytes one click away: a button (so Enter and Space work) that shows or hides the
   * bytes as printable text (control bytes escaped, e.g. \x14) and as hex.
   */
  function rawToggle(raw) {
    if (!raw) return "—";
    const id = `raw-${++rawSeq}`;
    const more = raw.truncated ? ` (first ${raw.hex.length / 2} of ${raw.len} bytes)` : "";
    const region = h("div", { id, class: "raw-bytes", testid: "raw-bytes", hidden: true },
      h("p", { class: "raw-label", text: `Text${more}` }),
      h("pre", { testid: "raw-printable" }, h("code", { text: raw.printable })),
      h("p", { class: "raw-label", text: "Hex" }),
      h("pre", { testid: "raw-hex" }, h("code", { text: raw.hex.replace(/(..)(?!$)/g, "$1 ") })));
    const label = `${raw.len} byte${raw.len === 1 ? "" : "s"}`;
    const button = h("button", {
      type: "button", class: "link", testid: "raw-toggle",
      "aria-expanded": "false", "aria-controls": id, text: `Show ${label}`,
    });
    button.addEventListener("click", () => {
      const open = region.hidden;
      region.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      button.textContent = `${open ? "Hide" : "Show"} ${label}`;
    });
    return h("div", { class: "raw" }, button, region);
  }

  function closePanel(returnFocus = true) {
    const wasOpen = !!state.openId;
    clearTimeout(state.detailTimer);
    state.openId = null;
    state.openIncident = null;
    state.panelClient = null;
    $("incident-panel").hidden = true;
    clear($("inc-client"));
    for (const r of document.querySelectorAll("#queue-table tr[aria-current]")) r.removeAttribute("aria-current");
    if (wasOpen && returnFocus) {
      const row = rowFor(state.selectedId) || document.querySelector("#queue-table tr[data-incident-id]");
      if (row) row.focus();
      else $("queue-title").focus();
    }
  }

  /** claim / release / takeover: POST, then show the returned incident. */
  async function incidentCommand(action, button) {
    const key = state.openId;
    if (!key) return;
    const done = { claim: "You have claimed this incident.", release: "Released back to the queue.", takeover: "You have taken over this incident." };
    await busy(button, async () => {
      const res = await api("POST", `/incidents/${enc(key)}/${action}`);
      applyIncidents([res.incident]);
      say(done[action], "success");
    });
    renderPanelIncident(); // busy() re-enabled the button; the new state decides
  }

  async function onResolve(ev) {
    ev.preventDefault();
    const key = state.openId;
    const outcome = $("inc-outcome").value;
    if (!key) return;
    if (!outcome) {
      $("inc-outcome").focus();
      return say("Choose an outcome before resolving.", "error");
    }
    await busy($("inc-resolve"), async () => {
      const res = await api("POST", `/incidents/${enc(key)}/resolve`, { outcome });
      const inc = res.incident;
      // Move the keyboard selection on before the row disappears.
      const ids = orderedIds();
      const i = ids.indexOf(key);
      if (state.selectedId === key) state.selectedId = ids[i + 1] || ids[i - 1] || null;
      applyIncidents([inc]);
      if (sameId(state.openId, key)) {
        state.openIncident = inc;
        renderPanelIncident();
      }
      say(`Resolved as “${outcomeLabel(outcome)}”. Press Escape to close the panel.`, "success");
    });
    renderPanelIncident();
  }

  async function onNote(ev) {
    ev.preventDefault();
    const key = state.openId;
    const text = $("inc-note").value.trim();
    if (!key) return;
    if (!text) {
      $("inc-note").focus();
      return say("Type the note first.", "error");
    }
    await busy($("inc-note-submit"), async () => {
      const res = await api("POST", `/incidents/${enc(key)}/note`, { text });
      $("inc-note").value = "";
      if (res && res.incident) applyIncidents([res.incident]);
      say("Note added.", "success");
      loadIncidentDetail();
    });
  }

  async function loadPanelClient(clientId) {
    const key = state.openId;
    try {
      const c = await api("GET", `/clients/${enc(clientId)}`);
      if (!sameId(state.openId, key)) return;
      state.panelClient = c;
      renderPanelClient();
    } catch (err) {
      if (err.status === 401 || !sameId(state.openId, key)) return;
      clear($("inc-client")).append(h("p", { class: "banner banner-warn", text: `Could not load the client record: ${err.message}` }));
    }
  }

  function renderPanelClient() {
    const box = $("inc-client");
    if (!state.panelClient) return clear(box);
    renderClientRecord(box, state.panelClient);
  }

  // ---------------------------------------------------------------- client record

  // Words that mean a call must be made differently (text relay, interpreter, large print...).
  const COMM_ALERT = /deaf|hard of hearing|hearing|bsl|sign language|large print|blind|sight|visual|speech|text ?relay|lip/i;

  /**
   * The client record, shared by the incident panel and the Clients screen. Only one copy is
   * in the page at a time so the client-* test ids stay unique.
   */
  function renderClientRecord(container, c) {
    for (const other of [$("inc-client"), $("client-view-record")]) if (other !== container) clear(other);
    clear(container);
    const rec = h("section", { class: "client-record", testid: "client-record", "aria-labelledby": "client-record-h", dataset: { clientId: String(c.id) } });
    rec.append(h("h3", { id: "client-record-h" }, "Client: ", h("span", { testid: "client-name", text: c.name })));

    // Communication needs go first: they change how the operator speaks to the client.
    const comm = [];
    if (c.communication_needs) comm.push(h("li", { testid: "client-communication-needs", text: c.communication_needs }));
    if (c.interpreter_needed) comm.push(h("li", { testid: "client-interpreter", text: `Interpreter needed (${c.language || "language not recorded"})` }));
    if (c.preferred_contact && c.preferred_contact !== "phone") comm.push(h("li", { text: `Preferred contact: ${CONTACT_LABEL[c.preferred_contact] || human(c.preferred_contact)}` }));
    if (comm.length) {
      const strong = COMM_ALERT.test(c.communication_needs || "") || c.interpreter_needed || c.preferred_contact === "text_relay";
      rec.append(h("div", { class: "comm-needs" + (strong ? " comm-strong" : ""), testid: "client-comm", role: "note" },
        h("p", { class: "comm-title", text: "⚠ Communication needs" }), h("ul", null, comm)));
    }

    const age = c.date_of_birth ? yearsSince(c.date_of_birth) : null;
    rec.append(facts([
      ["Reference", c.external_ref],
      ["Date of birth", c.date_of_birth ? `${fmtDate(c.date_of_birth)}${age !== null ? ` (age ${age})` : ""}` : ""],
      ["Address", [c.address, c.postcode].filter(Boolean).join(", "), { testid: "client-address" }],
      ["Phone", c.phone ? telLink(c.phone, "client-phone") : ""],
      ["Area", c.area],
      ["Language", c.language ? c.language + (c.interpreter_needed ? " — interpreter needed" : "") : ""],
      ["Preferred contact", CONTACT_LABEL[c.preferred_contact] || human(c.preferred_contact)],
      ["Access notes", c.access_notes, { testid: "client-access-notes", class: "prewrap" }],
      ["Medical notes", c.medical_notes, { testid: "client-medical-notes", class: "prewrap" }],
    ]));

    rec.append(keySafeBlock(c));

    rec.append(h("h4", { text: "Responders and keyholders (call in this order)" }));
    const responders = [...(c.responders || [])].sort((a, b) => a.position - b.position);
    const ol = h("ol", { class: "responders", testid: "client-responders" });
    if (responders.length === 0) ol.append(h("li", { class: "empty", text: "No responders recorded." }));
    for (const r of responders) {
      ol.append(h("li", { testid: "client-responder" },
        h("strong", { text: r.name }),
        r.relationship ? ` (${r.relationship})` : "",
        r.is_keyholder ? h("span", { class: "tag tag-key", text: "Keyholder" }) : null,
        " ", telLink(r.phone),
        r.notes ? h("span", { class: "sub", text: r.notes }) : null));
    }
    rec.append(ol);

    rec.append(h("h4", { text: "Devices" }));
    const devices = c.devices || [];
    rec.append(devices.length === 0 ? emptyState("No devices linked.") : table([
      { label: "Account", cell: (d) => d.account },
      { label: "Label", cell: (d) => d.label || "—" },
      { label: "Type", cell: (d) => d.device_type || "—" },
      { label: "Protocol", cell: (d) => PROTOCOL_LABEL[d.protocol] || human(d.protocol) },
      { label: "Test interval", cell: (d) => fmtInterval(d.test_interval_seconds) },
    ], devices, { caption: "Devices", testid: "client-devices" }));

    rec.append(h("h4", { text: "Recent signals" }));
    const sig = h("div", { testid: "client-signals" });
    renderSignals(sig, c.recent_signals || [], "client-signal");
    rec.append(sig);
    container.append(rec);
  }

  function keySafeBlock(c) {
    const box = h("div", { class: "key-safe", testid: "client-key-safe" });
    if (!c.key_safe_set) {
      box.append(h("p", { text: "Key safe: no code recorded." }));
      return box;
    }
    const btn = h("button", { type: "button", testid: "client-key-safe-reveal", "aria-describedby": "key-safe-note", text: "Reveal key-safe code" });
    const note = h("p", { id: "key-safe-note", class: "hint", text: "Each reveal is recorded in the audit trail with your name and the time." });
    const out = h("p", { class: "key-safe-out", "aria-live": "polite" });
    btn.addEventListener("click", () =>
      busy(btn, async () => {
        const res = await api("POST", `/clients/${enc(c.id)}/key-safe/reveal`);
        clear(out).append("Key-safe code: ", h("output", { class: "key-code", testid: "client-key-safe-value", text: res.key_safe }),
          " ", h("span", { class: "hint", text: "(reveal recorded)" }));
        say("Key-safe code revealed. This has been recorded.", "success");
      }));
    box.append(h("p", null, btn), note, out);
    return box;
  }

  // ---------------------------------------------------------------- out-of-hours desk

  async function enterOoh() {
    await loadCategories();
    searchJobs();
  }

  async function loadCategories() {
    try {
      state.categories = (await api("GET", "/ooh/categories")) || [];
    } catch (err) {
      if (err.status !== 401) say(`Could not load categories: ${err.message}`, "error");
      return;
    }
    const sel = $("ooh-category");
    const keep = sel.value;
    clear(sel).append(h("option", { value: "", text: "Choose a category…" }));
    for (const c of state.categories) sel.append(h("option", { value: c.code, text: c.name }));
    sel.value = keep;
    updateCategoryHint();
  }

  /** Tell the operator before submitting who the job will go to, or that nobody is on call. */
  function updateCategoryHint() {
    const c = state.categories.find((x) => x.code === $("ooh-category").value);
    const hint = $("ooh-category-hint");
    if (!c) hint.textContent = "";
    else if (c.oncall_name || c.oncall_phone) hint.textContent = `On call: ${[c.oncall_name, c.oncall_phone].filter(Boolean).join(", ")}`;
    else hint.textContent = "No on-call contact is set for this category: the job will be unrouted.";
  }

  async function onOohSubmit(ev) {
    ev.preventDefault();
    const form = $("ooh-form");
    if (!form.reportValidity()) return;
    const body = {
      category: $("ooh-category").value,
      caller_name: fieldValue("ooh-caller-name"),
      caller_phone: fieldValue("ooh-caller-phone"),
      address: fieldValue("ooh-address"),
      description: fieldValue("ooh-description"),
      urgency: $("ooh-urgency").value,
    };
    await busy($("ooh-submit"), async () => {
      const job = await api("POST", "/ooh/jobs", body);
      showOohResult(job);
      form.reset();
      updateCategoryHint();
      searchJobs();
    });
  }

  function showOohResult(job) {
    const box = $("ooh-result");
    $("ooh-reference").textContent = job.reference;
    const routed = $("ooh-routed-to");
    if (job.routed_to) {
      routed.className = "routed";
      routed.dataset.routed = "true";
      clear(routed).append("Routed to ", h("strong", { text: job.routed_to.name || "on-call contact" }), job.routed_to.phone ? ", " : "", job.routed_to.phone ? telLink(job.routed_to.phone) : "");
    } else {
      routed.className = "banner banner-warn";
      routed.dataset.routed = "false";
      routed.textContent = "Warning: not routed. Nobody is on call for this category. Phone the duty manager and record what you did in a status update.";
    }
    // The form steps aside so the reference is the first thing on the card.
    $("ooh-form").hidden = true;
    box.hidden = false;
    box.focus();
    say(`Call logged. Give the caller this reference: ${job.reference}`, "success");
  }

  async function copyReference() {
    const ref = $("ooh-reference").textContent;
    try {
      await navigator.clipboard.writeText(ref);
      say(`Copied ${ref}.`, "success");
    } catch (_) {
      // Clipboard API refused (e.g. plain http): select the text so Ctrl+C works.
      const range = document.createRange();
      range.selectNodeContents($("ooh-reference"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      say("Reference selected: press Ctrl+C to copy it.");
    }
  }

  async function searchJobs(ev) {
    if (ev) ev.preventDefault();
    const q = fieldValue("ooh-search");
    const box = $("ooh-results");
    try {
      const jobs = (await api("GET", `/ooh/jobs${q ? `?q=${enc(q)}` : ""}`)) || [];
      clear(box);
      box.append(h("p", { class: "hint", text: q ? `${jobs.length} job${jobs.length === 1 ? "" : "s"} matching “${q}”.` : "Most recent jobs." }));
      if (jobs.length === 0) return;
      box.append(table([
        { label: "Reference", cell: (j) => h("button", { type: "button", class: "link ref", text: j.reference, onclick: () => openJob(j.reference) }) },
        { label: "Logged", cell: (j) => fmtTime(j.created_at) },
        { label: "Category", cell: (j) => categoryName(j.category) },
        { label: "Urgency", cell: (j) => h("span", { class: `tag urg-${j.urgency}`, text: human(j.urgency) }) },
        { label: "Status", cell: (j) => JOB_STATUS_LABEL[j.status] || human(j.status) },
        { label: "Caller", cell: (j) => j.caller_name },
        { label: "Address", cell: (j) => j.address || "—" },
      ], jobs, { caption: "Out-of-hours jobs", rowProps: (j) => ({ testid: "ooh-result-row", dataset: { reference: j.reference } }) }));
    } catch (err) {
      if (err.status !== 401) clear(box).append(h("p", { class: "form-error", text: err.message }));
    }
  }

  const categoryName = (code) => (state.categories.find((c) => c.code === code) || {}).name || human(code);

  async function openJob(reference) {
    try {
      renderJob(await api("GET", `/ooh/jobs/${enc(reference)}`));
      $("ooh-job").focus();
    } catch (err) {
      if (err.status !== 401) sayError(err);
    }
  }

  function renderJob(job) {
    state.currentJob = job;
    $("ooh-job").hidden = false;
    $("ooh-job-h").textContent = `Job ${job.reference}`;
    const dl = $("ooh-job-facts");
    dl.replaceWith(Object.assign(facts([
      ["Status", JOB_STATUS_LABEL[job.status] || human(job.status), { testid: "ooh-job-status" }],
      ["Category", categoryName(job.category)],
      ["Urgency", human(job.urgency)],
      ["Caller", job.caller_name],
      ["Caller phone", job.caller_phone ? telLink(job.caller_phone) : ""],
      ["Address", job.address, { class: "prewrap" }],
      ["Description", job.description, { class: "prewrap" }],
      ["Routed to", job.routed_to ? [job.routed_to.name, job.routed_to.phone].filter(Boolean).join(", ") : "Not routed"],
      ["Logged", `${fmtTime(job.created_at)} by ${nameOf(job.created_by)}`],
    ]), { id: "ooh-job-facts" }));
    const ol = clear($("ooh-job-updates"));
    const updates = job.updates || [];
    if (updates.length === 0) ol.append(h("li", { class: "empty", text: "No updates yet." }));
    for (const u of updates) {
      ol.append(h("li", { testid: "ooh-job-update" },
        h("time", { datetime: u.at || "", text: fmtTime(u.at) }), " ",
        h("strong", { text: JOB_STATUS_LABEL[u.status] || human(u.status) }),
        u.by ? ` by ${nameOf(u.by)}` : "",
        u.note ? h("span", { class: "sub prewrap", text: u.note }) : null));
    }
  }

  async function onJobStatus(ev) {
    ev.preventDefault();
    const job = state.currentJob;
    if (!job || !$("ooh-status-form").reportValidity()) return;
    const status = $("ooh-status").value;
    const note = fieldValue("ooh-status-note");
    if (status === "closed" && !note) {
      $("ooh-status-note").focus();
      return say("Add a note saying how the job was closed.", "error");
    }
    await busy($("ooh-status-submit"), async () => {
      const updated = await api("POST", `/ooh/jobs/${enc(job.reference)}/status`, { status, note });
      renderJob(updated);
      $("ooh-status-form").reset();
      say(`Job ${updated.reference} is now ${(JOB_STATUS_LABEL[updated.status] || updated.status).toLowerCase()}.`, "success");
      searchJobs();
    });
  }

  // ---------------------------------------------------------------- clients screen

  function enterClients() {
    searchClients();
    if (state.currentClient && !$("client-view").hidden) renderClientRecord($("client-view-record"), state.currentClient);
  }

  async function searchClients(ev) {
    if (ev) ev.preventDefault();
    const q = fieldValue("clients-search");
    const box = $("clients-results");
    try {
      const list = (await api("GET", `/clients${q ? `?q=${enc(q)}` : ""}`)) || [];
      clear(box);
      if (list.length === 0) return box.append(emptyState(q ? "No clients match." : "No clients yet."));
      const shown = list.slice(0, MAX_CLIENT_ROWS);
      if (shown.length < list.length) box.append(h("p", { class: "hint", text: `Showing ${shown.length} of ${list.length}: search to narrow down.` }));
      box.append(table([
        { label: "Name", cell: (c) => h("button", { type: "button", class: "link", text: c.name, onclick: () => viewClient(c.id) }) },
        { label: "Reference", cell: (c) => c.external_ref },
        { label: "Address", cell: (c) => [c.address, c.postcode].filter(Boolean).join(", ") || "—" },
        { label: "Area", cell: (c) => c.area || "—" },
      ], shown, { caption: "Clients", rowProps: (c) => ({ testid: "client-result-row", dataset: { clientId: String(c.id) } }) }));
    } catch (err) {
      if (err.status !== 401) clear(box).append(h("p", { class: "form-error", text: err.message }));
    }
  }

  async function viewClient(id) {
    try {
      showClient(await api("GET", `/clients/${enc(id)}`));
    } catch (err) {
      if (err.status !== 401) sayError(err);
    }
  }

  function showClient(c) {
    state.currentClient = c;
    $("client-form").hidden = true;
    $("client-view").hidden = false;
    renderClientRecord($("client-view-record"), c);
    $("client-record-h").setAttribute("tabindex", "-1");
    $("client-record-h").focus();
  }

  const CLIENT_TEXT_FIELDS = ["external_ref", "name", "date_of_birth", "address", "postcode", "phone", "area", "language", "communication_needs", "preferred_contact", "access_notes", "medical_notes"];

  function openClientForm(c) {
    state.editingClientId = c ? c.id : null;
    $("client-form-h").textContent = c ? `Edit ${c.name}` : "New client";
    for (const f of CLIENT_TEXT_FIELDS) $(`cf-${f}`).value = (c && c[f]) || "";
    $("cf-date_of_birth").value = c && c.date_of_birth ? String(c.date_of_birth).slice(0, 10) : "";
    if (!c || !c.language) $("cf-language").value = "English";
    if (!c || !c.preferred_contact) $("cf-preferred_contact").value = "phone";
    $("cf-interpreter_needed").checked = !!(c && c.interpreter_needed);
    $("cf-key_safe").value = "";
    $("cf-key_safe_clear").checked = false;
    $("cf-key_safe_clear").closest(".field").hidden = !(c && c.key_safe_set);
    $("cf-key-hint").textContent = c && c.key_safe_set ? "A code is set. Leave blank to keep it; the code is never shown here." : "No code is set. Type one to add it.";
    state.responders = ((c && c.responders) || []).slice().sort((a, b) => a.position - b.position).map((r) => Object.assign({}, r));
    renderResponderEditor();
    $("client-form-error").hidden = true;
    $("client-view").hidden = true;
    $("client-form").hidden = false;
    $("cf-external_ref").focus();
  }

  /** Responders editor: one fieldset per responder, in call order, with move/remove buttons. */
  function renderResponderEditor(focusIndex, focusWhat) {
    const ol = clear($("cf-responders"));
    const list = state.responders;
    let focusTarget = null;
    list.forEach((r, i) => {
      const idp = `resp-${i}`;
      const input = (name, label, type = "text") => {
        const props = { id: `${idp}-${name}`, type, testid: `responder-${name}`, oninput: (ev) => (r[name] = type === "checkbox" ? ev.target.checked : ev.target.value), onchange: (ev) => (r[name] = type === "checkbox" ? ev.target.checked : ev.target.value) };
        if (type === "checkbox") props.checked = !!r[name];
        else props.value = r[name] || "";
        const el = h("input", props);
        const lab = h("label", { for: props.id, text: label });
        return h("div", { class: "field" + (type === "checkbox" ? " checkbox" : "") }, type === "checkbox" ? [el, lab] : [lab, el]);
      };
      const who = r.name || `responder ${i + 1}`;
      const move = (delta) => {
        const j = i + delta;
        [list[i], list[j]] = [list[j], list[i]];
        renderResponderEditor(j, delta < 0 ? "up" : "down");
      };
      const up = h("button", { type: "button", testid: "responder-up", text: "Move up", "aria-label": `Move ${who} up`, disabled: i === 0, onclick: () => move(-1) });
      const down = h("button", { type: "button", testid: "responder-down", text: "Move down", "aria-label": `Move ${who} down`, disabled: i === list.length - 1, onclick: () => move(1) });
      const remove = h("button", { type: "button", class: "quiet", testid: "responder-remove", text: "Remove", "aria-label": `Remove ${who}`, onclick: () => {
        list.splice(i, 1);
        renderResponderEditor(Math.min(i, list.length - 1), "name");
        if (list.length === 0) $("responder-add").focus();
        say(`Removed ${who} from the responders.`);
      } });
      ol.append(h("li", { testid: "responder-row" },
        h("fieldset", null, h("legend", { text: `Call ${i + 1}` }),
          h("div", { class: "grid-3" }, input("name", "Name"), input("relationship", "Relationship"), input("phone", "Phone", "tel"), input("notes", "Notes"), input("is_keyholder", "Keyholder", "checkbox")),
          h("div", { class: "toolbar" }, up, down, remove))));
      if (i === focusIndex) {
        focusTarget = focusWhat === "up" ? (up.disabled ? down : up) : focusWhat === "down" ? (down.disabled ? up : down) : $(`${idp}-name`);
      }
    });
    if (focusTarget) focusTarget.focus(); // keep the keyboard user on the item they moved
    if (list.length === 0) ol.append(h("li", { class: "empty", text: "No responders. Add at least one if the client has someone to call." }));
  }

  async function onClientSubmit(ev) {
    ev.preventDefault();
    const form = $("client-form");
    if (!form.reportValidity()) return;
    const body = {};
    for (const f of CLIENT_TEXT_FIELDS) body[f] = fieldValue(`cf-${f}`);
    body.date_of_birth = body.date_of_birth || null;
    body.area = body.area || null;
    body.interpreter_needed = $("cf-interpreter_needed").checked;
    body.responders = state.responders
      .filter((r) => (r.name || "").trim())
      .map((r, i) => ({
        position: i + 1,
        name: r.name.trim(),
        relationship: (r.relationship || "").trim(),
        phone: (r.phone || "").trim(),
        is_keyholder: !!r.is_keyholder,
        notes: (r.notes || "").trim(),
      }));
    const key = $("cf-key_safe").value.trim();
    if (key) body.key_safe = key;
    else if ($("cf-key_safe_clear").checked) body.key_safe = ""; // empty string clears the code
    const id = state.editingClientId;
    const err = $("client-form-error");
    await busy(form.querySelector("[type=submit]"), async () => {
      try {
        const saved = id === null ? await api("POST", "/clients", body) : await api("PUT", `/clients/${enc(id)}`, body);
        $("cf-key_safe").value = "";
        say(`Saved client ${saved.name}.`, "success");
        showClient(saved);
        searchClients();
      } catch (e) {
        if (e.status === 401) throw e;
        err.textContent = e.message;
        err.hidden = false;
        err.focus();
      }
    });
  }

  // ---------------------------------------------------------------- administration

  let adminTab = "users";

  function enterAdmin() {
    showAdminTab(adminTab);
  }

  function showAdminTab(tab) {
    adminTab = tab;
    for (const b of document.querySelectorAll(".subnav-btn")) b.setAttribute("aria-pressed", String(b.dataset.admin === tab));
    for (const s of document.querySelectorAll(".admin-section")) s.hidden = s.id !== `admin-${tab}`;
    ({ users: loadUsers, devices: loadDevices, categories: loadCategoryAdmin, csv: () => {} })[tab]();
  }

  // Users

  async function loadUsers() {
    try {
      state.users = (await api("GET", "/users")) || [];
      renderUsers();
    } catch (err) {
      if (err.status !== 401) sayError(err);
    }
  }

  function renderUsers() {
    const box = clear($("users-table"));
    box.append(table([
      { label: "Username", cell: (u) => u.username },
      { label: "Name", cell: (u) => u.display_name },
      { label: "Role", cell: (u) => ROLE_LABEL[u.role] || human(u.role) },
      { label: "Status", cell: (u) => (u.disabled ? h("span", { class: "tag tag-off", text: "Disabled" }) : "Active") },
      { label: "Actions", cell: (u) => h("span", { class: "row-actions" },
        h("button", { type: "button", testid: "user-edit", text: "Edit", "aria-label": `Edit ${u.username}`, onclick: () => editUser(u) }),
        h("button", { type: "button", testid: "user-disable", text: u.disabled ? "Enable" : "Disable", "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.username}`, onclick: (ev) => setUserDisabled(u, !u.disabled, ev.currentTarget) })) },
    ], state.users, { caption: "Users", rowProps: (u) => ({ testid: "user-row", dataset: { userId: String(u.id), username: u.username } }) }));
  }

  function userPayload(u, disabled) {
    return { username: u.username, display_name: u.display_name, role: u.role, disabled };
  }

  async function setUserDisabled(u, disabled, button) {
    await busy(button, async () => {
      await api("PUT", `/users/${enc(u.id)}`, userPayload(u, disabled));
      say(`${u.username} is now ${disabled ? "disabled" : "enabled"}.`, "success");
      await loadUsers();
    });
  }

  function editUser(u) {
    state.editingUserId = u.id;
    $("user-form-h").textContent = `Edit ${u.username}`;
    $("user-username").value = u.username;
    $("user-display-name").value = u.display_name;
    $("user-role").value = u.role;
    $("user-password").value = "";
    $("user-disabled").checked = !!u.disabled;
    $("user-form").querySelector("[type=submit]").textContent = "Save user";
    $("user-username").focus();
  }

  function resetUserForm() {
    state.editingUserId = null;
    $("user-form").reset();
    $("user-form-h").textContent = "New user";
    $("user-form").querySelector("[type=submit]").textContent = "Create user";
  }

  async function onUserSubmit(ev) {
    ev.preventDefault();
    if (!$("user-form").reportValidity()) return;
    const body = {
      username: fieldValue("user-username"),
      display_name: fieldValue("user-display-name"),
      role: $("user-role").value,
      disabled: $("user-disabled").checked,
    };
    const pw = $("user-password").value;
    const id = state.editingUserId;
    if (id === null && !pw) {
      $("user-password").focus();
      return say("A new user needs a password.", "error");
    }
    if (pw) body.password = pw;
    await busy($("user-form").querySelector("[type=submit]"), async () => {
      if (id === null) await api("POST", "/users", body);
      else await api("PUT", `/users/${enc(id)}`, body);
      say(`Saved user ${body.username}.`, "success");
      resetUserForm();
      await loadUsers();
    });
  }

  // Devices

  async function loadDevices(ev) {
    if (ev) ev.preventDefault();
    const q = fieldValue("device-filter");
    try {
      state.devices = (await api("GET", `/devices?limit=${MAX_DEVICE_ROWS}${q ? `&q=${enc(q)}` : ""}`)) || [];
      renderDevices();
    } catch (err) {
      if (err.status !== 401) sayError(err);
    }
  }

  function renderDevices() {
    const shown = state.devices;
    const box = clear($("devices-table"));
    box.append(h("p", { class: "hint", text: shown.length >= MAX_DEVICE_ROWS ? `Showing the first ${shown.length} devices: search to narrow down.` : `${shown.length} device${shown.length === 1 ? "" : "s"}.` }));
    box.append(table([
      { label: "Account", cell: (d) => d.account },
      { label: "Protocol", cell: (d) => PROTOCOL_LABEL[d.protocol] || human(d.protocol) },
      { label: "Label", cell: (d) => d.label || "—" },
      { label: "Type", cell: (d) => d.device_type || "—" },
      { label: "Test interval", cell: (d) => fmtInterval(d.test_interval_seconds) },
      { label: "Client ref", cell: (d) => d.client_ref || "—" },
      { label: "Area", cell: (d) => d.area || "—" },
      { label: "Actions", cell: (d) => h("button", { type: "button", testid: "device-edit", text: "Edit", "aria-label": `Edit device ${d.account}`, onclick: () => editDevice(d) }) },
    ], shown, { caption: "Devices", rowProps: (d) => ({ testid: "device-row", dataset: { deviceId: String(d.id) } }) }));
  }

  const DEVICE_FIELDS = { account: "device-account", protocol: "device-protocol", label: "device-label", device_type: "device-type", test_interval_seconds: "device-interval", client_ref: "device-client-ref", area: "device-area" };

  function editDevice(d) {
    state.editingDeviceId = d.id;
    for (const [k, id] of Object.entries(DEVICE_FIELDS)) $(id).value = d[k] ?? "";
    $("device-form-h").textContent = `Edit device ${d.account}`;
    $("device-form").querySelector("[type=submit]").textContent = "Save device";
    $("device-account").focus();
  }

  function resetDeviceForm() {
    state.editingDeviceId = null;
    $("device-form").reset();
    $("device-form-h").textContent = "New device";
    $("device-form").querySelector("[type=submit]").textContent = "Create device";
  }

  async function onDeviceSubmit(ev) {
    ev.preventDefault();
    if (!$("device-form").reportValidity()) return;
    const body = {};
    for (const [k, id] of Object.entries(DEVICE_FIELDS)) body[k] = fieldValue(id) || null;
    body.account = fieldValue("device-account");
    body.protocol = $("device-protocol").value;
    body.test_interval_seconds = body.test_interval_seconds ? Number(body.test_interval_seconds) : null;
    const id = state.editingDeviceId;
    await busy($("device-form").querySelector("[type=submit]"), async () => {
      if (id === null) await api("POST", "/devices", body);
      else await api("PUT", `/devices/${enc(id)}`, body);
      say(`Saved device ${body.account}.`, "success");
      resetDeviceForm();
      await loadDevices();
    });
  }

  // OOH categories (on-call contacts)

  async function loadCategoryAdmin() {
    await loadCategories();
    const box = clear($("categories-table"));
    box.append(table([
      { label: "Code", cell: (c) => h("span", { class: "mono", text: c.code }) },
      { label: "Name", cell: (c) => catInput(c, "name", "Name") },
      { label: "On-call name", cell: (c) => catInput(c, "oncall_name", "On-call name") },
      { label: "On-call phone", cell: (c) => catInput(c, "oncall_phone", "On-call phone") },
      { label: "Save", cell: (c) => h("button", { type: "button", testid: "category-save", text: "Save", "aria-label": `Save ${c.name}`, onclick: (ev) => saveCategory(c, ev.currentTarget) }) },
    ], state.categories, { caption: "Out-of-hours categories", rowProps: (c) => ({ testid: "category-row", dataset: { code: c.code } }) }));
  }

  function catInput(c, field, label) {
    return h("input", { id: `cat-${c.code}-${field}`, value: c[field] || "", type: field === "oncall_phone" ? "tel" : "text", testid: `category-${field}`, "aria-label": `${label} for ${c.name}` });
  }

  async function saveCategory(c, button) {
    const get = (f) => $(`cat-${c.code}-${f}`).value.trim();
    const body = { name: get("name") || c.name, oncall_name: get("oncall_name") || null, oncall_phone: get("oncall_phone") || null };
    await busy(button, async () => {
      await api("PUT", `/ooh/categories/${enc(c.code)}`, body);
      say(`Saved ${body.name}.`, "success");
      await loadCategories();
    });
  }

  // CSV import

  async function onImport(ev) {
    ev.preventDefault();
    const kind = $("import-type").value;
    const file = $("import-file").files[0];
    const csv = file ? await file.text() : $("import-text").value;
    const dry = $("import-dry-run").checked;
    const out = $("import-result");
    if (!csv.trim()) return say("Choose a CSV file or paste CSV text first.", "error");
    await busy(ev.submitter || $("import-form").querySelector("[type=submit]"), async () => {
      clear(out);
      try {
        const res = await api("POST", `/import/${kind}.csv${dry ? "?dry_run=true" : ""}`, csv, { contentType: "text/csv" });
        renderImportResult(res, dry);
      } catch (e) {
        if (e.status === 401) throw e;
        if (e.data && Array.isArray(e.data.errors) && e.data.errors.length) renderImportResult(e.data, dry);
        else out.append(h("p", { class: "form-error", text: e.status === 413 ? "The file is too large for one import. Split it into smaller files." : e.message }));
      }
      out.focus();
    });
  }

  function renderImportResult(res, dry) {
    const out = $("import-result");
    const errors = res.errors || [];
    if (errors.length) {
      out.append(h("p", { class: "form-error", text: `${errors.length} problem${errors.length === 1 ? "" : "s"} found. Nothing was imported: fix the rows below and try again.` }));
      out.append(table([
        { label: "Row", cell: (e) => String(e.row) },
        { label: "Column", cell: (e) => e.column || "—" },
        { label: "Problem", cell: (e) => e.message },
      ], errors, { caption: "Import errors", testid: "import-errors", rowProps: () => ({ testid: "import-error-row" }) }));
      return;
    }
    const verb = dry ? "would be" : "were";
    out.append(h("p", { class: "success", text: `${dry ? "Dry run passed: " : "Imported: "}${res.imported ?? 0} new and ${res.updated ?? 0} updated records ${verb} saved.${dry ? " Untick “Dry run” and import again to save them." : ""}` }));
  }

  // ---------------------------------------------------------------- audit

  function enterAudit() {
    loadAudit();
  }

  async function loadAudit(ev) {
    if (ev) ev.preventDefault();
    const params = new URLSearchParams();
    const type = fieldValue("audit-object-type");
    const id = fieldValue("audit-object-id");
    const limit = fieldValue("audit-limit");
    if (type) params.set("object_type", type);
    if (id) params.set("object_id", id);
    if (limit) params.set("limit", limit);
    const box = $("audit-table");
    try {
      const rows = (await api("GET", `/audit?${params}`)) || [];
      clear(box);
      if (rows.length === 0) return box.append(emptyState("No audit entries match."));
      box.append(table([
        { label: "When", cell: (a) => fmtTime(a.at) },
        { label: "Who", cell: (a) => (a.user ? nameOf(a.user) : "System") },
        { label: "Action", cell: (a) => human(a.action) },
        { label: "Object", cell: (a) => `${a.object_type}${a.object_id ? ` ${a.object_id}` : ""}` },
        { label: "Change", cell: auditChange },
      ], rows, { caption: "Audit entries", rowProps: () => ({ testid: "audit-row" }) }));
    } catch (err) {
      if (err.status !== 401) clear(box).append(h("p", { class: "form-error", text: err.message }));
    }
  }

  /** Before/after as a list of changed fields when both are objects, else the raw JSON. */
  function auditChange(a) {
    const b = a.before;
    const f = a.after;
    if (b == null && f == null) return "—";
    const isObj = (x) => x && typeof x === "object" && !Array.isArray(x);
    const details = h("details", null, h("summary", { text: "Show" }));
    if (isObj(b) && isObj(f)) {
      const keys = [...new Set([...Object.keys(b), ...Object.keys(f)])].filter((k) => asText(b[k]) !== asText(f[k]));
      const ul = h("ul", { class: "changes" });
      for (const k of keys) ul.append(h("li", null, h("strong", { text: k }), `: ${asText(b[k]) || "∅"} → ${asText(f[k]) || "∅"}`));
      if (keys.length === 0) ul.append(h("li", { text: "No field changed." }));
      details.append(ul);
    } else {
      if (b != null) details.append(h("p", { text: "Before:" }), h("pre", { text: JSON.stringify(b, null, 2) }));
      if (f != null) details.append(h("p", { text: "After:" }), h("pre", { text: JSON.stringify(f, null, 2) }));
    }
    return details;
  }

  function showClientAudit() {
    const c = state.currentClient;
    if (!c) return;
    $("audit-object-type").value = "client";
    $("audit-object-id").value = String(c.id);
    showScreen("audit");
  }

  // ---------------------------------------------------------------- rejected signals

  const SOURCE_LABEL = { serial: "Serial receiver", mqtt: "MQTT", dc09: "SIA DC-09", internal: "Warden" };
  const rejected = { next: null };

  function enterRejected() {
    loadRejected();
  }

  /** The counts and the first page; `older` appends the next page to the list instead. */
  async function loadRejected(ev, older = false) {
    if (ev && ev.preventDefault) ev.preventDefault();
    const hours = fieldValue("rejected-hours") || "24";
    const reason = fieldValue("rejected-reason");
    const params = new URLSearchParams({ hours, limit: "50" });
    if (reason) params.set("reason", reason);
    if (older && rejected.next) params.set("before", rejected.next);
    const list = $("rejected-list");
    try {
      const page = await api("GET", `/rejected?${params}`);
      rejected.next = page.next_before || null;
      $("rejected-more").hidden = !rejected.next;
      if (!older) renderRejectedCounts(page, hours);
      const rows = page.rejected || [];
      if (!older) clear(list);
      if (!older && rows.length === 0) return list.append(emptyState(reason ? `Nothing refused for “${human(reason)}” in this period.` : "Nothing refused in this period."));
      const columns = [
        { label: "Received", cell: (r) => fmtTime(r.received_at) },
        { label: "Reason", cell: (r) => [h("strong", { text: human(r.reason_code) }), h("span", { class: "sub", text: r.reason })] },
        { label: "Link", cell: (r) => `${SOURCE_LABEL[r.source] || r.source} · ${r.link_id}` },
        { label: "Raw bytes", cell: (r) => rawToggle(r.raw) },
      ];
      const rowProps = (r) => ({ testid: "rejected-row", dataset: { rejectedId: r.id, reason: r.reason_code } });
      const tbody = list.querySelector("tbody");
      if (!tbody) {
        list.append(table(columns, rows, { caption: "Most recent rejected signals", rowProps }));
      } else {
        // "Show older": the next page goes under the rows already shown.
        for (const r of rows) tbody.append(h("tr", rowProps(r), columns.map((c) => h("td", null, c.cell(r)))));
      }
    } catch (err) {
      if (err.status !== 401) clear(list).append(h("p", { class: "form-error", text: err.message }));
    }
  }

  function renderRejectedCounts(page, hours) {
    const period = $("rejected-hours").selectedOptions[0]?.textContent.toLowerCase() || `last ${hours} hours`;
    const total = page.total || 0;
    $("rejected-total").textContent = `${total} input${total === 1 ? "" : "s"} refused in the ${period}.`;
    // The reason picker offers every reason seen in the period (and keeps the current one).
    const sel = $("rejected-reason");
    const keep = sel.value;
    const reasons = [...new Set([...(page.counts || []).map((c) => c.reason_code), keep].filter(Boolean))].sort();
    clear(sel).append(h("option", { value: "", text: "All reasons" }));
    for (const r of reasons) sel.append(h("option", { value: r, text: human(r) }));
    sel.value = keep;
    const box = clear($("rejected-counts"));
    const counts = page.counts || [];
    if (counts.length === 0) return box.append(emptyState("Nothing refused in this period."));
    box.append(table([
      {
        label: "Reason",
        cell: (c) => h("button", {
          type: "button", class: "link", testid: "rejected-count-filter", text: human(c.reason_code),
          "aria-label": `Show only ${human(c.reason_code)}`,
          onclick: () => {
            sel.value = c.reason_code;
            loadRejected();
          },
        }),
      },
      { label: "Link type", cell: (c) => SOURCE_LABEL[c.source] || c.source },
      { label: "Count", cell: (c) => String(c.count) },
    ], counts, {
      caption: "Rejected signals by reason and link type",
      rowProps: (c) => ({ testid: "rejected-count-row", dataset: { reason: c.reason_code, source: c.source, count: String(c.count) } }),
    }));
  }

  // ---------------------------------------------------------------- keyboard

  /** True when a key press belongs to a text field, select or similar, not to the shortcuts. */
  function isTyping(target) {
    if (!target || !target.closest) return false;
    const el = target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
    if (!el) return false;
    if (el.tagName === "INPUT") return !["checkbox", "radio", "button", "submit", "reset", "file"].includes(el.type);
    return true;
  }

  function onKeyDown(ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (!state.user || isTyping(ev.target) || $("help-dialog").open) return;
    if (ev.key === "?") {
      ev.preventDefault();
      openHelp();
      return;
    }
    if (state.screen !== "queue" || !canQueue()) return;
    const onControl = ev.target.closest && ev.target.closest("button, a, input, summary");
    const handled = {
      j: () => moveSelection(1),
      ArrowDown: () => moveSelection(1),
      k: () => moveSelection(-1),
      ArrowUp: () => moveSelection(-1),
      Enter: () => (onControl ? false : openSelected()),
      c: () => withOpenIncident(() => {
        const b = $("inc-claim");
        if (b.disabled) say(state.openIncident && state.openIncident.state === "resolved" ? "This incident is resolved." : "You already hold this incident.");
        else b.click();
      }),
      r: () => withOpenIncident(() => $("inc-outcome").focus()),
      n: () => withOpenIncident(() => $("inc-note").focus()),
      Escape: () => (state.openId ? closePanel(true) : false),
    }[ev.key];
    if (handled && handled() !== false) ev.preventDefault();
  }

  function openSelected() {
    if (!state.selectedId) return moveSelection(1);
    return openIncident(state.selectedId);
  }

  /** c / r / n act on the open incident; with none open they open the selected row first. */
  async function withOpenIncident(fn) {
    if (!state.openId) {
      if (!state.selectedId) return say("Select an incident first (j / k or the arrow keys).");
      await openIncident(state.selectedId);
    }
    fn();
  }

  function openHelp() {
    const d = $("help-dialog");
    if (typeof d.showModal === "function") d.showModal();
    else d.setAttribute("open", "");
  }

  // ---------------------------------------------------------------- init

  function bind() {
    $("login-form").addEventListener("submit", onLoginSubmit);
    $("logout").addEventListener("click", logout);
    for (const b of document.querySelectorAll(".nav-btn")) b.addEventListener("click", () => showScreen(b.dataset.screen));
    $("alarm-waiting").addEventListener("click", () => {
      showScreen("queue");
      const first = document.querySelector("#queue-table tbody.lane-life_critical tr[data-incident-id]");
      if (first) selectRow(first.dataset.incidentId, true);
    });
    $("mute-toggle").addEventListener("click", toggleMute);
    $("help-open").addEventListener("click", openHelp);

    // Queue and panel
    $("bulk-bar").addEventListener("submit", onBulkResolve);
    $("bulk-clear").addEventListener("click", () => {
      state.bulk.clear();
      renderQueue();
    });
    $("inc-close").addEventListener("click", () => closePanel(true));
    $("inc-claim").addEventListener("click", (ev) => incidentCommand("claim", ev.currentTarget));
    $("inc-release").addEventListener("click", (ev) => incidentCommand("release", ev.currentTarget));
    $("inc-takeover").addEventListener("click", (ev) => incidentCommand("takeover", ev.currentTarget));
    $("inc-resolve-form").addEventListener("submit", onResolve);
    $("inc-note-form").addEventListener("submit", onNote);
    $("inc-note").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        $("inc-note-form").requestSubmit();
      }
    });

    // Out of hours
    $("ooh-form").addEventListener("submit", onOohSubmit);
    $("ooh-category").addEventListener("change", updateCategoryHint);
    $("ooh-copy").addEventListener("click", copyReference);
    $("ooh-another").addEventListener("click", () => {
      $("ooh-result").hidden = true;
      $("ooh-form").hidden = false;
      $("ooh-category").focus();
    });
    $("ooh-search-form").addEventListener("submit", searchJobs);
    $("ooh-status-form").addEventListener("submit", onJobStatus);

    // Clients
    $("clients-search-form").addEventListener("submit", searchClients);
    $("client-new").addEventListener("click", () => openClientForm(null));
    $("client-edit").addEventListener("click", () => state.currentClient && openClientForm(state.currentClient));
    $("client-audit").addEventListener("click", showClientAudit);
    $("client-form").addEventListener("submit", onClientSubmit);
    $("client-form-cancel").addEventListener("click", () => {
      $("client-form").hidden = true;
      if (state.currentClient) showClient(state.currentClient);
    });
    $("responder-add").addEventListener("click", () => {
      state.responders.push({ name: "", relationship: "", phone: "", is_keyholder: false, notes: "" });
      renderResponderEditor(state.responders.length - 1, "name");
    });
    $("client-form-error").setAttribute("tabindex", "-1");

    // Admin
    for (const b of document.querySelectorAll(".subnav-btn")) b.addEventListener("click", () => showAdminTab(b.dataset.admin));
    $("user-form").addEventListener("submit", onUserSubmit);
    $("user-form-reset").addEventListener("click", resetUserForm);
    $("device-form").addEventListener("submit", onDeviceSubmit);
    $("device-form-reset").addEventListener("click", resetDeviceForm);
    $("device-search-form").addEventListener("submit", loadDevices);
    $("import-form").addEventListener("submit", onImport);

    // Audit
    $("audit-form").addEventListener("submit", loadAudit);

    // Rejected signals
    $("rejected-form").addEventListener("submit", (ev) => loadRejected(ev));
    $("rejected-more").addEventListener("click", () => loadRejected(null, true));

    // Global
    document.addEventListener("keydown", onKeyDown);
    // Any gesture unlocks audio (needed after a page reload with a live session).
    document.addEventListener("pointerdown", unlockAudio, { capture: true });
    document.addEventListener("keydown", unlockAudio, { capture: true });
    window.addEventListener("online", wsRetryNow);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && state.user && canQueue()) {
        wsRetryNow();
        loadQueue();
      }
    });
    // The sticky header's height changes as it wraps; CSS uses it for offsets.
    const header = document.querySelector(".topbar");
    const measure = () => document.documentElement.style.setProperty("--header-h", `${header.offsetHeight}px`);
    if (window.ResizeObserver) new ResizeObserver(measure).observe(header);
    measure();
    setInterval(tick, 1000);
    // Also on other screens: the "life-critical waiting" button and the sound depend on it.
    setInterval(() => {
      if (state.user && canQueue()) loadQueue();
    }, QUEUE_POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    bind();
    boot();
  });
})();
