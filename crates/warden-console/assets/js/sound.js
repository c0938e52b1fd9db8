// @ts-check
/* The alarm sound for unclaimed life-critical incidents (Web Audio), and muting it. */
import { say } from "./api.js";
import { $ } from "./dom.js";
import { unclaimedLifeCritical } from "./queue.js";
import { BEEP_EVERY_MS, canQueue } from "./state.js";

// ---------------------------------------------------------------- alarm sound

/** @type {{ ctx: AudioContext | null, muted: boolean, lastBeep: number }} */
export const sound = { ctx: null, muted: false, lastBeep: 0 };

/** Browsers only start audio after a user gesture, so the context is created/resumed on one. */
export function unlockAudio() {
  /** @type {typeof AudioContext | undefined} Older Safari has only the prefixed constructor. */
  const AC = window.AudioContext || /** @type {{ webkitAudioContext?: typeof AudioContext }} */ (/** @type {unknown} */ (window)).webkitAudioContext;
  if (!AC) return;
  if (!sound.ctx) {
    try {
      sound.ctx = new AC();
    } catch (_) {
      return;
    }
  }
  const ctx = sound.ctx;
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  updateSoundHint();
}

/**
 * @param {AudioContext} ctx
 * @param {number} freq Hz
 * @param {number} start on the context's clock, seconds
 * @param {number} dur seconds
 */
function tone(ctx, freq, start, dur) {
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.type = "sine";
  osc.frequency.value = freq;
  // Short ramps avoid clicks; the level is firm but not piercing.
  gain.gain.setValueAtTime(0.0001, start);
  gain.gain.exponentialRampToValueAtTime(0.3, start + 0.02);
  gain.gain.setValueAtTime(0.3, start + dur - 0.04);
  gain.gain.exponentialRampToValueAtTime(0.0001, start + dur);
  osc.connect(gain).connect(ctx.destination);
  osc.start(start);
  osc.stop(start + dur + 0.02);
}

function beep() {
  const ctx = sound.ctx;
  if (!ctx || ctx.state !== "running") return false;
  const t = ctx.currentTime + 0.01;
  tone(ctx, 880, t, 0.2);
  tone(ctx, 660, t + 0.26, 0.2);
  return true;
}

export function alarmSoundTick() {
  const waiting = canQueue() && unclaimedLifeCritical() > 0;
  updateSoundHint(waiting);
  if (!waiting || sound.muted) return;
  const now = Date.now();
  if (now - sound.lastBeep >= BEEP_EVERY_MS && beep()) sound.lastBeep = now;
}

function updateSoundHint(waiting = canQueue() && unclaimedLifeCritical() > 0) {
  const blocked = !sound.ctx || sound.ctx.state !== "running";
  $("sound-hint").hidden = !(waiting && blocked && !sound.muted);
}

/** @param {boolean} muted */
export function setMuted(muted) {
  sound.muted = muted;
  $("mute-toggle", HTMLButtonElement).setAttribute("aria-pressed", String(muted));
  updateSoundHint();
}

export function toggleMute() {
  setMuted(!sound.muted);
  say(sound.muted ? "Alarm sound muted. Life-critical alarms will be silent until you unmute." : "Alarm sound on.");
}

