// What the pages share: their language, calling the API, and showing a
// message's content.

// The page's language (`<html lang>`, chosen by the server) and its texts:
// the catalog's (api/i18n/LANG.json) for this page's keys, put in the page
// as JSON by the server.
export const lang = document.documentElement.lang;
const texts = JSON.parse(document.getElementById("i18n")?.textContent || "{}");

// The text of catalog `key`, each `{name}` replaced by `values[name]`.
export function t(key, values = {}) {
  return Object.entries(values).reduce((text, [name, value]) => text.replaceAll(`{${name}}`, value), texts[key] ?? key);
}

// Who signed in on this page (a staff page's sign-in answer), handed to
// the page reloaded in another language so that nobody signs in twice:
// kept in sessionStorage only across that reload.
let signedIn = null, keeping = () => null;
const HANDOVER = "witness-signed-in";

// What a signed-in page hands to itself across a switch of language
// besides the sign-in (the workbench: its sessions and the one open).
export function keepOnSwitch(what) {
  keeping = what;
}

// The page again in `language` (`?lang=`), everything else in its address kept.
function switchTo(language) {
  if (signedIn) sessionStorage.setItem(HANDOVER, JSON.stringify({ answer: signedIn, kept: keeping() }));
  const url = new URL(location.href);
  url.searchParams.set("lang", language);
  location.assign(url);
}

// The header's language switch (#lang).
export function languageSwitch() {
  const select = document.getElementById("lang");
  if (!select) return;
  select.value = lang;
  select.onchange = () => switchTo(select.value);
}

// A staff page just signed in (`answer`, from POST /api/login): unless
// someone chose the page's language (`?lang=`), it follows the tenant's
// (`answer.locale`). True if the page is being reloaded for it.
export function followTenantLanguage(answer) {
  signedIn = answer;
  const chosen = new URLSearchParams(location.search).has("lang");
  if (chosen || !answer.locale || answer.locale === lang) return false;
  switchTo(answer.locale);
  return true;
}

// What the page before this one handed over, once: { answer, kept }.
export function signedInBefore() {
  const handed = sessionStorage.getItem(HANDOVER);
  sessionStorage.removeItem(HANDOVER);
  return handed ? JSON.parse(handed) : null;
}

// A session's status as the API states it (`assigned`, `with the bot`…),
// in the page's language.
const STATUSES = {
  "not started": "common.status_not_started", "with the bot": "common.status_with_bot", queued: "common.status_queued",
  "offered to an agent": "common.status_offered", assigned: "common.status_assigned", "in a call": "common.status_in_call",
  "in wrap-up": "common.status_wrap_up", closed: "common.status_closed",
};
export function statusText(status) {
  return STATUSES[status] ? t(STATUSES[status]) : status;
}

// Calls the API with `token` (if any); JSON in and out unless `type` says
// otherwise, in the page's language. Rejects with the API's `error` text.
export async function call(token, method, path, body, type = "application/json") {
  const response = await fetch(path, {
    method,
    headers: { "content-type": type, "accept-language": lang, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : type === "application/json" ? JSON.stringify(body) : body,
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

// A message's text, or its attachment's file name.
export function content(c) {
  return c.kind === "text" ? c.text : c.kind === "rich_text" ? c.markdown : c.attachment.file_name;
}

// The live feed (/api/ws): the token is the first message, never part of
// the URL. The socket fires "ready" once the server has accepted it.
export function liveSocket(token, session) {
  // The page's language, for the socket's refusals (a browser's WebSocket
  // says the browser's).
  const query = `?lang=${document.documentElement.lang}${session ? `&session=${session}` : ""}`;
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/ws${query}`);
  socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", token })));
  socket.addEventListener("message", (m) => {
    if (JSON.parse(m.data).type === "hello") socket.dispatchEvent(new Event("ready"));
  });
  return socket;
}

// After sign-in: the header's "Sign out" button ends every session of the
// user (POST /api/logout, after `before` if given), and a feed closed
// because the token expired or was revoked (4001, 4401) brings back the
// sign-in form.
export function signOutWith(token, socketOf, before = async () => {}) {
  const button = document.getElementById("sign-out");
  button.classList.remove("hidden");
  button.onclick = async () => {
    await before().catch(() => {});
    await call(token, "POST", "/api/logout").catch(() => {});
    location.reload();
  };
  const watch = () => socketOf()?.addEventListener("close", (e) => { if (e.code === 4001 || e.code === 4401) location.reload(); });
  return watch;
}

// Short-lived links (POST /api/links) to files: an <img>, a <video> or a
// download cannot send the Authorization header, and a token in a URL would
// stay in history and proxy logs. Resolves to the URLs, each with its link.
export async function links(token, urls) {
  return (await call(token, "POST", "/api/links", { urls })).urls;
}

// Points `element[attribute]` at `url` through a fresh link.
function linked(element, attribute, token, url) {
  links(token, [url]).then(([u]) => { element[attribute] = u; }, () => {});
  return element;
}

// An image's thumbnail or a file's link, or null for text. A customer also
// names their session.
export function attachmentOf(c, token, session) {
  if (c.kind !== "image" && c.kind !== "file") return null;
  const base = `/api/uploads/${c.attachment.sha256}${session ? `?session=${session}` : ""}`;
  const url = (thumb) => (thumb ? `${base}${session ? "&" : "?"}thumb=true` : base);
  if (c.kind === "image") return linked(Object.assign(document.createElement("img"), { alt: c.attachment.file_name, className: "thumb" }), "src", token, url(true));
  const link = Object.assign(document.createElement("a"), { download: c.attachment.file_name });
  link.append(icon("file"), c.attachment.file_name);
  return linked(link, "href", token, url(false));
}

// A session's call recordings (GET /api/sessions/{id}/recordings) as cards:
// the composite first and large, then one group per track — whose and what
// (the agent's camera, the customer's microphone, a screen share), with its
// total length — holding a player (audio for a microphone) and a download
// link per segment. Players fetch nothing until played: each play, seek or
// download is an audited RecordingAccessed event. A player whose link has
// expired gets a fresh one and carries on where it was.
export function recordingPlayers(list, token) {
  const player = (url, audio) => {
    // Nothing is fetched until someone plays: listing files is not an access.
    const media = Object.assign(document.createElement(audio ? "audio" : "video"), { controls: true, preload: "none" });
    media.onerror = () => {
      if (!media.src) return;
      const at = media.currentTime;
      links(token, [url]).then(([u]) => { media.src = u; media.currentTime = at; }, () => {});
    };
    return linked(media, "src", token, url);
  };
  const seconds = (ms) => t("common.seconds", { n: (ms / 1000).toFixed(1) });
  const download = (url) => linked(Object.assign(document.createElement("a"), { textContent: t("common.download"), download: "" }), "href", token, `${url}?download=true`);
  const order = (s) => ["agent", "customer", "supervisor"].indexOf(s.participant_role) * 3 + ["video", "audio", "screen"].indexOf(s.kind);
  return list.map((r) => {
    const div = document.createElement("div");
    div.className = "card recording-list";
    const progress = r.composite_progress != null ? t("common.composite_progress", { n: Math.round(r.composite_progress * 100) }) : "";
    div.append(Object.assign(document.createElement("b"), { textContent: `${t("common.recording_of", { reason: t(`common.reason_${r.reason}`) })}${r.stopped ? "" : t("common.recording_running")}${progress}` }));
    if (r.composite) {
      const row = document.createElement("div");
      row.className = "composite";
      row.append(Object.assign(document.createElement("div"), { textContent: `${t("common.both_sides", { length: seconds(r.composite.duration_ms) })} ` }), player(r.composite.url, false), download(r.composite.url));
      div.append(row);
    }
    const groups = new Map();
    for (const s of r.segments) {
      if (!groups.has(s.track_id)) groups.set(s.track_id, []);
      groups.get(s.track_id).push(s);
    }
    const sorted = [...groups.values()].sort((a, b) => order(a[0]) - order(b[0]));
    for (const segments of sorted) {
      const first = segments[0];
      const group = document.createElement("div");
      group.className = "track";
      const role = ["agent", "customer", "supervisor"].includes(first.participant_role) ? t(`common.role_${first.participant_role}`) : t("common.participant");
      const who = `${role}${first.participant_name ? ` ${first.participant_name}` : ""}`;
      const total = segments.reduce((sum, s) => sum + s.duration_ms, 0);
      group.append(Object.assign(document.createElement("div"), { className: "track-title", textContent: t("common.track_title", { who, kind: t(["video", "audio", "screen"].includes(first.kind) ? `common.kind_${first.kind}` : "common.kind_track"), length: seconds(total), parts: segments.length }) }));
      for (const s of segments) {
        const row = document.createElement("div");
        row.className = "row segment";
        row.append(document.createTextNode(`${t("common.part", { n: s.segment_index + 1, length: seconds(s.duration_ms) })} `), player(s.url, s.kind === "audio"), download(s.url));
        group.append(row);
      }
      div.append(group);
    }
    return div;
  });
}

// Signs a staff member in: { token, role, display_name, … }, or rejects
// with the API's reason.
export function signIn(tenant, login, password) {
  return call(null, "POST", "/api/login", { tenant, login, password });
}

const cell = (text) => Object.assign(document.createElement("td"), { textContent: text ?? "" });

// The tenant's time zone, minutes east of UTC (sign-in tells it; Beijing
// until then): every time a page shows is in it, whatever the browser's
// clock says, and labelled with it.
let zone = 480;

// Shows times in `minutes` east of UTC from now on; every `.zone` element
// says which.
export function useZone(minutes) {
  if (Number.isInteger(minutes)) zone = minutes;
  for (const el of document.querySelectorAll(".zone")) el.textContent = zoneLabel();
  return zone;
}

// `UTC+08:00` for the zone in use (or `minutes`).
export function zoneLabel(minutes = zone) {
  const a = Math.abs(minutes);
  return `UTC${minutes < 0 ? "-" : "+"}${String(Math.floor(a / 60)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}`;
}

// An RFC 3339 time in the tenant's zone, as the page's language writes
// one: zh-CN `2026-12-07 14:05:09` (GB/T 7408), en `7 Dec 2026, 14:05:09`
// (day before month, 24 hours: never 12/7). `seconds: false` leaves them out.
export function localTime(iso, { seconds = true } = {}) {
  const shifted = inZone(iso);
  if (document.documentElement.lang !== "en") return shifted.toISOString().slice(0, seconds ? 19 : 16).replace("T", " ");
  const parts = { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  return new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", ...parts, ...(seconds ? { second: "2-digit" } : {}) }).format(shifted);
}

// The clock time (`HH:MM:SS`) and the day (`YYYY-MM-DD`, as date inputs
// take it) of an RFC 3339 time in the tenant's zone.
export const localClock = (iso) => inZone(iso).toISOString().slice(11, 19);
export const localDay = (iso) => inZone(iso).toISOString().slice(0, 10);

// An RFC 3339 time moved by the tenant's offset: its UTC fields read the
// tenant's clock.
const inZone = (iso) => new Date(Date.parse(iso) + zone * 60_000);

// A `YYYY-MM-DDTHH:MM` typed in the tenant's zone as RFC 3339 UTC.
export function fromLocalTime(text) {
  return new Date(Date.parse(`${text}:00Z`) - zone * 60_000).toISOString();
}

// Rows of the `sessions` read model (GET /api/sessions) as table rows that
// call `open(session_id)` when clicked.
export function sessionRows(rows, open) {
  return rows.map((r) => {
    const tr = document.createElement("tr");
    tr.className = "session";
    tr.dataset.session = r.session_id;
    tr.append(cell(r.started_at && localTime(r.started_at)), cell(r.channel), cell(r.business_type), cell(r.outcome ?? t("common.open_outcome")), cell(r.satisfaction), cell(`…${r.session_id.slice(-6)}`));
    tr.onclick = () => open(r.session_id);
    return tr;
  });
}

// Runs of one person's recording accesses in a row, as one entry each:
// [{ first, last, count, accesses: [payload…] }] among the other events.
function compactAccesses(events) {
  const out = [];
  for (const e of events) {
    const prev = out[out.length - 1];
    if (e.event_type === "RecordingAccessed" && prev?.accesses && prev.first.actor.id === e.actor.id) {
      prev.last = e;
      prev.accesses.push(e.payload);
    } else if (e.event_type === "RecordingAccessed") {
      out.push({ first: e, last: e, accesses: [e.payload] });
    } else {
      out.push({ first: e, last: e });
    }
  }
  return out;
}

// What a run of accesses did: "played 2 time(s), 1 seek(s), 1 download(s)"
// (a playback fetch from past a file's start is a seek).
function accessSummary(accesses) {
  const seek = (a) => a.access === "playback" && /^bytes=[1-9]/.test(a.range ?? "");
  const plays = accesses.filter((a) => a.access === "playback" && !seek(a)).length;
  const seeks = accesses.filter(seek).length;
  const downloads = accesses.filter((a) => a.access === "download").length;
  return [plays && t("timeline.played", { n: plays }), seeks && t("timeline.seeks", { n: seeks }), downloads && t("timeline.downloads", { n: downloads })].filter(Boolean).join(", ");
}

// Who acted, in words: "customer", "agent: Li Na (1001)".
const ACTORS = ["customer", "agent", "bot", "system", "supervisor", "compliance", "admin", "media"];
function actorText(kind) {
  return ACTORS.includes(kind) ? t(`common.actor_${kind}`) : kind;
}

// What an event did, in words, for the timeline's last column: which step,
// which device, to whom (`people`: names by user id).
function describe(e, people = {}) {
  const p = e.payload;
  const agent = people[p.agent_id] ?? "";
  const step = p.step_index != null ? t("timeline.step", { n: p.step_index + 1 }) : "";
  const at = () => (p.recording_offset_ms / 1000).toFixed(1);
  switch (e.event_type) {
    case "DualRecordingStepStarted": return t("timeline.step_started", { step, kind: p.step_kind, at: at() });
    case "DualRecordingStepCompleted": return t("timeline.step_completed", { step, outcome: p.outcome, at: at() });
    case "DualRecordingStepReviewed": return `${t(p.passed ? "timeline.step_passed" : "timeline.step_failed", { step })}${p.comment ? `: ${p.comment}` : ""}`;
    case "DualRecordingReviewed": return p.passed ? t("timeline.recording_passed") : `${t("timeline.recording_failed")}${p.comment ? `: ${p.comment}` : ""}`;
    case "MediaStateChanged": {
      const who = actorText(p.participant_id === "customer" ? "customer" : "agent");
      const device = t(p.device === "mic" ? "common.kind_audio" : "common.kind_video");
      return t(p.enabled ? "timeline.device_on" : p.blocked ? "timeline.device_blocked" : "timeline.device_off", { who, device });
    }
    case "RecordingInterrupted": return t(p.resumed ? "timeline.resumed" : "timeline.not_resumed", { track: p.track_id });
    case "RecordingSegmentClosed": return t("timeline.segment", { track: p.track_id, n: p.segment_index + 1, length: t("common.seconds", { n: (p.duration_ms / 1000).toFixed(1) }) });
    case "TransferRequested": return p.to?.kind === "group" ? t("timeline.transfer_to", { group: p.to.group, reason: p.reason }) : p.context_summary || p.reason || "";
    case "SessionQueued": return t("timeline.in_group", { group: p.group });
    case "AgentAssigned": return agent ? t("timeline.assigned", { agent, group: p.group }) : t("timeline.in_group", { group: p.group });
    case "AgentOffered": return agent && t("timeline.offered_to", { agent });
    case "OfferExpired": case "OfferDeclined": return agent && t("timeline.by", { agent });
    case "SessionEnded": return t("timeline.ended", { who: actorText(p.ended_by), reason: p.reason });
    case "WrapUpCompleted": return p.disposition;
    case "SatisfactionRated": return t("timeline.rated", { n: p.rating });
    default: return "";
  }
}

// Shows session `id`'s timeline (GET /api/sessions/{id}, masked as the
// caller's role requires) in `card`: its `title` and a row per event in
// `rows` — a person's recording accesses in a row as one.
export async function showTimeline(token, id, { card, title, rows }) {
  const view = await call(token, "GET", `/api/sessions/${id}`);
  card.classList.remove("hidden");
  title.textContent = `${t("timeline.title", { id, status: statusText(view.status) })}${view.masked ? t("timeline.masked") : ""}`;
  rows.replaceChildren(...compactAccesses(view.events).map(({ first: e, last, accesses }) => {
    const tr = document.createElement("tr");
    const p = e.payload;
    const said = p.content ? (p.content.text ?? p.content.markdown ?? p.content.attachment?.file_name) : "";

    const time = localClock(e.occurred_at) + (last !== e ? `–${localClock(last.occurred_at)}` : "");
    const what = accesses ? `${t("event.RecordingAccessed")}${accesses.length > 1 ? ` ×${accesses.length}` : ""}` : t(`event.${e.event_type}`);
    const detail = accesses ? accessSummary(accesses) : said || describe(e, view.people) || p.context_summary || p.reason || "";
    const who = view.people?.[e.actor.id];
    tr.append(cell(time), cell(who ? `${actorText(e.actor.kind)}: ${who}` : actorText(e.actor.kind)), cell(what), cell(detail));
    if (accesses) tr.className = "accesses";
    return tr;
  }));
  return view;
}

// Icons as inline SVG, beside a text label: emoji render as boxes on Linux
// desktops without an emoji font, and an icon alone names nothing.
const ICONS = {
  phone: "M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25c1.1.37 2.3.57 3.6.57a1 1 0 0 1 1 1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.57 3.57a1 1 0 0 1-.25 1z",
  video: "M17 10.5V7a1 1 0 0 0-1-1H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1v-3.5l4 4v-11z",
  clip: "M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6z",
  record: "M12 7a5 5 0 1 0 0 10a5 5 0 1 0 0-10z",
  stop: "M7 7h10v10H7z",
  file: "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zm0 1.5L18.5 8H14z",
};
export function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}
// Fills every `<span data-icon="NAME">` under `root` with its icon.
export function drawIcons(root = document) {
  for (const span of root.querySelectorAll("span[data-icon]")) span.replaceChildren(icon(span.dataset.icon));
}
drawIcons();
languageSwitch();
