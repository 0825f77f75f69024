// The customer page and the agent workbench in Chinese (issue 30), in
// headless Chromium against a running `witness serve` (BASE_URL): opened
// with no `?lang=`, the demo tenant's default (zh-CN) is used — by the
// workbench once the agent has signed in. The customer asks the bot, asks
// for a person, an agent joins and a video call starts, and at every step
// the pages show no English but names and data; axe-core finds nothing
// serious. The language switch then brings the same conversation up in
// English.
// Prints {"ok":true} on success. Driven by tests/browser.rs.
import { accessible, launchWithMedia, seen, text } from "./pages.mjs";

const timeout = 20_000;
const browser = await launchWithMedia();
const expect = seen(timeout);
const zh = (key, values) => text("zh-CN", key, values);
const en = (key, values) => text("en", key, values);

// Words of Latin letters the page shows (text, placeholders, labels,
// titles), but those in `allowed`: names and data.
async function english(page, allowed) {
  const shown = await page.evaluate(() => {
    const visible = (el) => el.offsetParent !== null || el.tagName === "BODY";
    const out = [document.body.innerText, document.title];
    for (const el of document.querySelectorAll("[placeholder], [aria-label], [title], [alt]")) {
      if (visible(el)) out.push(el.getAttribute("placeholder"), el.getAttribute("aria-label"), el.getAttribute("title"), el.getAttribute("alt"));
    }
    // Code to copy (the widget's tag) is data.
    let text = out.filter(Boolean).join("\n");
    for (const code of document.querySelectorAll("code")) text = text.replaceAll(code.innerText, " ");
    return text;
  });
  // Ids and addresses are data: short session ids (`…01a2ce`), whole ones, URLs.
  const text = shown.replace(/…[0-9a-f]{6}\b/g, " ").replace(/\b[0-9a-f]{8}-[0-9a-f-]{27}\b/g, " ")
    .replace(/\b[a-z]+:\/\/[^\s，。）]+/g, " ");
  return [...new Set(text.match(/[A-Za-z][A-Za-z']+/g) ?? [])].filter((w) => !allowed.includes(w));
}
async function noEnglish(page, what, allowed = []) {
  const left = await english(page, ["English", ...allowed]);
  if (left.length) throw new Error(`English left on the zh-CN ${what}: ${left.join(", ")}`);
}

try {
  // The workbench opened in an English browser: after sign-in it follows
  // the tenant's language, zh-CN, and stays signed in.
  const agent = await (await browser.newContext({ locale: "en-US" })).newPage();
  await agent.goto(`${process.env.BASE_URL}/agent`);
  if ((await agent.evaluate(() => document.documentElement.lang)) !== "en") throw new Error("the sign-in page does not follow the browser's English");
  await agent.fill("#password", process.env.AGENT_PASSWORD);
  await agent.click("#sign-in");
  await agent.waitForFunction(() => document.documentElement.lang === "zh-CN", null, { timeout });
  await expect(agent.locator("#agents", { hasText: zh("agent.agents_online", { n: 1 }) }), "the agent online, on a Chinese workbench");
  await noEnglish(agent, "workbench signed in", ["Demo", "Agent", "cards", "general"]);
  await accessible(agent, "zh workbench signed in");

  const customer = await (await browser.newContext({ viewport: { width: 390, height: 760 } })).newPage();
  await customer.goto(`${process.env.BASE_URL}/?tenant=demo`);
  const lang = await customer.evaluate(() => document.documentElement.lang);
  if (lang !== "zh-CN") throw new Error(`the demo tenant's page is in ${lang}, not zh-CN`);
  await expect(customer.locator("h1", { hasText: zh("customer.title") }), "the Chinese title");
  await noEnglish(customer, "customer page on arrival");
  await accessible(customer, "zh customer page on arrival");

  // The bot, not sure, says so in Chinese.
  await customer.fill("#text", "明天会下雨吗？");
  await customer.click("#send");
  await expect(customer.locator(".msg.bot", { hasText: zh("server.bot_not_sure").slice(0, 10) }), "the bot's Chinese answer");
  // The Chinese FAQ answers a Chinese question (jieba segments it).
  await customer.fill("#text", "我的银行卡丢了，怎么挂失？");
  await customer.click("#send");
  await expect(customer.locator(".msg.bot", { hasText: "临时挂失" }), "the bot's answer from the Chinese FAQ");
  await customer.click("#human");
  await agent.click(`#offers button:has-text('${zh("agent.accept")}')`, { timeout });
  await expect(customer.locator(".note", { hasText: zh("customer.agent_joined") }), "the agent joined, in Chinese");
  await expect(customer.locator(".note", { hasText: zh("customer.serving", { name: "Demo Agent", number: "agent" }) }), "who serves, in Chinese");
  await noEnglish(customer, "customer page with an agent", ["Demo", "Agent", "agent", "App"]);

  // A video call: the call's buttons and notices in Chinese.
  await customer.click("#call-video");
  await expect(customer.locator(".note", { hasText: zh("customer.video_call_started") }), "the call started, in Chinese");
  await expect(customer.locator("#hang-up", { hasText: zh("call.hang_up") }), "the hang-up button in Chinese");
  await noEnglish(customer, "customer page in a call", ["Demo", "Agent", "agent", "App"]);
  await accessible(customer, "zh customer page in a call");
  // The workbench in the call: names and data only (the group, the
  // channel, the session's state are data).
  await expect(agent.locator("#hang-up", { hasText: zh("call.hang_up") }), "the workbench's call in Chinese");
  await noEnglish(agent, "workbench in a call", ["Demo", "Agent", "cards", "general", "web", "h5", "App"]);
  await accessible(agent, "zh workbench in a call");
  await customer.click("#hang-up");
  await expect(customer.locator(".note", { hasText: zh("customer.call_ended") }), "the call ended, in Chinese");

  // The switch: the same conversation, in English.
  await customer.selectOption("#lang", "en");
  await customer.waitForFunction(() => document.documentElement.lang === "en", null, { timeout });
  await expect(customer.locator("h1", { hasText: en("customer.title") }), "the English title");
  await expect(customer.locator(".note", { hasText: en("customer.agent_joined") }), "the conversation kept, in English");
  await expect(customer.locator(".msg.customer", { hasText: "明天会下雨吗" }), "the customer's own words kept");
  const error = (await customer.locator("#error").innerText()).trim();
  if (error) throw new Error(`an error after the switch: ${error}`);
  await accessible(customer, "en customer page after the switch");
  // The supervisor's board in Chinese, and a session's timeline on it.
  const board = await (await browser.newContext({ locale: "en-US" })).newPage();
  await board.goto(`${process.env.BASE_URL}/supervisor`);
  await board.fill("#password", process.env.SUPERVISOR_PASSWORD);
  await board.click("#sign-in");
  await board.waitForFunction(() => document.documentElement.lang === "zh-CN", null, { timeout });
  await expect(board.locator("#status", { hasText: zh("supervisor.live") }), "the board live, in Chinese");
  // Times as Chinese software writes them (GB/T 7408), in the tenant's zone.
  await expect(board.locator("#range", { hasText: /^\d{4}-\d{2}-\d{2} \d{2}:\d{2} – \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\+08:00$/ }), "the day's range in the Chinese way");
  await noEnglish(board, "supervisor board", ["Demo", "Agent", "agent", "Supervisor", "cards", "general", "web", "h5", "UTC"]);
  await accessible(board, "zh supervisor board");

  // The admin console in Chinese, every editor on it.
  const console_ = await (await browser.newContext({ locale: "en-US" })).newPage();
  await console_.goto(`${process.env.BASE_URL}/admin`);
  await console_.fill("#password", process.env.ADMIN_PASSWORD);
  await console_.click("#sign-in");
  await console_.waitForFunction(() => document.documentElement.lang === "zh-CN", null, { timeout });
  await expect(console_.locator("#users tr"), "the users listed");
  await expect(console_.locator("#retention tr"), "the retention classes listed");
  // Names and logins of the demo's users, ids (groups, a sample script id),
  // the formats' own names.
  await noEnglish(console_, "admin console", ["Demo", "Agent", "Supervisor", "Compliance", "Officer", "Admin", "agent", "supervisor", "compliance", "admin",
    "UTC", "Markdown", "JSON", "question", "answer", "cards", "general", "wealth", "product"]);
  await accessible(console_, "zh admin console");

  // The workbench switched to English: still signed in, nothing lost.
  await agent.selectOption("#lang", "en");
  await agent.waitForFunction(() => document.documentElement.lang === "en", null, { timeout });
  await expect(agent.locator("#agents", { hasText: en("agent.agents_online", { n: 1 }) }), "the workbench still signed in, in English");
  if (await agent.locator("#login").isVisible()) throw new Error("switching the language signed the agent out");
  await expect(agent.locator("#mine li.session.active"), "the agent's session still listed and open");
  await expect(agent.locator(".msg.customer", { hasText: "明天会下雨吗" }), "its conversation shown again");
  await accessible(agent, "en workbench after the switch");
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
