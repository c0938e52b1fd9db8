// @ts-check
/* My account: changing one's own password, and (supervisors, admins) turning on a second
 * factor: the password again, then a QR code and key for the authenticator app, then a first
 * code from it. A wrong password here is answered 401 `bad_credentials`, which must not end
 * the session in the UI (the api wrapper would), so these calls pass `no401`. */
import { api, failure, say } from "./api.js";
import { $, submitButton } from "./dom.js";
import { sessionLost } from "./main.js";
import { state } from "./state.js";

/** @typedef {import("./types.js").TotpEnrolment} TotpEnrolment */
/** @typedef {import("./types.js").QrMatrix} QrMatrix */
/** @typedef {import("./types.js").Session} Session */

/** Light modules around the code, as the QR standard asks. */
const QUIET_ZONE = 4;
/** Screen pixels per module. */
const MODULE_PX = 5;

export function enterAccount() {
  renderSecondFactor();
}

/** The second factor's state as the session knows it. */
function renderSecondFactor() {
  const on = Boolean(state.user && state.user.second_factor);
  $("account-2fa-status").textContent = on
    ? "On: sign-in asks for a code from your authenticator app."
    : "Off: sign-in asks for your password only.";
  $("account-2fa-start").textContent = on ? "Set up again (a new phone)" : "Set up a second factor";
}

/**
 * Shows a form's error, or hides it with `null`.
 * @param {string} id
 * @param {string | null} text
 */
function formError(id, text) {
  const e = $(id);
  e.textContent = text || "";
  e.hidden = !text;
}

/**
 * Runs `fn`; a wrong password is shown in the form, a lost session ends it, anything else is
 * shown in the form too.
 * @param {string} formId
 * @param {string} errorId
 * @param {() => Promise<void>} fn
 */
async function guarded(formId, errorId, fn) {
  const button = submitButton(formId);
  button.disabled = true;
  try {
    formError(errorId, null);
    await fn();
  } catch (caught) {
    const e = failure(caught);
    if (e.status === 401 && e.code !== "bad_credentials") {
      sessionLost();
      return;
    }
    formError(errorId, e.code === "bad_credentials" ? "That is not your current password." : e.message);
  } finally {
    button.disabled = false;
  }
}

/** @param {SubmitEvent} ev */
export async function onPasswordSubmit(ev) {
  ev.preventDefault();
  const current = $("account-current", HTMLInputElement);
  const fresh = $("account-new", HTMLInputElement);
  const repeat = $("account-repeat", HTMLInputElement);
  if (!current.value || !fresh.value) return formError("account-password-error", "Enter your current password and a new one.");
  if (fresh.value !== repeat.value) return formError("account-password-error", "The two new passwords are not the same.");
  await guarded("account-password-form", "account-password-error", async () => {
    await api("POST", "/me/password", { current_password: current.value, new_password: fresh.value }, { no401: true });
    $("account-password-form", HTMLFormElement).reset();
    say("Your password has been changed. Your other sessions have ended.", "success");
  });
}

/** @param {SubmitEvent} ev */
export async function onSecondFactorBegin(ev) {
  ev.preventDefault();
  const password = $("account-2fa-password", HTMLInputElement);
  if (!password.value) return formError("account-2fa-error", "Enter your password.");
  await guarded("account-2fa-begin", "account-2fa-error", async () => {
    /** @type {TotpEnrolment} */
    const enrolment = await api("POST", "/me/totp", { password: password.value }, { no401: true });
    password.value = "";
    drawQr($("account-2fa-qr", HTMLCanvasElement), enrolment.qr);
    $("account-2fa-secret").textContent = enrolment.secret.replace(/(.{4})(?=.)/g, "$1 ");
    $("account-2fa-begin").hidden = true;
    $("account-2fa-confirm").hidden = false;
    $("account-2fa-code", HTMLInputElement).focus();
  });
}

/** @param {SubmitEvent} ev */
export async function onSecondFactorConfirm(ev) {
  ev.preventDefault();
  const code = $("account-2fa-code", HTMLInputElement).value.replace(/\s/g, "");
  if (!/^[0-9]{6}$/.test(code)) return formError("account-2fa-error", "Enter the 6-digit code your app shows.");
  await guarded("account-2fa-confirm", "account-2fa-error", async () => {
    await api("POST", "/me/totp/confirm", { code });
    /** @type {Session} */
    const me = await api("GET", "/me");
    state.user = me.user;
    resetAccount();
    renderSecondFactor();
    say("Second factor on: sign-in will ask for a code from your app.", "success");
  });
}

/** Back to the start: no key, code or QR code left on the page (a shared desk). */
export function resetAccount() {
  for (const id of ["account-password-form", "account-2fa-begin", "account-2fa-confirm"]) $(id, HTMLFormElement).reset();
  $("account-2fa-secret").textContent = "";
  const canvas = $("account-2fa-qr", HTMLCanvasElement);
  canvas.width = 0;
  canvas.height = 0;
  $("account-2fa-begin").hidden = false;
  $("account-2fa-confirm").hidden = true;
  formError("account-password-error", null);
  formError("account-2fa-error", null);
}

/**
 * Draws a QR code's modules, dark on white with the quiet zone around.
 * @param {HTMLCanvasElement} canvas
 * @param {QrMatrix} qr
 */
function drawQr(canvas, qr) {
  const side = (qr.size + 2 * QUIET_ZONE) * MODULE_PX;
  canvas.width = side;
  canvas.height = side;
  const g = canvas.getContext("2d");
  if (!g) return;
  g.fillStyle = "#fff";
  g.fillRect(0, 0, side, side);
  g.fillStyle = "#000";
  for (let i = 0; i < qr.modules.length; i++) {
    if (qr.modules[i] !== "1") continue;
    const x = (i % qr.size) + QUIET_ZONE;
    const y = Math.floor(i / qr.size) + QUIET_ZONE;
    g.fillRect(x * MODULE_PX, y * MODULE_PX, MODULE_PX, MODULE_PX);
  }
}
