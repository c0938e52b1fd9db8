// @ts-check
/* The incident panel: details, history, signals and raw bytes, the client record, and the
 * commands (claim, release, take over, note, resolve). */
import { api, busy, enc, failure, say } from "./api.js";
import { renderClientRecord } from "./clients.js";
import { $, clear, emptyState, fmtTime, h, human, kindLabel, nameOf, outcomeLabel, stateLabel, summarise, table } from "./dom.js";
import { applyIncidents, deviceName, isResolvedLocally, orderedIds, rowFor, tickAges } from "./queue.js";
import { PRIORITY_LABEL, sameId, state } from "./state.js";

/** @typedef {import("./types.js").IncidentDetail} IncidentDetail */
/** @typedef {import("./types.js").IncidentEvent} IncidentEvent */
/** @typedef {import("./types.js").IncidentResponse} IncidentResponse */
/** @typedef {import("./types.js").SignalSummary} SignalSummary */
/** @typedef {import("./types.js").RawBytes} RawBytes */
/** @typedef {import("./types.js").Client} Client */

// ---------------------------------------------------------------- incident panel

/** @param {string | number} id */
export async function openIncident(id) {
  const key = String(id);
  const inc = state.incidents.get(key);
  state.openId = key;
  state.openIncident = inc || null;
  state.panelClient = null;
  $("incident-panel").hidden = false;
  $("inc-note", HTMLTextAreaElement).value = "";
  $("inc-outcome", HTMLSelectElement).value = "";
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
    /** @type {IncidentDetail} */
    const d = await api("GET", `/incidents/${enc(key)}`);
    if (!sameId(state.openId, key)) return;
    if (d.incident.state === "resolved" || !isResolvedLocally(key)) state.openIncident = d.incident;
    renderPanelIncident();
    renderEvents(d.events || []);
    renderSignals($("inc-signals"), d.signals || [], "incident-signal");
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) say(`Could not load the incident: ${err.message}`, "error");
  }
}

/** WebSocket changes to the open incident refresh its history, at most twice a second. */
export function scheduleDetailRefresh() {
  clearTimeout(state.detailTimer);
  state.detailTimer = setTimeout(loadIncidentDetail, 500);
}

/** After a reload of the queue, keep the open panel in step with the new data. */
export function syncOpenIncident() {
  if (!state.openId) return;
  const inc = state.incidents.get(state.openId);
  if (inc) {
    state.openIncident = inc;
    renderPanelIncident();
  }
}

export function renderPanelIncident() {
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
  $("inc-claim", HTMLButtonElement).disabled = resolved || !!mine;
  $("inc-release", HTMLButtonElement).disabled = resolved || !inc.holder;
  $("inc-takeover", HTMLButtonElement).disabled = resolved || !inc.holder || !!mine;
  $("inc-resolve", HTMLButtonElement).disabled = resolved;
  $("inc-outcome", HTMLSelectElement).disabled = resolved;
  tickAges();
}

/** @param {IncidentEvent[]} events */
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

/**
 * @param {HTMLElement} container
 * @param {SignalSummary[] | null | undefined} signals
 * @param {string} testid of each row
 */
export function renderSignals(container, signals, testid) {
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
 * @param {RawBytes | null | undefined} raw
 */
export function rawToggle(raw) {
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

export function closePanel(returnFocus = true) {
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

/**
 * claim / release / takeover: POST, then show the returned incident.
 * @param {"claim" | "release" | "takeover"} action
 * @param {HTMLButtonElement} button
 */
export async function incidentCommand(action, button) {
  const key = state.openId;
  if (!key) return;
  const done = { claim: "You have claimed this incident.", release: "Released back to the queue.", takeover: "You have taken over this incident." };
  await busy(button, async () => {
    /** @type {IncidentResponse} */
    const res = await api("POST", `/incidents/${enc(key)}/${action}`);
    applyIncidents([res.incident]);
    say(done[action], "success");
  });
  renderPanelIncident(); // busy() re-enabled the button; the new state decides
}

/** @param {SubmitEvent} ev */
export async function onResolve(ev) {
  ev.preventDefault();
  const key = state.openId;
  const outcome = $("inc-outcome", HTMLSelectElement).value;
  if (!key) return;
  if (!outcome) {
    $("inc-outcome", HTMLSelectElement).focus();
    return say("Choose an outcome before resolving.", "error");
  }
  await busy($("inc-resolve", HTMLButtonElement), async () => {
    /** @type {IncidentResponse} */
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

/** @param {SubmitEvent} ev */
export async function onNote(ev) {
  ev.preventDefault();
  const key = state.openId;
  const text = $("inc-note", HTMLTextAreaElement).value.trim();
  if (!key) return;
  if (!text) {
    $("inc-note", HTMLTextAreaElement).focus();
    return say("Type the note first.", "error");
  }
  await busy($("inc-note-submit", HTMLButtonElement), async () => {
    const res = await api("POST", `/incidents/${enc(key)}/note`, { text });
    $("inc-note", HTMLTextAreaElement).value = "";
    if (res && res.incident) applyIncidents([res.incident]);
    say("Note added.", "success");
    loadIncidentDetail();
  });
}

/** @param {number} clientId */
async function loadPanelClient(clientId) {
  const key = state.openId;
  try {
    /** @type {Client} */
    const c = await api("GET", `/clients/${enc(clientId)}`);
    if (!sameId(state.openId, key)) return;
    state.panelClient = c;
    renderPanelClient();
  } catch (caught) {
    const err = failure(caught);
    if (err.status === 401 || !sameId(state.openId, key)) return;
    clear($("inc-client")).append(h("p", { class: "banner banner-warn", text: `Could not load the client record: ${err.message}` }));
  }
}

export function renderPanelClient() {
  const box = $("inc-client");
  if (!state.panelClient) return clear(box);
  renderClientRecord(box, state.panelClient);
}

