// @ts-check
/* Administration: the tabs, out-of-hours categories (on-call contacts) and CSV import. Users
 * and devices have their own modules. */
import { api, busy, enc, failure, say } from "./api.js";
import { loadDevices } from "./devices.js";
import { $, $$, clear, h, submitButton, table } from "./dom.js";
import { loadCategories } from "./ooh.js";
import { state } from "./state.js";
import { loadUsers } from "./users.js";

/** @typedef {import("./types.js").OohCategory} OohCategory */
/** @typedef {import("./types.js").OohCategoryInput} OohCategoryInput */
/** @typedef {import("./types.js").ImportReport} ImportReport */

// ---------------------------------------------------------------- administration

let adminTab = "users";

export function enterAdmin() {
  showAdminTab(adminTab);
}

/** @param {string} tab users | devices | categories | csv */
export function showAdminTab(tab) {
  adminTab = tab;
  for (const b of $$(".subnav-btn")) b.setAttribute("aria-pressed", String(b.dataset.admin === tab));
  for (const s of $$(".admin-section")) s.hidden = s.id !== `admin-${tab}`;
  /** @type {Record<string, () => unknown>} */
  const loaders = { users: loadUsers, devices: loadDevices, categories: loadCategoryAdmin, csv: () => {} };
  loaders[tab]();
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
    { label: "Save", cell: (c) => h("button", { type: "button", testid: "category-save", text: "Save", "aria-label": `Save ${c.name}`, onclick: (/** @type {MouseEvent} */ ev) => saveCategory(c, /** @type {HTMLButtonElement} */ (ev.currentTarget)) }) },
  ], state.categories, { caption: "Out-of-hours categories", rowProps: (c) => ({ testid: "category-row", dataset: { code: c.code } }) }));
}

/**
 * @param {OohCategory} c
 * @param {"name" | "oncall_name" | "oncall_phone"} field
 * @param {string} label
 */
function catInput(c, field, label) {
  return h("input", { id: `cat-${c.code}-${field}`, value: c[field] || "", type: field === "oncall_phone" ? "tel" : "text", testid: `category-${field}`, "aria-label": `${label} for ${c.name}` });
}

/**
 * @param {OohCategory} c
 * @param {HTMLButtonElement} button
 */
async function saveCategory(c, button) {
  /** @param {string} f */
  const get = (f) => $(`cat-${c.code}-${f}`, HTMLInputElement).value.trim();
  /** @type {OohCategoryInput} */
  const body = { name: get("name") || c.name, oncall_name: get("oncall_name") || null, oncall_phone: get("oncall_phone") || null };
  await busy(button, async () => {
    await api("PUT", `/ooh/categories/${enc(c.code)}`, body);
    say(`Saved ${body.name}.`, "success");
    await loadCategories();
  });
}

// CSV import

/** @param {SubmitEvent} ev */
export async function onImport(ev) {
  ev.preventDefault();
  const kind = $("import-type", HTMLSelectElement).value;
  const file = $("import-file", HTMLInputElement).files?.[0];
  const csv = file ? await file.text() : $("import-text", HTMLTextAreaElement).value;
  const dry = $("import-dry-run", HTMLInputElement).checked;
  const out = $("import-result");
  if (!csv.trim()) return say("Choose a CSV file or paste CSV text first.", "error");
  const submitter = ev.submitter instanceof HTMLButtonElement ? ev.submitter : submitButton("import-form");
  await busy(submitter, async () => {
    clear(out);
    try {
      /** @type {ImportReport} */
      const res = await api("POST", `/import/${kind}.csv${dry ? "?dry_run=true" : ""}`, csv, { contentType: "text/csv" });
      renderImportResult(res, dry);
    } catch (caught) {
      const e = failure(caught);
      if (e.status === 401) throw e;
      if (e.data && Array.isArray(e.data.errors) && e.data.errors.length) renderImportResult(e.data, dry);
      else out.append(h("p", { class: "form-error", text: e.status === 413 ? "The file is too large for one import. Split it into smaller files." : e.message }));
    }
    out.focus();
  });
}

/**
 * @param {ImportReport} res
 * @param {boolean} dry
 */
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

