// Call controls customers expect (issue 30, item 6). The beauty filter
// (美颜): off while the tenant does not offer it (no button); offered, the
// customer turns it on in the call and the frames the agent receives
// change — brighter and smoother (less edge energy) — and back when it is
// turned off. The sound output (免提 / earpiece / headset): where the
// browser lets a page choose, the customer picks another output and the
// call's sound plays there. Screenshots in ARTIFACTS.
import { accessible, agentTakesCustomer, base, callStats, launchWithMedia, seen, snap, tokenOf } from "./pages.mjs";

const timeout = 20_000;
const expect = seen(timeout);
const browser = await launchWithMedia();
const admin = await tokenOf("admin");
const offer = (beauty_filter) => fetch(`${base}/api/admin/call-options`, {
  method: "PUT", headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
  body: JSON.stringify({ beauty_filter }),
}).then((r) => { if (!r.ok) throw new Error(`call options: ${r.status}`); });

// Mean luma and mean horizontal luma step of the customer's video as the
// agent's page shows it, over five frames 100 ms apart.
const look = (agent) => agent.evaluate(async () => {
  const video = document.querySelector("#remote video");
  const canvas = Object.assign(document.createElement("canvas"), { width: 160, height: 120 });
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let luma = 0, edges = 0;
  for (let i = 0; i < 5; i++) {
    ctx.drawImage(video, 0, 0, 160, 120);
    const d = ctx.getImageData(0, 0, 160, 120).data;
    const y = (j) => 0.299 * d[j] + 0.587 * d[j + 1] + 0.114 * d[j + 2];
    for (let p = 0; p < 160 * 120; p++) {
      luma += y(p * 4);
      if (p % 160) edges += Math.abs(y(p * 4) - y(p * 4 - 4));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { luma: luma / (5 * 160 * 120), edges: edges / (5 * 159 * 120) };
});
const decoding = (page, who) => callStats(page, `${who} decodes no video`, (s) => s.framesDecoded > 10, timeout);

try {
  await offer(false);
  const { agent, customer } = await agentTakesCustomer(browser, timeout);
  await customer.click("#call-video");
  await decoding(agent, "the agent");
  if (await customer.locator("#beauty").isVisible()) throw new Error("the beauty filter is offered by a tenant that does not");
  await customer.click("#hang-up");
  await expect(customer.locator(".note", { hasText: "Call ended" }), "the first call's end");

  // Offered: the next call has the button; on, the agent sees the change.
  await offer(true);
  await customer.click("#call-video");
  await decoding(agent, "the agent");
  await expect(customer.locator("#beauty[aria-pressed=false]"), "the beauty filter's button, off");
  await agent.waitForTimeout(1000);
  const plain = await look(agent);
  await snap(agent, "beauty-off-at-the-agent");
  await customer.click("#beauty");
  await expect(customer.locator("#beauty[aria-pressed=true]"), "the beauty filter on");
  await agent.waitForTimeout(1500);
  const filtered = await look(agent);
  await snap(agent, "beauty-on-at-the-agent");
  await accessible(customer, "beauty on at the customer");
  // The customer sees their camera as sent: the filtered picture.
  const selfView = await customer.evaluate(() => {
    const track = document.querySelector("#self-view").srcObject?.getVideoTracks()[0];
    return { shown: !document.querySelector("#self-view").classList.contains("hidden"), sent: track === window.witnessCall().senders.camera.track };
  });
  if (!selfView.shown || !selfView.sent) throw new Error(`the self view: ${JSON.stringify(selfView)}`);
  if (!(filtered.luma > plain.luma * 1.05)) throw new Error(`not brighter: ${JSON.stringify({ plain, filtered })}`);
  if (!(filtered.edges < plain.edges * 0.8)) throw new Error(`not smoother: ${JSON.stringify({ plain, filtered })}`);
  await customer.click("#beauty");
  await expect(customer.locator("#beauty[aria-pressed=false]"), "the beauty filter off again");
  await agent.waitForTimeout(1500);
  const again = await look(agent);
  if (!(again.edges > filtered.edges * 1.15 && again.luma < filtered.luma)) throw new Error(`not back: ${JSON.stringify({ plain, filtered, again })}`);

  // The sound output: another one chosen plays the call there.
  const speaker = customer.locator("#speaker");
  await expect(speaker, "the sound output choice");
  const outputs = await speaker.locator("option").evaluateAll((os) => os.map((o) => o.value));
  if (outputs.length < 2) throw new Error(`outputs: ${outputs}`);
  await speaker.selectOption(outputs[outputs.length - 1]);
  // Every element that plays sound plays it on the output chosen.
  await customer.waitForFunction((id) => {
    const sounding = [...document.querySelectorAll("#remote audio, #remote video")].filter((e) => e.srcObject?.getAudioTracks().length);
    return sounding.length > 0 && sounding.every((e) => e.sinkId === id);
  }, outputs[outputs.length - 1], { timeout })
    .catch(async () => { throw new Error(`the sound output was not chosen: ${await customer.evaluate(() => JSON.stringify({ sinks: [...document.querySelectorAll("#remote audio, #remote video")].map((e) => [e.tagName, e.sinkId]), error: document.getElementById("error").textContent }))}`); });
  console.log(JSON.stringify({ ok: true, plain, filtered, again, outputs: outputs.length }));
} finally {
  await browser.close();
}
