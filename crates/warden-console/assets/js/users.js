// @ts-check
/* Administration: console users. */
import { api, busy, enc, failure, say, sayError } from "./api.js";
import { $, clear, fieldValue, h, human, submitButton, table } from "./dom.js";
import { ROLE_LABEL, state } from "./state.js";

/** @typedef {import("./types.js").User} User */
/** @typedef {import("./types.js").UserInput} UserInput */
/** @typedef {import("./types.js").Role} Role */

// ---------------------------------------------------------------- users (administration)

export async function loadUsers() {
  try {
    state.users = /** @type {User[]} */ (await api("GET", "/users")) || [];
    renderUsers();
  } catch (caught) {
    const err = failure(caught);
    if (err.status !== 401) sayError(err);
  }
}

function renderUsers() {
  const box = clear($("users-table"));
  box.append(table([
    { label: "Username", cell: (u) => u.username },
    { label: "Name", cell: (u) => u.display_name },
    { label: "Role", cell: (u) => ROLE_LABEL[u.role] || human(u.role) },
    { label: "Status", cell: (u) => (u.disabled ? h("span", { class: "tag tag-off", text: "Disabled" }) : "Active") },
    { label: "Second factor", cell: (u) => (u.second_factor ? "On" : "Off") },
    { label: "Actions", cell: (u) => h("span", { class: "row-actions" },
      h("button", { type: "button", testid: "user-edit", text: "Edit", "aria-label": `Edit ${u.username}`, onclick: () => editUser(u) }),
      h("button", { type: "button", testid: "user-disable", text: u.disabled ? "Enable" : "Disable", "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.username}`, onclick: (/** @type {MouseEvent} */ ev) => setUserDisabled(u, !u.disabled, /** @type {HTMLButtonElement} */ (ev.currentTarget)) })) },
  ], state.users, { caption: "Users", rowProps: (u) => ({ testid: "user-row", dataset: { userId: String(u.id), username: u.username } }) }));
}

/**
 * @param {User} u
 * @param {boolean} disabled
 * @returns {UserInput}
 */
function userPayload(u, disabled) {
  return { username: u.username, display_name: u.display_name, role: u.role, disabled };
}

/**
 * @param {User} u
 * @param {boolean} disabled
 * @param {HTMLButtonElement} button
 */
async function setUserDisabled(u, disabled, button) {
  await busy(button, async () => {
    await api("PUT", `/users/${enc(u.id)}`, userPayload(u, disabled));
    say(`${u.username} is now ${disabled ? "disabled" : "enabled"}.`, "success");
    await loadUsers();
  });
}

/** @param {User} u */
function editUser(u) {
  state.editingUserId = u.id;
  $("user-form-h").textContent = `Edit ${u.username}`;
  $("user-username", HTMLInputElement).value = u.username;
  $("user-display-name", HTMLInputElement).value = u.display_name;
  $("user-role", HTMLSelectElement).value = u.role;
  $("user-password", HTMLInputElement).value = "";
  $("user-disabled", HTMLInputElement).checked = !!u.disabled;
  submitButton("user-form").textContent = "Save user";
  $("user-username", HTMLInputElement).focus();
}

export function resetUserForm() {
  state.editingUserId = null;
  $("user-form", HTMLFormElement).reset();
  $("user-form-h").textContent = "New user";
  submitButton("user-form").textContent = "Create user";
}

/** @param {SubmitEvent} ev */
export async function onUserSubmit(ev) {
  ev.preventDefault();
  if (!$("user-form", HTMLFormElement).reportValidity()) return;
  /** @type {UserInput} */
  const body = {
    username: fieldValue("user-username"),
    display_name: fieldValue("user-display-name"),
    role: /** @type {Role} */ ($("user-role", HTMLSelectElement).value),
    disabled: $("user-disabled", HTMLInputElement).checked,
  };
  const pw = $("user-password", HTMLInputElement).value;
  const id = state.editingUserId;
  if (id === null && !pw) {
    $("user-password", HTMLInputElement).focus();
    return say("A new user needs a password.", "error");
  }
  if (pw) body.password = pw;
  await busy(submitButton("user-form"), async () => {
    if (id === null) await api("POST", "/users", body);
    else await api("PUT", `/users/${enc(id)}`, body);
    say(`Saved user ${body.username}.`, "success");
    resetUserForm();
    await loadUsers();
  });
}

