// @ts-check
/* The client record (shared by the incident panel and the Clients screen), client search,
 * and the client form with its responders editor. */
import { api, busy, enc, failure, say, sayError } from "./api.js";
import { $, clear, submitButton, emptyState, facts, fieldValue, fmtDate, fmtInterval, h, human, table, telLink, yearsSince } from "./dom.js";
import { renderSignals } from "./incident.js";
import { CONTACT_LABEL, MAX_CLIENT_ROWS, PROTOCOL_LABEL, role, state } from "./state.js";

/** @typedef {import("./types.js").Client} Client */
/** @typedef {import("./types.js").ClientInput} ClientInput */
/** @typedef {import("./types.js").ClientSummary} ClientSummary */
/** @typedef {import("./types.js").KeySafe} KeySafe */

// ---------------------------------------------------------------- client record

// Words that mean a call must be made differently (text relay, interpreter, large print...).
const COMM_ALERT = /deaf|hard of hearing|hearing|bsl|sign language|large print|blind|sight|visual|speech|text ?relay|lip/i;

/**
 * The client record, shared by the incident panel and the Clients screen. Only one copy is
 * in the page at a time so the client-* test ids stay unique.
 * @param {HTMLElement} container
 * @param {Client} c
 */
export function renderClientRecord(container, c) {
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

/** @param {Client} c */
function keySafeBlock(c) {
  const box = h("div", { class: "key-safe", testid: "client-key-safe" });
  if (!c.key_safe_set) {
    box.append(h("p", { text: "Key safe: no code recorded." }));
    return box;
  }
  const btn = h("button", { type: "button", testid: "client-key-safe-reveal", "aria-describedby": "key-safe-note", text: "Reveal key-safe code" });
  const note = h("p", { id: "key-safe-note", class: "hint", text: "Shown only while you hold an open alarm for this client. Each reveal is recorded in the audit trail with your name and the time." });
  const out = h("p", { class: "key-safe-out", "aria-live": "polite" });
  // Supervisors and admins may override without an alarm they hold, giving a reason.
  const mayOverride = role() === "supervisor" || role() === "admin";
  const reason = mayOverride
    ? h("input", { type: "text", maxlength: "500", testid: "client-key-safe-reason", "aria-label": "Reason (needed when you hold no alarm for this client)", placeholder: "Reason, when you hold no alarm for this client" })
    : null;
  btn.addEventListener("click", () =>
    busy(btn, async () => {
      const why = reason instanceof HTMLInputElement ? reason.value.trim() : "";
      /** @type {KeySafe} */
      const res = await api("POST", `/clients/${enc(c.id)}/key-safe/reveal`, why ? { reason: why } : undefined);
      clear(out).append("Key-safe code: ", h("output", { class: "key-code", testid: "client-key-safe-value", text: res.key_safe }),
        " ", h("span", { class: "hint", text: "(reveal recorded)" }));
      say("Key-safe code revealed. This has been recorded.", "success");
    }));
  box.append(h("p", null, btn), ...(reason ? [h("p", null, reason)] : []), note, out);
  return box;
}

// ---------------------------------------------------------------- clients screen

export function enterClients() {
  searchClients();
  if (state.currentClient && !$("client-view").hidden) renderClientRecord($("client-view-record"), state.currentClient);
}

/** @param {Event} [ev] */
export async function searchClients(ev) {
  if (ev) ev.preventDefault();
  const q = fieldValue("clients-search");
  const box = $("clients-results");
  try {
    /** @type {ClientSummary[]} */
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
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) clear(box).append(h("p", { class: "form-error", text: err.message }));
  }
}

/** @param {number} id */
async function viewClient(id) {
  try {
    showClient(await api("GET", `/clients/${enc(id)}`));
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) sayError(err);
  }
}

/** @param {Client} c */
export function showClient(c) {
  state.currentClient = c;
  $("client-form", HTMLFormElement).hidden = true;
  $("client-view").hidden = false;
  renderClientRecord($("client-view-record"), c);
  $("client-record-h").setAttribute("tabindex", "-1");
  $("client-record-h").focus();
}

const CLIENT_TEXT_FIELDS = ["external_ref", "name", "date_of_birth", "address", "postcode", "phone", "area", "language", "communication_needs", "preferred_contact", "access_notes", "medical_notes"];

/** @param {Client | null} c null for a new client */
export function openClientForm(c) {
  state.editingClientId = c ? c.id : null;
  $("client-form-h").textContent = c ? `Edit ${c.name}` : "New client";
  const fields = /** @type {Record<string, unknown> | null} */ (c);
  for (const f of CLIENT_TEXT_FIELDS) /** @type {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} */ ($(`cf-${f}`)).value = String((fields && fields[f]) || "");
  $("cf-date_of_birth", HTMLInputElement).value = c && c.date_of_birth ? String(c.date_of_birth).slice(0, 10) : "";
  if (!c || !c.language) $("cf-language", HTMLInputElement).value = "English";
  if (!c || !c.preferred_contact) $("cf-preferred_contact", HTMLSelectElement).value = "phone";
  $("cf-interpreter_needed", HTMLInputElement).checked = !!(c && c.interpreter_needed);
  $("cf-key_safe", HTMLInputElement).value = "";
  $("cf-key_safe_clear", HTMLInputElement).checked = false;
  /** @type {HTMLElement} */ ($("cf-key_safe_clear", HTMLInputElement).closest(".field")).hidden = !(c && c.key_safe_set);
  $("cf-key-hint").textContent = c && c.key_safe_set ? "A code is set. Leave blank to keep it; the code is never shown here." : "No code is set. Type one to add it.";
  state.responders = ((c && c.responders) || []).slice().sort((a, b) => a.position - b.position).map((r) => Object.assign({}, r));
  renderResponderEditor();
  $("client-form-error").hidden = true;
  $("client-view").hidden = true;
  $("client-form", HTMLFormElement).hidden = false;
  $("cf-external_ref", HTMLInputElement).focus();
}

/**
 * Responders editor: one fieldset per responder, in call order, with move/remove buttons.
 * @param {number} [focusIndex] the responder whose control gets the focus
 * @param {"name" | "up" | "down"} [focusWhat] which control
 */
export function renderResponderEditor(focusIndex, focusWhat) {
  const ol = clear($("cf-responders"));
  const list = state.responders;
  /** @type {HTMLElement | null} */
  let focusTarget = null;
  list.forEach((r, i) => {
    const idp = `resp-${i}`;
    const fields = /** @type {Record<string, unknown>} */ (r);
    /**
     * @param {string} name a ResponderDraft property
     * @param {string} label
     */
    const input = (name, label, type = "text") => {
      /** @param {Event} ev */
      const read = (ev) => {
        const t = /** @type {HTMLInputElement} */ (ev.target);
        return type === "checkbox" ? t.checked : t.value;
      };
      /** @type {Record<string, unknown>} */
      const props = { id: `${idp}-${name}`, type, testid: `responder-${name}`, oninput: (/** @type {Event} */ ev) => (fields[name] = read(ev)), onchange: (/** @type {Event} */ ev) => (fields[name] = read(ev)) };
      if (type === "checkbox") props.checked = !!fields[name];
      else props.value = fields[name] || "";
      const el = h("input", props);
      const lab = h("label", { for: props.id, text: label });
      return h("div", { class: "field" + (type === "checkbox" ? " checkbox" : "") }, type === "checkbox" ? [el, lab] : [lab, el]);
    };
    const who = r.name || `responder ${i + 1}`;
    /** @param {number} delta */
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
      if (list.length === 0) $("responder-add", HTMLButtonElement).focus();
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
  // (Assigned inside the forEach callback, which the checker does not follow.)
  const target = /** @type {HTMLElement | null} */ (focusTarget);
  if (target) target.focus(); // keep the keyboard user on the item they moved
  if (list.length === 0) ol.append(h("li", { class: "empty", text: "No responders. Add at least one if the client has someone to call." }));
}

/** @param {SubmitEvent} ev */
export async function onClientSubmit(ev) {
  ev.preventDefault();
  const form = $("client-form", HTMLFormElement);
  if (!form.reportValidity()) return;
  /** @type {Record<string, unknown>} the ClientInput being built */
  const body = {};
  for (const f of CLIENT_TEXT_FIELDS) body[f] = fieldValue(`cf-${f}`);
  body.date_of_birth = body.date_of_birth || null;
  body.area = body.area || null;
  body.interpreter_needed = $("cf-interpreter_needed", HTMLInputElement).checked;
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
  const key = $("cf-key_safe", HTMLInputElement).value.trim();
  if (key) body.key_safe = key;
  else if ($("cf-key_safe_clear", HTMLInputElement).checked) body.key_safe = ""; // empty string clears the code
  const id = state.editingClientId;
  const err = $("client-form-error");
  await busy(submitButton("client-form"), async () => {
    try {
      /** @type {Client} */
      const saved = id === null ? await api("POST", "/clients", body) : await api("PUT", `/clients/${enc(id)}`, body);
      $("cf-key_safe", HTMLInputElement).value = "";
      say(`Saved client ${saved.name}.`, "success");
      showClient(saved);
      searchClients();
    } catch (caught) {
      const e = failure(caught);
      if (e.status === 401) throw e;
      err.textContent = e.message;
      err.hidden = false;
      err.focus();
    }
  });
}

