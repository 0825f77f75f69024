import { call, fromLocalTime, links, localTime, recordingPlayers, signIn, signOutWith, sessionRows, showTimeline, useZone, zoneLabel, t, followTenantLanguage, signedInBefore } from "/web/common.js";
// Users and FAQ (admin), session search and timelines (admin, supervisor,
// compliance; masked by role as the API decides).
const $ = (id) => document.getElementById(id);
let token, role;

const api = (method, path, body, type) => call(token, method, path, body, type);
const show = (e) => ($("error").textContent = e ? String(e.message || e) : "");
const cell = (text) => Object.assign(document.createElement("td"), { textContent: text ?? "" });

$("login").onsubmit = async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const answer = await signIn($("tenant").value, $("login-name").value, $("password").value)
    .catch((e) => { $("login-error").textContent = e.message; });
  if (answer) enter(answer);
};
// Signed in: the console, in the tenant's language unless one was chosen.
function enter(answer) {
  if (followTenantLanguage(answer)) return;
  ({ token, role } = answer);
  useZone(answer.utc_offset_minutes);
  $("groups-hint").textContent = t("admin.groups_hint", { zone: zoneLabel() });
  signOutWith(token, () => null);
  $("me").textContent = `${answer.display_name} (${t(`common.role_${role}`)})`;
  $("login").classList.add("hidden");
  $("console").classList.remove("hidden");
  const admin = role === "admin";
  $("users-card").classList.toggle("hidden", !admin);
  $("faq-card").classList.toggle("hidden", !admin);
  $("policy-card").classList.toggle("hidden", !admin);
  $("groups-card").classList.toggle("hidden", !admin);
  for (const card of ["dispositions-card", "zone-card", "embed-card", "qa-card", "scripts-card"]) $(card).classList.toggle("hidden", !admin);
  $("retention-card").classList.toggle("hidden", !admin && role !== "compliance");
  if (admin) {
    loadUsers();
    for (const [card, load] of [["policy-card", loadPolicy], ["groups-card", loadGroups], ["dispositions-card", loadDispositions],
      ["zone-card", loadZone], ["qa-card", loadQa], ["scripts-card", loadScripts]]) filled(card, load);
  }
  if (admin || role === "compliance") loadRetention(admin);
  api("GET", "/api/agents").then((agents) => $("agent").append(...agents.map((a) => Object.assign(document.createElement("option"), { value: a.user_id, textContent: `${a.display_name} (${a.login})` }))), show);
  $("reviews-card").classList.toggle("hidden", role !== "compliance");
  if (role === "compliance") reviews();
  search();
}

// A settings card's controls wait for its data: what someone typed before
// it arrived would be overwritten by it, and then saved.
async function filled(card, load) {
  const controls = [...$(card).querySelectorAll("input, select, textarea, button")].filter((c) => !c.disabled);
  for (const c of controls) c.disabled = true;
  $(card).setAttribute("aria-busy", "true");
  try {
    await load();
  } finally {
    for (const c of controls) c.disabled = false;
    $(card).removeAttribute("aria-busy");
  }
}

async function loadPolicy() {
  const policy = await api("GET", "/api/admin/recording-policy").catch(() => null);
  if (!policy) return $("policy-card").classList.add("hidden");
  $("record-calls").checked = policy.record_calls;
  const options = await api("GET", "/api/call-options").catch(() => null);
  if (options) $("beauty-filter").checked = options.beauty_filter;
}
$("record-calls").onchange = () => api("PUT", "/api/admin/recording-policy", { record_calls: $("record-calls").checked })
  .then(() => said("policy-said"), (e) => said("policy-said", e));
$("beauty-filter").onchange = () => api("PUT", "/api/admin/call-options", { beauty_filter: $("beauty-filter").checked })
  .then(() => said("beauty-said"), (e) => said("beauty-said", e));

// A setting's outcome beside its Save button: the error, or `message`
// ("Saved."), replaced on the next try.
function said(id, error, message = t("admin.saved")) {
  $(id).textContent = error ? String(error.message || error) : message;
  $(id).className = error ? "error-inline" : "ok-inline";
}

// Editable table rows: a control per field (its `data-field` names it,
// and screen readers too), and a Remove button.
const td = (el) => { const cell = document.createElement("td"); cell.append(el); return cell; };
function control(el, field, label) {
  el.dataset.field = field;
  el.setAttribute("aria-label", label);
  return el;
}
const input = (field, value, label, extra = {}) => control(Object.assign(document.createElement("input"), { value: value ?? "", ...extra }), field, label);
function select(field, options, value, label) {
  const el = control(document.createElement("select"), field, label);
  el.append(...options.map(([value, text]) => Object.assign(document.createElement("option"), { value, textContent: text })));
  el.value = value;
  return el;
}
// A row of `cells` and a Remove button, which then calls `removed`.
function editableRow(className, cells, removed = () => {}) {
  const tr = document.createElement("tr");
  tr.className = className;
  const remove = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: t("admin.remove") });
  remove.onclick = () => { tr.remove(); removed(); };
  tr.append(...cells, td(remove));
  return tr;
}

// Skill groups: one editable row each (hours in the tenant's zone).
function groupRow(g = { name: "", label: "", when_nobody_online: "queue" }) {
  const h = g.hours;
  const policy = select("when_nobody_online", [["queue", t("admin.queue_them")], ["refuse", t("admin.refuse_transfers")]], g.when_nobody_online ?? "queue", t("admin.when_nobody"));
  return editableRow("group", [td(input("name", g.name, t("admin.f_name"), { size: 10 })), td(input("label", g.label, t("admin.f_label"), { size: 14 })), td(policy),
    td(input("open", h?.open, t("admin.f_open"), { type: "time" })), td(input("close", h?.close, t("admin.f_close"), { type: "time" })),
    td(input("days", h ? h.days.join(",") : "", t("admin.f_days"), { size: 8, placeholder: "1,2,3,4,5" })),
    td(input("closed_message", h?.closed_message, t("admin.f_closed_message"), { size: 18 })),
    td(input("message_after_secs", g.message_after_secs, t("admin.f_message_after"), { type: "number", min: 0, style: "width: 6rem" }))]);
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
      group.hours = { utc_offset_minutes: useZone(), days: v("days").split(/[ ,，]+/).filter(Boolean).map(Number), open: v("open"), close: v("close"), closed_message: v("closed_message") };
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

// The tenant's time zone: whole and half hours from UTC-12 to UTC+14, and
// the quarter-hour zones in use (Nepal, Eucla, Chatham).
async function loadZone() {
  const offsets = [];
  for (let m = -720; m <= 840; m += 30) offsets.push(m);
  offsets.push(345, 525, 765);
  offsets.sort((a, b) => a - b);
  const names = { 480: t("admin.beijing"), 0: "UTC" };
  $("time-zone").replaceChildren(...offsets.map((m) => Object.assign(document.createElement("option"), { value: m, textContent: `${zoneLabel(m)}${names[m] ? ` ${names[m]}` : ""}` })));
  const s = await api("GET", "/api/settings").catch(show);
  if (s) { $("time-zone").value = s.utc_offset_minutes; $("locale").value = s.locale; showEmbed(s); }
}
// The web sites that may embed the customer page, one per line, and the
// tag they put on their pages.
function showEmbed(settings) {
  $("embed-origins").value = settings.embed_origins.join("\n");
  $("embed-snippet").textContent = `<script src="${location.origin}/widget.js" data-tenant="${settings.tenant}" async></script>`;
}
$("embed-save").onclick = () => {
  const origins = $("embed-origins").value.split("\n").map((l) => l.trim()).filter(Boolean);
  api("PUT", "/api/admin/embed-origins", { origins }).then((s) => { showEmbed(s); said("embed-said"); }, (e) => said("embed-said", e));
};
$("locale-save").onclick = () => api("PUT", "/api/admin/locale", { locale: $("locale").value })
  .then(() => said("locale-said"), (e) => said("locale-said", e));
$("zone-save").onclick = () => api("PUT", "/api/admin/time-zone", { utc_offset_minutes: Number($("time-zone").value) })
  .then((s) => { useZone(s.utc_offset_minutes); said("zone-said"); search(); }, (e) => said("zone-said", e));

// Retention: days kept per class of data, each saved on its own.
const CLASSES = { recordings: "admin.class_recordings", attachments: "admin.class_attachments", messages: "admin.class_messages" };
async function loadRetention(editable) {
  const policy = await api("GET", "/api/admin/retention").catch(show);
  if (!policy) return;
  $("retention").replaceChildren(...Object.entries(CLASSES).map(([klass, key]) => {
    const label = t(key);
    const tr = document.createElement("tr");
    const days = Object.assign(document.createElement("input"), { type: "number", min: 1, value: policy.retention[klass] ?? "", placeholder: t("admin.for_ever"), disabled: !editable, style: "width: 7rem" });
    days.dataset.class = klass;
    days.setAttribute("aria-label", t("admin.days_kept_label", { label }));
    const save = Object.assign(document.createElement("button"), { type: "button", textContent: t("admin.save"), hidden: !editable });
    const status = Object.assign(document.createElement("span"), { id: `retention-said-${klass}` });
    status.setAttribute("role", "status");
    save.onclick = () => api("PUT", "/api/admin/retention", { class: klass, days: days.value === "" ? null : Number(days.value) })
      .then(() => said(status.id), (e) => said(status.id, e));
    const act = document.createElement("td");
    act.append(save, " ", status);
    tr.append(cell(label), td(days), act);
    return tr;
  }));
  $("holds").textContent = policy.holds.length
    ? t("admin.legal_holds", { holds: policy.holds.map((h) => `${h.session_id ? t("admin.hold_session", { id: h.session_id.slice(-6) }) : t("admin.hold_tenant")} (${h.reason})`).join("; ") })
    : t("admin.no_holds");
}

const criterionRow = (c = {}) => editableRow("criterion", [td(input("name", c.name, t("admin.f_name"), { size: 16 })),
  td(input("weight", c.weight ?? 1, t("admin.f_weight"), { type: "number", step: "any", min: 0, style: "width: 5rem" })),
  td(input("max_score", c.max_score ?? 5, t("admin.f_max_score"), { type: "number", step: "any", min: 0, style: "width: 5rem" }))]);
const seconds = (id) => ($(id).value === "" ? undefined : Number($(id).value));
async function loadQa() {
  const [form, rules] = await Promise.all([api("GET", "/api/admin/qa-form"), api("GET", "/api/admin/qa-rules")]).catch((e) => (show(e), []));
  if (!form) return;
  $("qa-form").replaceChildren(...form.map(criterionRow));
  $("rule-greeting").value = rules?.greeting_within_secs ?? "";
  $("rule-sla").value = rules?.response_sla_secs ?? "";
  $("rule-silence").value = rules?.silence_secs ?? "";
  $("rule-words").value = (rules?.forbidden_words ?? []).join("\n");
}
$("criterion-add").onclick = () => $("qa-form").append(criterionRow());
$("qa-form-save").onclick = () => {
  const criteria = [...$("qa-form").querySelectorAll("tr.criterion")].map((tr) => {
    const v = (f) => tr.querySelector(`[data-field="${f}"]`).value.trim();
    return { name: v("name"), weight: Number(v("weight")), max_score: Number(v("max_score")) };
  });
  api("PUT", "/api/admin/qa-form", { criteria }).then((form) => { said("qa-form-said"); $("qa-form").replaceChildren(...form.map(criterionRow)); }, (e) => said("qa-form-said", e));
};
$("qa-rules-save").onclick = () => {
  const rules = {
    greeting_within_secs: seconds("rule-greeting"),
    response_sla_secs: seconds("rule-sla"),
    silence_secs: seconds("rule-silence"),
    forbidden_words: $("rule-words").value.split("\n").map((w) => w.trim()).filter(Boolean),
  };
  api("PUT", "/api/admin/qa-rules", rules).then(() => said("qa-rules-said"), (e) => said("qa-rules-said", e));
};

// Dual-recording scripts: pick one (its latest version) or start a new one;
// steps as rows of kind, text and the evidence each needs.
const STEP_KINDS = ["identity_check", "risk_disclosure", "customer_confirmation", "document_shown"];
const EVIDENCE = ["agent_reads_aloud", "customer_speaks", "customer_clicks", "document_shown"];
let scripts = [];
function stepRow(step = { kind: "risk_disclosure", text: "", evidence: ["agent_reads_aloud"] }) {
  const number = Object.assign(document.createElement("td"), { className: "number" });
  const text = control(Object.assign(document.createElement("textarea"), { value: step.text, rows: 2 }), "text", t("admin.step_text"));
  const evidence = document.createElement("td");
  for (const v of EVIDENCE) {
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: v, checked: step.evidence.includes(v) });
    box.dataset.evidence = v;
    const label = document.createElement("label");
    label.className = "evidence";
    label.append(box, ` ${t(`admin.ev_${v}`)}`);
    evidence.append(label);
  }
  return editableRow("step", [number, td(select("kind", STEP_KINDS.map((k) => [k, t(`admin.kind_${k}`)]), step.kind, t("admin.step_kind"))), td(text), evidence], numberSteps);
}
const numberSteps = () => $("script-steps").querySelectorAll("tr.step .number").forEach((number, i) => { number.textContent = i + 1; });
function showScript(s) {
  $("script-id").value = s?.script_id ?? "";
  $("script-id").disabled = Boolean(s);
  $("script-title").value = s?.title ?? "";
  $("script-steps").replaceChildren(...(s ? s.steps : [undefined]).map(stepRow));
  numberSteps();
}
async function loadScripts(pick) {
  scripts = (await api("GET", "/api/dual-scripts").catch(show)) ?? [];
  $("script-pick").replaceChildren(Object.assign(document.createElement("option"), { value: "", textContent: t("admin.new_script") }),
    ...scripts.map((s) => Object.assign(document.createElement("option"), { value: s.script_id, textContent: `${s.title} (${s.script_id}, v${s.version})` })));
  $("script-pick").value = pick ?? scripts[0]?.script_id ?? "";
  showScript(scripts.find((s) => s.script_id === $("script-pick").value));
}
$("script-pick").onchange = () => { said("script-said", null, ""); showScript(scripts.find((s) => s.script_id === $("script-pick").value)); };
$("step-add").onclick = () => { $("script-steps").append(stepRow()); numberSteps(); };
$("script-save").onclick = () => {
  const id = $("script-id").value.trim();
  if (!id) return said("script-said", new Error(t("admin.script_needs_id")));
  const steps = [...$("script-steps").querySelectorAll("tr.step")].map((tr) => ({
    kind: tr.querySelector("[data-field=kind]").value,
    text: tr.querySelector("[data-field=text]").value.trim(),
    evidence: [...tr.querySelectorAll("[data-evidence]:checked")].map((b) => b.value),
  }));
  api("PUT", `/api/admin/dual-scripts/${encodeURIComponent(id)}`, { title: $("script-title").value.trim(), steps })
    .then((s) => loadScripts(s.script_id).then(() => said("script-said", null, t("admin.saved_version", { n: s.version }))), (e) => said("script-said", e));
};

async function loadUsers() {
  const users = await api("GET", "/api/admin/users").catch(show);
  $("users").replaceChildren(...(users || []).map((u) => {
    const tr = document.createElement("tr");
    tr.append(cell(u.login), cell(t(`common.role_${u.role}`)), cell(u.display_name));
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
    .then((r) => { show(); $("imported").textContent = t("admin.imported", { n: r.imported }); }, show);
};

async function search(ev) {
  ev?.preventDefault();
  const q = new URLSearchParams({ limit: "200" });
  if ($("since").value) q.set("since", fromLocalTime($("since").value));
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
    tr.append(cell(localTime(r.recorded_at)), cell(`${r.script_id} v${r.script_version}`), cell(r.steps), cell(`…${r.session_id.slice(-6)}`));
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
  $("review-title").textContent = t("admin.review_title", { title: view.script?.title ?? "", version: view.script?.version ?? "", id: id.slice(-6) });
  const composite = list.find((r) => r.composite)?.composite;
  const video = $("review-video");
  const src = composite?.url ?? "";
  if (video.dataset.src !== src) {
    video.dataset.src = src;
    if (src) links(token, [src]).then(([u]) => { video.src = u; }, show);
    else video.removeAttribute("src");
  }
  // A refusal shows beside the buttons that asked; success redraws (and clears it).
  const post = (path, body, status) => api("POST", `/api/sessions/${id}/${path}`, body).then(() => review(id), (e) => {
    status.textContent = String(e.message || e);
    status.className = "error-inline";
    throw e;
  });
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
    if (st.review) verdict.append(`${t(st.review[0] ? "admin.passed" : "admin.step_failed")}${st.review[1] ? `: ${st.review[1]}` : ""} `);
    if (!view.verdict && st.outcome) {
      const comment = Object.assign(document.createElement("input"), { placeholder: t("admin.comment"), className: "comment" });
      const pass = Object.assign(document.createElement("button"), { className: "pass", type: "button", textContent: t("admin.pass") });
      const fail = Object.assign(document.createElement("button"), { className: "secondary fail", type: "button", textContent: t("admin.fail") });
      const status = Object.assign(document.createElement("span"), { className: "step-said" });
      status.setAttribute("role", "status");
      pass.onclick = () => post("review/steps", { step_index: st.index, passed: true, comment: comment.value || undefined }, status).catch(() => {});
      fail.onclick = () => post("review/steps", { step_index: st.index, passed: false, comment: comment.value || undefined }, status).catch(() => {});
      verdict.append(comment, pass, fail, status);
    }
    tr.append(at, cell(`${st.index + 1}. ${t(`admin.kind_${st.kind}`)}: ${st.text}`), cell(st.outcome ? t(st.outcome === "failed" ? "admin.step_failed_outcome" : `admin.step_${st.outcome}`) : t("admin.not_done")), verdict);
    return tr;
  }));
  $("review-verdict").textContent = view.verdict ? t(view.verdict[0] ? "admin.passed" : "admin.failed") : "";
  links(token, [`/api/sessions/${id}/review/package`]).then(([u]) => { $("review-package").href = u; }, show);
  for (const [button, passed] of [["verdict-pass", true], ["verdict-fail", false]]) {
    $(button).disabled = Boolean(view.verdict);
    $(button).onclick = () => post("review", { passed, comment: $("verdict-comment").value || undefined }, $("verdict-said")).then(() => { $("verdict-said").textContent = ""; reviews(); }, () => {});
  }
}

async function recordings(id) {
  const list = await api("GET", `/api/sessions/${id}/recordings`).catch(() => []);
  $("recordings").replaceChildren(...recordingPlayers(list, token));
}
// Last, once everything above is defined: signed in before this page
// loaded (its language was switched).
const before = signedInBefore();
if (before) enter(before.answer);
