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

// The live feed (/api/ws): the token is the first message, never part of
// the URL. The socket fires "ready" once the server has accepted it.
export function liveSocket(token, session) {
  const query = session ? `?session=${session}` : "";
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
  return linked(Object.assign(document.createElement("a"), { textContent: `📄 ${c.attachment.file_name}`, download: c.attachment.file_name }), "href", token, url(false));
}

// A session's call recordings (GET /api/sessions/{id}/recordings) as cards:
// the composite first, then a player and a download link per segment. Each
// play or download is an audited RecordingAccessed event. A player whose
// link has expired gets a fresh one and carries on where it was.
export function recordingPlayers(list, token) {
  const player = (url) => {
    const video = Object.assign(document.createElement("video"), { controls: true, preload: "metadata" });
    video.onerror = () => {
      if (!video.src) return;
      const at = video.currentTime;
      links(token, [url]).then(([u]) => { video.src = u; video.currentTime = at; }, () => {});
    };
    return linked(video, "src", token, url);
  };
  return list.map((r) => {
    const div = document.createElement("div");
    div.className = "card recording-list";
    const progress = r.composite_progress != null ? `, composite ${Math.round(r.composite_progress * 100)} %` : "";
    div.append(Object.assign(document.createElement("b"), { textContent: `Recording ${r.recording_id} (${r.reason}${r.stopped ? "" : ", running"}${progress})` }));
    for (const s of [...(r.composite ? [r.composite] : []), ...r.segments]) {
      const row = document.createElement("div");
      row.className = s.track_id === "composite" ? "row composite" : "row segment";
      const video = player(s.url);
      const link = linked(Object.assign(document.createElement("a"), { textContent: "download", download: "" }), "href", token, `${s.url}?download=true`);
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
