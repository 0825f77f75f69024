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
