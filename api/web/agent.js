import { call, content, attachmentOf, recordingPlayers, liveSocket, signOutWith, icon, t, followTenantLanguage, signedInBefore, statusText, keepOnSwitch } from "/web/common.js";
import { CallClient, callControls, insecureAdvice } from "/web/call.js";
// The agent's workbench: log in, go online, take offers, talk, transfer,
// open tickets, end and wrap up. Live events over the WebSocket; the queue
// from the read model, refreshed every two seconds.
const $ = (id) => document.getElementById(id);
let token, me, current, socket, callClient, watchSocket, recording = false;
const offers = new Map(); // session → { offer, expires, info }
const mine = new Set();

// An action that went through clears the last action's error (reads, which
// run on timers, leave it).
const api = (method, path, body) => call(token, method, path, body).then((r) => { if (method !== "GET") show(""); return r; });
const show = (e) => ($("error").textContent = e ? String(e.message || e) : "");
// A notice (not an error): shown until the next one.
const notice = (text) => { $("notice").textContent = text; $("notice").classList.toggle("hidden", !text); };
const short = (id) => id.slice(-6);

$("login").onsubmit = async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    enter(await api("POST", "/api/login", { tenant: $("tenant").value, login: $("login-name").value, password: $("password").value }));
  } catch (e) { $("login-error").textContent = e.message; }
};
// Signed in: the workbench, in the tenant's language unless one was chosen.
async function enter(answer) {
  if (followTenantLanguage(answer)) return;
  try {
    token = answer.token;
    me = answer.user_id;
    $("me").textContent = answer.display_name;
    $("login").classList.add("hidden");
    $("desk").classList.remove("hidden");
    $("presence").disabled = false;
    watchSocket = signOutWith(token, () => socket, () => api("PUT", "/api/agent/presence", { presence: "offline", capacity: 1, skill_groups: [] }));
    connect();
    await setPresence("online");
    setInterval(refreshQueue, 2000);
    refreshQueue();
    setInterval(refreshTransferTargets, 5000);
    refreshTransferTargets();
    // The tenant's dispositions for wrap-up.
    api("GET", "/api/dispositions").then((d) => $("disposition").replaceChildren(...d.dispositions.map((x) => Object.assign(document.createElement("option"), { value: x, textContent: x }))), show);
  } catch (e) { show(e); }
}

async function setPresence(presence) {
  const skill_groups = $("skills").value.split(",").map((s) => s.trim()).filter(Boolean);
  await api("PUT", "/api/agent/presence", { presence, capacity: Number($("capacity").value), skill_groups }).catch(show);
  $("presence").value = presence;
}
$("presence").onchange = () => setPresence($("presence").value);

function connect() {
  socket = liveSocket(token);
  watchSocket?.();
  socket.onmessage = (m) => {
    const frame = JSON.parse(m.data);
    if (callClient?.handle(frame)) return;
    if (frame.type !== "event") return;
    on(frame.event);
  };
  socket.onclose = () => setTimeout(connect, 1000);
}

// Offers, assignments and the open session's conversation, as they happen.
function on(e) {
  const p = e.payload;
  const sid = e.stream.startsWith("session-") ? e.stream.slice("session-".length) : null;
  if (e.event_type === "AgentPresenceChanged" && p.agent_id === me) {
    $("presence").value = p.presence;
    // The router sets an agent away who let offers in a row run out.
    const away = e.actor.kind === "system" && p.presence === "away";
    notice(away ? t("agent.set_away") : "");
  }
  if (e.event_type === "AgentOffered" && p.agent_id === me) offered(sid, p);
  if (["OfferAccepted", "OfferDeclined", "OfferExpired"].includes(e.event_type)) offers.delete(sid);
  if (e.event_type === "AgentAssigned" && p.agent_id === me) mine.add(sid);
  if (e.event_type === "WrapUpCompleted" && p.agent_id === me) { mine.delete(sid); if (current === sid) close(); }
  if (e.event_type === "TransferRequested" && p.from?.agent_id === me) { mine.delete(sid); if (current === sid) close(); }
  drawLists();
  if (e.event_type === "CallStarted" && mine.has(sid)) callOn(sid, p.kind === "video");
  if (e.event_type === "CallEnded" && callClient?.session === sid) callOff();
  if (e.event_type === "MediaStateChanged" && callClient?.session === sid && p.participant_id !== me) peerDevice(p);
  if (e.event_type === "RecordingStarted" && callClient?.session === sid) { recording = true; drawCall(); }
  if (e.event_type === "RecordingStopped" && callClient?.session === sid) { recording = false; drawCall(); }
  if (e.event_type === "RecordingInterrupted" && callClient?.session === sid) recordingInterrupted(p);
  if (e.event_type.startsWith("DualRecordingStep") && callClient?.session === sid) dualRefresh();
  if (sid === current && ["RecordingStopped", "RecordingComposited"].includes(e.event_type)) showRecordings();
  if (sid === current) {
    if (arriving) arriving.push(e);
    else draw(e);
    if (e.event_type === "CustomerMessage") suggest();
  }
}

// Calls: either side starts one; the workbench joins when CallStarted arrives.
async function callOn(sid, video) {
  if (callClient?.active) return;
  callClient = new CallClient((m) => socket.send(JSON.stringify(m)), sid, $("remote"), drawCall);
  $("call").classList.remove("hidden");
  // A switch of language reloads the page: not in the middle of a call.
  $("lang").disabled = true;
  dualRefresh();
  try { await callClient.join(video); } catch (e) { show(e); }
}
function callOff() {
  callClient?.teardown();
  callClient = null;
  recording = false;
  peerDevices.clear();
  $("peer-state").textContent = "";
  $("recording-state").textContent = "";
  $("call").classList.add("hidden");
  $("lang").disabled = false;
}

// A track's recording failed (a full disk, a write error): the agent is
// told at once, in words; the event keeps the server's own error.
function recordingInterrupted(p) {
  const why = t(/no space left|storage full|quota/i.test(p.error) ? "agent.storage_full" : "agent.write_failed");
  const then = t(p.resumed ? "agent.recording_resumed" : "agent.recording_stopped_track");
  $("recording-state").textContent = t("agent.recording_interrupted", { why, then });
}

// The customer's devices as the call goes: "camera blocked", "muted".
const peerDevices = new Map(); // device → state
function peerDevice(p) {
  const device = t(p.device === "mic" ? "agent.microphone" : "agent.camera");
  if (p.enabled) peerDevices.delete(p.device);
  else peerDevices.set(p.device, p.blocked ? t("agent.device_blocked", { device }) : t(p.device === "mic" ? "agent.muted" : "agent.camera_off"));
  $("peer-state").textContent = peerDevices.size ? t("agent.customer_devices", { states: [...peerDevices.values()].join(", ") }) : "";
}

// Dual recording (双录): the agent picks a script and walks through its
// steps during the recorded call; the customer's page shows each step's text.
let dualProgress = null;
async function dualRefresh() {
  const sid = callClient?.session;
  if (!sid) return;
  if (!$("dual-script").options.length) {
    const scripts = await api("GET", "/api/dual-scripts").catch(() => []);
    $("dual-script").replaceChildren(...scripts.map((s) => Object.assign(document.createElement("option"), { value: s.script_id, textContent: `${s.title} (v${s.version})` })));
  }
  $("dual").classList.toggle("hidden", !$("dual-script").options.length);
  dualProgress = await api("GET", `/api/sessions/${sid}/dual`).catch(() => null);
  const d = dualProgress;
  const steps = d?.script?.steps ?? [];
  if (d?.script) $("dual-script").value = d.script.script_id;
  $("dual-script").disabled = Boolean(d?.script);
  $("dual-step").textContent = d?.open != null
    ? t("agent.dual_step_open", { n: d.open + 1, total: steps.length, kind: steps[d.open].kind, text: steps[d.open].text })
    : d?.script && d.done.length === steps.length ? t("agent.dual_all_done", { total: steps.length })
    : d?.script ? t("agent.dual_next", { n: d.done.length + 1, total: steps.length }) : "";
  $("dual-start").disabled = d?.open != null || (d?.script && d.done.length === steps.length);
  $("dual-done").disabled = d?.open == null;
}
$("dual-start").onclick = () => api("POST", `/api/sessions/${callClient.session}/dual/start`, { script_id: $("dual-script").value, version: dualProgress?.script?.version, step_index: dualProgress?.done.length ?? 0 }).catch(show);
$("dual-done").onclick = () => api("POST", `/api/sessions/${callClient.session}/dual/complete`, { outcome: "completed" }).catch(show);
// Face verification: the agent picks the customer's ID photo; the
// customer's page asks them to turn their head; frames of their video as it
// arrives here are sent for comparison and the liveness check.
const FACE_FRAMES = 12, FACE_EVERY_MS = 400, FACE_SETTLE_MS = 1500;
function customerVideo() {
  return [...$("remote").querySelectorAll("video")].find((v) => v.videoWidth > 0);
}
function grab(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/jpeg", 0.9);
}
$("face-start").onclick = async () => {
  const sid = callClient?.session, file = $("face-photo").files[0];
  if (!sid || !file) return show(new Error(t("agent.choose_photo")));
  if (!customerVideo()) return show(new Error(t("agent.no_customer_camera")));
  $("face-start").disabled = true;
  try {
    const stored = await fetch("/api/uploads", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: file })
      .then(async (r) => r.ok ? r.json() : Promise.reject(new Error((await r.json()).error)));
    const asked = await api("POST", `/api/sessions/${sid}/face-verifications`, { id_photo_sha256: stored.sha256 });
    $("face-result").textContent = t("agent.turning_head");
    await new Promise((r) => setTimeout(r, FACE_SETTLE_MS));
    const frames = [];
    for (let i = 0; i < FACE_FRAMES; i++) {
      const video = customerVideo();
      if (video) frames.push(grab(video));
      await new Promise((r) => setTimeout(r, FACE_EVERY_MS));
    }
    const r = await api("POST", `/api/sessions/${sid}/face-verifications/${asked.verification_id}/frames`, { frames });
    const verdict = t({ match: "agent.face_match", no_match: "agent.face_no_match", inconclusive: "agent.face_inconclusive" }[r.decision]);
    const live = r.liveness_passed ? t("agent.head_turn_seen") : t("agent.not_live", { reason: r.liveness?.reason });
    $("face-result").textContent = t("agent.face_result", { verdict, score: r.score.toFixed(2), threshold: r.threshold, live });
    $("face-result").dataset.decision = r.decision;
  } catch (e) { $("face-result").textContent = ""; show(e); }
  $("face-start").disabled = false;
};
const drawCall = callControls(() => callClient, show, () => {
  $("record-text").textContent = t(recording ? "agent.stop_recording" : "agent.record");
  $("record").firstElementChild.replaceChildren(icon(recording ? "stop" : "record"));
});
$("record").onclick = () => callClient && api("POST", `/api/sessions/${callClient.session}/recording`, { record: !recording }).catch(show);
for (const kind of ["audio", "video"]) $(`call-${kind}`).onclick = () => current && api("POST", `/api/sessions/${current}/call`, { kind }).catch(show);
$("hang-up").onclick = () => callClient && api("POST", `/api/sessions/${callClient.session}/call/end`).catch(show);
window.witnessCall = () => callClient;
window.witnessToken = () => token;
window.witnessSession = () => callClient?.session ?? current;

// FAQ entries for the customer's last question; "Use" puts one in the reply box.
async function suggest() {
  const hits = current ? await api("GET", `/api/sessions/${current}/suggestions`).catch(() => []) : [];
  $("suggest-card").classList.toggle("hidden", hits.length === 0);
  $("suggestions").replaceChildren(...hits.map((h) => {
    const li = document.createElement("li");
    li.className = "row suggestion";
    const use = Object.assign(document.createElement("button"), { textContent: t("agent.use"), className: "secondary", type: "button" });
    use.onclick = () => ($("text").value = h.answer);
    const text = `${h.question} — ${h.answer} (${Math.round(h.confidence * 100)}%)`;
    li.append(use, Object.assign(document.createElement("span"), { className: "answer", textContent: text, title: text }));
    return li;
  }));
}

// An offer: the customer's question, channel, business and wait, read
// from the session (the offered agent may), and a chime.
async function offered(sid, p) {
  offers.set(sid, { offer: p.offer_id, expires: Date.parse(p.expires_at), info: null });
  chime();
  drawLists();
  const view = await api("GET", `/api/sessions/${sid}`).catch(() => null);
  if (!view || !offers.has(sid)) return;
  const asked = view.events.filter((e) => e.event_type === "CustomerMessage").map((e) => content(e.payload.content)).pop();
  const queued = view.events.filter((e) => e.event_type === "SessionQueued").map((e) => Date.parse(e.occurred_at)).pop();
  offers.get(sid).info = { asked, queued, channel: view.channel, business: view.business_type };
  drawLists();
}
let audio;
// A short two-tone chime (Web Audio: allowed after the sign-in click).
function chime() {
  try {
    audio ??= new AudioContext();
    const now = audio.currentTime;
    for (const [freq, at] of [[880, 0], [660, 0.18]]) {
      const osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.15, now + at);
      gain.gain.exponentialRampToValueAtTime(0.001, now + at + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.17);
    }
    window.witnessChimes = (window.witnessChimes ?? 0) + 1;
  } catch { /* no audio: the list still shows it */ }
}
// Offers count down every second.
setInterval(() => { if (offers.size) drawLists(); }, 1000);

function drawLists() {
  const now = Date.now();
  $("offers").replaceChildren(...[...offers].map(([sid, { offer, expires, info }]) => {
    const li = document.createElement("li");
    li.className = "offer";
    const left = Math.max(0, Math.round((expires - now) / 1000));
    const head = Object.assign(document.createElement("div"), { className: "offer-head" });
    head.append(Object.assign(document.createElement("b"), { textContent: t("agent.session_short", { id: short(sid) }) }),
      Object.assign(document.createElement("span"), { className: "countdown", textContent: ` ${t("agent.seconds_left", { n: left })}` }));
    li.append(head);
    if (info) {
      const waited = info.queued ? Math.max(0, Math.round((now - info.queued) / 1000)) : null;
      li.append(Object.assign(document.createElement("div"), { className: "offer-meta", textContent: `${info.channel ?? ""} · ${info.business}${waited != null ? ` · ${t("agent.waited", { n: waited })}` : ""}` }));
      if (info.asked) li.append(Object.assign(document.createElement("div"), { className: "offer-question", textContent: `“${info.asked}”` }));
    }
    const accept = Object.assign(document.createElement("button"), { textContent: t("agent.accept") });
    accept.onclick = () => api("POST", `/api/sessions/${sid}/accept`, { offer_id: offer }).then(() => open(sid), show);
    const decline = Object.assign(document.createElement("button"), { textContent: t("agent.decline"), className: "secondary" });
    decline.onclick = () => api("POST", `/api/sessions/${sid}/decline`, { offer_id: offer }).catch(show);
    const buttons = Object.assign(document.createElement("div"), { className: "row" });
    buttons.append(accept, decline);
    li.append(buttons);
    return li;
  }));
  $("mine").replaceChildren(...[...mine].map((sid) => {
    const li = document.createElement("li");
    li.className = "session" + (sid === current ? " active" : "");
    li.textContent = t("agent.session_short", { id: short(sid) });
    li.onclick = () => open(sid);
    return li;
  }));
}

// The open session's events drawn (`stream/version`), and those that
// arrive while it is being loaded (drawn after what the load brings: an
// event written after the load's read would otherwise be wiped with the
// chat and never drawn).
const drawn = new Set();
let arriving = null;
function draw(e) {
  const id = `${e.stream}/${e.version}`;
  if (drawn.has(id)) return;
  drawn.add(id);
  const p = e.payload;
  const add = (cls, who, text, c) => {
    const div = document.createElement("div");
    div.className = cls;
    if (who) {
      const label = Object.assign(document.createElement("span"), { className: "who", textContent: who });
      div.append(label);
    }
    div.append((c && attachmentOf(c, token)) ?? document.createTextNode(text));
    $("chat").append(div);
    $("chat").scrollTop = $("chat").scrollHeight;
  };
  switch (e.event_type) {
    case "CustomerMessage": add("msg customer", t("agent.customer"), content(p.content), p.content); break;
    case "BotMessage": add("msg bot", t("agent.bot"), content(p.content), p.content); break;
    case "AgentMessage": add("msg agent", t(p.agent_id === me ? "agent.you" : "agent.agent"), content(p.content), p.content); break;
    case "TransferRequested": add("note", "", t("agent.transfer_note", { reason: p.reason, summary: p.context_summary })); break;
    case "SessionEnded": add("note", "", t("agent.ended_by", { who: p.ended_by, reason: p.reason })); break;
    case "SatisfactionRated": add("note", "", t("agent.rated", { n: p.rating })); break;
  }
}

async function open(sid) {
  current = sid;
  const waiting = arriving = [];
  const view = await api("GET", `/api/sessions/${sid}`).catch(show);
  // Another session opened meanwhile: its own load draws it.
  if (arriving !== waiting) return;
  arriving = null;
  if (!view) return;
  $("current").textContent = t("agent.session_status", { id: short(sid), status: statusText(view.status), business: view.business_type });
  $("chat").replaceChildren();
  drawn.clear();
  view.events.forEach(draw);
  waiting.forEach(draw);
  suggest();
  showRecordings();
  for (const b of ["send", "attach", "ticket", "transfer", "end", "wrap-up", "call-audio", "call-video"]) $(b).disabled = false;
  drawLists();
}

// The open session's recordings, played here like on the admin page.
async function showRecordings() {
  const list = current ? await api("GET", `/api/sessions/${current}/recordings`).catch(() => []) : [];
  $("recordings").replaceChildren(...recordingPlayers(list, token));
}

function close() {
  current = null;
  $("recordings").replaceChildren();
  $("suggest-card").classList.add("hidden");
  $("chat").replaceChildren();
  drawn.clear();
  arriving = null;
  $("current").textContent = t("agent.no_session");
  for (const b of ["send", "attach", "ticket", "transfer", "end", "wrap-up", "call-audio", "call-video"]) $(b).disabled = true;
}

async function refreshQueue() {
  const q = await api("GET", "/api/queue").catch(() => null);
  if (!q) return;
  const now = Date.now();
  $("queue").replaceChildren(...q.waiting.map((w) => {
    const tr = document.createElement("tr");
    const secs = Math.max(0, Math.round((now - Date.parse(w.queued_at)) / 1000));
    for (const text of [w.group, `…${short(w.session_id)}`, t("agent.waiting_secs", { n: secs })]) tr.append(Object.assign(document.createElement("td"), { textContent: text }));
    // Take it from the queue: assigned at once (unless an offer is open on it).
    const pick = Object.assign(document.createElement("button"), { className: "secondary pick", type: "button", textContent: t("agent.pick") });
    pick.onclick = () => api("POST", `/api/sessions/${w.session_id}/pick`).then(() => { mine.add(w.session_id); drawLists(); open(w.session_id); refreshQueue(); }, show);
    const td = document.createElement("td");
    td.append(pick);
    tr.append(td);
    return tr;
  }));
  const online = q.agents.filter((a) => a.presence === "online");
  $("agents").textContent = t("agent.agents_online", { n: online.length });
}

// As on the customer's page: in order, the box emptied at once, a failed
// message back in it.
let sending = Promise.resolve();
$("composer").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text || !current) return;
  $("text").value = "";
  const to = current;
  sending = sending
    .then(() => api("POST", `/api/sessions/${to}/messages`, { kind: "text", text }))
    .then(() => show(""), (e) => { show(e); if (!$("text").value) $("text").value = text; });
};
$("ticket").onclick = () => api("POST", "/api/tickets", { session_id: current }).then((ticket) => { show(""); notice(t("agent.ticket_opened", { title: ticket.title })); }, show);
// Images and files to the customer: uploaded, then sent as a message.
$("attach").onclick = () => $("file").click();
$("file").onchange = async () => {
  const file = $("file").files[0];
  $("file").value = "";
  if (!file || !current) return;
  try {
    const stored = await fetch("/api/uploads", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: file })
      .then(async (r) => (r.ok ? r.json() : Promise.reject(new Error((await r.json()).error))));
    const attachment = { sha256: stored.sha256, file_name: file.name, media_type: stored.media_type, bytes: stored.bytes };
    const kind = stored.media_type.startsWith("image/") ? "image" : "file";
    await api("POST", `/api/sessions/${current}/messages`, kind === "image" ? { kind, attachment, caption: file.name } : { kind, attachment });
    show("");
  } catch (e) { show(e); }
};
// Where a session can go: the tenant's groups, with who is online in each,
// and the other agents online by name (GET /api/groups).
async function refreshTransferTargets() {
  const g = await api("GET", "/api/groups").catch(() => null);
  if (!g) return;
  const select = $("transfer-to");
  const chosen = select.value;
  const option = (value, text) => Object.assign(document.createElement("option"), { value, textContent: text });
  const groups = Object.assign(document.createElement("optgroup"), { label: t("agent.groups") });
  groups.append(...g.groups.map((x) => option(`group:${x.name}`, `${t("agent.group_option", { label: x.label, n: x.online })}${x.waiting ? t("agent.group_waiting", { n: x.waiting }) : ""}${!x.online && x.when_nobody_online === "refuse" ? t("agent.group_closed") : ""}`)));
  const agents = Object.assign(document.createElement("optgroup"), { label: t("agent.agents_online_group") });
  agents.append(...g.agents_online.filter((a) => a.agent_id !== me).map((a) => option(`agent:${a.agent_id}`, `${a.display_name} (${a.login})`)));
  select.replaceChildren(groups, ...(agents.children.length ? [agents] : []));
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}
$("transfer").onclick = () => {
  const [kind, target] = $("transfer-to").value.split(/:(.*)/s);
  if (!target) return show(t("agent.choose_target"));
  const to = kind === "agent" ? { kind, agent_id: target } : { kind: "group", group: target };
  api("POST", `/api/sessions/${current}/transfer`, { to, reason: t("agent.transfer_reason") }).then(() => { show(""); notice(t("agent.transferred", { to: $("transfer-to").selectedOptions[0].textContent.split(" — ")[0] })); }, show);
};
$("end").onclick = () => api("POST", `/api/sessions/${current}/end`, {}).catch(show);
$("wrap-up").onclick = () => api("POST", `/api/sessions/${current}/wrap-up`, { disposition: $("disposition").value }).catch(show);
// Over plain HTTP (not localhost) calls cannot use the camera or the
// microphone: say so at once.
if (insecureAdvice()) { $("secure-advice").textContent = insecureAdvice(); $("secure-advice").classList.remove("hidden"); }
// Last, once everything above is defined: signed in before this page
// loaded (its language was switched): the
// sessions taken and the one open come along.
keepOnSwitch(() => ({ mine: [...mine], current }));
const before = signedInBefore();
if (before) {
  for (const sid of before.kept?.mine ?? []) mine.add(sid);
  enter(before.answer).then(() => before.kept?.current && open(before.kept.current));
}
