import { call, links, recordingPlayers, signIn, signOutWith, sessionRows, showTimeline } from "/web/common.js";
// Users and FAQ (admin), session search and timelines (admin, supervisor,
// compliance; masked by role as the API decides).
const $ = (id) => document.getElementById(id);
let token, role;

const api = (method, path, body, type) => call(token, method, path, body, type);
const show = (e) => ($("error").textContent = e ? String(e.message || e) : "");
const cell = (text) => Object.assign(document.createElement("td"), { textContent: text ?? "" });

$("login").onsubmit = async (ev) => {
  ev.preventDefault();
  const answer = await signIn($("tenant").value, $("login-name").value, $("password").value).catch((e) => alert(e.message));
  if (!answer) return;
  ({ token, role } = answer);
  signOutWith(token, () => null);
  $("me").textContent = `${answer.display_name} (${role})`;
  $("login").classList.add("hidden");
  $("console").classList.remove("hidden");
  const admin = role === "admin";
  $("users-card").classList.toggle("hidden", !admin);
  $("faq-card").classList.toggle("hidden", !admin);
  $("policy-card").classList.toggle("hidden", !admin);
  $("groups-card").classList.toggle("hidden", !admin);
  $("dispositions-card").classList.toggle("hidden", !admin);
  if (admin) { loadUsers(); loadPolicy(); loadGroups(); loadDispositions(); }
  $("reviews-card").classList.toggle("hidden", role !== "compliance");
  if (role === "compliance") reviews();
  search();
};

async function loadPolicy() {
  const policy = await api("GET", "/api/admin/recording-policy").catch(() => null);
  if (!policy) return $("policy-card").classList.add("hidden");
  $("record-calls").checked = policy.record_calls;
}
$("record-calls").onchange = () => api("PUT", "/api/admin/recording-policy", { record_calls: $("record-calls").checked }).catch(show);

// A setting's outcome beside its Save button: the error, or "Saved", cleared
// on the next try.
function said(id, error) {
  $(id).textContent = error ? String(error.message || error) : "Saved.";
  $(id).className = error ? "error-inline" : "ok-inline";
}

// Skill groups: one editable row each (hours in Beijing time).
const BEIJING = 480;
function groupRow(g = { name: "", label: "", when_nobody_online: "queue" }) {
  const tr = document.createElement("tr");
  tr.className = "group";
  const input = (field, value, extra = {}) => {
    const el = Object.assign(document.createElement("input"), { value: value ?? "", ...extra });
    el.dataset.field = field;
    el.setAttribute("aria-label", field.replaceAll("_", " "));
    const td = document.createElement("td");
    td.append(el);
    return td;
  };
  const policy = document.createElement("select");
  policy.dataset.field = "when_nobody_online";
  policy.setAttribute("aria-label", "when nobody is online");
  for (const [v, t] of [["queue", "queue them"], ["refuse", "refuse transfers"]]) policy.append(Object.assign(document.createElement("option"), { value: v, textContent: t }));
  policy.value = g.when_nobody_online ?? "queue";
  const policyCell = document.createElement("td");
  policyCell.append(policy);
  const remove = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "Remove" });
  remove.onclick = () => tr.remove();
  const removeCell = document.createElement("td");
  removeCell.append(remove);
  const h = g.hours;
  tr.append(input("name", g.name, { size: 10 }), input("label", g.label, { size: 14 }), policyCell,
    input("open", h?.open, { type: "time" }), input("close", h?.close, { type: "time" }),
    input("days", h ? h.days.join(",") : "", { size: 8, placeholder: "1,2,3,4,5" }),
    input("closed_message", h?.closed_message, { size: 18 }),
    input("message_after_secs", g.message_after_secs, { type: "number", min: 0, style: "width: 6rem" }), removeCell);
  return tr;
}
async function loadGroups() {
  const g = await api("GET", "/api/groups").catch(show);
  if (g) $("groups").replaceChildren(...g.groups.map(groupRow));
}
$("group-add").onclick = () => $("groups").append(groupRow());
$("groups-save").onclick = () => {
  const groups = [...$("groups").querySelectorAll("tr.group")].map((tr) => {
    const v = (f) => tr.querySelector(`[data-field="${f}"]`).value.trim();
    const group = { name: v("name"), label: v("label"), when_nobody_online: v("when_nobody_online") };
    if (v("open") || v("close")) {
      group.hours = { utc_offset_minutes: BEIJING, days: v("days").split(/[ ,，]+/).filter(Boolean).map(Number), open: v("open"), close: v("close"), closed_message: v("closed_message") };
    }
    if (v("message_after_secs")) group.message_after_secs = Number(v("message_after_secs"));
    return group;
  });
  api("PUT", "/api/admin/groups", { groups }).then((g) => { said("groups-said"); $("groups").replaceChildren(...g.groups.map(groupRow)); }, (e) => said("groups-said", e));
};

async function loadDispositions() {
  const d = await api("GET", "/api/dispositions").catch(show);
  if (d) $("dispositions").value = d.dispositions.join("\n");
}
$("dispositions-save").onclick = () => {
  const dispositions = $("dispositions").value.split("\n").map((l) => l.trim()).filter(Boolean);
  api("PUT", "/api/admin/dispositions", { dispositions }).then(() => said("dispositions-said"), (e) => said("dispositions-said", e));
};

async function loadUsers() {
  const users = await api("GET", "/api/admin/users").catch(show);
  $("users").replaceChildren(...(users || []).map((u) => {
    const tr = document.createElement("tr");
    tr.append(cell(u.login), cell(u.role), cell(u.display_name));
    return tr;
  }));
}

$("new-user").onsubmit = async (ev) => {
  ev.preventDefault();
  const body = { login: $("new-login").value, display_name: $("new-name").value, role: $("new-role").value, password: $("new-password").value };
  await api("POST", "/api/admin/users", body).then(() => { show(); $("new-user").reset(); loadUsers(); }, show);
};

$("import").onclick = async () => {
  const format = $("faq-format").value;
  await api("POST", `/api/kb/import?format=${format}`, $("faq").value, format === "json" ? "application/json" : "text/markdown")
    .then((r) => { show(); $("imported").textContent = `${r.imported} entries imported`; }, show);
};

async function search(ev) {
  ev?.preventDefault();
  const q = new URLSearchParams({ limit: "200" });
  if ($("since").value) q.set("since", new Date($("since").value).toISOString());
  if ($("outcome").value) q.set("outcome", $("outcome").value);
  if ($("agent").value) q.set("agent", $("agent").value);
  const rows = await api("GET", `/api/sessions?${q}`).catch(show);
  $("sessions").replaceChildren(...sessionRows(rows || [], timeline));
}
$("search").onsubmit = search;

async function timeline(id) {
  const view = await showTimeline(token, id, { card: $("timeline-card"), title: $("timeline-title"), rows: $("timeline") }).catch(show);
  if (view) recordings(id);
}

// The review console (compliance): dual recordings awaiting a verdict; one
// opens with its composite, a marker per step to jump to it, pass or fail
// per step with a comment, and the overall verdict.
async function reviews() {
  const rows = await api("GET", "/api/reviews").catch(show);
  $("reviews").replaceChildren(...(rows || []).map((r) => {
    const tr = document.createElement("tr");
    tr.className = "session";
    tr.dataset.session = r.session_id;
    tr.append(cell(r.recorded_at.slice(0, 19).replace("T", " ")), cell(`${r.script_id} v${r.script_version}`), cell(r.steps), cell(`…${r.session_id.slice(-6)}`));
    tr.onclick = () => review(r.session_id);
    return tr;
  }));
}
$("reviews-refresh").onclick = reviews;

const clock = (ms) => `${String(Math.floor(ms / 60000)).padStart(2, "0")}:${String(Math.floor(ms / 1000) % 60).padStart(2, "0")}`;
async function review(id) {
  const [view, list] = await Promise.all([api("GET", `/api/sessions/${id}/review`), api("GET", `/api/sessions/${id}/recordings`)]).catch((e) => (show(e), []));
  if (!view) return;
  $("review").classList.remove("hidden");
  $("review-title").textContent = `${view.script?.title ?? ""} v${view.script?.version ?? ""} — session …${id.slice(-6)}`;
  const composite = list.find((r) => r.composite)?.composite;
  const video = $("review-video");
  const src = composite?.url ?? "";
  if (video.dataset.src !== src) {
    video.dataset.src = src;
    if (src) links(token, [src]).then(([u]) => { video.src = u; }, show);
    else video.removeAttribute("src");
  }
  const post = (path, body) => api("POST", `/api/sessions/${id}/${path}`, body).then(() => review(id), show);
  $("review-steps").replaceChildren(...view.steps.map((st) => {
    const tr = document.createElement("tr");
    tr.dataset.step = st.index;
    const at = document.createElement("td");
    if (st.composite_ms != null) {
      const marker = Object.assign(document.createElement("button"), { className: "secondary marker", type: "button", textContent: `▶ ${clock(st.composite_ms)}` });
      marker.dataset.ms = st.composite_ms;
      marker.onclick = () => { video.currentTime = st.composite_ms / 1000; video.play().catch(() => {}); };
      at.append(marker);
    }
    const verdict = document.createElement("td");
    if (st.review) verdict.append(`${st.review[0] ? "passed" : "FAILED"}${st.review[1] ? `: ${st.review[1]}` : ""} `);
    if (!view.verdict && st.outcome) {
      const comment = Object.assign(document.createElement("input"), { placeholder: "comment", className: "comment" });
      const pass = Object.assign(document.createElement("button"), { className: "pass", type: "button", textContent: "Pass" });
      const fail = Object.assign(document.createElement("button"), { className: "secondary fail", type: "button", textContent: "Fail" });
      pass.onclick = () => post("review/steps", { step_index: st.index, passed: true, comment: comment.value || undefined });
      fail.onclick = () => post("review/steps", { step_index: st.index, passed: false, comment: comment.value || undefined });
      verdict.append(comment, pass, fail);
    }
    tr.append(at, cell(`${st.index + 1}. ${st.kind}: ${st.text}`), cell(st.outcome ?? "not done"), verdict);
    return tr;
  }));
  $("review-verdict").textContent = view.verdict ? (view.verdict[0] ? "passed" : "failed") : "";
  links(token, [`/api/sessions/${id}/review/package`]).then(([u]) => { $("review-package").href = u; }, show);
  for (const [button, passed] of [["verdict-pass", true], ["verdict-fail", false]]) {
    $(button).disabled = Boolean(view.verdict);
    $(button).onclick = () => post("review", { passed, comment: $("verdict-comment").value || undefined }).then(reviews);
  }
}

async function recordings(id) {
  const list = await api("GET", `/api/sessions/${id}/recordings`).catch(() => []);
  $("recordings").replaceChildren(...recordingPlayers(list, token));
}
