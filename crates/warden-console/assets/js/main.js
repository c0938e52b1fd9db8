// @ts-check
/* Warden operator console: the entry module (index.html loads it with <script type="module">).
 * Native ES modules, no framework, no build step. Session (sign-in, sign-out, boot), the
 * screens each role may use and switching between them, keyboard shortcuts, and binding
 * every listener of index.html.
 *
 * Module map: state (constants, the one state object, roles) · types (API shapes, from
 * openapi.json; JSDoc only) · dom (element helpers, formatting) · api (fetch wrapper, CSRF,
 * errors, status messages) · live (WebSocket push) · sound (alarm sound) · queue (queue model,
 * rendering, SLA ticking) · incident (incident panel) · clients (client record, Clients
 * screen) · ooh (out-of-hours desk) · admin (administration tabs, categories, CSV import) ·
 * users · devices · audit · rejected (rejected signals) · pages (my pages: escalations sent
 * to me, acknowledging them) · oncall (the on-call directory: people, teams, rotas, chains,
 * routes) · account (my password, my second factor).
 *
 * Security: every piece of server or user data is put into the page with textContent or
 * createElement, never innerHTML. The CSP forbids inline script and inline style attributes,
 * so all listeners are attached in code and styling lives in app.css. */
import { enterAccount, onPasswordSubmit, onSecondFactorBegin, onSecondFactorConfirm, resetAccount } from "./account.js";
import { enterAdmin, onImport, showAdminTab } from "./admin.js";
import { api, clearMessage, failure, say } from "./api.js";
import { enterAudit, loadAudit, showClientAudit } from "./audit.js";
import { enterClients, onClientSubmit, openClientForm, renderResponderEditor, searchClients, showClient } from "./clients.js";
import { loadDevices, onDeviceSubmit, resetDeviceForm } from "./devices.js";
import { $, $$, clear, fieldValue, human } from "./dom.js";
import { closePanel, incidentCommand, onNote, onResolve, openIncident } from "./incident.js";
import { setConn, wsRetryNow, wsStart, wsStop } from "./live.js";
import { copyReference, enterOoh, onJobStatus, onOohSubmit, searchJobs, updateCategoryHint } from "./ooh.js";
import { enterPages, loadPages } from "./pages.js";
import { enterOncall, onChainSubmit, onOverrideSubmit, onPeopleImport, onPersonSubmit, onRotaSubmit, onRoutesSubmit, onTeamSubmit, resetPersonForm } from "./oncall.js";
import { enterQueue, loadOutcomes, loadQueue, moveSelection, onBulkResolve, renderQueue, selectRow, tick, updateAlarmIndicators } from "./queue.js";
import { enterRejected, loadRejected } from "./rejected.js";
import { setMuted, toggleMute, unlockAudio } from "./sound.js";
import { QUEUE_POLL_MS, ROLE_LABEL, ROLE_SCREENS, canQueue, role, state } from "./state.js";
import { onUserSubmit, resetUserForm } from "./users.js";

/** @typedef {import("./types.js").Session} Session */
/** @typedef {import("./api.js").ApiError} ApiError */

// ---------------------------------------------------------------- session

async function boot() {
  try {
    /** @type {Session} */
    const me = await api("GET", "/me", undefined, { no401: true });
    startSession(me);
  } catch (caught) {
    const err = failure(caught);
    showLogin(err.status === 401 || err.status === 403 ? "" : err.message);
  }
}

/** @param {string} errorText */
function showLogin(errorText) {
  state.user = null;
  state.csrf = null;
  $("nav").hidden = true;
  $("session-bar").hidden = true;
  for (const s of $$(".screen")) s.hidden = true;
  $("screen-login").hidden = false;
  $("login-form", HTMLFormElement).reset(); // a shared desk: do not leave the last user's name behind
  $("user-info").textContent = "";
  const e = $("login-error");
  e.textContent = errorText || "";
  e.hidden = !errorText;
  document.title = "Sign in — Warden console";
  $("login-username", HTMLInputElement).focus();
}

/** @param {SubmitEvent} ev */
async function onLoginSubmit(ev) {
  ev.preventDefault();
  const username = fieldValue("login-username");
  const password = $("login-password", HTMLInputElement).value;
  const err = $("login-error");
  if (!username || !password) {
    err.textContent = "Enter your username and password.";
    err.hidden = false;
    return;
  }
  unlockAudio(); // the submit is a user gesture: let the alarm sound play later
  const btn = $("login-submit", HTMLButtonElement);
  btn.disabled = true;
  try {
    const otpField = $("login-otp-field");
    const otp = otpField.hidden ? null : $("login-otp", HTMLInputElement).value.trim();
    /** @type {Session} */
    const res = await api("POST", "/login", { username, password, otp });
    $("login-password", HTMLInputElement).value = "";
    $("login-otp", HTMLInputElement).value = "";
    otpField.hidden = true;
    err.hidden = true;
    startSession(res);
  } catch (caught) {
    const e = failure(caught);
    err.textContent = loginErrorText(e);
    err.hidden = false;
    if (e.code === "otp_required") {
      // The password was right; the account also asks for its second factor.
      $("login-otp-field").hidden = false;
      $("login-otp", HTMLInputElement).focus();
      return;
    }
    $("login-password", HTMLInputElement).select();
  } finally {
    btn.disabled = false;
  }
}

/**
 * Plain-English sign-in problems; the server's own message is used when it sent one.
 * @param {ApiError} e
 */
function loginErrorText(e) {
  const fromServer = e.code && !e.code.startsWith("http_");
  if (e.status === 429) return fromServer ? e.message : "Too many sign-in attempts from this computer. Please wait a minute, then try again.";
  if (e.status === 401) return fromServer ? e.message : "Wrong username or password.";
  return e.message;
}

/** @param {Session} res */
function startSession(res) {
  clearMessage();
  const user = res.user;
  state.user = user;
  state.csrf = res.csrf_token;
  $("screen-login").hidden = true;
  $("nav").hidden = false;
  $("session-bar").hidden = false;
  $("user-info").textContent = `${user.display_name || user.username} (${ROLE_LABEL[user.role] || human(user.role)})`;
  applyRoles();
  setMuted(false); // every session starts with the alarm sound on, whoever muted it before
  const screens = ROLE_SCREENS[user.role] || [];
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
export function sessionLost() {
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
  for (const f of $$("main form")) if (f.id !== "login-form" && f instanceof HTMLFormElement) f.reset();
  for (const id of ["ooh-results", "clients-results", "client-view-record", "users-table", "devices-table", "categories-table", "import-result", "audit-table", "cf-responders", "rejected-counts", "rejected-list", "rejected-total"]) clear($(id));
  $("rejected-more", HTMLButtonElement).hidden = true;
  for (const id of ["ooh-result", "ooh-job", "client-view", "client-form"]) $(id).hidden = true;
  $("ooh-form", HTMLFormElement).hidden = false;
  Object.assign(state, { currentJob: null, currentClient: null, editingClientId: null, responders: [], users: [], devices: [], editingUserId: null, editingDeviceId: null });
  resetUserForm();
  resetDeviceForm();
  resetAccount();
}

// ---------------------------------------------------------------- screens and roles

/** Show or hide every element marked data-roles="..." for the current user's role. */
function applyRoles() {
  for (const e of $$("[data-roles]")) {
    e.hidden = !(e.dataset.roles || "").split(/\s+/).includes(role() || "");
  }
}

/** @param {string} name */
export function showScreen(name) {
  const allowed = ROLE_SCREENS[role() || ""] || [];
  if (!allowed.includes(name)) return;
  state.screen = name;
  for (const s of $$(".screen")) s.hidden = s.id !== `screen-${name}`;
  for (const b of $$(".nav-btn")) {
    if (b.dataset.screen === name) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  updateAlarmIndicators();
  /** @type {Record<string, () => unknown>} */
  const loaders = { queue: enterQueue, ooh: enterOoh, clients: enterClients, admin: enterAdmin, audit: enterAudit, rejected: enterRejected, pages: enterPages, oncall: enterOncall, account: enterAccount };
  loaders[name]();
}

// ---------------------------------------------------------------- keyboard

/**
 * True when a key press belongs to a text field, select or similar, not to the shortcuts.
 * @param {EventTarget | null} target
 */
function isTyping(target) {
  if (!(target instanceof Element)) return false;
  const el = target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
  if (!el) return false;
  if (el instanceof HTMLInputElement) return !["checkbox", "radio", "button", "submit", "reset", "file"].includes(el.type);
  return true;
}

/** @param {KeyboardEvent} ev */
function onKeyDown(ev) {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (!state.user || isTyping(ev.target) || $("help-dialog", HTMLDialogElement).open) return;
  if (ev.key === "?") {
    ev.preventDefault();
    openHelp();
    return;
  }
  if (state.screen !== "queue" || !canQueue()) return;
  const onControl = ev.target instanceof Element && ev.target.closest("button, a, input, summary");
  /** @type {(() => unknown) | undefined} */
  const handled = /** @type {Record<string, () => unknown>} */ ({
    j: () => moveSelection(1),
    ArrowDown: () => moveSelection(1),
    k: () => moveSelection(-1),
    ArrowUp: () => moveSelection(-1),
    Enter: () => (onControl ? false : openSelected()),
    c: () => withOpenIncident(() => {
      const b = $("inc-claim", HTMLButtonElement);
      if (b.disabled) say(state.openIncident && state.openIncident.state === "resolved" ? "This incident is resolved." : "You already hold this incident.");
      else b.click();
    }),
    r: () => withOpenIncident(() => $("inc-outcome", HTMLSelectElement).focus()),
    n: () => withOpenIncident(() => $("inc-note", HTMLTextAreaElement).focus()),
    Escape: () => (state.openId ? closePanel(true) : false),
  })[ev.key];
  if (handled && handled() !== false) ev.preventDefault();
}

function openSelected() {
  if (!state.selectedId) return moveSelection(1);
  return openIncident(state.selectedId);
}

/**
 * c / r / n act on the open incident; with none open they open the selected row first.
 * @param {() => void} fn
 */
async function withOpenIncident(fn) {
  if (!state.openId) {
    if (!state.selectedId) return say("Select an incident first (j / k or the arrow keys).");
    await openIncident(state.selectedId);
  }
  fn();
}

function openHelp() {
  const d = $("help-dialog", HTMLDialogElement);
  if (typeof d.showModal === "function") d.showModal();
  else d.setAttribute("open", "");
}

// ---------------------------------------------------------------- init

function bind() {
  $("login-form", HTMLFormElement).addEventListener("submit", onLoginSubmit);
  $("account-password-form").addEventListener("submit", onPasswordSubmit);
  $("account-2fa-begin").addEventListener("submit", onSecondFactorBegin);
  $("account-2fa-confirm").addEventListener("submit", onSecondFactorConfirm);
  $("logout", HTMLButtonElement).addEventListener("click", logout);
  for (const b of $$(".nav-btn")) b.addEventListener("click", () => showScreen(b.dataset.screen || ""));
  $("pages-refresh").addEventListener("click", () => loadPages());
  $("oncall-person-form").addEventListener("submit", onPersonSubmit);
  $("oncall-person-reset").addEventListener("click", resetPersonForm);
  $("oncall-import-form").addEventListener("submit", onPeopleImport);
  $("oncall-team-form").addEventListener("submit", onTeamSubmit);
  $("oncall-rota-form").addEventListener("submit", onRotaSubmit);
  $("oncall-override-form").addEventListener("submit", onOverrideSubmit);
  $("oncall-chain-form").addEventListener("submit", onChainSubmit);
  $("oncall-routes-form").addEventListener("submit", onRoutesSubmit);
  $("alarm-waiting", HTMLButtonElement).addEventListener("click", () => {
    showScreen("queue");
    const [first] = $$("#queue-table tbody.lane-life_critical tr[data-incident-id]");
    if (first) selectRow(first.dataset.incidentId || "", true);
  });
  $("mute-toggle", HTMLButtonElement).addEventListener("click", toggleMute);
  $("help-open", HTMLButtonElement).addEventListener("click", openHelp);

  // Queue and panel
  $("bulk-bar", HTMLFormElement).addEventListener("submit", onBulkResolve);
  $("bulk-clear", HTMLButtonElement).addEventListener("click", () => {
    state.bulk.clear();
    renderQueue();
  });
  $("inc-close", HTMLButtonElement).addEventListener("click", () => closePanel(true));
  $("inc-claim", HTMLButtonElement).addEventListener("click", () => incidentCommand("claim", $("inc-claim", HTMLButtonElement)));
  $("inc-release", HTMLButtonElement).addEventListener("click", () => incidentCommand("release", $("inc-release", HTMLButtonElement)));
  $("inc-takeover", HTMLButtonElement).addEventListener("click", () => incidentCommand("takeover", $("inc-takeover", HTMLButtonElement)));
  $("inc-resolve-form", HTMLFormElement).addEventListener("submit", onResolve);
  $("inc-note-form", HTMLFormElement).addEventListener("submit", onNote);
  $("inc-note", HTMLTextAreaElement).addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      $("inc-note-form", HTMLFormElement).requestSubmit();
    }
  });

  // Out of hours
  $("ooh-form", HTMLFormElement).addEventListener("submit", onOohSubmit);
  $("ooh-category", HTMLSelectElement).addEventListener("change", updateCategoryHint);
  $("ooh-copy", HTMLButtonElement).addEventListener("click", copyReference);
  $("ooh-another", HTMLButtonElement).addEventListener("click", () => {
    $("ooh-result").hidden = true;
    $("ooh-form", HTMLFormElement).hidden = false;
    $("ooh-category", HTMLSelectElement).focus();
  });
  $("ooh-search-form", HTMLFormElement).addEventListener("submit", searchJobs);
  $("ooh-status-form", HTMLFormElement).addEventListener("submit", onJobStatus);

  // Clients
  $("clients-search-form", HTMLFormElement).addEventListener("submit", searchClients);
  $("client-new", HTMLButtonElement).addEventListener("click", () => openClientForm(null));
  $("client-edit", HTMLButtonElement).addEventListener("click", () => state.currentClient && openClientForm(state.currentClient));
  $("client-audit", HTMLButtonElement).addEventListener("click", showClientAudit);
  $("client-form", HTMLFormElement).addEventListener("submit", onClientSubmit);
  $("client-form-cancel", HTMLButtonElement).addEventListener("click", () => {
    $("client-form", HTMLFormElement).hidden = true;
    if (state.currentClient) showClient(state.currentClient);
  });
  $("responder-add", HTMLButtonElement).addEventListener("click", () => {
    state.responders.push({ name: "", relationship: "", phone: "", is_keyholder: false, notes: "" });
    renderResponderEditor(state.responders.length - 1, "name");
  });
  $("client-form-error").setAttribute("tabindex", "-1");

  // Admin
  for (const b of $$(".subnav-btn")) b.addEventListener("click", () => showAdminTab(b.dataset.admin || ""));
  $("user-form", HTMLFormElement).addEventListener("submit", onUserSubmit);
  $("user-form-reset", HTMLButtonElement).addEventListener("click", resetUserForm);
  $("device-form", HTMLFormElement).addEventListener("submit", onDeviceSubmit);
  $("device-form-reset", HTMLButtonElement).addEventListener("click", resetDeviceForm);
  $("device-search-form", HTMLFormElement).addEventListener("submit", loadDevices);
  $("import-form", HTMLFormElement).addEventListener("submit", onImport);

  // Audit
  $("audit-form", HTMLFormElement).addEventListener("submit", loadAudit);

  // Rejected signals
  $("rejected-form", HTMLFormElement).addEventListener("submit", (ev) => loadRejected(ev));
  $("rejected-more", HTMLButtonElement).addEventListener("click", () => loadRejected(null, true));

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
  const [header] = $$(".topbar");
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
