// Face verification in a video call, through the pages: the customer's
// camera is a video of real faces (FACE_VIDEO, a y4m that tests/browser.rs
// makes from one man's photos, his head turning from one side to the
// other and back); the agent picks an ID photo (ID_PHOTO, another photo of him) and
// clicks "Verify face"; the customer's page asks them to turn their head;
// the workbench takes frames of the customer's video as it arrives through
// the SFU and shows the verdict. Then again with someone else's photo
// (OTHER_PHOTO). Prints {"ok":true,...} on success. Driven by tests/browser.rs.
import { agentTakesCustomer, callStats, launchWithMedia, seen } from "./pages.mjs";

const timeout = 30_000;

const browser = await launchWithMedia([`--use-file-for-fake-video-capture=${process.env.FACE_VIDEO}`]);
const expect = seen(timeout);

try {
  const { agent, customer } = await agentTakesCustomer(browser, timeout);
  await customer.click("#call-video");
  await expect(customer.locator(".note", { hasText: "Video call started" }), "the call at the customer's");
  await callStats(agent, "the agent never decoded the customer's video", (s) => s.framesDecoded > 30, timeout);

  const results = {};
  for (const [photo, expected] of [[process.env.ID_PHOTO, "match"], [process.env.OTHER_PHOTO, "no_match"]]) {
    await agent.setInputFiles("#face-photo", photo);
    await agent.click("#face-start");
    await expect(customer.locator("#face:not(.hidden)", { hasText: "turn your head" }), "the prompt on the customer's page");
    await expect(agent.locator("#face-result[data-decision]"), "the verdict on the workbench");
    const decision = await agent.getAttribute("#face-result", "data-decision");
    const text = await agent.textContent("#face-result");
    if (decision !== expected) throw new Error(`expected ${expected}, got ${decision}: ${text}`);
    await customer.locator("#face").waitFor({ state: "hidden", timeout }).catch(() => { throw new Error("the prompt stayed on the customer's page"); });
    results[expected] = text;
    await agent.evaluate(() => delete document.querySelector("#face-result").dataset.decision);
  }
  const session = await customer.evaluate(() => window.witnessSession?.() ?? null);
  console.log(JSON.stringify({ ok: true, results, session }));
} finally {
  await browser.close();
}
