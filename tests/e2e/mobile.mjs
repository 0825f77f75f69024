// The agent's workbench on a phone (issue 30, item 5), in headless Chromium
// at 390×844 against a running `witness serve` (BASE_URL): sign in, go
// online, accept an offer, chat, send an image, start and hold a video call
// with the camera, end and wrap up — every step with nothing wider than the
// screen (axe-core's check also fails a page wider than its window), and a
// screenshot of each. The customer is on a phone too.
// Prints {"ok":true} on success. Driven by tests/browser.rs.
import { accessible, launchWithMedia, seen, snap, text } from "./pages.mjs";

const timeout = 20_000;
const browser = await launchWithMedia();
const expect = seen(timeout);
const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };
const zh = (key, values) => text("zh-CN", key, values);
// An 8×8 PNG: a picture of the customer's bill, from the agent.
const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII=", "base64");
try {
  const agent = await (await browser.newContext(phone)).newPage();
  await agent.goto(`${process.env.BASE_URL}/agent?lang=zh-CN`);
  await accessible(agent, "mobile workbench sign-in");
  // A mistyped password: said under the form, in Chinese (it was an alert()
  // dialog, which in-app browsers may block), and gone on the next try.
  await agent.fill("#password", "not-the-password");
  await agent.click("#sign-in");
  await expect(agent.locator("#login-error[role=alert]", { hasText: zh("error.bad_login") }), "the wrong password said under the form");
  await accessible(agent, "mobile workbench wrong password");
  await agent.fill("#password", process.env.AGENT_PASSWORD);
  await agent.click("#sign-in");
  await expect(agent.locator("#agents", { hasText: zh("agent.agents_online", { n: 1 }) }), "the agent online");
  await accessible(agent, "mobile workbench signed in");

  const customer = await (await browser.newContext(phone)).newPage();
  await customer.goto(`${process.env.BASE_URL}/?tenant=demo&lang=zh-CN`);
  await customer.click("#human");
  await agent.click(`#offers button:has-text('${zh("agent.accept")}')`, { timeout });
  await expect(customer.locator(".note", { hasText: zh("customer.agent_joined") }), "the agent joined");
  await accessible(agent, "mobile workbench with a session");

  // Chat both ways, and an image from the agent.
  await customer.fill("#text", "我想查询账单");
  await customer.click("#send");
  await expect(agent.locator(".msg.customer", { hasText: "我想查询账单" }), "the customer's message on the phone workbench");
  await agent.fill("#text", "好的，请稍等");
  await agent.click("#send");
  await expect(customer.locator(".msg.agent", { hasText: "请稍等" }), "the agent's reply");
  await agent.setInputFiles("#file", { name: "bill.png", mimeType: "image/png", buffer: png });
  await expect(customer.locator(".msg.agent img.thumb"), "the agent's image at the customer");

  // A video call from the workbench, with the camera.
  await agent.click("#call-video");
  await expect(agent.locator("#hang-up"), "the call's controls on the phone");
  await agent.waitForFunction(() => [...document.querySelectorAll("#remote video")].some((v) => v.videoWidth > 0), null, { timeout })
    .catch(() => { throw new Error("the phone workbench never showed the customer's video"); });
  await accessible(agent, "mobile workbench in a call");
  await accessible(customer, "mobile customer page in a call");
  await agent.click("#hang-up");
  await expect(customer.locator(".note", { hasText: zh("customer.call_ended") }), "the call ended");

  // End and wrap up.
  await agent.click("#end");
  await expect(customer.locator(".note", { hasText: zh("customer.ended") }), "the conversation ended at the customer");
  await agent.click("#wrap-up");
  await expect(agent.locator("#current", { hasText: zh("agent.no_session") }), "wrapped up: no session open");
  await accessible(agent, "mobile workbench after wrap-up");
  await snap(customer, "mobile-customer-after-the-end");
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
