// What the pages share: calling the API, and showing a message's content.

// Calls the API with `token` (if any); JSON in and out unless `type` says
// otherwise. Rejects with the API's `error` text.
export async function call(token, method, path, body, type = "application/json") {
  const response = await fetch(path, {
    method,
    headers: { "content-type": type, ...(token ? { authorization: `Bearer ${token}` } : {}) },
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

// An image's thumbnail or a file's link, or null for text. The token rides
// in the URL because an <img> cannot send a header; a customer also names
// their session.
export function attachmentOf(c, token, session) {
  if (c.kind !== "image" && c.kind !== "file") return null;
  const scope = session ? `session=${session}&` : "";
  const url = (thumb) => `/api/uploads/${c.attachment.sha256}?${scope}token=${encodeURIComponent(token)}${thumb ? "&thumb=true" : ""}`;
  if (c.kind === "image") return Object.assign(document.createElement("img"), { src: url(true), alt: c.attachment.file_name, className: "thumb" });
  return Object.assign(document.createElement("a"), { href: url(false), textContent: `📄 ${c.attachment.file_name}`, download: c.attachment.file_name });
}

// A session's call recordings (GET /api/sessions/{id}/recordings) as cards:
// the composite first, then a player and a download link per segment. Each
// play or download is an audited RecordingAccessed event; the token rides
// in the URL because a <video> cannot send a header.
export function recordingPlayers(list, token) {
  const withToken = (url, extra = "") => `${url}?token=${encodeURIComponent(token)}${extra}`;
  return list.map((r) => {
    const div = document.createElement("div");
    div.className = "card recording-list";
    const progress = r.composite_progress != null ? `, composite ${Math.round(r.composite_progress * 100)} %` : "";
    div.append(Object.assign(document.createElement("b"), { textContent: `Recording ${r.recording_id} (${r.reason}${r.stopped ? "" : ", running"}${progress})` }));
    for (const s of [...(r.composite ? [r.composite] : []), ...r.segments]) {
      const row = document.createElement("div");
      row.className = s.track_id === "composite" ? "row composite" : "row segment";
      const video = Object.assign(document.createElement("video"), { controls: true, preload: "metadata", src: withToken(s.url) });
      const link = Object.assign(document.createElement("a"), { href: withToken(s.url, "&download=true"), textContent: "download", download: "" });
      const label = s.track_id === "composite" ? "both sides" : `${s.track_id} #${s.segment_index}`;
      row.append(document.createTextNode(`${label} ${(s.duration_ms / 1000).toFixed(1)} s `), video, link);
      div.append(row);
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

// An RFC 3339 time as the browser's local `YYYY-MM-DD HH:MM:SS`.
export function localTime(iso) {
  const t = new Date(iso);
  return new Date(t.getTime() - t.getTimezoneOffset() * 60_000).toISOString().slice(0, 19).replace("T", " ");
}

// Rows of the `sessions` read model (GET /api/sessions) as table rows that
// call `open(session_id)` when clicked.
export function sessionRows(rows, open) {
  return rows.map((r) => {
    const tr = document.createElement("tr");
    tr.className = "session";
    tr.dataset.session = r.session_id;
    tr.append(cell(r.started_at && localTime(r.started_at)), cell(r.channel), cell(r.business_type), cell(r.outcome ?? "open"), cell(r.satisfaction), cell(`…${r.session_id.slice(-6)}`));
    tr.onclick = () => open(r.session_id);
    return tr;
  });
}

// Shows session `id`'s timeline (GET /api/sessions/{id}, masked as the
// caller's role requires) in `card`: its `title` and a row per event in `rows`.
export async function showTimeline(token, id, { card, title, rows }) {
  const view = await call(token, "GET", `/api/sessions/${id}`);
  card.classList.remove("hidden");
  title.textContent = `Session ${id} — ${view.status}${view.masked ? " (personal data masked for your role)" : ""}`;
  rows.replaceChildren(...view.events.map((e) => {
    const tr = document.createElement("tr");
    const p = e.payload;
    const said = p.content ? (p.content.text ?? p.content.markdown ?? p.content.attachment?.file_name) : "";
    tr.append(cell(localTime(e.occurred_at).slice(11)), cell(`${e.actor.kind}`), cell(e.event_type), cell(said || p.context_summary || p.reason || ""));
    return tr;
  }));
  return view;
}
