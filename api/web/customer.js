import { call, content, attachmentOf, liveSocket, t, lang } from "/web/common.js";
import { CallClient, callControls, deviceAdvice, insecureAdvice } from "/web/call.js";
// The customer's page: a visitor token, one session, live events over the
// WebSocket. ?tenant=T&channel=C choose where the visitor comes from.
const params = new URLSearchParams(location.search);
const tenant = params.get("tenant") || "demo";
const channel = params.get("channel") || (matchMedia("(max-width: 600px)").matches ? "h5" : "web");
const $ = (id) => document.getElementById(id);
let token, session, rating = 0, socket, callClient, ended = false, agentName = null;
const seen = new Set();
// Calls that ended (a reload's replay does not join them).
const endedCalls = new Set();
// Socket events wait until the first load has drawn the earlier ones.
let loaded = false;
const pending = [];

const api = (method, path, body) => call(token, method, path, body);

function show(error) { $("error").textContent = error ? String(error.message || error) : ""; }

function line(cls, who, c) {
  const div = document.createElement("div");
  div.className = `msg ${cls}`;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  div.append(label, attachmentOf(c, token, session) ?? document.createTextNode(content(c)));
  $("chat").append(div);
  $("chat").scrollTop = $("chat").scrollHeight;
}

// A notice in the conversation, at its end (or right after `after`).
function note(text, after) {
  const div = document.createElement("div");
  div.className = "note";
  div.textContent = text;
  if (after) after.after(div);
  else $("chat").append(div);
  return div;
}

// In a web site's widget (/widget.js, ?embed=1): tells the site of each
// new message and call (it counts them while closed, opens for a call).
// Nothing of the conversation is in the message.
const embedded = params.get("embed") === "1" && window.parent !== window;
// The widget's bar already names the service.
if (embedded) document.body.classList.add("embedded");
function tellHost(e) {
  if (!embedded || !loaded) return;
  if (["BotMessage", "AgentMessage"].includes(e.event_type)) window.parent.postMessage({ type: "witness:message" }, "*");
  if (e.event_type === "CallStarted") window.parent.postMessage({ type: "witness:call" }, "*");
}

// One event, whether it came over the socket or from the first load.
function render(e) {
  const id = `${e.stream}/${e.version}`;
  if (seen.has(id)) return;
  seen.add(id);
  tellHost(e);
  const p = e.payload;
  switch (e.event_type) {
    case "CustomerMessage": line("customer", t("customer.you"), p.content); break;
    case "BotMessage": line("bot", t("customer.assistant"), p.content); break;
    case "AgentMessage": line("agent", agentName ?? t("customer.agent"), p.content); break;
    case "TransferRequested":
      if (p.from?.kind === "agent") note(p.to?.kind === "group" ? t("customer.transfer_to_group", { group: p.to.group }) : t("customer.transfer_to_colleague"));
      break;
    case "SessionQueued": note(t("customer.connecting")); $("human").disabled = true; waiting(true); break;
    case "AgentAssigned": callButtons(true); waiting(false); introduce(note(t("customer.agent_joined"))); break;
    case "CallStarted":
      note(t(p.kind === "video" ? "customer.video_call_started" : "customer.audio_call_started"));
      // A reload replays a call that has since ended: nothing to join.
      if (!ended && !endedCalls.has(p.call_id)) callOn(p.kind === "video");
      break;
    case "CallEnded": note(t("customer.call_ended")); $("face").classList.add("hidden"); callOff(); break;
    case "RecordingStarted": note(t("customer.recording_started")); $("recording").classList.remove("hidden"); break;
    case "RecordingStopped": note(t("customer.recording_stopped")); $("recording").classList.add("hidden"); break;
    case "DualRecordingStepStarted": case "DualRecordingStepCompleted": dual(); break;
    case "FaceVerificationRequested":
      $("face").classList.remove("hidden");
      callClient?.beauty(false).catch(show);
      drawCall();
      break;
    case "FaceVerificationCompleted": $("face").classList.add("hidden"); drawCall(); break;
    case "SessionEnded":
      note(t(p.reason === "left_message" ? "customer.message_saved" : "customer.ended"));
      ended = true;
      waiting(false);
      callButtons(false);
      for (const id of ["human", "end", "send"]) $(id).disabled = true;
      $("composer").classList.add("hidden");
      $("rate").classList.remove("hidden");
      $("restart").classList.remove("hidden");
      break;
    case "SatisfactionRated": $("rate").classList.add("hidden"); note(t("customer.thanks_rating")); break;
  }
}

async function start() {
  let saved = JSON.parse(sessionStorage.getItem(`witness-${tenant}`) || "null");
  if (saved) {
    // A conversation that has ended is not shown again: a reload starts anew.
    const view = await call(saved.token, "GET", `/api/sessions/${saved.session}`).catch(() => null);
    if (!view || view.events.some((e) => e.event_type === "SessionEnded")) {
      sessionStorage.removeItem(`witness-${tenant}`);
      saved = null;
    }
  }
  if (saved) ({ token, session } = saved);
  else {
    ({ token } = await api("POST", "/api/visitors", { tenant, channel }));
    ({ session_id: session } = await api("POST", "/api/sessions", { business_type: params.get("business") || "cards", locale: lang }));
    sessionStorage.setItem(`witness-${tenant}`, JSON.stringify({ token, session }));
  }
  // Disabled until now: before the session exists a click would go nowhere
  // (a slow server made "Talk to a person" a no-op).
  for (const id of ["human", "end", "send"]) $(id).disabled = ended;
  socket = liveSocket(token, session);
  socket.onmessage = (m) => {
    const frame = JSON.parse(m.data);
    if (frame.type === "event") loaded ? render(frame.event) : pending.push(frame.event);
    if (frame.type === "lagged") load();
    callClient?.handle(frame);
  };
  socket.addEventListener("ready", load);
}

// Calls: either side starts one; both pages join it when CallStarted arrives.
function callButtons(on) {
  $("call-audio").classList.toggle("hidden", !on);
  $("call-video").classList.toggle("hidden", !on);
}
async function callOn(video) {
  if (callClient?.active) return;
  // What this call offers, as the tenant has it now.
  callOptions = await api("GET", "/api/call-options").catch(() => callOptions);
  callClient = new CallClient((m) => socket.send(JSON.stringify(m)), session, $("remote"), drawCall);
  $("call").classList.remove("hidden");
  try {
    await callClient.join(video);
    const advice = deviceAdvice(callClient.blocked ?? {});
    if (advice) { note(advice); $("device-advice").textContent = advice; $("device-advice").classList.remove("hidden"); }
  } catch (e) { show(e); }
}
function callOff() { callClient?.teardown(); $("call").classList.add("hidden"); }
// The beauty filter, where the tenant offers it; never during a face
// check (the agent compares the customer's own face with their ID photo).
let callOptions = { beauty_filter: false };
const faceCheck = () => !$("face").classList.contains("hidden");
const drawCall = callControls(() => callClient, show, () => {}, () => callOptions.beauty_filter && !faceCheck());
for (const kind of ["audio", "video"]) $(`call-${kind}`).onclick = () => api("POST", `/api/sessions/${session}/call`, { kind }).catch(show);
$("hang-up").onclick = () => api("POST", `/api/sessions/${session}/call/end`).catch(show);
// A dual recording (双录): the text of the step being read, and "I confirm"
// when the step asks for the customer's click.
async function dual() {
  const d = await api("GET", `/api/sessions/${session}/dual`).catch(() => null);
  const step = d?.open != null ? d.script?.steps[d.open] : null;
  $("dual").classList.toggle("hidden", !step);
  $("dual-text").textContent = step ? step.text : "";
  $("dual-confirm").classList.toggle("hidden", !step?.evidence.includes("customer_clicks"));
}
$("dual-confirm").onclick = () => api("POST", `/api/sessions/${session}/dual/complete`, { outcome: "completed" }).catch(show);
window.witnessCall = () => callClient;
window.witnessToken = () => token;
window.witnessSession = () => session;

async function load() {
  const view = await api("GET", `/api/sessions/${session}`);
  for (const e of view.events) if (e.event_type === "CallEnded") endedCalls.add(e.payload.call_id);
  ended = view.events.some((e) => e.event_type === "SessionEnded");
  view.events.forEach(render);
  loaded = true;
  pending.splice(0).forEach(render);
}

// Messages go one after another, in the order typed; the box empties at
// once, so what is typed while one is sending is kept (it was erased when
// the earlier send finished), and a message that failed comes back.
let sending = Promise.resolve();
$("composer").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  sending = sending
    .then(() => api("POST", `/api/sessions/${session}/messages`, { kind: "text", text }))
    .then(() => show(), (e) => { show(e); if (!$("text").value) $("text").value = text; });
};
$("attach").onclick = () => $("file").click();
$("file").onchange = async () => {
  const file = $("file").files[0];
  if (!file) return;
  try {
    const stored = await fetch(`/api/uploads?session=${session}`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: file })
      .then(async (r) => (r.ok ? r.json() : Promise.reject(new Error((await r.json()).error))));
    const attachment = { sha256: stored.sha256, file_name: file.name, media_type: stored.media_type, bytes: stored.bytes };
    const kind = stored.media_type.startsWith("image/") ? "image" : "file";
    await api("POST", `/api/sessions/${session}/messages`, kind === "image" ? { kind, attachment, caption: file.name } : { kind, attachment });
    show();
  } catch (e) { show(e); }
  $("file").value = "";
};
$("human").onclick = () => api("POST", `/api/sessions/${session}/human`, {}).then(() => show(), show);
// Ending asks once more on the page (a second tap within 5 s), not with a
// dialog some in-app browsers block.
let confirmEnd;
$("end").onclick = () => {
  if (!confirmEnd) {
    $("end").textContent = t("customer.end_confirm");
    $("end").classList.add("confirm");
    confirmEnd = setTimeout(() => { confirmEnd = null; $("end").textContent = t("customer.end"); $("end").classList.remove("confirm"); }, 5000);
    return;
  }
  clearTimeout(confirmEnd);
  confirmEnd = null;
  $("end").textContent = t("customer.end");
  $("end").classList.remove("confirm");
  api("POST", `/api/sessions/${session}/end`, {}).then(() => show(), show);
};
// Who is serving: the agent's name and work number, from the session,
// under the note that they joined.
async function introduce(joined) {
  const view = await api("GET", `/api/sessions/${session}`).catch(() => null);
  if (!view?.agent) return;
  agentName = view.agent.display_name;
  note(t("customer.serving", { name: view.agent.display_name, number: view.agent.work_number }), joined);
}

// While queued: the place in the queue, an estimate, and — with nobody to
// serve, out of hours, or after a long wait — a message to leave instead.
let waitTimer;
function waiting(on) {
  clearInterval(waitTimer);
  $("wait").classList.toggle("hidden", !on);
  if (!on) return;
  const poll = async () => {
    const w = await api("GET", `/api/sessions/${session}/wait`).catch(() => null);
    if (!w?.queued) return;
    const place = w.position ? t("customer.queue_position", { n: w.position }) : t("customer.in_queue");
    const estimate = w.estimated_wait_secs != null ? ` ${t("customer.about_minutes", { n: Math.max(1, Math.round(w.estimated_wait_secs / 60)) })}` : "";
    $("wait-text").textContent = `${place}${estimate}${w.notice ? ` ${w.notice}` : ""}`;
    $("leave").classList.toggle("hidden", !w.can_leave_message);
  };
  poll();
  waitTimer = setInterval(poll, 5000);
}
$("leave").onsubmit = async (ev) => {
  ev.preventDefault();
  const text = $("leave-text").value.trim();
  if (!text) return show(t("customer.write_first"));
  try {
    const left = await api("POST", `/api/sessions/${session}/leave-message`, { text });
    note(t("customer.ticket_saved", { id: left.ticket_id.slice(-6) }));
    show();
  } catch (e) { show(e); }
};
$("restart").onclick = () => {
  sessionStorage.removeItem(`witness-${tenant}`);
  location.reload();
};
for (let i = 1; i <= 5; i++) {
  const star = document.createElement("button");
  star.type = "button";
  star.textContent = "☆";
  star.dataset.rating = i;
  star.setAttribute("aria-label", t("customer.stars_label", { n: i }));
  star.setAttribute("aria-pressed", "false");
  star.onclick = () => {
    rating = i;
    [...$("stars").children].forEach((s, j) => {
      s.textContent = j < i ? "★" : "☆";
      s.setAttribute("aria-pressed", String(j === i - 1));
    });
  };
  $("stars").append(star);
}
$("send-rating").onclick = () => {
  if (!rating) return show(t("customer.choose_stars"));
  api("POST", `/api/sessions/${session}/rating`, { rating, comment: $("comment").value || null }).then(() => show(), show);
};
// Over plain HTTP (not localhost) a call cannot use the camera or the
// microphone: say so at once, not when a call fails.
if (insecureAdvice()) { $("secure-advice").textContent = insecureAdvice(); $("secure-advice").classList.remove("hidden"); }
start().catch(show);
