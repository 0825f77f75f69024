// A client that is not ours (issue 30, item 4): clients/python/witness_app.py,
// written from docs/integration.md with aiortc, is the customer; the agent
// is the workbench in headless Chromium. The client starts a session, asks
// the bot, asks for a person; the agent accepts and sees the conversation
// so far, starts a video call; each side decodes the other's video (the
// client's moving stripes at the agent's, the agent's fake camera at the
// client's); the tenant records calls, so the call's tracks are recorded.
// PYTHON: a Python with aiortc and websockets. Prints {"ok":true,...}.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { agentOnline, base, callStats, launchWithMedia, seen, snap, tokenOf } from "./pages.mjs";

const timeout = 30_000;
const expect = seen(timeout);
const policy = await fetch(`${base}/api/admin/recording-policy`, {
  method: "PUT", headers: { "content-type": "application/json", authorization: `Bearer ${await tokenOf("admin")}` },
  body: JSON.stringify({ record_calls: true }),
});
if (!policy.ok) throw new Error(`recording policy: ${policy.status} ${await policy.text()}`);

// The client's steps, as it prints them.
const steps = [];
const waiters = [];
function step(name) {
  const found = steps.find((s) => s.step === name);
  if (found) return Promise.resolve(found);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the client never reached "${name}"; it said: ${JSON.stringify(steps)}`)), timeout * 2);
    waiters.push({ name, resolve: (s) => { clearTimeout(timer); resolve(s); } });
  });
}

const browser = await launchWithMedia();
let client;
try {
  const agent = await agentOnline(browser, timeout);

  client = spawn(process.env.PYTHON, [new URL("../../clients/python/witness_app.py", import.meta.url).pathname,
    "--base", base, "--tenant", "demo", "--frames", "60"], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((resolve) => client.on("exit", resolve));
  createInterface({ input: client.stdout }).on("line", (line) => {
    let s;
    try { s = JSON.parse(line); } catch { console.error(`client: ${line}`); return; }
    steps.push(s);
    if (s.step === "error") console.error(`client failed: ${s.error}`);
    for (const w of waiters.filter((w) => w.name === s.step)) w.resolve(s);
  });

  const bot = await step("bot");
  if (!bot.text.includes("年费")) throw new Error(`the bot's answer: ${bot.text}`);
  await step("queued");
  await agent.click("#offers button:has-text('Accept')", { timeout });
  await step("agent");
  // The conversation so far, the bot's answer included, and the client's words.
  await expect(agent.locator("#chat .msg", { hasText: "信用卡年费怎么收" }), "the client's question at the agent's");
  await expect(agent.locator("#chat .msg", { hasText: "我想咨询一下年费" }), "the client's words to the agent");

  await agent.click("#call-video");
  await step("joined");
  const stats = await callStats(agent, "the agent decodes the client's video and hears it",
    (s) => s.framesDecoded > 30 && s.audioPackets > 50, timeout);
  const decoding = await step("decoding");
  await snap(agent, "app-client-call-at-the-agent");
  await agent.waitForTimeout(2000);
  await agent.click("#hang-up");
  const done = await step("done");
  const code = await exited;
  if (code !== 0) throw new Error(`the client exited ${code}`);

  // The recording: the client's camera and microphone among its tracks.
  const session = done.session;
  let recordings;
  for (const started = Date.now(); Date.now() - started < timeout; await agent.waitForTimeout(500)) {
    recordings = await agent.evaluate((id) => fetch(`/api/sessions/${id}/recordings`, {
      headers: { authorization: `Bearer ${window.witnessToken?.() ?? ""}` },
    }).then((r) => r.json()), session).catch(() => null);
    const segments = recordings?.[0]?.segments ?? [];
    if (recordings?.[0]?.stopped && segments.some((s) => s.participant_role === "customer" && s.kind === "video" && s.bytes > 0)
      && segments.some((s) => s.participant_role === "customer" && s.kind === "audio")) break;
  }
  const segments = recordings?.[0]?.segments ?? [];
  const customerVideo = segments.filter((s) => s.participant_role === "customer" && s.kind === "video");
  if (!customerVideo.length) throw new Error(`no recording of the client's camera: ${JSON.stringify(recordings)}`);
  console.log(JSON.stringify({ ok: true, agent: stats, client: { decoding, done }, recorded: segments.map((s) => [s.participant_role, s.kind, s.bytes, s.duration_ms]) }));
} finally {
  client?.kill();
  await browser.close();
}
