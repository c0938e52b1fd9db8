// @ts-check
/* The out-of-hours desk: log a job, see who it went to, search jobs, update their status. */
import { api, busy, enc, failure, say, sayError } from "./api.js";
import { $, clear, facts, fieldValue, fmtTime, h, human, nameOf, table, telLink } from "./dom.js";
import { JOB_STATUS_LABEL, state } from "./state.js";

/** @typedef {import("./types.js").OohJob} OohJob */
/** @typedef {import("./types.js").OohCategory} OohCategory */

// ---------------------------------------------------------------- out-of-hours desk

export async function enterOoh() {
  await loadCategories();
  searchJobs();
}

export async function loadCategories() {
  try {
    state.categories = /** @type {OohCategory[]} */ (await api("GET", "/ooh/categories")) || [];
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) say(`Could not load categories: ${err.message}`, "error");
    return;
  }
  const sel = $("ooh-category", HTMLSelectElement);
  const keep = sel.value;
  clear(sel).append(h("option", { value: "", text: "Choose a category…" }));
  for (const c of state.categories) sel.append(h("option", { value: c.code, text: c.name }));
  sel.value = keep;
  updateCategoryHint();
}

/** Tell the operator before submitting who the job will go to, or that nobody is on call. */
export function updateCategoryHint() {
  const c = state.categories.find((x) => x.code === $("ooh-category", HTMLSelectElement).value);
  const hint = $("ooh-category-hint");
  if (!c) hint.textContent = "";
  else if (c.oncall_name || c.oncall_phone) hint.textContent = `On call: ${[c.oncall_name, c.oncall_phone].filter(Boolean).join(", ")}`;
  else hint.textContent = "No on-call contact is set for this category: the job will be unrouted.";
}

/** @param {SubmitEvent} ev */
export async function onOohSubmit(ev) {
  ev.preventDefault();
  const form = $("ooh-form", HTMLFormElement);
  if (!form.reportValidity()) return;
  const body = {
    category: $("ooh-category", HTMLSelectElement).value,
    caller_name: fieldValue("ooh-caller-name"),
    caller_phone: fieldValue("ooh-caller-phone"),
    address: fieldValue("ooh-address"),
    description: fieldValue("ooh-description"),
    urgency: $("ooh-urgency", HTMLSelectElement).value,
    caller_contact: $("ooh-caller-contact", HTMLSelectElement).value,
    caller_email: fieldValue("ooh-caller-email"),
    caller_needs: fieldValue("ooh-caller-needs"),
  };
  await busy($("ooh-submit", HTMLButtonElement), async () => {
    const job = await api("POST", "/ooh/jobs", body);
    showOohResult(job);
    form.reset();
    updateCategoryHint();
    searchJobs();
  });
}

/** @param {OohJob} job */
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
  $("ooh-form", HTMLFormElement).hidden = true;
  box.hidden = false;
  box.focus();
  say(`Call logged. Give the caller this reference: ${job.reference}`, "success");
}

export async function copyReference() {
  const ref = $("ooh-reference").textContent;
  try {
    await navigator.clipboard.writeText(ref);
    say(`Copied ${ref}.`, "success");
  } catch (_) {
    // Clipboard API refused (e.g. plain http): select the text so Ctrl+C works.
    const range = document.createRange();
    range.selectNodeContents($("ooh-reference"));
    const sel = window.getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    say("Reference selected: press Ctrl+C to copy it.");
  }
}

/** @param {Event} [ev] */
export async function searchJobs(ev) {
  if (ev) ev.preventDefault();
  const q = fieldValue("ooh-search");
  const box = $("ooh-results");
  try {
    /** @type {OohJob[]} */
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
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) clear(box).append(h("p", { class: "form-error", text: err.message }));
  }
}

/** @param {string} code */
const categoryName = (code) => state.categories.find((c) => c.code === code)?.name || human(code);

/** @param {string} reference */
async function openJob(reference) {
  try {
    renderJob(await api("GET", `/ooh/jobs/${enc(reference)}`));
    $("ooh-job").focus();
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) sayError(err);
  }
}

/** @type {Record<string, string>} */
const CONTACT_LABEL = { phone: "Phone call back", sms: "Text message", email: "E-mail", none: "No updates" };

/**
 * One line per message sent to the caller: when, how, what became of it.
 * @param {import("./types.js").CallerMessage} m
 */
function messageLine(m) {
  const outcome = m.status === "delivered" ? "delivered" : m.status === "failed" ? `failed: ${m.outcome || ""}` : "sending";
  return `${fmtTime(m.created_at)} ${m.channel} to ${m.address}: ${outcome}`;
}

/** @param {OohJob} job */
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
    ["Updates by", CONTACT_LABEL[job.caller_contact] || human(job.caller_contact), { testid: "ooh-job-contact" }],
    ["Caller e-mail", job.caller_email],
    ["Language or format needs", job.caller_needs, { testid: "ooh-job-needs" }],
    ["Messages to the caller", (job.messages || []).map(messageLine).join("\n") || "None", { class: "prewrap", testid: "ooh-job-messages" }],
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

/** @param {SubmitEvent} ev */
export async function onJobStatus(ev) {
  ev.preventDefault();
  const job = state.currentJob;
  if (!job || !$("ooh-status-form", HTMLFormElement).reportValidity()) return;
  const status = $("ooh-status", HTMLSelectElement).value;
  const note = fieldValue("ooh-status-note");
  if (status === "closed" && !note) {
    $("ooh-status-note", HTMLTextAreaElement).focus();
    return say("Add a note saying how the job was closed.", "error");
  }
  await busy($("ooh-status-submit", HTMLButtonElement), async () => {
    const updated = await api("POST", `/ooh/jobs/${enc(job.reference)}/status`, { status, note });
    renderJob(updated);
    $("ooh-status-form", HTMLFormElement).reset();
    say(`Job ${updated.reference} is now ${(JOB_STATUS_LABEL[updated.status] || updated.status).toLowerCase()}.`, "success");
    searchJobs();
  });
}

