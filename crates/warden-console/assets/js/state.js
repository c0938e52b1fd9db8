// @ts-check
/* Constants, the one state object of the page, and the signed-in role. */

// ---------------------------------------------------------------- constants and state

export const API = "/api/v1";
/** @type {Priority[]} */
export const PRIORITIES = ["life_critical", "urgent", "technical", "information"];
/** @type {Record<string, string>} */
export const PRIORITY_LABEL = {
  life_critical: "Life-critical",
  urgent: "Urgent",
  technical: "Technical",
  information: "Information",
};
/** @type {Record<string, string>} */
export const ROLE_LABEL = { operator: "Operator", supervisor: "Supervisor", admin: "Administrator", on_call: "On call" };
// Screens each role may use (mirrors the roles in /api/openapi.json).
/** @type {Record<string, string[]>} */
export const ROLE_SCREENS = {
  operator: ["queue", "ooh", "account"],
  supervisor: ["queue", "ooh", "clients", "audit", "rejected", "pages", "oncall", "account"],
  admin: ["admin", "clients", "audit", "rejected", "oncall", "account"], // the first one is where the user lands
  on_call: ["pages", "ooh", "oncall", "account"],
};
/** @type {Record<string, string>} */
export const STATE_LABEL = { raised: "Raised", offered: "Offered", claimed: "Claimed", resolved: "Resolved" };
/** @type {Record<string, string>} */
export const KIND_LABEL = { co: "Carbon monoxide", door_exit: "Door exit", fail_to_check_in: "Failed to check in" };
/** @type {Record<string, string>} */
export const PROTOCOL_LABEL = { contact_id: "Contact ID", sia: "SIA", mqtt: "MQTT", dc09: "SIA DC-09", scaip: "SCAIP" };
/** @type {Record<string, string>} */
export const CONTACT_LABEL = { phone: "Phone", sms: "SMS", email: "Email", text_relay: "Text relay", letter: "Letter", visit: "Visit" };
/** @type {Record<string, string>} */
export const JOB_STATUS_LABEL = {
  routed: "Routed", unrouted: "Unrouted", acknowledged: "Acknowledged", in_progress: "In progress", closed: "Closed",
};
export const BEEP_EVERY_MS = 4000;
export const QUEUE_POLL_MS = 30000; // belt and braces next to the WebSocket
export const MAX_DEVICE_ROWS = 300;
export const MAX_CLIENT_ROWS = 300;
export const RESOLVED_KEEP_MS = 10 * 60 * 1000;

/** @typedef {import("./types.js").User} User */
/** @typedef {import("./types.js").Role} Role */
/** @typedef {import("./types.js").Priority} Priority */
/** @typedef {import("./types.js").IncidentView} IncidentView */
/** @typedef {import("./types.js").Outcome} Outcome */
/** @typedef {import("./types.js").OohCategory} OohCategory */
/** @typedef {import("./types.js").OohJob} OohJob */
/** @typedef {import("./types.js").Client} Client */
/** @typedef {import("./types.js").DeviceListed} DeviceListed */
/** @typedef {import("./types.js").Responder} Responder */
/** @typedef {import("./types.js").QueueResponse} QueueResponse */
/** A responder being edited: a new one has no position until the form is saved. */
/** @typedef {Omit<Responder, "position"> & { position?: number }} ResponderDraft */

/**
 * Everything the page remembers; one object, reset when the session ends.
 * @typedef {object} ConsoleState
 * @property {User | null} user
 * @property {string | null} csrf
 * @property {string | null} screen
 * @property {Outcome[]} outcomes
 * @property {OohCategory[]} categories
 * @property {Map<string, IncidentView>} incidents
 * @property {Record<Priority, number>} counts
 * @property {QueueResponse["thresholds"]} thresholds
 * @property {number} clockOffset
 * @property {boolean} queueLoaded
 * @property {Set<string>} seen
 * @property {Map<string, number>} resolved
 * @property {string | null} selectedId
 * @property {Set<string>} bulk
 * @property {string | null} openId
 * @property {IncidentView | null} openIncident
 * @property {ReturnType<typeof setTimeout> | undefined} detailTimer
 * @property {Client | null} panelClient
 * @property {OohJob | null} currentJob
 * @property {Client | null} currentClient
 * @property {number | null} editingClientId
 * @property {ResponderDraft[]} responders
 * @property {User[]} users
 * @property {DeviceListed[]} devices
 * @property {number | null} editingUserId
 * @property {number | null} editingDeviceId
 */

/** @type {ConsoleState} */
export const state = {
  user: null,
  csrf: null,
  screen: null,
  outcomes: [],
  categories: [],
  // Queue: incidents keyed by String(id); the original id value is kept inside the object.
  incidents: new Map(),
  counts: { life_critical: 0, urgent: 0, technical: 0, information: 0 },
  thresholds: { warn_s: 45, overflow_s: 60, critical_s: 180 },
  clockOffset: 0, // server_time_ms - Date.now(), so ages follow the server clock
  queueLoaded: false,
  seen: new Set(), // incident ids already announced
  // "resolved" is terminal in the core. Remembering which ids we saw resolved stops a late,
  // older answer (e.g. a note's reply overtaken by the resolve) from bringing a row back.
  resolved: new Map(), // id -> Date.now() when seen resolved
  selectedId: null, // queue row with the keyboard selection
  bulk: new Set(), // ids ticked for bulk resolve
  // Incident panel
  openId: null,
  openIncident: null,
  detailTimer: undefined,
  panelClient: null,
  // Other screens
  currentJob: null,
  currentClient: null,
  editingClientId: null,
  responders: [],
  users: [],
  devices: [],
  editingUserId: null,
  editingDeviceId: null,
};

export const role = () => (state.user ? state.user.role : null);
export const canQueue = () => role() === "operator" || role() === "supervisor";
export const isSupervisor = () => role() === "supervisor";
/**
 * Ids compare as text: the queue keys by String(id), the API sends numbers.
 * @param {unknown} a
 * @param {unknown} b
 */
export const sameId = (a, b) => a !== null && a !== undefined && b !== null && b !== undefined && String(a) === String(b);
