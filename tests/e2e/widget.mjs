// The widget on another web site (issue 30, item 3). A bank's site, served
// here on another origin (http://localhost:PORT; Witness is BASE_URL on
// 127.0.0.1), puts <script src=BASE/widget.js data-tenant=demo> on two
// pages. The tenant's admin lists that site. The customer opens 联系客服,
// asks for a person, the agent accepts; with the widget closed the agent's
// message shows as an unread badge; the customer goes to the site's other
// page and the conversation is still there (badge again for a message that
// arrives there); they chat, the agent starts a video call (the widget
// opens itself) and both decode the other's video. A site that is not
// listed gets no button, and a frame of the customer page it forces is
// refused (frame-ancestors). Screenshots in ARTIFACTS.
import { createServer } from "node:http";
import { accessible, agentOnline, base, callStats, launchWithMedia, seen, snap, text, tokenOf } from "./pages.mjs";

const timeout = 20_000;
const expect = seen(timeout);
const lang = "zh-CN";

// A site of two pages with the widget; `forced` also frames the customer
// page itself, as a site that is not listed might try.
function site(forced) {
  const page = (title, other) => `<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${title}</title></head>
<body style="font-family: sans-serif; margin: 2rem"><main><h1>${title}</h1><p>信用卡 · 贷款 · 理财</p>
<a href="${other}">${other === "/" ? "首页" : "理财产品"}</a>
${forced ? `<iframe id="forced" title="forced" src="${base}/?tenant=demo" width="300" height="200"></iframe>` : ""}
</main><script src="${base}/widget.js" data-tenant="demo" data-channel="web" async></script></body></html>`;
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path !== "/" && path !== "/products") { res.writeHead(404).end(); return; }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(path === "/" ? page("示例银行", "/products") : page("理财产品", "/"));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, url: `http://localhost:${server.address().port}` })));
}
const shop = await site(false);
const other = await site(true);

// The admin lists the shop's site (only).
const listed = await fetch(`${base}/api/admin/embed-origins`, {
  method: "PUT", headers: { "content-type": "application/json", authorization: `Bearer ${await tokenOf("admin")}` },
  body: JSON.stringify({ origins: [shop.url] }),
});
if (!listed.ok) throw new Error(`listing the site: ${listed.status} ${await listed.text()}`);

const browser = await launchWithMedia();
// The widget's frame on `page` (the customer page from BASE_URL), once it
// shows `selector` (a frame is listed before its page has loaded).
async function widgetFrame(page, selector) {
  for (const started = Date.now(); Date.now() - started < timeout; await page.waitForTimeout(100)) {
    const frame = page.frames().find((f) => f.url().startsWith(`${base}/?`));
    if (frame && await frame.locator(selector).count().catch(() => 0)) return frame;
  }
  throw new Error(`the widget's frame never showed ${selector}`);
}
const badge = (page) => page.locator("#witness-widget .badge");
try {
  const agent = await agentOnline(browser, timeout);

  const customer = await (await browser.newContext()).newPage();
  await customer.goto(`${shop.url}/`);
  const open = customer.locator("#witness-widget .launcher", { hasText: text(lang, "widget.open") });
  await expect(open, "the 联系客服 button on the bank's page");
  await accessible(customer, "widget on the site, closed");
  await open.click();
  await expect(customer.locator("#witness-widget .panel:not([hidden]) iframe"), "the widget open");
  let frame = await widgetFrame(customer, "#human:not([disabled])");
  await expect(frame.locator(".note", { hasText: text(lang, "customer.greeting") }), "the greeting in Chinese");
  await snap(customer, "widget-open");

  // A person: the agent accepts.
  await frame.click("#human");
  await agent.click("#offers button:has-text('Accept')", { timeout });
  await expect(frame.locator(".note", { hasText: text(lang, "customer.agent_joined") }), "the agent at the customer's");

  // Closed, the agent's message is a badge.
  await customer.click("#witness-widget .close");
  await agent.fill("#text", "您好，我是信用卡中心的客服。");
  await agent.click("#send");
  await expect(badge(customer).filter({ hasText: "1" }), "an unread badge for the agent's message");
  const label = await badge(customer).getAttribute("aria-label");
  if (label !== text(lang, "widget.unread", { n: 1 })) throw new Error(`the badge reads ${label}`);
  await snap(customer, "widget-unread");

  // Another page of the site: the same conversation, the badge counts anew.
  await customer.click("a:has-text('理财产品')");
  await customer.waitForURL(`${shop.url}/products`);
  await expect(customer.locator("#witness-widget .launcher"), "the widget on the site's second page");
  frame = await widgetFrame(customer, "#chat .msg.agent");
  await agent.fill("#text", "请问您想了解哪款理财产品？");
  await agent.click("#send");
  await expect(badge(customer).filter({ hasText: "1" }), "a badge for the message on the second page");
  await customer.click("#witness-widget .launcher");
  await expect(frame.locator(".msg.agent", { hasText: "信用卡中心" }), "the first message, kept across pages");
  await expect(frame.locator(".msg.agent", { hasText: "理财产品" }), "the second message");
  if (await badge(customer).isVisible()) throw new Error("the badge stays after opening");
  await frame.fill("#text", "稳健型的，谢谢。");
  await frame.click("#send");
  await expect(agent.locator(".msg", { hasText: "稳健型的" }), "the customer's reply at the agent's");

  // The agent starts a video call: the widget, closed, opens itself.
  await customer.click("#witness-widget .close");
  await agent.click("#call-video");
  await expect(customer.locator("#witness-widget .panel:not([hidden])"), "the widget opened for the call");
  const decoded = (f, who) => callStats(f, `${who} decodes no video`, (s) => s.framesDecoded > 10, timeout);
  await decoded(frame, "the customer in the widget");
  await decoded(agent.mainFrame(), "the agent");
  await snap(customer, "widget-video-call");
  await agent.click("#hang-up");
  await expect(frame.locator(".note", { hasText: text(lang, "customer.call_ended") }), "the call's end in the widget");

  // A site that is not listed: no button, and the forced frame is refused.
  const stranger = await (await browser.newContext()).newPage();
  const warned = stranger.waitForEvent("console", { predicate: (m) => m.text().includes("Witness: no customer service here"), timeout });
  await stranger.goto(`${other.url}/`);
  await warned;
  if (await stranger.locator("#witness-widget").count()) throw new Error("a site that is not listed shows the widget");
  const forced = stranger.frames().find((f) => f !== stranger.mainFrame());
  if (!forced) throw new Error("the forced frame is missing from the page");
  const inside = await forced.evaluate(() => document.querySelector("#chat") !== null).catch(() => false);
  if (inside || forced.url().startsWith(base)) throw new Error(`a site that is not listed framed the customer page (${forced.url()})`);
  await snap(stranger, "widget-not-listed");

  // On a phone the open widget is the whole screen, nothing cut off.
  const phone = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true })).newPage();
  await phone.goto(`${shop.url}/`);
  await phone.click("#witness-widget .launcher");
  const phoneFrame = await widgetFrame(phone, "#human:not([disabled])");
  const box = await phone.locator("#witness-widget .panel").boundingBox();
  if (Math.round(box.width) !== 390 || Math.round(box.height) !== 844) throw new Error(`the phone's widget is ${JSON.stringify(box)}`);
  const overflow = await phoneFrame.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  if (overflow > 0) throw new Error(`the customer page in the phone's widget is ${overflow} px too wide`);
  await snap(phone, "widget-phone");
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
  shop.server.close();
  other.server.close();
}
