// What the browser tests share: the environment, Debian's chromium, screenshots, signing in
// from the keyboard and the accessibility check.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

/** A required environment variable. @param {string} k */
export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing environment variable ${k}`);
  return v;
};
export const T = 15_000;
/** @param {string} t */
export const id = (t) => `[data-testid="${t}"]`;

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
}

/** A numbered full-page screenshot function writing into `dir`. @param {string} dir */
export function screenshots(dir) {
  mkdirSync(dir, { recursive: true });
  let step = 0;
  return async (page, name) => {
    step += 1;
    await page.screenshot({ path: `${dir}/${String(step).padStart(2, "0")}-${name}.png`, fullPage: true });
  };
}

/**
 * Signs in from the keyboard in a new browser context and waits for the landing screen
 * (`landing`, a test id) and, for the queue, for the live connection.
 */
export async function signInWith(browser, url, user, password, name, landing = "queue") {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => { console.error(`[${name}] page error: ${e.message}`); process.exitCode = 1; });
  await page.goto(url);
  // Keyboard only: the sign-in form must be usable without a mouse.
  await page.locator(id("login-username")).focus();
  await page.keyboard.type(user);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await page.locator(id(landing)).waitFor({ state: "visible", timeout: T });
  if (landing === "queue") {
    await page.locator(`${id("conn-status")}`).filter({ hasText: /live/i }).waitFor({ timeout: T });
  }
  return page;
}

/** Every visible control has an accessible name, and keyboard focus is visible. */
export async function checkAccessible(page, where) {
  const unlabelled = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll("input, select, textarea, button, a[href]")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0 || el.type === "hidden") continue;
      const named = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") ||
        el.getAttribute("aria-labelledby") || el.getAttribute("title") ||
        (el.tagName !== "INPUT" && el.textContent.trim().length > 0);
      if (!named) bad.push(el.outerHTML.slice(0, 120));
    }
    return bad;
  });
  assert.deepEqual(unlabelled, [], `${where}: controls without an accessible name`);
  await page.keyboard.press("Tab");
  const focus = await page.evaluate(() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const s = getComputedStyle(el);
    return { outline: s.outlineStyle, width: s.outlineWidth, shadow: s.boxShadow };
  });
  assert.ok(focus, `${where}: Tab moved focus nowhere`);
  assert.ok((focus.outline !== "none" && focus.width !== "0px") || focus.shadow !== "none",
    `${where}: focused control shows no focus indicator (${JSON.stringify(focus)})`);
}
