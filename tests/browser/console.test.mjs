// Console end to end in a real browser (Debian's chromium via playwright-core).
//
// Started by tests/tests/e2e_console.rs, which runs the real wardend (Postgres, Mosquitto),
// creates the users, a client and its pendant, and passes everything in the environment:
//   CONSOLE_URL, OP_A_USER, OP_B_USER, ONCALL_USER, PASSWORD, CLIENT_NAME, KEY_SAFE,
//   MQTT_PORT, MQTT_TOPIC, MQTT_PAYLOAD, ARTIFACTS (screenshot folder), CHROMIUM (path).
// Exits 0 when every step passed; prints one JSON line per measured figure.

import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import { T, checkAccessible, env, id, launch, screenshots, signInWith } from "./lib.mjs";

const URL = env("CONSOLE_URL");
const ART = env("ARTIFACTS");
const browser = await launch();
const shot = screenshots(ART);
/** @param {string} user @param {string} name */
const signIn = (user, name) => signInWith(browser, URL, user, env("PASSWORD"), name);

try {
  // A wrong password is refused with a message, not a blank screen.
  {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(URL);
    await page.fill(id("login-username"), env("OP_A_USER"));
    await page.fill(id("login-password"), "definitely wrong");
    await page.click(id("login-submit"));
    await page.locator(id("login-error")).filter({ hasText: /wrong|password/i }).waitFor({ timeout: T });
    await shot(page, "login-refused");
    await ctx.close();
  }

  const a = await signIn(env("OP_A_USER"), "A");
  const b = await signIn(env("OP_B_USER"), "B");
  await shot(a, "queue-empty");
  await checkAccessible(a, "queue");

  // A pendant press arrives over MQTT (mosquitto_pub, QoS 1) and must appear on both
  // connected consoles without a reload.
  const rowA = a.locator(`${id("incident-row")}[data-priority="life_critical"]`);
  const rowB = b.locator(`${id("incident-row")}[data-priority="life_critical"]`);
  const sent = Date.now();
  execFileSync("mosquitto_pub", [
    "-h", "127.0.0.1", "-p", env("MQTT_PORT"), "-q", "1",
    "-t", env("MQTT_TOPIC"), "-m", env("MQTT_PAYLOAD"),
  ]);
  await rowA.first().waitFor({ state: "visible", timeout: T });
  const visibleMs = Date.now() - sent;
  await rowB.first().waitFor({ state: "visible", timeout: T });
  console.log(JSON.stringify({ figure: "publish_to_visible_ms", value: visibleMs }));
  assert.match(await rowA.first().innerText(), new RegExp(env("CLIENT_NAME")));
  await shot(a, "pendant-in-queue");

  // Operator A works the alarm from the keyboard: select, open, claim.
  await a.locator("body").click({ position: { x: 5, y: 5 } });
  await a.keyboard.press("j");
  await a.keyboard.press("Enter");
  await a.locator(id("incident-panel")).waitFor({ state: "visible", timeout: T });
  await a.keyboard.press("c");
  await a.locator(id("incident-holder")).filter({ hasText: /Ann/ }).waitFor({ timeout: T });
  await a.locator(id("incident-state")).filter({ hasText: /claimed/i }).waitFor({ timeout: T });

  // The client record: name, medical notes, and the key-safe code only on request.
  await a.locator(id("client-record")).waitFor({ state: "visible", timeout: T });
  assert.match(await a.locator(id("client-name")).innerText(), new RegExp(env("CLIENT_NAME")));
  assert.ok((await a.locator(id("client-medical-notes")).innerText()).length > 0, "medical notes shown");
  assert.ok(!(await a.locator(id("client-record")).innerText()).includes(env("KEY_SAFE")),
    "the key-safe code must stay hidden until revealed");
  await a.click(id("client-key-safe-reveal"));
  await a.locator(id("client-key-safe-value")).filter({ hasText: env("KEY_SAFE") }).waitFor({ timeout: T });
  await shot(a, "claimed-with-client-record");

  // Operator B cannot take the same alarm.
  await rowB.first().click();
  await b.locator(id("incident-panel")).waitFor({ state: "visible", timeout: T });
  await b.click(id("incident-claim"));
  await b.locator(id("message")).filter({ hasText: /already claimed by Ann/i }).waitFor({ timeout: T });
  await shot(b, "second-operator-refused");
  // B does not hold the alarm, so B is not shown the key-safe code.
  await b.locator(id("client-key-safe-reveal")).waitFor({ state: "visible", timeout: T });
  await b.click(id("client-key-safe-reveal"));
  await b.locator(id("message")).filter({ hasText: /only while you hold an open incident/i }).waitFor({ timeout: T });
  assert.equal(await b.locator(id("client-key-safe-value")).count(), 0, "B must not see the code");
  await shot(b, "key-safe-refused-without-incident");

  // A adds a note and resolves with an outcome; it leaves both queues.
  await a.fill(id("incident-note-text"), "Spoke to client, accidental press, all well.");
  await a.click(id("incident-note-submit"));
  await a.selectOption(id("incident-outcome"), "false_alarm");
  await a.click(id("incident-resolve"));
  await rowA.first().waitFor({ state: "detached", timeout: T });
  await rowB.first().waitFor({ state: "detached", timeout: T });
  await shot(a, "resolved");

  // The out-of-hours desk: a burst pipe gets a reference the caller can quote.
  await a.click(id("nav-ooh"));
  await checkAccessible(a, "out-of-hours desk");
  await a.selectOption(id("ooh-category"), "emergency_repair");
  await a.fill(id("ooh-caller-name"), "Mr Test Caller");
  await a.fill(id("ooh-caller-phone"), "01632 960123");
  await a.fill(id("ooh-address"), "Flat 2, 5 Mill Lane");
  await a.fill(id("ooh-description"), "Burst pipe under the kitchen sink, water through the ceiling below.");
  await a.selectOption(id("ooh-urgency"), "emergency");
  await a.click(id("ooh-submit"));
  const ref = a.locator(id("ooh-reference"));
  await ref.filter({ hasText: /OOH-\d{4}-\d{6}/ }).waitFor({ timeout: T });
  const reference = (await ref.innerText()).match(/OOH-\d{4}-\d{6}/)[0];
  console.log(JSON.stringify({ figure: "ooh_reference", value: reference }));
  await shot(a, "ooh-reference");
  await a.fill(id("ooh-search"), "Mill Lane");
  await a.click(id("ooh-search-submit"));
  await a.locator(id("ooh-results")).filter({ hasText: reference }).waitFor({ timeout: T });
  await shot(a, "ooh-search");

  // A second press nobody answers: past its overflow threshold it is escalated to the
  // on-call user, who sees it under "My pages" and acknowledges it.
  const escalatedAt = Date.now();
  execFileSync("mosquitto_pub", [
    "-h", "127.0.0.1", "-p", env("MQTT_PORT"), "-q", "1",
    "-t", env("MQTT_TOPIC"), "-m", env("MQTT_PAYLOAD").replace("browser-1", "browser-2"),
  ]);
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const olly = await ctx.newPage();
  olly.on("pageerror", (e) => { console.error(`[on call] page error: ${e.message}`); process.exitCode = 1; });
  await olly.goto(URL);
  await olly.fill(id("login-username"), env("ONCALL_USER"));
  await olly.fill(id("login-password"), env("PASSWORD"));
  await olly.click(id("login-submit"));
  await olly.locator(id("pages-list")).waitFor({ state: "visible", timeout: T });
  const waiting = olly.locator(`${id("page-row")}[data-status="delivered"]`);
  for (let i = 0; i < 60 && (await waiting.count()) === 0; i++) {
    await olly.waitForTimeout(500);
    await olly.click(id("pages-refresh"));
  }
  await waiting.first().waitFor({ state: "visible", timeout: T });
  console.log(JSON.stringify({ figure: "press_to_page_visible_ms", value: Date.now() - escalatedAt }));
  // Focus back at the top of the page (the refresh button held it), then the keyboard check.
  await olly.locator("body").click({ position: { x: 5, y: 5 } });
  await checkAccessible(olly, "my pages");
  await shot(olly, "paged");
  const pageId = await waiting.first().getAttribute("data-page-id");
  await waiting.first().locator(id("page-ack")).click();
  await olly.locator(`${id("page-row")}[data-page-id="${pageId}"][data-status="acknowledged"]`)
    .waitFor({ timeout: T });
  await shot(olly, "page-acknowledged");

  // The on-call directory: Olly reads who is on call (the forms are for supervisors).
  await olly.click(id("nav-oncall"));
  await olly.locator(`${id("oncall-person-row")}:has-text("Olly On-Call")`).waitFor({ timeout: T });
  if (await olly.locator(id("oncall-person-form")).isVisible()) throw new Error("on_call sees the person form");
  if ((await olly.locator(id("oncall-rota-remove")).count()) > 0) throw new Error("on_call sees a rota's remove button");
  await olly.locator(id("oncall-timeline")).first().click();
  await olly.locator(`${id("oncall-stretch")}:has-text("Olly On-Call")`).first().waitFor({ timeout: T });
  await olly.locator("body").click({ position: { x: 5, y: 5 } });
  await checkAccessible(olly, "on call");
  await shot(olly, "oncall-directory");
  console.log(JSON.stringify({ result: "pass" }));
} catch (e) {
  console.error(`browser test failed: ${e.stack || e}`);
  for (const [i, ctx] of browser.contexts().entries()) {
    for (const p of ctx.pages()) {
      await p.screenshot({ path: `${ART}/failure-${i}.png`, fullPage: true }).catch(() => {});
    }
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
