// The admin console's settings in headless Chromium (issue 28, item 11)
// against a running `witness serve` (BASE_URL) with its demo logins: the
// tenant's time zone (every time on the page follows it, labelled), retention,
// the QA form and rules, and a dual-recording (双录) script — each refused
// with its reason beside its button, writing nothing, then saved, the
// error cleared, and still there after a reload. Screenshots go to
// ARTIFACTS (pages.mjs `snap`). Exits non-zero on the first failed expectation. Driven by
// tests/browser.rs.
import { chromium } from "playwright-core";
import { accessible, base } from "./pages.mjs";

const timeout = 20_000;
const fail = (what) => { throw new Error(what); };
const seen = async (locator, what) => {
  await locator.first().waitFor({ timeout }).catch(() => fail(`not seen: ${what}`));
};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const admin = await fetch(`${base}/api/login`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ tenant: "demo", login: "admin", password: process.env.ADMIN_PASSWORD }),
}).then((r) => r.json());
// What the API says is set, to prove a refusal changed nothing.
const get = (path) => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${admin.token}` } }).then((r) => r.json());
const unchanged = async (path, before, what) => {
  if (JSON.stringify(await get(path)) !== JSON.stringify(before)) fail(`${what} changed ${path}`);
};

try {
  // A browser in New York: the page shows the tenant's zone, not the browser's.
  const page = await (await browser.newContext({ timezoneId: "America/New_York", viewport: { width: 1280, height: 1000 } })).newPage();
  const signIn = async () => {
    await page.goto(`${base}/admin?lang=en`);
    await page.fill("#password", process.env.ADMIN_PASSWORD);
    await page.click("#sign-in");
    await seen(page.locator("#users td", { hasText: "Demo Agent" }), "the admin console");
  };
  await signIn();
  const zones = () => page.locator(".zone").evaluateAll((els) => [...new Set(els.map((e) => e.textContent))]);
  if (JSON.stringify(await zones()) !== '["UTC+08:00"]') fail(`zone labels before: ${await zones()}`);
  const firstStarted = () => page.locator("#sessions tr").first().locator("td").first().textContent();
  // A session to show a time (the demo tenant starts empty of sessions).
  const post = (path, body, token) => fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) }).then((r) => r.json());
  const visitor = await post("/api/visitors", { tenant: "demo", channel: "web" });
  await post("/api/sessions", { business_type: "cards" }, visitor.token);
  await page.click("#search button");
  await seen(page.locator("#sessions tr"), "a session listed");
  const beijing = await firstStarted();
  // In English, a time reads day, month, year and a 24-hour clock (never 12/7).
  if (!/^\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}:\d{2}$/.test(beijing)) fail(`an English time reads ${beijing}`);

  // Time zone: Tokyo, an hour later on every time shown.
  await page.waitForSelector("#time-zone option[value='540']", { state: "attached", timeout }).catch(() => fail("UTC+09:00 not offered"));
  if ((await page.inputValue("#time-zone")) !== "480") fail("the zone select does not start at Beijing");
  await page.selectOption("#time-zone", "540");
  await page.click("#zone-save");
  await seen(page.locator("#zone-said.ok-inline", { hasText: "Saved" }), "the time zone saved");
  if (JSON.stringify(await zones()) !== '["UTC+09:00"]') fail(`zone labels after: ${await zones()}`);
  await page.waitForFunction((before) => {
    const td = document.querySelector("#sessions tr td");
    const at = (text) => Date.parse(`${text.replace(",", "")} UTC`);
    return td && at(td.textContent) - at(before) === 3_600_000;
  }, beijing, { timeout }).catch(async () => fail(`session start ${await firstStarted()} after the move, ${beijing} before`));

  // Web sites that may embed the widget: a host without a scheme refused
  // beside the button, nothing written; then two sites saved, as browsers
  // name them, and the tag to copy names this server and the tenant.
  let sites = await get("/api/settings");
  await page.fill("#embed-origins", "www.bank.example");
  await page.click("#embed-save");
  await seen(page.locator("#embed-said.error-inline", { hasText: "not a web site's origin" }), "a bad site refused beside the button");
  await unchanged("/api/settings", sites, "a refused list of sites");
  await page.fill("#embed-origins", "https://WWW.Bank.example/\nhttp://localhost:3000");
  await page.click("#embed-save");
  await seen(page.locator("#embed-said.ok-inline", { hasText: "Saved" }), "the sites saved");
  sites = await get("/api/settings");
  if (JSON.stringify(sites.embed_origins) !== '["https://www.bank.example","http://localhost:3000"]') fail(`sites stored: ${sites.embed_origins}`);
  if ((await page.inputValue("#embed-origins")) !== "https://www.bank.example\nhttp://localhost:3000") fail("the list is not shown as stored");
  if (!(await page.textContent("#embed-snippet")).includes(`${base}/widget.js" data-tenant="demo"`)) fail("the tag to copy");

  // Retention: 0 days refused beside its button, nothing written; 30 saved.
  const recordings = page.locator("#retention tr", { hasText: "Recordings" });
  let before = await get("/api/admin/retention");
  await recordings.locator("input").fill("0");
  await recordings.locator("button").click();
  await seen(recordings.locator(".error-inline", { hasText: "1 to" }), "0 days refused beside the button");
  await unchanged("/api/admin/retention", before, "a refused retention");
  await recordings.locator("input").fill("30");
  await recordings.locator("button").click();
  await seen(recordings.locator(".ok-inline", { hasText: "Saved" }), "30 days saved, the error cleared");

  // The QA form: an unnamed criterion refused; then two saved.
  before = await get("/api/admin/qa-form");
  await page.click("#criterion-add");
  await page.click("#qa-form-save");
  await seen(page.locator("#qa-form-said.error-inline", { hasText: "criterion names" }), "an unnamed criterion refused");
  await unchanged("/api/admin/qa-form", before, "a refused QA form");
  await page.locator("#qa-form tr.criterion").last().locator("[data-field=name]").fill("问候语 greeting");
  await page.click("#criterion-add");
  const second = page.locator("#qa-form tr.criterion").last();
  await second.locator("[data-field=name]").fill("合规 compliance");
  await second.locator("[data-field=weight]").fill("2");
  await second.locator("[data-field=max_score]").fill("10");
  await page.click("#qa-form-save");
  await seen(page.locator("#qa-form-said.ok-inline", { hasText: "Saved" }), "the QA form saved");
  // The rules.
  await page.fill("#rule-greeting", "30");
  await page.fill("#rule-words", "不知道\n没办法");
  await page.click("#qa-rules-save");
  await seen(page.locator("#qa-rules-said.ok-inline", { hasText: "Saved" }), "the QA rules saved");

  // A dual-recording script: a step without evidence refused (named by
  // its number), then saved as version 1, edited into version 2.
  await page.selectOption("#script-pick", "");
  await page.fill("#script-id", "loan-sale");
  await page.fill("#script-title", "贷款销售 Loan sale");
  const step = (n) => page.locator("#script-steps tr.step").nth(n);
  await step(0).locator("[data-field=text]").fill("请出示您的身份证。");
  await step(0).locator("select").selectOption("identity_check");
  await page.click("#step-add");
  await step(1).locator("[data-field=text]").fill("本贷款年化利率 4.35%，逾期将产生罚息。");
  for (const box of await step(1).locator("[data-evidence]:checked").all()) await box.uncheck();
  before = await get("/api/dual-scripts");
  await page.click("#script-save");
  await seen(page.locator("#script-said.error-inline", { hasText: "step 2" }), "a step without evidence refused, by its number");
  await unchanged("/api/dual-scripts", before, "a refused script");
  await step(1).locator("[data-evidence=customer_speaks]").check();
  await page.click("#script-save");
  await seen(page.locator("#script-said.ok-inline", { hasText: "version 1" }), "the script saved as version 1");
  await step(1).locator("[data-field=text]").fill("本贷款年化利率 3.85%，逾期将产生罚息。");
  await page.click("#script-save");
  await seen(page.locator("#script-said.ok-inline", { hasText: "version 2" }), "the edit saved as version 2");
  await accessible(page, "the admin console with every editor");

  // After a reload, everything is as saved.
  await signIn();
  await seen(page.locator("#qa-form tr.criterion"), "the QA form after a reload");
  const names = await page.locator("#qa-form [data-field=name]").evaluateAll((els) => els.map((e) => e.value));
  if (JSON.stringify(names) !== JSON.stringify(["问候语 greeting", "合规 compliance"])) fail(`criteria after a reload: ${names}`);
  if ((await page.inputValue("#rule-greeting")) !== "30") fail("the greeting rule after a reload");
  if ((await page.inputValue("#time-zone")) !== "540") fail("the time zone after a reload");
  if ((await recordings.locator("input").inputValue()) !== "30") fail("the retention after a reload");
  await page.selectOption("#script-pick", "loan-sale");
  if ((await step(1).locator("[data-field=text]").inputValue()) !== "本贷款年化利率 3.85%，逾期将产生罚息。") fail("the script's latest version after a reload");
  if (!(await page.locator("#script-pick option:checked").textContent()).includes("v2")) fail("the script's version after a reload");
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
