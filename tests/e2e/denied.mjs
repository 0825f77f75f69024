// Cameras and microphones refused (issue 28, item 8), in headless Chromium
// against a running `witness serve` (BASE_URL). First a customer whose
// browser refuses the camera but not the microphone starts a video call:
// they are told why and how to allow it, the call goes on with their voice,
// and the agent sees "camera blocked". Then a customer in WeChat's in-app
// browser refused both: advice for WeChat, and the chat goes on.
// Prints {"ok":true} on success. Driven by tests/browser.rs.
import { agentTakesCustomer, launchWithMedia, seen, snap } from "./pages.mjs";

const timeout = 20_000;
const browser = await launchWithMedia();
const expect = seen(timeout);
// Refuses getUserMedia for the devices named, as a denied permission does.
const refuse = (devices) => `(() => {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  const refused = ${JSON.stringify(devices)};
  navigator.mediaDevices.getUserMedia = async (c) => {
    if ((c.video && refused.includes("camera")) || (c.audio && refused.includes("mic"))) throw new DOMException("Permission denied", "NotAllowedError");
    return real(c);
  };
})()`;
try {
  {
    const { agent, customer } = await agentTakesCustomer(browser, timeout, { customerInit: refuse(["camera"]) });
    await customer.click("#call-video");
    await expect(customer.locator("#device-advice", { hasText: "camera was not allowed" }), "the customer told the camera was refused");
    const advice = await customer.locator("#device-advice").innerText();
    if (!advice.includes("lock icon")) throw new Error(`no advice for Chrome: ${advice}`);
    await expect(agent.locator("#peer-state", { hasText: "Customer: camera blocked" }), "the agent told the customer's camera is blocked");
    // The call goes on with the customer's voice: the agent receives audio.
    await agent.waitForFunction(() => [...document.querySelectorAll("#remote audio")].some((a) => a.srcObject?.getAudioTracks().length), null, { timeout })
      .catch(() => { throw new Error("the agent never got the customer's audio"); });
    await snap(customer, "denied-camera-customer");
    await snap(agent, "denied-camera-agent");
    await customer.click("#hang-up");
    await agent.click("#end");
  }
  {
    const wechat = "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36 MicroMessenger/8.0.47";
    const { agent, customer } = await agentTakesCustomer(browser, timeout, { lang: "zh-CN", customer: { userAgent: wechat, viewport: { width: 390, height: 760 } }, customerInit: refuse(["camera", "mic"]) });
    await customer.click("#call-video");
    await expect(customer.locator("#device-advice", { hasText: "微信" }), "advice for WeChat's in-app browser");
    await expect(agent.locator("#peer-state", { hasText: "microphone blocked" }), "the agent told the microphone is blocked");
    await customer.fill("#text", "I can still type");
    await customer.click("#send");
    await expect(agent.locator(".msg.customer", { hasText: "I can still type" }), "the chat going on");
  }
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
