// "My account" in a real browser (Debian's chromium via playwright-core): a supervisor changes
// their password (a wrong current one, a guessable new one and a mistyped repeat are each
// refused in the form without ending the session), turns on a second factor from the QR
// screen, and the next sign-in asks for a code. The codes are computed here with node's own
// HMAC-SHA1 (RFC 6238), not with Warden's code.
//
// Started by tests/tests/e2e_console.rs with: CONSOLE_URL, USER, PASSWORD, NEW_PASSWORD,
// ARTIFACTS. Exits 0 when every step passed.

import { createHmac } from "node:crypto";
import assert from "node:assert/strict";
import { T, checkAccessible, env, id, launch, screenshots, signInWith } from "./lib.mjs";

const URL = env("CONSOLE_URL");
const USER = env("USER");
const NEW_PASSWORD = env("NEW_PASSWORD");
const browser = await launch();
const shot = screenshots(env("ARTIFACTS"));

/** RFC 4648 base32 (no padding) to bytes. @param {string} text */
function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of text.replace(/[\s=]/g, "").toUpperCase()) {
    const v = alphabet.indexOf(c);
    assert.ok(v >= 0, `not base32: ${c}`);
    bits += v.toString(2).padStart(5, "0");
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** The RFC 6238 code (SHA-1, 6 digits, 30 s) for the Unix time `at`. */
function totp(secret, at) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30)));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, "0");
}

/** Fills the password form and submits it. */
async function changePassword(page, current, fresh, repeat) {
  await page.fill(id("account-current"), current);
  await page.fill(id("account-new"), fresh);
  await page.fill(id("account-repeat"), repeat);
  await page.click(id("account-password-submit"));
}

try {
  const page = await signInWith(browser, URL, USER, env("PASSWORD"), "sue");
  await page.click(id("nav-account"));
  await page.locator(id("account-password-form")).waitFor({ state: "visible", timeout: T });
  await page.locator(id("account-2fa-status")).filter({ hasText: /^Off/ }).waitFor({ timeout: T });
  await checkAccessible(page, "my account");
  await shot(page, "account");

  // Each refusal is shown in the form; the session goes on.
  const error = page.locator(id("account-password-error"));
  await changePassword(page, "not my password", NEW_PASSWORD, NEW_PASSWORD);
  await error.filter({ hasText: /not your current password/i }).waitFor({ timeout: T });
  await changePassword(page, env("PASSWORD"), "password123", "password123");
  await error.filter({ hasText: /guess|common|weak|short/i }).waitFor({ timeout: T });
  await changePassword(page, env("PASSWORD"), NEW_PASSWORD, `${NEW_PASSWORD}!`);
  await error.filter({ hasText: /not the same/i }).waitFor({ timeout: T });
  assert.ok(await page.locator(id("nav-account")).isVisible(), "still signed in after the refusals");
  await shot(page, "password-refused");

  await changePassword(page, env("PASSWORD"), NEW_PASSWORD, NEW_PASSWORD);
  await page.locator(id("message")).filter({ hasText: /password has been changed/i }).waitFor({ timeout: T });
  assert.equal(await page.inputValue(id("account-new")), "", "the form is emptied");

  // The second factor: the password again, then the QR code and key, then a first code.
  await page.fill(id("account-2fa-password"), NEW_PASSWORD);
  await page.click(id("account-2fa-start"));
  await page.locator(id("account-2fa-confirm")).waitFor({ state: "visible", timeout: T });
  const qr = await page.locator(id("account-2fa-qr")).evaluate((c) => {
    const canvas = /** @type {HTMLCanvasElement} */ (c);
    const g = canvas.getContext("2d");
    const px = g ? g.getImageData(0, 0, canvas.width, canvas.height).data : [];
    let dark = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] < 128) dark += 1;
    return { width: canvas.width, height: canvas.height, dark };
  });
  assert.ok(qr.width >= 145 && qr.width === qr.height, `a square QR code: ${JSON.stringify(qr)}`);
  assert.ok(qr.dark > 0.2 * qr.width * qr.height && qr.dark < 0.6 * qr.width * qr.height, `drawn modules: ${JSON.stringify(qr)}`);
  const secret = (await page.locator(id("account-2fa-secret")).innerText()).replace(/\s/g, "");
  assert.match(secret, /^[A-Z2-7]{32}$/);
  await shot(page, "second-factor-qr");
  await page.fill(id("account-2fa-code"), "000000");
  await page.click(id("account-2fa-submit"));
  await page.locator(id("account-2fa-error")).filter({ hasText: /wrong or expired/i }).waitFor({ timeout: T });
  const now = Date.now() / 1000;
  await page.fill(id("account-2fa-code"), totp(secret, now));
  await page.click(id("account-2fa-submit"));
  await page.locator(id("account-2fa-status")).filter({ hasText: /^On/ }).waitFor({ timeout: T });
  assert.equal(await page.locator(id("account-2fa-secret")).innerText(), "", "the key is gone from the page");
  await shot(page, "second-factor-on");

  // Sign out; the new password alone is not enough any more.
  await page.click(id("logout"));
  await page.locator(id("login-username")).waitFor({ state: "visible", timeout: T });
  await page.fill(id("login-username"), USER);
  await page.fill(id("login-password"), NEW_PASSWORD);
  await page.click(id("login-submit"));
  await page.locator(id("login-otp")).waitFor({ state: "visible", timeout: T });
  await shot(page, "code-asked");
  // The confirming code is spent: the next step's (within the allowed skew) signs in.
  await page.fill(id("login-otp"), totp(secret, now + 30));
  await page.click(id("login-submit"));
  await page.locator(id("queue")).waitFor({ state: "visible", timeout: T });
  await shot(page, "signed-in-with-code");
  console.log(JSON.stringify({ result: "pass" }));
} catch (e) {
  console.error(`browser test failed: ${e.stack || e}`);
  for (const [i, ctx] of browser.contexts().entries()) {
    for (const p of ctx.pages()) {
      await p.screenshot({ path: `${env("ARTIFACTS")}/failure-${i}.png`, fullPage: true }).catch(() => {});
    }
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
