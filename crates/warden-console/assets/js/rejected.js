// @ts-check
/* Rejected signals: what Warden refused, counted by reason and link, with the raw bytes. */
import { api, failure } from "./api.js";
import { $, clear, emptyState, fieldValue, fmtTime, h, human, table } from "./dom.js";
import { rawToggle } from "./incident.js";

/** @typedef {import("./types.js").RejectedPage} RejectedPage */
/** @typedef {import("./types.js").RejectedSignal} RejectedSignal */

// ---------------------------------------------------------------- rejected signals

/** @type {Record<string, string>} */
const SOURCE_LABEL = { serial: "Serial receiver", mqtt: "MQTT", dc09: "SIA DC-09", internal: "Warden" };
/** @type {{ next: string | null }} where the next (older) page starts */
export const rejected = { next: null };

export function enterRejected() {
  loadRejected();
}

/**
 * The counts and the first page; `older` appends the next page to the list instead.
 * @param {Event | null} [ev]
 */
export async function loadRejected(ev, older = false) {
  if (ev && ev.preventDefault) ev.preventDefault();
  const hours = fieldValue("rejected-hours") || "24";
  const reason = fieldValue("rejected-reason");
  const params = new URLSearchParams({ hours, limit: "50" });
  if (reason) params.set("reason", reason);
  if (older && rejected.next) params.set("before", rejected.next);
  const list = $("rejected-list");
  try {
    /** @type {RejectedPage} */
    const page = await api("GET", `/rejected?${params}`);
    rejected.next = page.next_before || null;
    $("rejected-more", HTMLButtonElement).hidden = !rejected.next;
    if (!older) renderRejectedCounts(page, hours);
    const rows = page.rejected || [];
    if (!older) clear(list);
    if (!older && rows.length === 0) return list.append(emptyState(reason ? `Nothing refused for “${human(reason)}” in this period.` : "Nothing refused in this period."));
    /** @type {import("./dom.js").Column<RejectedSignal>[]} */
    const columns = [
      { label: "Received", cell: (r) => fmtTime(r.received_at) },
      { label: "Reason", cell: (r) => [h("strong", { text: human(r.reason_code) }), h("span", { class: "sub", text: r.reason })] },
      { label: "Link", cell: (r) => `${SOURCE_LABEL[r.source] || r.source} · ${r.link_id}` },
      { label: "Raw bytes", cell: (r) => rawToggle(r.raw) },
    ];
    /** @param {RejectedSignal} r */
    const rowProps = (r) => ({ testid: "rejected-row", dataset: { rejectedId: r.id, reason: r.reason_code } });
    const tbody = list.querySelector("tbody");
    if (!tbody) {
      list.append(table(columns, rows, { caption: "Most recent rejected signals", rowProps }));
    } else {
      // "Show older": the next page goes under the rows already shown.
      for (const r of rows) tbody.append(h("tr", rowProps(r), columns.map((c) => h("td", null, c.cell(r)))));
    }
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) clear(list).append(h("p", { class: "form-error", text: err.message }));
  }
}

/**
 * @param {RejectedPage} page
 * @param {string} hours
 */
function renderRejectedCounts(page, hours) {
  const period = $("rejected-hours", HTMLSelectElement).selectedOptions[0]?.textContent.toLowerCase() || `last ${hours} hours`;
  const total = page.total || 0;
  $("rejected-total").textContent = `${total} input${total === 1 ? "" : "s"} refused in the ${period}.`;
  // The reason picker offers every reason seen in the period (and keeps the current one).
  const sel = $("rejected-reason", HTMLSelectElement);
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

