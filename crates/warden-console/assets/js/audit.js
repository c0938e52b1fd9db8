// @ts-check
/* The audit trail screen. */
import { api, failure } from "./api.js";
import { $, asText, clear, emptyState, fieldValue, fmtTime, h, human, nameOf, table } from "./dom.js";
import { showScreen } from "./main.js";
import { state } from "./state.js";

/** @typedef {import("./types.js").AuditEntry} AuditEntry */

// ---------------------------------------------------------------- audit

export function enterAudit() {
  loadAudit();
}

/** @param {Event} [ev] */
export async function loadAudit(ev) {
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
    /** @type {AuditEntry[]} */
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
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) clear(box).append(h("p", { class: "form-error", text: err.message }));
  }
}

/**
 * Before/after as a list of changed fields when both are objects, else the raw JSON.
 * @param {AuditEntry} a
 */
function auditChange(a) {
  const b = a.before;
  const f = a.after;
  if (b == null && f == null) return "—";
  /**
   * @param {unknown} x
   * @returns {x is Record<string, unknown>}
   */
  const isObj = (x) => !!x && typeof x === "object" && !Array.isArray(x);
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

export function showClientAudit() {
  const c = state.currentClient;
  if (!c) return;
  $("audit-object-type", HTMLInputElement).value = "client";
  $("audit-object-id", HTMLInputElement).value = String(c.id);
  showScreen("audit");
}

