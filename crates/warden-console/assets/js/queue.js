// @ts-check
/* The queue: the model (incidents by id, lane counts, what was resolved locally), rendering
 * by lane with a roving tab stop, bulk resolve, and the per-second tick of ages and SLA. */
import { alarmAnnounce, api, busy, failure, say } from "./api.js";
import { $, clear, fmtAge, h, human, kindLabel, nameOf, outcomeLabel, stateLabel, table } from "./dom.js";
import { openIncident, renderPanelClient, renderPanelIncident, scheduleDetailRefresh, syncOpenIncident } from "./incident.js";
import { showDegraded, ws, wsForceReconnect } from "./live.js";
import { alarmSoundTick, sound } from "./sound.js";
import { PRIORITIES, PRIORITY_LABEL, RESOLVED_KEEP_MS, canQueue, isSupervisor, sameId, state } from "./state.js";

/** @typedef {import("./types.js").IncidentView} IncidentView */
/** @typedef {import("./types.js").QueueResponse} QueueResponse */
/** @typedef {import("./types.js").BulkResolveResponse} BulkResolveResponse */
/** @typedef {import("./types.js").DeviceRef} DeviceRef */
/** @typedef {import("./types.js").Priority} Priority */
/** @typedef {"normal" | "warn" | "overflow" | "critical"} SlaLevel */

// ---------------------------------------------------------------- queue model

export async function loadOutcomes() {
  try {
    state.outcomes = (await api("GET", "/outcomes")) || [];
  } catch (_) {
    state.outcomes = [];
  }
  for (const id of ["inc-outcome", "bulk-outcome"]) {
    const sel = $(id, HTMLSelectElement);
    const keep = sel.value;
    clear(sel).append(h("option", { value: "", text: "Choose an outcome…" }));
    for (const o of state.outcomes) sel.append(h("option", { value: o.code, text: o.label }));
    sel.value = keep;
  }
}

/** @type {Promise<void> | null} */
let queueLoading = null;
/** @type {IncidentView[]} WebSocket changes received while /queue was in flight */
let pendingDuringLoad = [];

/**
 * Full reload of the queue; the WebSocket only carries changes after this.
 * @returns {Promise<void>}
 */
export function loadQueue() {
  if (!canQueue()) return Promise.resolve();
  if (queueLoading) return queueLoading; // coalesce reconnect + resync + poll
  queueLoading = (async () => {
    try {
      pendingDuringLoad = [];
      /** @type {QueueResponse} */
      const q = await api("GET", "/queue");
      setClock(q.server_time_ms);
      showDegraded(q.degraded_since);
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
    } catch (caught) {
      const err = failure(caught);
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

/**
 * Incidents pushed over the WebSocket; kept for re-applying while a full reload is in flight.
 * @param {IncidentView[]} list
 */
export function onPushedIncidents(list) {
  if (queueLoading) pendingDuringLoad.push(...list);
  if (!state.queueLoaded) loadQueue();
  else applyIncidents(list);
}

/** @param {unknown} serverMs */
export function setClock(serverMs) {
  if (typeof serverMs === "number") state.clockOffset = serverMs - Date.now();
}

const serverNow = () => Date.now() + state.clockOffset;

/** @param {string} key */
export function isResolvedLocally(key) {
  const t = state.resolved.get(key);
  if (t === undefined) return false;
  if (Date.now() - t <= RESOLVED_KEEP_MS) return true;
  state.resolved.delete(key);
  return false;
}

/**
 * Merge changed incidents (from the WebSocket or a command response). "resolved" removes a row.
 * Lane counts are the server's numbers from /queue, adjusted by the rows that enter or leave.
 * @param {IncidentView[]} list
 */
export function applyIncidents(list) {
  /** @type {IncidentView[]} */
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

/**
 * Rows per lane in display order: lanes by priority, oldest first within a lane.
 * @returns {Record<string, IncidentView[]>}
 */
function lanes() {
  /** @type {Record<string, IncidentView[]>} */
  const by = Object.fromEntries(PRIORITIES.map((p) => [p, []]));
  for (const inc of state.incidents.values()) (by[inc.priority] || (by[inc.priority] = [])).push(inc);
  for (const p of Object.keys(by)) by[p].sort((a, b) => a.arrived_at_ms - b.arrived_at_ms);
  return by;
}

export function orderedIds() {
  const by = lanes();
  return PRIORITIES.flatMap((p) => by[p].map((i) => String(i.id)));
}

/** @type {string[]} row order at the previous render, to move the selection off a vanished row */
let lastOrder = [];

/**
 * When the selected row disappears (resolved elsewhere), select its neighbour instead.
 * @param {string[]} ids
 */
function keepSelection(ids) {
  if (!state.selectedId || ids.includes(state.selectedId)) return;
  const at = lastOrder.indexOf(state.selectedId);
  const after = lastOrder.slice(at + 1).find((id) => ids.includes(id));
  const before = lastOrder.slice(0, Math.max(at, 0)).reverse().find((id) => ids.includes(id));
  state.selectedId = at < 0 ? null : after || before || null;
}

/** @param {IncidentView} inc */
const isUnclaimed = (inc) => inc.state === "raised" || inc.state === "offered";

export function unclaimedLifeCritical() {
  let n = 0;
  for (const inc of state.incidents.values()) if (inc.priority === "life_critical" && isUnclaimed(inc)) n++;
  return n;
}

/**
 * "pendant, Mrs Jones, 12 High Street" — for announcements and labels.
 * @param {IncidentView} inc
 */
function incidentWords(inc) {
  /** @type {Array<string | null | undefined>} */
  const parts = [kindLabel(inc.kind).toLowerCase()];
  if (inc.group_count) parts.push(`storm group of ${inc.group_count}`);
  if (inc.client) parts.push(inc.client.name, inc.client.address);
  else if (inc.device) parts.push(deviceName(inc.device));
  if (!inc.client && inc.area) parts.push(inc.area);
  return parts.filter(Boolean).join(", ");
}

/** @param {DeviceRef} d */
export const deviceName = (d) => d.label || (d.account ? `device ${d.account}` : `device #${d.id}`);

/**
 * Assertive announcement and an immediate beep for life-critical incidents not seen before.
 * @param {IncidentView[]} list
 * @param {boolean} initial
 */
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

export function enterQueue() {
  loadQueue();
  if (state.openId) renderPanelClient();
}

export function renderQueue() {
  const tableEl = $("queue-table");
  // Remember focus so a re-render does not throw the operator's place away.
  const active = document.activeElement;
  /** @type {HTMLElement | null} */
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
    const checkbox = row && row.querySelector("input");
    if (row) (focusOnCheckbox && checkbox ? checkbox : row).focus();
  }
}

/** @param {IncidentView} inc */
function queueRow(inc) {
  const id = String(inc.id);
  const tr = h("tr", {
    class: "incident-row" + (inc.priority === "life_critical" ? " is-life-critical" : "") + (isUnclaimed(inc) ? " is-unclaimed" : ""),
    testid: "incident-row",
    dataset: { incidentId: id, priority: inc.priority, state: inc.state },
    tabindex: "-1", // roving: ensureTabStop() gives one row tabindex 0
    // No aria-label: the row's own cells (age, state, holder) are its accessible name and
    // stay current, where a label would freeze them at render time.
    onclick: (/** @type {MouseEvent} */ ev) => {
      if (/** @type {Element} */ (ev.target).closest("input, a, button")) return;
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
      onchange: (/** @type {Event} */ ev) => {
        if (/** @type {HTMLInputElement} */ (ev.target).checked) state.bulk.add(id);
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

/**
 * Client name and address, or device / area, or the storm group size.
 * @param {IncidentView} inc
 */
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

/**
 * @param {unknown} id
 * @returns {HTMLElement | null}
 */
export const rowFor = (id) => (id ? document.querySelector(`#queue-table tr[data-incident-id="${CSS.escape(String(id))}"]`) : null);

/** Roving tab stop: exactly one row is reachable with Tab. */
function ensureTabStop() {
  const rows = document.querySelectorAll("#queue-table tr[data-incident-id]");
  rows.forEach((r) => r.setAttribute("tabindex", "-1"));
  const target = rowFor(state.selectedId) || rows[0];
  if (target) target.setAttribute("tabindex", "0");
}

/**
 * @param {string} id
 * @param {boolean} focus
 */
export function selectRow(id, focus) {
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

/** @param {number} delta */
export function moveSelection(delta) {
  const ids = orderedIds();
  if (ids.length === 0) return;
  let i = state.selectedId === null ? -1 : ids.indexOf(state.selectedId);
  i = i < 0 ? (delta > 0 ? 0 : ids.length - 1) : Math.min(ids.length - 1, Math.max(0, i + delta));
  selectRow(ids[i], true);
}

function updateBulkBar() {
  const n = state.bulk.size;
  $("bulk-count").textContent = `${n} selected`;
  $("bulk-resolve", HTMLButtonElement).textContent = n ? `Resolve selected (${n})` : "Resolve selected";
}

/** @param {SubmitEvent} ev */
export async function onBulkResolve(ev) {
  ev.preventDefault();
  const outcome = $("bulk-outcome", HTMLSelectElement).value;
  const keys = [...state.bulk];
  if (keys.length === 0) return say("Tick at least one incident first.", "error");
  if (!outcome) {
    $("bulk-outcome", HTMLSelectElement).focus();
    return say("Choose an outcome for the selected incidents.", "error");
  }
  // Send the ids as the server gave them (numbers stay numbers).
  const ids = keys.map((k) => (state.incidents.get(k) || { id: k }).id);
  await busy($("bulk-resolve", HTMLButtonElement), async () => {
    /** @type {BulkResolveResponse} */
    const res = await api("POST", "/incidents/bulk-resolve", { incidents: ids, outcome });
    const resolved = res.resolved || [];
    const rejected = res.rejected || [];
    // An incident we no longer hold is marked resolved by its id alone; applyIncidents reads
    // only the id and state of a resolved one.
    const done = resolved.map((id) => Object.assign({}, state.incidents.get(String(id)) || { id }, { state: "resolved" }));
    applyIncidents(/** @type {IncidentView[]} */ (done));
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

/**
 * "normal" | "warn" | "overflow" | "critical". Server flags win; the local clock fills in between pushes.
 * @param {IncidentView} inc
 * @param {number} ageS
 * @returns {SlaLevel}
 */
function slaLevel(inc, ageS) {
  const t = state.thresholds;
  const sla = inc.sla || { warned: false, overflowed: false, critical: false };
  const unclaimed = isUnclaimed(inc);
  if (sla.critical || (unclaimed && ageS >= t.critical_s)) return "critical";
  if (sla.overflowed || (unclaimed && ageS >= t.overflow_s)) return "overflow";
  if (sla.warned || (unclaimed && ageS >= t.warn_s)) return "warn";
  return "normal";
}

const SLA_TEXT = { normal: "", warn: "Waiting", overflow: "Overdue", critical: "CRITICAL" };

/** @param {IncidentView} inc */
const ageOf = (inc) => (serverNow() - inc.arrived_at_ms) / 1000;

/** Runs every second: ages, SLA colours and badges, the alarm sound. Touches only changed text. */
export function tickAges() {
  for (const row of document.querySelectorAll("#queue-table tr[data-incident-id]")) {
    if (!(row instanceof HTMLElement)) continue;
    const inc = state.incidents.get(row.dataset.incidentId || "");
    if (!inc) continue;
    const age = ageOf(inc);
    const level = slaLevel(inc, age);
    const ageEl = /** @type {HTMLElement} */ (row.querySelector("[data-age]"));
    const text = fmtAge(age);
    if (ageEl.textContent !== text) ageEl.textContent = text;
    if (row.dataset.sla !== level) {
      row.dataset.sla = level;
      const badge = /** @type {HTMLElement} */ (row.querySelector("[data-sla]"));
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

export function tick() {
  if (!state.user) return;
  tickAges();
  alarmSoundTick();
}

/** The header shows waiting life-critical alarms on every screen; the title does too. */
export function updateAlarmIndicators() {
  const n = state.user && canQueue() ? unclaimedLifeCritical() : 0;
  const btn = $("alarm-waiting", HTMLButtonElement);
  btn.hidden = n === 0 || state.screen === "queue";
  btn.textContent = n ? `${n} life-critical waiting — go to queue` : "";
  document.title = state.user ? (n ? `(${n}) LIFE-CRITICAL — Warden console` : "Warden console") : document.title;
  $("stale-banner").hidden = !state.user || !canQueue() || ws.connState === "live";
}

