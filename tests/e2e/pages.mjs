// What the call scripts share: Chromium with a fake camera and microphone,
// and an agent who signs in and takes a customer's request for a person.
import { chromium } from "playwright-core";

export const base = process.env.BASE_URL;

// Headless Chromium with fake media devices; `extra` adds flags.
export function launchWithMedia(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream", ...extra],
  });
}

// Waits until `locator` shows, or fails naming `what`.
export const seen = (timeout) => async (locator, what) => {
  await locator.first().waitFor({ timeout }).catch(() => { throw new Error(`not seen: ${what}`); });
};

// The catalogs (api/i18n/LANG.json): `text(lang, key, values)` is what a
// page in `lang` shows for `key`, so one walk checks either language.
import { readFileSync } from "node:fs";
const catalogs = Object.fromEntries(["zh-CN", "en"].map((lang) =>
  [lang, JSON.parse(readFileSync(new URL(`../../api/i18n/${lang}.json`, import.meta.url), "utf8"))]));
export function text(lang, key, values = {}) {
  const found = catalogs[lang]?.[key];
  if (found === undefined) throw new Error(`no ${key} in the ${lang} catalog`);
  return Object.entries(values).reduce((s, [name, value]) => s.replaceAll(`{${name}}`, value), found);
}

// The agent signs in (AGENT_PASSWORD) and goes online; a customer of the
// demo tenant asks for a person (on the page in `lang`, English unless
// said) and the agent accepts. Returns both pages. `customer` options go
// to the customer's browser context (a user agent), `customerInit` runs in
// their page before its scripts.
// The demo agent signed in on the workbench (in `lang`), online.
export async function agentOnline(browser, timeout, lang = "en") {
  const agent = await (await browser.newContext()).newPage();
  await agent.goto(`${base}/agent?lang=${lang}`);
  await agent.fill("#password", process.env.AGENT_PASSWORD);
  await agent.click("#sign-in");
  await seen(timeout)(agent.locator("#agents", { hasText: text(lang, "agent.agents_online", { n: 1 }) }), "the agent online");
  return agent;
}

// A token of the demo tenant's `login` (ADMIN_PASSWORD for `admin` …).
export async function tokenOf(login) {
  const answer = await fetch(`${base}/api/login`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ tenant: "demo", login, password: process.env[`${login.toUpperCase()}_PASSWORD`] }),
  }).then((r) => r.json());
  if (!answer.token) throw new Error(`${login} cannot sign in: ${JSON.stringify(answer)}`);
  return answer.token;
}

// With `ask`, the customer first asks the bot that and waits for its answer.
export async function agentTakesCustomer(browser, timeout, { customer: options = {}, customerInit, lang = "en", agentLang = "en", ask } = {}) {
  const expect = seen(timeout);
  const agent = await agentOnline(browser, timeout, agentLang);

  const context = await browser.newContext(options);
  if (customerInit) await context.addInitScript(customerInit);
  const customer = await context.newPage();
  await customer.goto(`${base}/?tenant=demo&lang=${lang}`);
  if (ask) {
    await customer.fill("#text", ask);
    await customer.click("#send:not([disabled])");
    await expect(customer.locator(".msg.bot"), "the bot's answer");
  }
  await customer.click("#human");
  await agent.click(`#offers button:has-text('${text(agentLang, "agent.accept")}')`, { timeout });
  await expect(customer.locator(".note", { hasText: text(lang, "customer.agent_joined") }), "the agent at the customer's");
  return { agent, customer };
}

// Polls the call statistics of `target` (a page or a frame in a call,
// `window.witnessCall().stats()`) until `ok(stats)` holds, and returns
// them; or throws naming `what`, with the last statistics seen.
export async function callStats(target, what, ok, timeout) {
  let stats;
  for (const started = Date.now(); Date.now() - started < timeout; await new Promise((r) => setTimeout(r, 250))) {
    stats = await target.evaluate(() => window.witnessCall()?.stats()).catch(() => null);
    if (stats && ok(stats)) return stats;
  }
  throw new Error(`${what}: last stats ${JSON.stringify(stats)}`);
}

// Saves a screenshot of `page` as ARTIFACTS/`name`.png (the test's
// artifacts: WITNESS_TEST_ARTIFACTS, or the server's temporary directory).
export async function snap(page, name) {
  if (process.env.ARTIFACTS) await page.screenshot({ path: `${process.env.ARTIFACTS}/${name}.png`, fullPage: true });
}

// axe-core's serious and critical findings on `page` (WCAG 2 A and AA),
// or throws naming each rule and where; also throws if the page is wider
// than its window (a table pushing the page sideways). The page as checked
// is saved (see `snap`). Run through the DevTools protocol, so the page's CSP (no inline
// script) does not stop it.
const axeSource = readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");
export async function accessible(page, what) {
  await snap(page, what.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, ""));
  await page.evaluate(axeSource);
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return r.violations.filter((v) => ["serious", "critical"].includes(v.impact))
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 4).map((n) => n.target.join(" ")).join(", ")}`);
  });
  if (found.length) throw new Error(`accessibility of ${what}:\n  ${found.join("\n  ")}`);
  // Wider than the window, once the layout has settled (charts size
  // themselves a frame or more after they draw, later on a loaded machine).
  const width = () => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  let overflow = await width();
  for (let waited = 0; overflow > 0 && waited < 3000; waited += 250) {
    await page.waitForTimeout(250);
    overflow = await width();
  }
  if (overflow > 0) {
    const widest = await page.evaluate(() => {
      const over = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth);
      const e = over.sort((a, b) => b.getBoundingClientRect().right - a.getBoundingClientRect().right)[0];
      return e ? `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ""}${e.className ? `.${String(e.className).split(" ").join(".")}` : ""}` : "?";
    });
    throw new Error(`${what} is ${overflow} px wider than its window (widest: ${widest})`);
  }
}
