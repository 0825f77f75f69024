// The disk fills up (issue 29, item 5), in headless Chromium against a
// `witness serve` whose recordings and uploads sit on small tmpfs mounts
// (tests/browser.rs). A recorded video call fills the recordings' disk: the
// agent is told the recording was interrupted because the storage is full.
// The customer sends a file larger than what is left of the uploads' disk:
// a clear error, and a small file sent after goes through (the failed one
// left nothing behind to take its room). The chat goes on both ways.
// Prints {"ok":true} on success.
import { agentTakesCustomer, launchWithMedia, seen, snap } from "./pages.mjs";

const timeout = 20_000;
const browser = await launchWithMedia();
const expect = seen(timeout);
try {
  const { agent, customer } = await agentTakesCustomer(browser, timeout);
  await customer.click("#call-video");
  // The recordings' disk is 512 KiB: video fills it within seconds.
  await seen(90_000)(agent.locator("#recording-state", { hasText: "Recording interrupted (the server's storage is full)" }), "the agent told the recording stopped for a full disk");
  await snap(agent, "disk-full-agent-recording-interrupted");

  // 400 KB of text where 256 KiB is all there is: refused, said so.
  const big = Buffer.from("0123456789abcdef\n".repeat(24_000));
  await customer.setInputFiles("#file", { name: "statement.txt", mimeType: "text/plain", buffer: big });
  await expect(customer.locator("#error", { hasText: "storage is full" }), "the customer told the file was not stored");
  await snap(customer, "disk-full-customer-upload-refused");
  // A small one fits: the refused file left nothing half-written behind.
  await customer.setInputFiles("#file", { name: "note.txt", mimeType: "text/plain", buffer: Buffer.from("Card ending 1234, please.\n") });
  await expect(agent.locator(".msg.customer a", { hasText: "note.txt" }), "the small file at the agent");

  // The chat goes on both ways.
  await customer.fill("#text", "Can you still read me?");
  await customer.click("#send");
  await expect(agent.locator(".msg.customer", { hasText: "Can you still read me?" }), "the customer's message at the agent");
  await agent.fill("#text", "Yes, loud and clear.");
  await agent.click("#send");
  await expect(customer.locator(".msg.agent", { hasText: "loud and clear" }), "the agent's reply at the customer");
  await customer.click("#hang-up");
  await snap(agent, "disk-full-agent-after-the-call");
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
