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
