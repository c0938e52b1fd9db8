// @ts-check
/* Administration: the device registry. */
import { api, busy, enc, failure, say, sayError } from "./api.js";
import { $, clear, fieldValue, fmtInterval, fmtTime, h, human, submitButton, table } from "./dom.js";
import { MAX_DEVICE_ROWS, PROTOCOL_LABEL, state } from "./state.js";

/** @typedef {import("./types.js").Device} Device */
/** @typedef {import("./types.js").DeviceListed} DeviceListed */

/** @type {Record<string, string>} words for each link state */
const LINK_LABEL = { heard: "Heard", silent: "Silent: test overdue", never: "Never heard" };

// ---------------------------------------------------------------- devices (administration)

/** @param {Event} [ev] */
export async function loadDevices(ev) {
  if (ev) ev.preventDefault();
  const q = fieldValue("device-filter");
  try {
    state.devices = /** @type {DeviceListed[]} */ (await api("GET", `/devices?limit=${MAX_DEVICE_ROWS}${q ? `&q=${enc(q)}` : ""}`)) || [];
    renderDevices();
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) sayError(err);
  }
}

function renderDevices() {
  const shown = state.devices;
  const box = clear($("devices-table"));
  box.append(h("p", { class: "hint", text: shown.length >= MAX_DEVICE_ROWS ? `Showing the first ${shown.length} devices: search to narrow down.` : `${shown.length} device${shown.length === 1 ? "" : "s"}.` }));
  box.append(table([
    { label: "Account", cell: (d) => d.account },
    { label: "Protocol", cell: (d) => PROTOCOL_LABEL[d.protocol] || human(d.protocol) },
    { label: "Label", cell: (d) => d.label || "—" },
    { label: "Type", cell: (d) => d.device_type || "—" },
    { label: "Test interval", cell: (d) => fmtInterval(d.test_interval_seconds) },
    { label: "Link", cell: (d) => h("span", { class: d.link === "silent" ? "tag tag-key" : "tag", testid: "device-link", text: LINK_LABEL[d.link] || human(d.link) }) },
    { label: "Last heard", cell: (d) => fmtTime(d.last_heard_at) },
    { label: "Client ref", cell: (d) => d.client_ref || "—" },
    { label: "Area", cell: (d) => d.area || "—" },
    { label: "Actions", cell: (d) => h("button", { type: "button", testid: "device-edit", text: "Edit", "aria-label": `Edit device ${d.account}`, onclick: () => editDevice(d) }) },
  ], shown, { caption: "Devices", rowProps: (d) => ({ testid: "device-row", dataset: { deviceId: String(d.id) } }) }));
}

/** @type {Record<string, string>} form field of each Device property */
const DEVICE_FIELDS = { account: "device-account", protocol: "device-protocol", label: "device-label", device_type: "device-type", test_interval_seconds: "device-interval", client_ref: "device-client-ref", area: "device-area" };

/** @param {Device} d */
function editDevice(d) {
  state.editingDeviceId = d.id;
  const fields = /** @type {Record<string, unknown>} */ (d);
  for (const [k, id] of Object.entries(DEVICE_FIELDS)) /** @type {HTMLInputElement | HTMLSelectElement} */ ($(id)).value = String(fields[k] ?? "");
  $("device-form-h").textContent = `Edit device ${d.account}`;
  submitButton("device-form").textContent = "Save device";
  $("device-account", HTMLInputElement).focus();
}

export function resetDeviceForm() {
  state.editingDeviceId = null;
  $("device-form", HTMLFormElement).reset();
  $("device-form-h").textContent = "New device";
  submitButton("device-form").textContent = "Create device";
}

/** @param {SubmitEvent} ev */
export async function onDeviceSubmit(ev) {
  ev.preventDefault();
  if (!$("device-form", HTMLFormElement).reportValidity()) return;
  /** @type {Record<string, string | number | null>} the DeviceInput being built */
  const body = {};
  for (const [k, id] of Object.entries(DEVICE_FIELDS)) body[k] = fieldValue(id) || null;
  body.account = fieldValue("device-account");
  body.protocol = $("device-protocol", HTMLSelectElement).value;
  body.test_interval_seconds = body.test_interval_seconds ? Number(body.test_interval_seconds) : null;
  const id = state.editingDeviceId;
  const key = fieldValue("device-dc09-key");
  await busy(submitButton("device-form"), async () => {
    /** @type {import("./types.js").Device} */
    const saved = id === null ? await api("POST", "/devices", body) : await api("PUT", `/devices/${enc(id)}`, body);
    // The key goes on its own, write-only; it is never read back.
    if (key) await api("PUT", `/devices/${enc(saved.id)}/dc09-key`, { key });
    say(`Saved device ${body.account}${key ? " and its DC-09 key" : ""}.`, "success");
    resetDeviceForm();
    await loadDevices();
  });
}

