import { call, liveSocket, localClock, localDay, localTime, signIn, signOutWith, sessionRows, showTimeline, useZone, zoneLabel, t, followTenantLanguage, signedInBefore } from "/web/common.js";
// Live queues and agents, a day's KPIs and charts (GET /api/dashboard, read
// again whenever the WebSocket feed brings an event, with the QA queue), and drill-down: an
// hour's bar lists its sessions, a session opens its timeline and its QA
// (the tenant's rules' findings, and the form to score it with).
const $ = (id) => document.getElementById(id);
let token, socket, watchSocket;
const api = (method, path, body) => call(token, method, path, body);
const show = (e) => ($("error").textContent = e ? String(e.message || e) : "");
const cell = (text) => Object.assign(document.createElement("td"), { textContent: text ?? "" });
// Days run midnight to midnight in the tenant's zone.
let zone = useZone();
const today = () => localDay(new Date().toISOString());
const percent = (x) => (x == null ? "–" : `${(x * 100).toFixed(1)} %`);
const seconds = (x) => (x == null ? "–" : t("common.seconds_short", { n: Math.round(x) }));
const short = (id) => `…${id.slice(-6)}`;
const presenceText = (p) => (["online", "away", "offline"].includes(p) ? t(`supervisor.presence_${p}`) : p);
let kpis, hours, channels, ratings;
// The tenant's groups (GET /api/groups), for moving a waiting session.
let groups = [];

$("login").onsubmit = async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const answer = await signIn($("tenant").value, $("login-name").value, $("password").value)
    .catch((e) => { $("login-error").textContent = e.message; });
  if (answer) enter(answer);
};
// Signed in: the board, in the tenant's language unless one was chosen.
async function enter(answer) {
  if (followTenantLanguage(answer)) return;
  token = answer.token;
  zone = useZone(answer.utc_offset_minutes);
  watchSocket = signOutWith(token, () => socket);
  $("me").textContent = `${answer.display_name} (${t(`common.role_${answer.role}`)})`;
  $("login").classList.add("hidden");
  $("board").classList.remove("hidden");
  $("day").value = today();
  charts();
  await refresh();
  connect();
  // Waiting times grow without events.
  setInterval(refresh, 15_000);
}
$("day").onchange = () => refresh();
$("today").onclick = () => { $("day").value = today(); refresh(); };

function chart(id, type, label, onHour) {
  return new Chart($(id), {
    type,
    data: { labels: [], datasets: [{ label, data: [], backgroundColor: type === "doughnut" ? ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2"] : "#2563eb" }] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      plugins: { title: { display: true, text: label }, legend: { display: type === "doughnut" } },
      onClick: onHour && ((_, elements) => elements.length && onHour(elements[0].index)),
    },
  });
}

function charts() {
  hours = chart("chart-hours", "bar", t("supervisor.chart_hours"), drillHour);
  hours.data.labels = [...Array(24).keys()].map((h) => String(h).padStart(2, "0"));
  channels = chart("chart-channels", "doughnut", t("supervisor.chart_channels_label"));
  ratings = chart("chart-satisfaction", "bar", t("supervisor.chart_ratings_label"));
  ratings.data.labels = ["1", "2", "3", "4", "5"];
}

let running = null, again = false;
// Reads start at most this often, however busy the feed: a busy floor sends
// many events a second, and every open board would otherwise read on each.
const MIN_INTERVAL_MS = 1000;
// One dashboard read at a time; events that arrive meanwhile ask for one more.
async function refresh() {
  if (running) { again = true; return running; }
  running = (async () => {
    do {
      again = false;
      const started = Date.now();
      const [board, g] = await Promise.all([api("GET", `/api/dashboard?day=${$("day").value}&offset=${zone}`), api("GET", "/api/groups")]).catch((e) => (show(e), []));
      if (board) { show(); groups = g.groups; render(board); }
      await qaQueue();
      if (again) await new Promise((r) => setTimeout(r, Math.max(0, MIN_INTERVAL_MS - (Date.now() - started))));
    } while (again);
    running = null;
  })();
  return running;
}

function render({ kpis: k, queue }) {
  kpis = k;
  $("range").textContent = `${localTime(k.since, { seconds: false })} – ${localTime(k.until, { seconds: false })} ${zoneLabel()}`;
  $("kpi-waiting").textContent = queue.waiting.length;
  $("kpi-online").textContent = queue.agents.filter((a) => a.presence === "online").length;
  $("kpi-sessions").textContent = k.sessions;
  $("kpi-open").textContent = k.open;
  $("kpi-containment").textContent = percent(k.bot_containment);
  $("kpi-transfer").textContent = percent(k.transfer_rate);
  $("kpi-abandonment").textContent = percent(k.abandonment_rate);
  $("kpi-wait-p50").textContent = seconds(k.wait_p50_secs);
  $("kpi-wait-p90").textContent = seconds(k.wait_p90_secs);
  $("kpi-handle").textContent = seconds(k.handle_avg_secs);
  $("kpi-satisfaction").textContent = k.satisfaction_avg == null ? "–" : t("common.out_of_5", { n: k.satisfaction_avg.toFixed(2) });
  $("kpi-ratings").textContent = k.ratings;
  hours.data.datasets[0].data = k.by_hour;
  channels.data.labels = k.by_channel.map(([name]) => name);
  channels.data.datasets[0].data = k.by_channel.map(([, n]) => n);
  ratings.data.datasets[0].data = k.satisfaction;
  for (const c of [hours, channels, ratings]) c.update();
  const now = Date.now();
  // Not while the supervisor is choosing in it: a redraw would undo the choice.
  if (!$("waiting").contains(document.activeElement)) $("waiting").replaceChildren(...queue.waiting.map((w) => waitingRow(w, queue.agents, now)));
  $("agents").replaceChildren(...queue.agents.map((a) => {
    const tr = document.createElement("tr");
    tr.dataset.agent = a.agent_id;
    const presence = cell(presenceText(a.presence));
    presence.className = `presence-${a.presence}`;
    tr.append(cell(a.name ?? short(a.agent_id)), presence, cell(`${a.load} / ${a.capacity}`), cell(a.skill_groups.join(", ")));
    return tr;
  }));
}

// A waiting session: open its timeline, give it to an agent who is not
// offline, or move it to another group's queue.
function waitingRow(w, agents, now) {
  const tr = document.createElement("tr");
  tr.className = "waiting";
  tr.dataset.session = w.session_id;
  tr.append(cell(short(w.session_id)), cell(w.group), cell(w.priority), cell(seconds((now - Date.parse(w.queued_at)) / 1000)));
  tr.onclick = () => timeline(w.session_id);
  const actions = document.createElement("td");
  actions.onclick = (e) => e.stopPropagation();
  const agent = Object.assign(document.createElement("select"), { className: "assign-to", ariaLabel: t("supervisor.agent_label") });
  agent.append(...agents.filter((a) => a.presence !== "offline").map((a) => Object.assign(document.createElement("option"), { value: a.agent_id, textContent: `${a.name ?? short(a.agent_id)} (${presenceText(a.presence)}, ${a.load}/${a.capacity})` })));
  const assign = Object.assign(document.createElement("button"), { className: "secondary assign", type: "button", textContent: t("supervisor.assign"), disabled: !agent.options.length });
  assign.onclick = () => api("POST", `/api/sessions/${w.session_id}/assign`, { agent_id: agent.value }).then(refresh, show);
  const group = Object.assign(document.createElement("select"), { className: "move-to", ariaLabel: t("supervisor.move_label") });
  group.append(...groups.filter((g) => g.name !== w.group).map((g) => Object.assign(document.createElement("option"), { value: g.name, textContent: t("supervisor.group_online", { label: g.label, n: g.online }) })));
  const move = Object.assign(document.createElement("button"), { className: "secondary move", type: "button", textContent: t("supervisor.move"), disabled: !group.options.length });
  move.onclick = () => api("POST", `/api/sessions/${w.session_id}/requeue`, { group: group.value }).then(refresh, show);
  actions.append(agent, assign, group, move);
  tr.append(actions);
  return tr;
}

function connect() {
  socket = liveSocket(token);
  watchSocket();
  socket.addEventListener("ready", () => { $("status").textContent = t("supervisor.live"); $("status").className = "on"; refresh(); });
  socket.onmessage = (m) => {
    const frame = JSON.parse(m.data);
    if (frame.type === "event" || frame.type === "lagged") refresh();
  };
  socket.onclose = () => { $("status").textContent = t("supervisor.reconnecting"); $("status").className = ""; setTimeout(connect, 1000); };
}

// The sessions that started in the clicked hour (local), newest first.
async function drillHour(hour) {
  const since = new Date(Date.parse(kpis.since) + hour * 3_600_000);
  const until = new Date(since.getTime() + 3_600_000);
  const q = new URLSearchParams({ since: since.toISOString(), until: until.toISOString(), limit: "1000" });
  const rows = await api("GET", `/api/sessions?${q}`).catch(show);
  if (!rows) return;
  $("drill-card").classList.remove("hidden");
  const from = localTime(since.toISOString(), { seconds: false }), to = localClock(until.toISOString()).slice(0, 5);
  $("drill-title").textContent = t("supervisor.drill_title", { n: rows.length, from, to });
  $("drill").replaceChildren(...sessionRows(rows, timeline));
  // The drill-down is below the charts: bring it into view.
  $("drill-card").scrollIntoView({ behavior: "smooth", block: "start" });
}

// Ended sessions an agent handled that nobody has evaluated yet.
async function qaQueue() {
  const rows = await api("GET", "/api/qa/queue").catch(() => null);
  $("qa-queue-card").classList.toggle("hidden", !rows);
  if (!rows) return;
  $("qa-queue-count").textContent = `${rows.length}${rows.length === 200 ? "+" : ""}`;
  $("qa-queue").replaceChildren(...sessionRows(rows.slice(0, 20), timeline));
}

async function timeline(id) {
  const view = await showTimeline(token, id, { card: $("timeline-card"), title: $("timeline-title"), rows: $("timeline") }).catch(show);
  if (view) $("timeline-card").scrollIntoView({ behavior: "smooth", block: "start" });
  if (view) await quality(id, ["in wrap-up", "closed"].includes(view.status));
}

// The session's QA: the rules' findings, the form to score it with (once
// it has `ended`), and its evaluations so far.
async function quality(id, ended) {
  const qa = await api("GET", `/api/sessions/${id}/qa`).catch(show);
  if (!qa) return;
  $("qa-card").classList.remove("hidden");
  $("findings").replaceChildren(...qa.findings.map((f) => {
    const tr = document.createElement("tr");
    tr.className = f.passed ? "passed" : "failed";
    tr.dataset.rule = f.rule;
    tr.append(cell(f.rule), cell(t(f.passed ? "supervisor.passed" : "supervisor.failed")), cell(f.detail));
    return tr;
  }));
  $("evaluate").classList.toggle("hidden", !qa.form.length || !ended);
  $("evaluated").textContent = "";
  $("criteria").replaceChildren(...qa.form.map((c) => {
    const tr = document.createElement("tr");
    const score = Object.assign(document.createElement("input"), { type: "number", min: 0, max: c.max_score, step: "any", required: true, name: c.name, className: "score" });
    const comment = Object.assign(document.createElement("input"), { name: `${c.name}-comment`, className: "comment" });
    const [scoreCell, commentCell] = [document.createElement("td"), document.createElement("td")];
    scoreCell.append(score, ` / ${c.max_score}`);
    commentCell.append(comment);
    tr.append(cell(c.name), cell(c.weight), scoreCell, commentCell);
    return tr;
  }));
  $("evaluate").onsubmit = async (ev) => {
    ev.preventDefault();
    const scores = qa.form.map((c) => ({
      criterion: c.name,
      score: Number(document.querySelector(`#criteria input[name="${c.name}"]`).value),
      comment: document.querySelector(`#criteria input[name="${c.name}-comment"]`).value || undefined,
    }));
    const done = await api("POST", `/api/sessions/${id}/qa`, { scores }).catch(show);
    if (done) { await quality(id, ended); $("evaluated").textContent = t("supervisor.saved", { total: done.total_score, max: done.max_score }); }
  };
  $("evaluations").replaceChildren(...qa.evaluations.map((e) => {
    const tr = document.createElement("tr");
    tr.className = "evaluation";
    tr.append(cell(`${e.total_score} / ${e.max_score} (${Math.round((e.total_score / e.max_score) * 100)} %)`), cell(e.criteria.map((c) => `${c.criterion} ${c.score}`).join(", ")));
    return tr;
  }));
}
// Last, once everything above is defined: signed in before this page
// loaded (its language was switched).
const before = signedInBefore();
if (before) enter(before.answer);
