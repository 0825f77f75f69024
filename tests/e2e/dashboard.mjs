// The supervisor dashboard in headless Chromium (a browser in Los Angeles;
// the page shows the tenant's zone, Beijing time, whatever the browser's)
// against a running `witness serve` (BASE_URL) whose store holds a seeded
// day (SEEDED: what `witness seed --sessions … --json` tallied).
//
// The numbers on the page are checked against two sources that do not go
// through the dashboard's code: the seeder's own tally, and figures computed
// here from the raw event log (GET /api/events). Then, live and without a
// reload: an agent signs in, a customer asks for a human, the agent accepts;
// each shows up on the board. Drill-down: an hour's bar lists its sessions,
// a session opens its timeline and its QA, scored through the page. Saves a
// screenshot to SCREENSHOT.
// Exits non-zero on the first failed expectation. Driven by tests/browser.rs.
import { chromium } from "playwright-core";
import { accessible } from "./pages.mjs";

const base = process.env.BASE_URL;
const seeded = JSON.parse(process.env.SEEDED);
const timeout = 20_000;
const seededAgents = Number(process.env.SEEDED_AGENTS);
const OFFSET_MIN = 8 * 60;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const fail = (what) => { throw new Error(what); };
const same = (actual, expected, what) => {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) fail(`${what}: page shows ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
};
const expectText = async (page, selector, text, what) => {
  await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent === t, [selector, text], { timeout })
    .catch(async () => fail(`${what}: ${selector} shows ${JSON.stringify(await page.textContent(selector))}, expected ${JSON.stringify(text)}`));
};
const nextDay = (day) => new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
const percent = (x) => `${(x * 100).toFixed(1)} %`;
const nearestRank = (sorted, p) => sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1];

try {
  const supervisor = await fetch(`${base}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ tenant: "demo", login: "supervisor", password: process.env.SUPERVISOR_PASSWORD }),
  }).then((r) => r.json());
  const get = (path) => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${supervisor.token}` } }).then((r) => r.json());

  // The seeded day, from the raw log: every session's start, channel, first
  // queueing and assignment, outcome and rating.
  const sessions = new Map();
  for (let from = ""; ;) {
    const page = await get(`/api/events?limit=1000&from=${from}`);
    for (const e of page.events) {
      if (!e.stream.startsWith("session-")) continue;
      const s = sessions.get(e.stream) ?? {};
      sessions.set(e.stream, s);
      const at = Date.parse(e.occurred_at);
      if (e.event_type === "SessionStarted") Object.assign(s, { started: at, channel: e.payload.channel });
      if (e.event_type === "SessionQueued") s.queued ??= at;
      if (e.event_type === "AgentAssigned") s.assigned ??= at;
      if (e.event_type === "SessionEnded") s.outcome = e.payload.reason;
      if (e.event_type === "SatisfactionRated") s.rating = e.payload.rating;
    }
    if (page.next === from) break;
    from = page.next;
  }
  const day = [...sessions.values()];
  if (day.length !== seeded.sessions) fail(`the log holds ${day.length} sessions, the seeder made ${seeded.sessions}`);
  const local = (t) => new Date(t + OFFSET_MIN * 60_000);
  const seedDay = local(Math.min(...day.map((s) => s.started))).toISOString().slice(0, 10);
  const byHour = Array(24).fill(0);
  for (const s of day) byHour[local(s.started).getUTCHours()] += 1;
  const transferred = day.filter((s) => s.queued !== undefined).length;
  const waits = day.filter((s) => s.assigned !== undefined && s.queued !== undefined).map((s) => (s.assigned - s.queued) / 1000).sort((a, b) => a - b);
  const rated = day.filter((s) => s.rating !== undefined);
  const expected = {
    sessions: String(seeded.sessions),
    open: "0",
    containment: percent(seeded.bot_resolved / seeded.sessions),
    transfer: percent(transferred / seeded.sessions),
    abandonment: percent(seeded.abandoned / transferred),
    waitP50: `${Math.round(nearestRank(waits, 50))} s`,
    waitP90: `${Math.round(nearestRank(waits, 90))} s`,
    satisfaction: `${(rated.reduce((a, s) => a + s.rating, 0) / rated.length).toFixed(2)} / 5`,
    ratings: String(seeded.ratings),
  };
  if (rated.length !== seeded.ratings) fail(`the log holds ${rated.length} ratings, the seeder made ${seeded.ratings}`);

  // The projector has the seeded day before the page is opened.
  for (let i = 0; ; i++) {
    const board = await get(`/api/dashboard?day=${seedDay}&offset=${OFFSET_MIN}`);
    if (board.kpis?.sessions === seeded.sessions) break;
    if (i > 200) fail(`the read model never reached the seeded day: ${JSON.stringify(board.kpis)}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  const context = await browser.newContext({ timezoneId: "America/Los_Angeles", viewport: { width: 1280, height: 1400 } });
  const board = await context.newPage();
  await board.goto(`${base}/supervisor?lang=en`);
  await board.fill("#password", process.env.SUPERVISOR_PASSWORD);
  await board.click("#sign-in");
  await expectText(board, "#status", "live", "the live feed");
  await board.fill("#day", seedDay);
  await board.dispatchEvent("#day", "change");
  const kpi = { sessions: "#kpi-sessions", open: "#kpi-open", containment: "#kpi-containment", transfer: "#kpi-transfer",
    abandonment: "#kpi-abandonment", waitP50: "#kpi-wait-p50", waitP90: "#kpi-wait-p90", satisfaction: "#kpi-satisfaction",
    ratings: "#kpi-ratings" };
  for (const [name, selector] of Object.entries(kpi)) await expectText(board, selector, expected[name], name);
  // The day runs midnight to midnight Beijing time, and says so (in English:
  // day, month, year, 24-hour clock).
  const english = (day) => new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", day: "numeric", month: "short", year: "numeric" }).format(new Date(`${day}T00:00:00Z`));
  await expectText(board, "#range", `${english(seedDay)}, 00:00 – ${english(nextDay(seedDay))}, 00:00 UTC+08:00`, "the day's range in the tenant's zone");
  same(await board.locator("label:has(#day) .zone").textContent(), "UTC+08:00", "the day picker's zone");
  const chart = (id) => board.evaluate((id) => Chart.getChart(id).data.datasets[0].data, id);
  same(await chart("chart-hours"), byHour, "sessions by local hour");
  const channels = {};
  for (const s of day) channels[s.channel] = (channels[s.channel] ?? 0) + 1;
  const shown = await board.evaluate(() => {
    const c = Chart.getChart("chart-channels");
    return Object.fromEntries(c.data.labels.map((l, i) => [l, c.data.datasets[0].data[i]]));
  });
  same(Object.fromEntries(Object.entries(shown).sort()), Object.fromEntries(Object.entries(channels).sort()), "sessions by channel");
  const ratingsShown = await chart("chart-satisfaction");
  same(ratingsShown.reduce((a, b) => a + b, 0), seeded.ratings, "ratings in the chart");
  // The seeded agents signed off at the end of their day.
  same(await board.locator("#agents tr").count(), seededAgents, "agents listed");
  await expectText(board, "#kpi-online", "0", "agents online before anyone signs in");
  await accessible(board, "the supervisor dashboard");

  // Drill-down: the busiest hour's bar lists its sessions; one opens its timeline.
  const busiest = byHour.indexOf(Math.max(...byHour));
  const point = await board.evaluate((i) => {
    const bar = Chart.getChart("chart-hours").getDatasetMeta(0).data[i];
    return { x: bar.x, y: (bar.y + bar.base) / 2 };
  }, busiest);
  const box = await board.locator("#chart-hours").boundingBox();
  await board.mouse.click(box.x + point.x, box.y + point.y);
  await board.waitForFunction((n) => document.querySelectorAll("#drill tr.session").length === n, byHour[busiest], { timeout })
    .catch(async () => fail(`drill-down of hour ${busiest}: ${await board.locator("#drill tr.session").count()} rows, expected ${byHour[busiest]}`));
  // The drill-down, below the charts, is brought into view.
  const inView = (selector) => board.waitForFunction((s) => {
    const r = document.querySelector(s).getBoundingClientRect();
    return r.top >= 0 && r.top < innerHeight;
  }, selector, { timeout: 5000 }).then(() => true, () => false);
  if (!(await inView("#drill-card"))) fail("the drill-down was not scrolled into view");
  await board.click("#drill tr.session");
  await board.locator("#timeline td", { hasText: "SessionStarted" }).first().waitFor({ timeout });
  if (!(await inView("#timeline-card"))) fail("the timeline was not scrolled into view");

  // QA: an admin sets a form and rules; a resolved session shows the rules'
  // findings (the seeded agent greets 5 s after taking the session but never
  // answers the customer's next message) and is scored through the page.
  const admin = await fetch(`${base}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ tenant: "demo", login: "admin", password: process.env.ADMIN_PASSWORD }),
  }).then((r) => r.json());
  const put = (path, body) => fetch(`${base}${path}`, {
    method: "PUT",
    headers: { "content-type": "application/json", authorization: `Bearer ${admin.token}` },
    body: JSON.stringify(body),
  }).then((r) => (r.ok ? r.json() : fail(`PUT ${path}: ${r.status}`)));
  await put("/api/admin/qa-form", { criteria: [{ name: "greeting", weight: 1, max_score: 5 }, { name: "accuracy", weight: 2, max_score: 10 }] });
  await put("/api/admin/qa-rules", { greeting_within_secs: 30, forbidden_words: ["guaranteed"], response_sla_secs: 60 });
  await board.click('#drill tr.session:has(td:text-is("resolved"))');
  const result = (rule) => board.locator(`#findings tr[data-rule="${rule}"] td:nth-child(2)`);
  await result("greeting").waitFor({ timeout });
  same(await result("greeting").textContent(), "passed", "the greeting rule");
  same(await result("forbidden_words").textContent(), "passed", "the forbidden-words rule");
  same(await result("response_time").textContent(), "FAILED", "the response-time rule");
  const queueCount = () => board.textContent("#qa-queue-count").then(Number);
  const waiting = await queueCount();
  same(waiting, seeded.sessions_assigned, "sessions an agent handled, none evaluated yet");
  await board.fill('#criteria input[name="greeting"]', "4");
  await board.fill('#criteria input[name="accuracy"]', "9");
  await board.click("#evaluate button");
  await expectText(board, "#evaluated", "saved: 22 / 25", "the evaluation");
  // Evaluated, it leaves the QA queue (pushed: the page re-reads it as events arrive).
  await expectText(board, "#qa-queue-count", String(waiting - 1), "the QA queue after the evaluation");
  await board.locator("#evaluations tr.evaluation").first().waitFor({ timeout });

  // Live, without a reload: the marker survives only if the page is not reloaded.
  await board.evaluate(() => { window.notReloaded = true; });
  const agent = await (await browser.newContext()).newPage();
  await agent.goto(`${base}/agent?lang=en`);
  await agent.fill("#password", process.env.AGENT_PASSWORD);
  await agent.click("#sign-in");
  await expectText(board, "#kpi-online", "1", "the agent online, pushed");
  await board.locator("#agents td.presence-online").first().waitFor({ timeout });
  // Agents by name, not id.
  await board.locator("#agents td", { hasText: "Demo Agent (agent)" }).first().waitFor({ timeout })
    .catch(() => fail("the agent is not named on the board"));

  const customer = await (await browser.newContext()).newPage();
  await customer.goto(`${base}/?tenant=demo&lang=en`);
  await customer.fill("#text", "Can I pay my Gold card bill in yen?");
  await customer.click("#send");
  await customer.locator(".msg.bot").first().waitFor({ timeout });
  await customer.click("#human");
  await expectText(board, "#kpi-waiting", "1", "the customer waiting, pushed");
  // Moved to another of the tenant's groups from a list, not typed.
  const moveTo = await board.locator("#waiting .move-to").evaluate((el) => ({ tag: el.tagName, options: el.options.length }));
  same(moveTo.tag, "SELECT", "the group to move a waiting session to");
  if (!moveTo.options && !(await board.locator("#waiting button.move").isDisabled())) fail("Move enabled with no group to move to");
  await board.click("#waiting tr.waiting");
  await board.locator("#timeline td", { hasText: "SessionQueued" }).first().waitFor({ timeout });
  // Today's figures count the live session, still open.
  await board.click("#today");
  await expectText(board, "#kpi-sessions", "1", "today's sessions");
  await expectText(board, "#kpi-open", "1", "today's open sessions");

  await agent.click("#offers button:has-text('Accept')", { timeout });
  await expectText(board, "#kpi-waiting", "0", "the queue emptied by the agent's accept");
  await board.waitForFunction(() => [...document.querySelectorAll("#agents td")].some((td) => td.textContent === "1 / 3"), null, { timeout });
  if (!(await board.evaluate(() => window.notReloaded))) fail("the page was reloaded");

  await board.fill("#day", seedDay);
  await board.dispatchEvent("#day", "change");
  await expectText(board, "#kpi-sessions", expected.sessions, "back to the seeded day");
  await board.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  console.log(JSON.stringify({ ok: true, day: seedDay, sessions: seeded.sessions, by_hour: byHour, waits: waits.length }));
} finally {
  await browser.close();
}

