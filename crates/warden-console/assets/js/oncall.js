// @ts-check
/* On call: the directory escalations and the out-of-hours desk use. People and how to reach
 * them, teams, rotas (who is on call over the next week), overrides, escalation chains and
 * routes; a CSV import of people. Supervisors and admins edit; on-call staff read. Rota layers
 * and chains are edited as JSON records, checked by the server, which names the field of any
 * problem. */
import { api, busy, failure, say } from "./api.js";
import { $, clear, emptyState, fieldValue, fmtTime, h, table } from "./dom.js";
import { role } from "./state.js";

/** @typedef {import("./types.js").OncallDirectory} OncallDirectory */
/** @typedef {import("./types.js").DirectoryPerson} DirectoryPerson */
/** @typedef {import("./types.js").ContactMethod} ContactMethod */

/** @type {OncallDirectory | null} */
let current = null;
/** The person being edited, or null for a new one. */
let editing = /** @type {number | null} */ (null);

const canEdit = () => role() === "supervisor" || role() === "admin";

export function enterOncall() {
  for (const id of ["oncall-person-form", "oncall-team-form", "oncall-rota-form", "oncall-override-form", "oncall-chain-form", "oncall-routes-form", "oncall-import-form"]) {
    $(id).hidden = !canEdit();
  }
  loadOncall();
}

/** @param {number} id */
const personName = (id) => current?.people.find((p) => p.id === id)?.name || `#${id}`;

/** @param {ContactMethod} c */
const contactText = (c) => `${c.kind}${c.address ? ` ${c.address}` : ""}${c.verified ? "" : " (unverified)"}`;

export async function loadOncall() {
  const box = $("oncall-directory");
  try {
    /** @type {OncallDirectory} */
    const d = await api("GET", "/oncall");
    current = d;
    clear(box);
    box.append(h("h2", { text: "People" }));
    box.append(d.people.length === 0 ? emptyState("Nobody yet: add people below or import a CSV file.") : table(
      [
        { label: "Name", cell: (p) => [h("strong", { text: p.name }), p.active ? "" : h("span", { class: "sub", text: "left the directory" })] },
        { label: "Console account", cell: (p) => p.username || "" },
        { label: "Reached by, in order", cell: (p) => p.contacts.map(contactText).join(" → ") || "No way to reach them" },
        { label: "", cell: (p) => (canEdit() ? h("button", { type: "button", text: "Edit", testid: "oncall-person-edit", onclick: () => editPerson(p) }) : "") },
      ],
      d.people,
      { caption: "People who can be paged", rowProps: (p) => ({ testid: "oncall-person-row", dataset: { personId: String(p.id) } }) },
    ));
    box.append(h("h2", { text: "Teams" }));
    box.append(d.teams.length === 0 ? emptyState("No teams.") : table(
      [
        { label: "Team", cell: (t) => t.name },
        { label: "Members", cell: (t) => t.members.map(personName).join(", ") },
        { label: "", cell: (t) => editAndRemove("team", () => editTeam(t), `/oncall/teams/${t.id}`, t.name) },
      ],
      d.teams,
      { caption: "Teams", rowProps: () => ({ testid: "oncall-team-row" }) },
    ));
    box.append(h("h2", { text: "Rotas" }));
    box.append(d.rotas.length === 0 ? emptyState("No rotas.") : table(
      [
        { label: "Rota", cell: (r) => [h("strong", { text: r.name }), h("span", { class: "sub", text: r.zone })] },
        { label: "Bank holidays", cell: (r) => r.bank_holidays.join(", ") },
        { label: "Overrides", cell: (r) => r.overrides.map((o) => `${personName(o.person_id)} ${fmtTime(o.starts_at)} – ${fmtTime(o.ends_at)}`).join("; ") },
        { label: "Next 7 days", cell: (r) => h("button", { type: "button", text: "Who is on call", testid: "oncall-timeline", onclick: () => showTimeline(r.id, r.name) }) },
        { label: "", cell: (r) => editAndRemove("rota", () => editRota(r), `/oncall/rotas/${r.id}`, r.name) },
      ],
      d.rotas,
      { caption: "Rotas", rowProps: () => ({ testid: "oncall-rota-row" }) },
    ));
    box.append(h("div", { id: "oncall-timeline-box", testid: "oncall-timeline-box" }));
    box.append(h("h2", { text: "Escalation chains" }));
    box.append(d.chains.length === 0 ? emptyState("No chains.") : table(
      [
        { label: "Chain", cell: (c) => `${c.name} (#${c.id})` },
        { label: "Record", cell: (c) => h("code", { class: "prewrap", text: JSON.stringify(c.doc) }) },
        { label: "", cell: (c) => editAndRemove("chain", () => editChain(c), `/oncall/chains/${c.id}`, c.name) },
      ],
      d.chains,
      { caption: "Escalation chains", rowProps: () => ({ testid: "oncall-chain-row" }) },
    ));
    box.append(h("h2", { text: "Routes, in order" }));
    box.append(d.routes.length === 0 ? emptyState("No routes: nothing escalates.") : table(
      [
        { label: "#", cell: (r) => String(d.routes.indexOf(r) + 1) },
        { label: "Matches", cell: (r) => [["priority", r.priority], ["kind", r.kind], ["area", r.area], ["client", r.client_id], ["out-of-hours category", r.ooh_category]].filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k} ${v}`).join(", ") || "everything" },
        { label: "Chain", cell: (r) => current?.chains.find((c) => c.id === r.chain_id)?.name || `#${r.chain_id}` },
      ],
      d.routes,
      { caption: "Routes", rowProps: () => ({ testid: "oncall-route-row" }) },
    ));
    fillSelects(d);
    $("oncall-routes", HTMLTextAreaElement).value = JSON.stringify(d.routes, null, 1);
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) clear(box).append(h("p", { class: "form-error", text: err.message }));
  }
}

/** @param {OncallDirectory} d */
function fillSelects(d) {
  for (const id of ["oncall-team-members", "oncall-override-person"]) {
    const sel = clear($(id, HTMLSelectElement));
    for (const p of d.people.filter((x) => x.active)) sel.append(h("option", { value: String(p.id), text: `${p.name} (#${p.id})` }));
  }
  const rotas = clear($("oncall-override-rota", HTMLSelectElement));
  for (const r of d.rotas) rotas.append(h("option", { value: String(r.id), text: r.name }));
}

/**
 * @param {number} id
 * @param {string} name
 */
async function showTimeline(id, name) {
  const box = $("oncall-timeline-box");
  try {
    /** @type {import("./types.js").OnCallStretch[]} */
    const stretches = await api("GET", `/oncall/rotas/${id}/timeline?days=7`);
    clear(box).append(h("h3", { text: `${name}: who is on call, next 7 days` }), table(
      [
        { label: "From", cell: (s) => fmtTime(s.from) },
        { label: "To", cell: (s) => fmtTime(s.to) },
        { label: "On call", cell: (s) => s.person || h("strong", { class: "form-error", text: "Nobody: alarms go to the chain's fallback" }) },
      ],
      stretches,
      { caption: `Timeline of ${name}`, rowProps: () => ({ testid: "oncall-stretch" }) },
    ));
  } catch (caught) {
    say(failure(caught).message, "error");
  }
}

/**
 * "Edit" (fills the form below) and "Remove" (a second click confirms; the server refuses
 * while something still uses the entry and says what) for one team, rota or chain.
 * @param {"team" | "rota" | "chain"} what
 * @param {() => void} edit
 * @param {string} path
 * @param {string} name
 */
function editAndRemove(what, edit, path, name) {
  if (!canEdit()) return "";
  const remove = h("button", { type: "button", class: "danger", text: "Remove", testid: `oncall-${what}-remove` });
  remove.addEventListener("click", async () => {
    if (remove.dataset.armed !== "yes") {
      remove.dataset.armed = "yes";
      remove.textContent = `Remove ${name}?`;
      return;
    }
    try {
      await api("DELETE", path);
      say(`Removed ${name}.`, "success");
      await loadOncall();
    } catch (caught) {
      delete remove.dataset.armed;
      remove.textContent = "Remove";
      say(failure(caught).message, "error");
    }
  });
  return [h("button", { type: "button", text: "Edit", testid: `oncall-${what}-edit`, onclick: edit }), " ", remove];
}

/** @param {import("./types.js").DirectoryTeam} t */
function editTeam(t) {
  $("oncall-team-name", HTMLInputElement).value = t.name;
  for (const o of $("oncall-team-members", HTMLSelectElement).options) o.selected = t.members.includes(Number(o.value));
  $("oncall-team-name").focus();
}

/** @param {import("./types.js").DirectoryRota} r */
function editRota(r) {
  $("oncall-rota-name", HTMLInputElement).value = r.name;
  $("oncall-rota-zone", HTMLInputElement).value = r.zone;
  $("oncall-rota-holidays", HTMLInputElement).value = r.bank_holidays.join(", ");
  $("oncall-rota-layers", HTMLTextAreaElement).value = JSON.stringify(r.layers, null, 1);
  $("oncall-rota-name").focus();
}

/** @param {import("./types.js").DirectoryChain} c */
function editChain(c) {
  $("oncall-chain-name", HTMLInputElement).value = c.name;
  $("oncall-chain-doc", HTMLTextAreaElement).value = JSON.stringify(c.doc, null, 1);
  $("oncall-chain-name").focus();
}

/** @param {DirectoryPerson} p */
function editPerson(p) {
  editing = p.id;
  $("oncall-person-name", HTMLInputElement).value = p.name;
  $("oncall-person-username", HTMLInputElement).value = p.username || "";
  $("oncall-person-active", HTMLInputElement).checked = p.active;
  $("oncall-person-contacts", HTMLTextAreaElement).value = p.contacts.map((c) => `${c.kind} ${c.address} ${c.verified ? "verified" : ""}`.replace(/\s+/g, " ").trim()).join("\n");
  $("oncall-person-h").textContent = `Edit ${p.name}`;
  $("oncall-person-name").focus();
}

export function resetPersonForm() {
  editing = null;
  $("oncall-person-form", HTMLFormElement).reset();
  $("oncall-person-h").textContent = "Add a person";
}

/**
 * "sms +447700900123 verified" per line → contact methods, in order.
 * @param {string} text
 * @returns {ContactMethod[]}
 */
function parseContacts(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const words = line.split(/\s+/);
    const verified = words[words.length - 1] === "verified";
    if (verified) words.pop();
    // The server refuses a kind it does not know, naming the line's position.
    const kind = /** @type {ContactMethod["kind"]} */ (words.shift() || "");
    return { kind, address: words.join(" "), verified };
  });
}

/**
 * @param {string} formId
 * @param {() => Promise<string>} fn returns the message to show
 */
async function submit(formId, fn) {
  const form = $(formId, HTMLFormElement);
  if (!form.reportValidity()) return;
  const button = form.querySelector("button[type=submit]");
  const run = async () => {
    try {
      say(await fn(), "success");
      await loadOncall();
    } catch (caught) {
      say(failure(caught).message, "error");
    }
  };
  if (button instanceof HTMLButtonElement) await busy(button, run);
  else await run();
}

/** @param {SubmitEvent} ev */
export function onPersonSubmit(ev) {
  ev.preventDefault();
  return submit("oncall-person-form", async () => {
    const body = {
      name: fieldValue("oncall-person-name"),
      username: fieldValue("oncall-person-username") || null,
      active: $("oncall-person-active", HTMLInputElement).checked,
      contacts: parseContacts($("oncall-person-contacts", HTMLTextAreaElement).value),
    };
    if (editing === null) await api("POST", "/oncall/people", body);
    else await api("PUT", `/oncall/people/${editing}`, body);
    const name = body.name;
    resetPersonForm();
    return `Saved ${name}.`;
  });
}

/** @param {SubmitEvent} ev */
export function onTeamSubmit(ev) {
  ev.preventDefault();
  return submit("oncall-team-form", async () => {
    const members = [...$("oncall-team-members", HTMLSelectElement).selectedOptions].map((o) => Number(o.value));
    await api("PUT", "/oncall/teams", { name: fieldValue("oncall-team-name"), members });
    return "Team saved.";
  });
}

/**
 * @param {string} id
 * @param {string} what
 */
function jsonField(id, what) {
  try {
    return JSON.parse($(id, HTMLTextAreaElement).value);
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** @param {SubmitEvent} ev */
export function onRotaSubmit(ev) {
  ev.preventDefault();
  return submit("oncall-rota-form", async () => {
    const bank_holidays = fieldValue("oncall-rota-holidays").split(",").map((s) => s.trim()).filter(Boolean);
    await api("PUT", "/oncall/rotas", { name: fieldValue("oncall-rota-name"), zone: fieldValue("oncall-rota-zone"), bank_holidays, layers: jsonField("oncall-rota-layers", "Layers") });
    return "Rota saved. The configuration check runs within a second; any gap appears as a technical incident.";
  });
}

/** @param {SubmitEvent} ev */
export function onOverrideSubmit(ev) {
  ev.preventDefault();
  return submit("oncall-override-form", async () => {
    const rota = $("oncall-override-rota", HTMLSelectElement).value;
    const iso = (/** @type {string} */ id) => new Date($(id, HTMLInputElement).value).toISOString();
    await api("POST", `/oncall/rotas/${rota}/overrides`, {
      person_id: Number($("oncall-override-person", HTMLSelectElement).value),
      starts_at: iso("oncall-override-from"),
      ends_at: iso("oncall-override-to"),
    });
    return "Override added.";
  });
}

/** @param {SubmitEvent} ev */
export function onChainSubmit(ev) {
  ev.preventDefault();
  return submit("oncall-chain-form", async () => {
    await api("PUT", "/oncall/chains", { name: fieldValue("oncall-chain-name"), doc: jsonField("oncall-chain-doc", "The chain") });
    return "Chain saved.";
  });
}

/** @param {SubmitEvent} ev */
export function onRoutesSubmit(ev) {
  ev.preventDefault();
  return submit("oncall-routes-form", async () => {
    await api("PUT", "/oncall/routes", jsonField("oncall-routes", "The routes"));
    return "Routes saved.";
  });
}

/** @param {SubmitEvent} ev */
export function onPeopleImport(ev) {
  ev.preventDefault();
  return submit("oncall-import-form", async () => {
    const file = $("oncall-import-file", HTMLInputElement).files?.[0];
    if (!file) throw new Error("Choose a CSV file first.");
    /** @type {import("./types.js").ImportReport} */
    const report = await api("POST", "/oncall/people/import", await file.text(), { contentType: "text/csv" });
    const out = clear($("oncall-import-report"));
    if (report.errors.length > 0) {
      out.append(h("p", { class: "form-error", text: "Nothing was imported:" }), h("ul", {}, ...report.errors.map((e) => h("li", { text: `row ${e.row}${e.column ? `, ${e.column}` : ""}: ${e.message}` }))));
      return "The file has errors; nothing was imported.";
    }
    return `Imported ${report.imported} people, updated ${report.updated}.`;
  });
}
