// @ts-check
/* My pages: the alarms escalated to me, and acknowledging them. */
import { api, busy, failure, say } from "./api.js";
import { $, clear, emptyState, fmtTime, h, human, kindLabel, table } from "./dom.js";
import { state } from "./state.js";

/** @typedef {import("./types.js").PageRow} PageRow */

/** How often the list refreshes itself while it is on screen. */
const PAGES_POLL_MS = 15000;
/** @type {ReturnType<typeof setInterval> | null} */
let poll = null;

/** @type {Record<string, string>} */
const REASON_LABEL = { step: "Escalation step", fallback: "Fallback (nobody else reachable)", reminder: "Reminder" };

export function enterPages() {
  loadPages();
  if (poll === null) {
    poll = setInterval(() => {
      if (state.screen === "pages") loadPages();
    }, PAGES_POLL_MS);
  }
}

export async function loadPages() {
  const list = $("pages-list");
  try {
    /** @type {PageRow[]} */
    const pages = await api("GET", "/pages");
    clear(list);
    if (pages.length === 0) return list.append(emptyState("No pages. Nothing has been escalated to you."));
    /** @type {import("./dom.js").Column<PageRow>[]} */
    const columns = [
      { label: "Sent", cell: (p) => fmtTime(p.created_at) },
      {
        label: "Alarm",
        cell: (p) => [
          h("strong", { text: `#${p.incident_id} ${kindLabel(p.incident_kind)}` }),
          h("span", { class: "sub", text: `${human(p.priority)}${p.summary ? ` · ${p.summary}` : ""}` }),
        ],
      },
      { label: "Why", cell: (p) => `${REASON_LABEL[p.reason] || human(p.reason)} ${p.step + 1}${p.round ? `, round ${p.round + 1}` : ""}` },
      {
        label: "Status",
        cell: (p) =>
          p.status === "acknowledged"
            ? `Acknowledged ${p.acked_at ? fmtTime(p.acked_at) : ""}`
            : p.status === "failed"
              ? `Not delivered: ${p.outcome || "no reachable contact method"}`
              : h("button", { type: "button", testid: "page-ack", text: "Acknowledge", onclick: (/** @type {Event} */ ev) => acknowledge(p, ev) }),
      },
    ];
    list.append(table(columns, pages, { caption: "Pages sent to me, newest first", rowProps: (p) => ({ testid: "page-row", dataset: { pageId: String(p.id), status: p.status } }) }));
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) clear(list).append(h("p", { class: "form-error", text: err.message }));
  }
}

/**
 * @param {PageRow} page
 * @param {Event} ev
 */
async function acknowledge(page, ev) {
  const button = ev.currentTarget instanceof HTMLButtonElement ? ev.currentTarget : null;
  const run = async () => {
    try {
      await api("POST", `/pages/${page.id}/ack`);
      say(`Acknowledged: alarm #${page.incident_id}. The centre knows you are dealing with it.`);
      await loadPages();
    } catch (caught) {
      say(failure(caught).message, "error");
    }
  };
  if (button) await busy(button, run);
  else await run();
}
