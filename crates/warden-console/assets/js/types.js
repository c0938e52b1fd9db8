// @ts-check
/* The shapes the console reads from and sends to /api/v1, one typedef per schema in
 * assets/openapi.json, with the same names and written from it (a test in src/assets.rs fails
 * when a schema has no typedef here). Types only: modules import them in JSDoc
 * (`@typedef {import("./types.js").Client} Client`); the browser never loads this file, though
 * it is served like the others. */

/**
 * The body of every error the console itself answers. (Rejections produced by the HTTP framework before a handler runs, such as a non-UTF-8 CSV body or a non-WebSocket request to /api/v1/ws, are plain text instead.)
 * @typedef {object} Error
 * @property {string} error A short snake_case code a program can test, e.g. `not_signed_in`, `forbidden`, `not_found`, `invalid_json`, `invalid_path`, `invalid_query`, `invalid_value`, `control_character`, `claimed_by_other`, `database_unavailable`.
 * @property {string} message A plain-English explanation for the person at the console.
 * @property {string} request_id The id Warden gave the request (also its X-Request-Id header), for reporting a problem.
 */

/**
 * A console role.
 * @typedef {"operator" | "supervisor" | "admin" | "on_call"} Role
 */

/**
 * A console account as the API shows it (never the password or its hash).
 * @typedef {object} User
 * @property {number} id
 * @property {string} username Lower-case sign-in name: 1-64 characters of a-z, 0-9, '.', '_' or '-'.
 * @property {string} display_name
 * @property {Role} role
 * @property {boolean} disabled A disabled account cannot sign in and its sessions have ended.
 * @property {boolean} second_factor Sign-in asks for a code from an authenticator app after the password.
 */

/**
 * An account as an administrator writes it. Disabling an account, changing its password or changing its role ends all its sessions.
 * @typedef {object} UserInput
 * @property {string} username Trimmed and lower-cased by the server; must then be 1-64 characters of a-z, 0-9, '.', '_' or '-'.
 * @property {string} display_name Required, not blank (at most 200 characters).
 * @property {Role} role
 * @property {string | null} [password] Write-only. Required when creating a user (at least 10 characters, at most 1024 bytes). On update, omit, null or "" keeps the current password; a new password also clears a lock-out.
 * @property {boolean} [disabled] Defaults to false.
 */

/**
 * @typedef {object} LoginRequest
 * @property {string} username Trimmed and lower-cased before lookup.
 * @property {string} password
 * @property {string | null} [otp] The authenticator app's 6-digit code, for an account with a second factor.
 */

/**
 * @typedef {object} TotpBeginRequest
 * @property {string} password The account's password, again.
 */

/**
 * A new TOTP secret to put in an authenticator app.
 * @typedef {object} TotpEnrolment
 * @property {string} secret Base32, for typing in.
 * @property {string} otpauth_url `otpauth://totp/...`, for a link.
 * @property {QrMatrix} qr `otpauth_url` as a QR code, for the app's camera.
 */

/**
 * A QR code as its modules: `size` rows of `size` modules, row by row from the top left, `1` dark and `0` light; draw it with a light margin of four modules around.
 * @typedef {object} QrMatrix
 * @property {number} size
 * @property {string} modules
 */

/**
 * @typedef {object} TotpConfirmRequest
 * @property {string} code The 6-digit code the app shows now.
 */

/**
 * A change of one's own password.
 * @typedef {object} PasswordChangeRequest
 * @property {string} current_password The password in use now.
 * @property {string} new_password The new one: 10 characters at least and not easy to guess.
 */

/**
 * The signed-in user and the session's CSRF token.
 * @typedef {object} Session
 * @property {User} user
 * @property {string} csrf_token Send this as the `X-CSRF-Token` header on every non-GET request of this session.
 */

/**
 * Incident priority, in queue order.
 * @typedef {"life_critical" | "urgent" | "technical" | "information"} Priority
 */

/**
 * Who holds (has claimed) an incident.
 * @typedef {object} Holder
 * @property {number} id The holder's user id.
 * @property {string} name The holder's display name (`user <id>` if the account cannot be found).
 */

/**
 * The device an incident came from.
 * @typedef {object} DeviceRef
 * @property {number} id
 * @property {string | null} account
 * @property {string | null} label
 */

/**
 * The client the incident's device belongs to.
 * @typedef {object} ClientRef
 * @property {number} id
 * @property {string} name
 * @property {string | null} address The client's address and postcode joined with ", "; null when both are empty.
 */

/**
 * Which answer-time thresholds the incident has crossed.
 * @typedef {object} Sla
 * @property {boolean} warned The incident has waited past the warning threshold.
 * @property {boolean} overflowed The incident has waited past the overflow threshold.
 * @property {boolean} critical The incident has waited past the critical threshold.
 */

/**
 * An incident as consoles see it.
 * @typedef {object} IncidentView
 * @property {number} id
 * @property {Priority} priority
 * @property {string} kind What happened, snake_case (e.g. `pendant`, `fall`, `fire`, `smoke`, `mains_fail`, `low_battery`, `comms_fault`).
 * @property {"raised" | "offered" | "claimed" | "resolved"} state "resolved" means the incident has left the queue.
 * @property {string} arrived_at When the first signal arrived (RFC 3339).
 * @property {number} arrived_at_ms `arrived_at` in epoch milliseconds, for computing ages against `server_time_ms`.
 * @property {string | null} claimed_at
 * @property {string | null} resolved_at
 * @property {Holder | null} holder Who holds the incident; null when nobody does.
 * @property {number} signal_count Signals folded into this incident.
 * @property {number | null} group_count Members of a storm group when this incident is a group; otherwise null.
 * @property {string | null} area
 * @property {string | null} summary
 * @property {DeviceRef | null} device
 * @property {ClientRef | null} client Null when the device has no client (or there is no device).
 * @property {Sla} sla
 * @property {string | null} outcome The outcome code once resolved (see GET /api/v1/outcomes).
 */

/**
 * @typedef {object} QueueResponse
 * @property {number} server_time_ms The server's clock in epoch milliseconds.
 * @property {{ warn_s: number, overflow_s: number, critical_s: number }} thresholds The life-critical answer-time thresholds, in seconds.
 * @property {{ life_critical: number, urgent: number, technical: number, information: number }} counts Open incidents per priority.
 * @property {Array<IncidentView>} incidents Open incidents: life-critical first, then urgent, technical, information; oldest first within a priority.
 * @property {string | null} [degraded_since] Set while the database is unavailable (degraded mode): since when. The queue then comes from the console's memory.
 */

/**
 * One entry of an incident's history.
 * @typedef {object} IncidentEvent
 * @property {number} seq
 * @property {string} kind Short kind of the effect.
 * @property {string} at
 * @property {unknown} effect The triage engine's effect, as JSON.
 */

/**
 * A recent signal of a device or client.
 * @typedef {object} SignalSummary
 * @property {string} id
 * @property {string} received_at
 * @property {string} kind e.g. `event`, `heartbeat`, `presence`.
 * @property {"serial" | "mqtt" | "dc09" | "internal"} source
 * @property {string | null} account
 * @property {unknown} decoded The decoded signal, as JSON.
 * @property {string} summary One readable line, e.g. "Contact ID 101 Personal emergency (new)" or "pendant".
 * @property {RawBytes} raw
 */

/**
 * @typedef {object} IncidentDetail
 * @property {IncidentView} incident
 * @property {Array<IncidentEvent>} events The incident's history, oldest first.
 * @property {Array<SignalSummary>} signals The 20 most recent signals of the incident's device, newest first; empty when there is no device.
 */

/**
 * The incident after the command's effects are durable.
 * @typedef {object} IncidentResponse
 * @property {IncidentView} incident
 */

/**
 * @typedef {object} NoteRequest
 * @property {string} text Not blank; at most the engine's note limit in bytes.
 */

/**
 * @typedef {object} ResolveRequest
 * @property {"assistance_given" | "responder_sent" | "warden_visit" | "ambulance_called" | "fire_service_called" | "police_called" | "false_alarm" | "no_response_escalated" | "test_call" | "technical_fault_logged" | "storm_cleared" | "other"} outcome One of the outcome codes.
 */

/**
 * @typedef {object} BulkResolveRequest
 * @property {Array<number>} incidents Incident ids.
 * @property {"assistance_given" | "responder_sent" | "warden_visit" | "ambulance_called" | "fire_service_called" | "police_called" | "false_alarm" | "no_response_escalated" | "test_call" | "technical_fault_logged" | "storm_cleared" | "other"} outcome
 */

/**
 * @typedef {object} BulkResolveResponse
 * @property {Array<number>} resolved Ids resolved by this request.
 * @property {Array<{ id: number, error: string, message: string }>} rejected Incidents that were not resolved, with why.
 */

/**
 * @typedef {object} Outcome
 * @property {"assistance_given" | "responder_sent" | "warden_visit" | "ambulance_called" | "fire_service_called" | "police_called" | "false_alarm" | "no_response_escalated" | "test_call" | "technical_fault_logged" | "storm_cleared" | "other"} code
 * @property {string} label What the resolve picker shows.
 */

/**
 * A search hit.
 * @typedef {object} ClientSummary
 * @property {number} id
 * @property {string} external_ref
 * @property {string} name
 * @property {string} address
 * @property {string} postcode
 * @property {string | null} area
 */

/**
 * A responder or keyholder, in call order.
 * @typedef {object} Responder
 * @property {number} position Call order, from 1.
 * @property {string} name
 * @property {string} relationship
 * @property {string} phone
 * @property {boolean} is_keyholder
 * @property {string} notes
 */

/**
 * @typedef {object} ResponderInput
 * @property {number} [position] Ignored: positions are assigned 1, 2, ... in array order.
 * @property {string} name Required, not blank (at most 200 characters).
 * @property {string} [relationship]
 * @property {string} [phone]
 * @property {boolean} [is_keyholder]
 * @property {string} [notes]
 */

/**
 * A device as administrators see and edit it.
 * @typedef {object} Device
 * @property {number} id
 * @property {string} account Unique account number of the device (1-64 characters).
 * @property {"contact_id" | "sia" | "mqtt" | "dc09" | "scaip"} protocol
 * @property {string | null} label
 * @property {string | null} device_type
 * @property {number | null} test_interval_seconds Expected test-call interval (supervision); null for none.
 * @property {string | null} client_ref The `external_ref` of the client the device belongs to.
 * @property {string | null} area
 * @property {number | null} bridge_device_id The MQTT unit (device id) allowed to pass this panel's signals through; null for none.
 */

/**
 * A device's link as triage sees it: heard; silent (a fail-to-report incident is open); never heard.
 * @typedef {"heard" | "silent" | "never"} LinkState
 */

/**
 * A device in the list, with what Warden last heard of it.
 * @typedef {Device & { last_heard_at: string | null, link: LinkState }} DeviceListed
 */

/**
 * A device as written. Omitted optional fields become null.
 * @typedef {object} DeviceInput
 * @property {number} [id] Ignored (the path or the server decides).
 * @property {string} account 1-64 characters, unique.
 * @property {"contact_id" | "sia" | "mqtt" | "dc09" | "scaip"} protocol
 * @property {string | null} [label]
 * @property {string | null} [device_type]
 * @property {number | null} [test_interval_seconds]
 * @property {string | null} [client_ref]
 * @property {string | null} [area]
 */

/**
 * A client record with its responders, devices and recent signals.
 * @typedef {object} Client
 * @property {number} id
 * @property {string} external_ref The centre's own reference, unique (1-64 characters).
 * @property {string} name 1-200 characters.
 * @property {string | null} date_of_birth YYYY-MM-DD.
 * @property {string} address
 * @property {string} postcode
 * @property {string} phone
 * @property {string | null} area
 * @property {string} language
 * @property {boolean} interpreter_needed
 * @property {string} communication_needs
 * @property {"phone" | "sms" | "email" | "text_relay" | "letter" | "visit"} preferred_contact
 * @property {string} access_notes
 * @property {string} medical_notes
 * @property {boolean} key_safe_set Whether a key-safe code is on file; the code itself only comes from POST /api/v1/clients/{id}/key-safe/reveal.
 * @property {Array<Responder>} responders In call order.
 * @property {Array<Device>} devices Devices whose client_ref is this client's external_ref.
 * @property {Array<SignalSummary>} recent_signals The 20 most recent signals of the client's devices, newest first.
 */

/**
 * A client record as written: the Client fields without devices and recent_signals, plus the write-only key_safe. Unknown fields (e.g. devices, recent_signals) are ignored.
 * @typedef {object} ClientInput
 * @property {number} [id] Ignored.
 * @property {string} external_ref 1-64 characters, unique.
 * @property {string} name 1-200 characters.
 * @property {string | null} [date_of_birth] YYYY-MM-DD; null or "" for none.
 * @property {string} [address]
 * @property {string} [postcode]
 * @property {string} [phone]
 * @property {string | null} [area]
 * @property {string} [language]
 * @property {boolean} [interpreter_needed]
 * @property {string} [communication_needs]
 * @property {"phone" | "sms" | "email" | "text_relay" | "letter" | "visit"} [preferred_contact]
 * @property {string} [access_notes]
 * @property {string} [medical_notes]
 * @property {boolean} [key_safe_set] Ignored (read-only).
 * @property {Array<ResponderInput>} [responders] Replaces all of the client's responders, in call order. Omitted means an empty list: the client's responders are removed.
 * @property {string | null} [key_safe] Write-only key-safe code. Omit or null to keep the current code; "" clears it.
 */

/**
 * @typedef {object} KeySafe
 * @property {string | null} key_safe The key-safe code; null when none is on file.
 */

/**
 * An out-of-hours category and who is on call for it. A job is routed only when both oncall_name and oncall_phone are set and not blank.
 * @typedef {object} OohCategory
 * @property {string} code 1-32 characters of a-z, 0-9 and _.
 * @property {string} name
 * @property {string | null} oncall_name
 * @property {string | null} oncall_phone
 */

/**
 * @typedef {object} OohCategoryInput
 * @property {string} [code] Ignored: the path's code is used.
 * @property {string} name Required, not blank.
 * @property {string | null} [oncall_name]
 * @property {string | null} [oncall_phone]
 */

/**
 * A new out-of-hours job as the desk logs it.
 * @typedef {object} NewOohJob
 * @property {string} category An out-of-hours category code.
 * @property {string} caller_name Not blank, at most 200 characters.
 * @property {string} [caller_phone] At most 50 characters.
 * @property {string} [address] At most 500 characters.
 * @property {string} description Not blank, at most 5000 characters.
 * @property {"emergency" | "urgent" | "routine"} urgency
 * @property {"phone" | "sms" | "email" | "none"} [caller_contact] How the caller wants to hear back (default phone: a call back). sms needs caller_phone, email needs caller_email.
 * @property {string} [caller_email] At most 254 characters.
 * @property {string} [caller_needs] Language or format needs, at most 500 characters.
 */

/**
 * A message sent (or being sent) to an out-of-hours caller.
 * @typedef {object} CallerMessage
 * @property {number} id
 * @property {"sms" | "email"} channel
 * @property {string} address
 * @property {string} body
 * @property {string} created_at
 * @property {"pending" | "delivered" | "failed"} status
 * @property {number} attempts
 * @property {string | null} outcome What the last attempt came to.
 */

/**
 * A status change of an out-of-hours job.
 * @typedef {object} OohUpdate
 * @property {string} at
 * @property {"routed" | "unrouted" | "acknowledged" | "in_progress" | "closed"} status
 * @property {string} note
 * @property {string | null} by Display name of the user who made the change.
 */

/**
 * @typedef {object} Contact
 * @property {string} name
 * @property {string} phone
 */

/**
 * An out-of-hours job.
 * @typedef {object} OohJob
 * @property {string} reference The reference the caller can quote, e.g. OOH-2026-000123.
 * @property {string} category
 * @property {string} caller_name
 * @property {string} caller_phone
 * @property {string} address
 * @property {string} description
 * @property {"emergency" | "urgent" | "routine"} urgency
 * @property {"routed" | "unrouted" | "acknowledged" | "in_progress" | "closed"} status `unrouted`: nobody was on call for the category when the job was logged.
 * @property {string | null} routed_name Same as routed_to.name (kept from the stored record).
 * @property {string | null} routed_phone Same as routed_to.phone (kept from the stored record).
 * @property {Contact | null} routed_to Who the job was routed to; null when unrouted.
 * @property {{ id: number, name: string }} created_by The user who logged the job.
 * @property {string} created_by_name Same as created_by.name.
 * @property {string} created_at
 * @property {Array<OohUpdate>} updates Status changes, oldest first (the first is the routing).
 * @property {"phone" | "sms" | "email" | "none"} caller_contact
 * @property {string} caller_email
 * @property {string} caller_needs Language or format needs.
 * @property {Array<CallerMessage>} messages What was sent to the caller, oldest first.
 */

/**
 * @typedef {object} OohStatusRequest
 * @property {"acknowledged" | "in_progress" | "closed"} status
 * @property {string} [note] At most 5000 characters; trimmed.
 */

/**
 * One line of the audit trail.
 * @typedef {object} AuditEntry
 * @property {number} id
 * @property {string} at
 * @property {{ id: number, name: string | null } | null} user Who did it; null for the system.
 * @property {number | null} user_id Same as user.id.
 * @property {string | null} user_name Same as user.name.
 * @property {string} action e.g. `login`, `client.view`, `client.key_safe.reveal`, `incident.claim`, `ooh.job.create`.
 * @property {string} object_type
 * @property {string | null} object_id
 * @property {unknown} before The record before the change, as JSON; null when none.
 * @property {unknown} after The record after the change, as JSON; null when none.
 * @property {string | null} request_id The request's id, generated by Warden.
 * @property {string | null} ip The client's address (behind a trusted proxy, the one it forwarded).
 */

/**
 * The optional body of a key-safe reveal.
 * @typedef {object} KeySafeRevealRequest
 * @property {string | null} [reason] Needed only for a supervisor's or admin's override (1-500 characters); recorded.
 */

/**
 * One access to a client's record (the "who viewed which client" report).
 * @typedef {object} ClientAccess
 * @property {string} at
 * @property {number | null} user_id
 * @property {string | null} user_name
 * @property {string} action `client.view`, `client.key_safe.reveal` or `client.search`.
 * @property {number} client_id
 * @property {string} client_name
 * @property {string} external_ref
 * @property {string | null} ip The client's address.
 * @property {string | null} request_id
 */

/**
 * One problem in an import file.
 * @typedef {object} RowError
 * @property {number} row The row as a spreadsheet numbers it: the header is row 1.
 * @property {string | null} column
 * @property {string} message
 */

/**
 * @typedef {object} ImportReport
 * @property {number} imported Rows inserted (0 when there are errors).
 * @property {number} updated Existing rows updated (0 when there are errors).
 * @property {Array<RowError>} errors Every problem found; if any, nothing was imported.
 * @property {boolean} dry_run True when the import was checked and counted but not kept.
 */

/**
 * Sent once when the socket opens.
 * @typedef {object} WsHello
 * @property {"hello"} type
 * @property {number} server_time_ms
 */

/**
 * Sent whenever incidents change.
 * @typedef {object} WsIncidents
 * @property {"incidents"} type
 * @property {number} server_time_ms
 * @property {Array<IncidentView>} incidents Incidents that changed; state "resolved" means remove it from the queue.
 */

/**
 * The console fell behind: re-fetch GET /api/v1/queue.
 * @typedef {object} WsResync
 * @property {"resync"} type
 */

/**
 * The database became unavailable (`since` set: degraded mode) or is back (`since` null).
 * Also sent right after `hello` to a console that connects while degraded.
 * @typedef {object} WsDegraded
 * @property {"degraded"} type
 * @property {number} server_time_ms
 * @property {string | null} since RFC 3339 time the outage began.
 */

/**
 * A message the server pushes over /api/v1/ws (text frames; the client sends nothing).
 * @typedef {WsHello | WsIncidents | WsResync | WsDegraded} WsMessage
 */

/**
 * Raw bytes as received, rendered for people. At most the first 2048 bytes are rendered (cut back to a whole UTF-8 character); `len` is the full length.
 * @typedef {object} RawBytes
 * @property {string} hex Lower-case hex of the rendered bytes, two digits per byte, e.g. `35303131`.
 * @property {string} printable The rendered bytes as text: printable characters as they are, `\\` for a backslash, `\n` `\r` `\t`, `\xNN` for other control bytes and bytes that are not UTF-8, `\u{NN}` for other control characters. E.g. `5011 18...\x14`.
 * @property {number} len The full length in bytes.
 * @property {boolean} truncated Whether only the first 2048 bytes are rendered.
 */

/**
 * How many inputs were refused for one reason on one kind of link within the window.
 * @typedef {object} RejectedCount
 * @property {string} reason_code e.g. `bad_frame`, `bad_json`, `unknown_version`, `oversized`, `unknown_account`, `schema`.
 * @property {"serial" | "mqtt" | "dc09" | "internal"} source
 * @property {number} count
 */

/**
 * One input Warden refused and kept (quarantined) with its reason.
 * @typedef {object} RejectedSignal
 * @property {string} id
 * @property {string} received_at
 * @property {"serial" | "mqtt" | "dc09" | "internal"} source
 * @property {string} link_id The link it arrived on, e.g. `serial:/dev/ttyS0`.
 * @property {string} reason_code
 * @property {string} reason The full reason in plain English.
 * @property {RawBytes} raw
 */

/**
 * @typedef {object} RejectedPage
 * @property {{ hours: number, since: string, until: string }} window
 * @property {string | null} reason The reason filter of the list, if any.
 * @property {number} total Inputs refused within the window (the sum of `counts`).
 * @property {Array<RejectedCount>} counts By reason and source, largest first. Never filtered by `reason`.
 * @property {Array<RejectedSignal>} rejected The most recent refused inputs within the window, newest first.
 * @property {string | null} next_before Pass as `before` for the next (older) page; null on the last page.
 */

/**
 * A page the escalator sent (GET /pages: mine, newest first).
 * @typedef {object} PageRow
 * @property {number} id
 * @property {number} incident_id
 * @property {number} person_id
 * @property {number} step The chain step that paged (0 is the first).
 * @property {number} round Rounds of the chain completed before this page.
 * @property {"step" | "fallback" | "reminder"} reason
 * @property {string} channel How it is delivered (`console`, `webhook`, `email`, `sms`, `voice`), or `none` when it could not be.
 * @property {string} created_at
 * @property {"pending" | "delivered" | "failed" | "acknowledged" | "cancelled"} status `pending`: waiting for (or retrying) delivery through its channel; `cancelled`: the incident was answered before it went out.
 * @property {string | null} outcome Why delivery failed, if it did.
 * @property {string | null} acked_at
 * @property {string | null} summary The incident's summary line.
 * @property {string} incident_kind
 * @property {string} priority
 */

/**
 * A way to reach a person, in the order they are tried.
 * @typedef {object} ContactMethod
 * @property {"console" | "webhook" | "email" | "sms" | "voice"} kind
 * @property {string} address E-mail address, phone number or URL (empty for console).
 * @property {boolean} verified Only verified methods are used.
 */

/**
 * Someone who can be paged (GET /oncall).
 * @typedef {object} DirectoryPerson
 * @property {number} id
 * @property {string} name
 * @property {number | null} user_id
 * @property {string | null} username The console account whose My pages shows their pages.
 * @property {boolean} active False: left the directory (never paged).
 * @property {ContactMethod[]} contacts
 */

/**
 * @typedef {object} DirectoryTeam
 * @property {number} id
 * @property {string} name
 * @property {number[]} members Person ids.
 */

/**
 * @typedef {object} DirectoryOverride
 * @property {number} id
 * @property {string} starts_at
 * @property {string} ends_at
 * @property {number} person_id
 */

/**
 * @typedef {object} DirectoryRota
 * @property {number} id
 * @property {string} name
 * @property {string} zone IANA time zone.
 * @property {string[]} bank_holidays YYYY-MM-DD.
 * @property {object[]} layers warden_core::oncall::Layer records.
 * @property {DirectoryOverride[]} overrides
 */

/**
 * @typedef {object} DirectoryChain
 * @property {number} id
 * @property {string} name
 * @property {object} doc A warden_core::oncall::Chain record.
 */

/**
 * A routing rule; null fields match anything.
 * @typedef {object} DirectoryRoute
 * @property {string | null} [priority]
 * @property {string | null} [kind]
 * @property {string | null} [area]
 * @property {number | null} [client_id]
 * @property {string | null} [ooh_category]
 * @property {number} chain_id
 */

/**
 * The on-call directory (GET /oncall).
 * @typedef {object} OncallDirectory
 * @property {DirectoryPerson[]} people
 * @property {DirectoryTeam[]} teams
 * @property {DirectoryRota[]} rotas
 * @property {DirectoryChain[]} chains
 * @property {DirectoryRoute[]} routes In order.
 */

/**
 * @typedef {object} OnCallStretch
 * @property {string} from
 * @property {string} to
 * @property {number | null} person_id null: nobody is on call.
 * @property {string | null} person
 */

/**
 * @typedef {object} Saved
 * @property {number} id
 */

/**
 * @typedef {object} PersonIn
 * @property {string} name
 * @property {string | null} [username]
 * @property {boolean} [active]
 * @property {ContactMethod[]} [contacts]
 */

/**
 * @typedef {object} TeamIn
 * @property {string} name
 * @property {number[]} [members]
 */

/**
 * @typedef {object} RotaIn
 * @property {string} name
 * @property {string} zone
 * @property {string[]} [bank_holidays]
 * @property {object[]} layers
 */

/**
 * @typedef {object} OverrideIn
 * @property {number} person_id
 * @property {string} starts_at
 * @property {string} ends_at
 */

/**
 * @typedef {object} ChainIn
 * @property {string} name
 * @property {object} doc
 */

/**
 * A DC-09 transmitter's key (PUT /devices/{id}/dc09-key; write-only).
 * @typedef {object} Dc09KeyInput
 * @property {string | null} key Hex or ASCII; null removes it.
 */

/**
 * What an SMS reply did (POST /hooks/sms-reply; the gateway's webhook, not the UI).
 * @typedef {object} ReplyOutcome
 * @property {"acknowledged" | "already_acknowledged" | "not_understood" | "no_open_page"} outcome
 * @property {number | null} incident
 */

// ---- names the generated OpenAPI document (utoipa) uses -----------------------------
// The document is generated from the handlers' Rust types; where its schema name differs
// from the name the UI code has used, the typedef below is that schema under its name.

/**
 * @typedef {"contact_id" | "sia" | "mqtt" | "dc09" | "scaip"} DeviceProtocol
 */
/**
 * @typedef {"routed" | "unrouted" | "acknowledged" | "in_progress" | "closed"} JobStatus
 */
/**
 * @typedef {AuditEntry} AuditRow
 */
/**
 * @typedef {Client} ClientRecord
 */
/**
 * @typedef {DeviceInput} NewDevice
 */
/**
 * @typedef {RejectedSignal} RejectedRow
 */
/**
 * @typedef {LoginRequest} LoginBody
 */
/**
 * @typedef {PasswordChangeRequest} PasswordChange
 */
/**
 * @typedef {TotpBeginRequest} BeginBody
 */
/**
 * @typedef {TotpConfirmRequest} ConfirmBody
 */
/**
 * @typedef {KeySafeRevealRequest} RevealBody
 */
/**
 * @typedef {NoteRequest} NoteBody
 */
/**
 * @typedef {ResolveRequest} ResolveBody
 */
/**
 * @typedef {BulkResolveRequest} BulkBody
 */
/**
 * One incident a bulk resolve refused.
 * @typedef {{ id: number, error: string, message: string }} BulkRejection
 */
/**
 * A console user named in an out-of-hours job.
 * @typedef {{ id: number, name: string }} Person
 */
/**
 * A user named in a record.
 * @typedef {{ id: number, name?: string | null }} UserRef
 */
/**
 * Incidents in the queue by priority.
 * @typedef {{ life_critical: number, urgent: number, technical: number, information: number }} PriorityCounts
 */
/**
 * SLA timers in seconds since arrival.
 * @typedef {{ warn_s: number, overflow_s: number, critical_s: number }} Thresholds
 */
/**
 * The time window the rejected-signals view read.
 * @typedef {{ hours: number, since: string, until: string }} Window
 */

export {};
