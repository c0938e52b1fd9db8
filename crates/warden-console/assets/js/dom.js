// @ts-check
/* Element helpers and formatting shared by every screen. Server and user data reach the page
 * only through textContent and createElement (h), never innerHTML. */
import { KIND_LABEL, STATE_LABEL, state } from "./state.js";

/** @typedef {Node | string | number | null | undefined | false} Child */
/** @typedef {Child | Child[] | Child[][]} Children */
/**
 * Props for h(): class, text, testid, dataset, on<event> listeners, the properties checked,
 * value, disabled and hidden, and anything else as an attribute (true → "").
 * @typedef {Record<string, unknown>} Props
 */

// ---------------------------------------------------------------- DOM helpers

/**
 * The element with this id; with `type`, checked to be that kind of element. The page's
 * elements are all in index.html, so a missing one is a bug and throws.
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @param {{ new (): T, prototype: T }} [type]
 * @returns {T}
 */
export function $(id, type) {
  const el = document.getElementById(id);
  if (!el || (type && !(el instanceof type))) throw new Error(`console page has no ${type ? type.name : "element"} #${id}`);
  return /** @type {T} */ (el);
}

/**
 * The submit button of the form with this id.
 * @param {string} formId
 * @returns {HTMLButtonElement}
 */
export function submitButton(formId) {
  const b = $(formId, HTMLFormElement).querySelector("[type=submit]");
  if (!(b instanceof HTMLButtonElement)) throw new Error(`form #${formId} has no submit button`);
  return b;
}

/**
 * The HTML elements matching a selector, as an array.
 * @param {string} selector
 * @param {ParentNode} [root]
 * @returns {HTMLElement[]}
 */
export function $$(selector, root = document) {
  return [...root.querySelectorAll(selector)].filter((e) => e instanceof HTMLElement);
}

/**
 * createElement with props: class, text, testid, dataset, on<event>, properties, attributes.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props | null} [props]
 * @param {...Children} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = String(v);
    else if (k === "text") e.textContent = String(v);
    else if (k === "testid") e.dataset.testid = String(v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (k === "checked" || k === "value" || k === "disabled" || k === "hidden") /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (e))[k] = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  appendAll(e, children);
  return e;
}

/**
 * @param {Element} parent
 * @param {Children[]} children
 */
function appendAll(parent, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/**
 * @template {Node} N
 * @param {N} node
 * @returns {N}
 */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/**
 * @template R
 * @typedef {{ label: string, cell: (row: R) => Children }} Column
 */

/**
 * A plain table: columns [{label, cell(row) -> Node|string}], rows.
 * @template R
 * @param {Column<R>[]} columns
 * @param {Iterable<R>} rows
 * @param {{ testid?: string, caption?: string, rowProps?: (row: R) => Props }} [opts]
 */
export function table(columns, rows, opts = {}) {
  const t = h("table", { class: "data-table", testid: opts.testid });
  if (opts.caption) t.append(h("caption", { class: "visually-hidden", text: opts.caption }));
  t.append(h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col", text: c.label })))));
  const body = h("tbody");
  for (const r of rows) {
    const tr = h("tr", opts.rowProps ? opts.rowProps(r) : null);
    for (const c of columns) tr.append(h("td", null, c.cell(r)));
    body.append(tr);
  }
  t.append(body);
  return h("div", { class: "table-wrap" }, t);
}

/**
 * A <dl> of [label, value] pairs; empty values show a dash.
 * @param {Array<[string, Children] | [string, Children, Props]>} pairs
 */
export function facts(pairs) {
  const dl = h("dl", { class: "facts" });
  for (const [label, value, props] of pairs) {
    const dd = h("dd", props || null);
    if (value === null || value === undefined || value === "") dd.textContent = "—";
    else appendAll(dd, [value]);
    dl.append(h("div", null, h("dt", { text: label }), dd));
  }
  return dl;
}

/**
 * The trimmed value of a form field.
 * @param {string} id
 */
export function fieldValue(id) {
  return /** @type {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} */ ($(id)).value.trim();
}

/** @param {string} text */
export function emptyState(text) {
  return h("p", { class: "empty", text });
}

// ---------------------------------------------------------------- formatting

const dateTimeFmt = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "medium" });
const dateFmt = new Intl.DateTimeFormat("en-GB", { dateStyle: "long" });

/** @param {string | null | undefined} s */
export function fmtTime(s) {
  if (!s) return "—";
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? String(s) : dateTimeFmt.format(d);
}

/** @param {string | null | undefined} s */
export function fmtDate(s) {
  if (!s) return "—";
  const d = new Date(s + (String(s).length === 10 ? "T00:00:00" : ""));
  return Number.isNaN(d.getTime()) ? String(s) : dateFmt.format(d);
}

/** @param {string} s */
export function yearsSince(s) {
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return null;
  const now = new Date();
  let y = now.getFullYear() - d.getFullYear();
  if (now.getMonth() < d.getMonth() || (now.getMonth() === d.getMonth() && now.getDate() < d.getDate())) y--;
  return y;
}

/**
 * "pendant" -> "Pendant", "door_exit" -> "Door exit".
 * @param {unknown} code
 */
export function human(code) {
  if (code === null || code === undefined || code === "") return "—";
  const s = String(code).replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** @param {string} k */
export const kindLabel = (k) => KIND_LABEL[k] || human(k);
/** @param {string} s */
export const stateLabel = (s) => STATE_LABEL[s] || human(s);
/** @param {string | null | undefined} code */
export const outcomeLabel = (code) => state.outcomes.find((o) => o.code === code)?.label || human(code);

/** Minutes and seconds; minutes keep counting past 60 so "75:03" is 75 minutes. */
/** @param {number} seconds */
export function fmtAge(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * 86400 -> "24 h (86400 s)"; empty -> "Not supervised".
 * @param {number | null | undefined} s
 */
export function fmtInterval(s) {
  if (!s) return "Not supervised";
  if (s % 3600 === 0) return `${s / 3600} h (${s} s)`;
  if (s % 60 === 0) return `${s / 60} min (${s} s)`;
  return `${s} s`;
}

/**
 * A person or thing's name: a string as it is, else name, display_name, username or id.
 * @param {string | { name?: string | null, display_name?: string, username?: string, id?: unknown } | null | undefined} x
 */
export function nameOf(x) {
  if (!x) return "—";
  if (typeof x === "string") return x;
  return x.name || x.display_name || x.username || String(x.id ?? "—");
}

/**
 * Anything (string, number, object) as readable text: used for event effects and audit data.
 * @param {unknown} v
 */
export function asText(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/**
 * A one-line reading of a JSON value: strings as they are, objects as "key: value" pairs
 * (one level of nesting, long output cut). Used for event effects and decoded signals,
 * whose exact shape belongs to the engine, not to this page.
 * @param {unknown} v
 * @returns {string}
 */
export function summarise(v, depth = 0) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "object") return String(v);
  if (Array.isArray(v)) return v.map((x) => summarise(x, depth + 1)).filter(Boolean).join(", ");
  const o = /** @type {Record<string, unknown>} */ (v);
  for (const k of ["summary", "description", "text", "message"]) {
    const text = o[k];
    if (typeof text === "string" && text) return text;
  }
  const parts = [];
  for (const [k, x] of Object.entries(v)) {
    if (x === null || x === "" || x === false) continue;
    if (typeof x === "object") {
      if (depth < 1) {
        const inner = summarise(x, depth + 1);
        if (inner) parts.push(`${human(k)} (${inner})`);
      }
    } else parts.push(x === true ? human(k) : `${human(k)}: ${x}`);
  }
  const out = parts.join(", ");
  return out.length > 240 ? out.slice(0, 237) + "…" : out;
}

/**
 * @param {string | null | undefined} phone
 * @param {string} [testid]
 */
export function telLink(phone, testid) {
  if (!phone) return "—";
  return h("a", { href: "tel:" + String(phone).replace(/[^\d+]/g, ""), class: "tel", text: phone, testid });
}

