// HTTPS in headless Chromium (issue 29) against `witness serve
// --tls-self-signed witness.test` (BASE_URL, https://witness.test:PORT),
// the name mapped to 127.0.0.1 and the certificate trusted by its public
// key's hash (SPKI): a video call between the customer and the agent works
// end to end. The same pages over plain HTTP on that name (PLAIN_URL, a
// second server without TLS) say at once that calls need HTTPS; the plain
// listener beside the HTTPS one (REDIRECT_URL) sends browsers on to HTTPS,
// and answers over HTTPS carry HSTS. Exits non-zero on the first failed
// expectation. Driven by tests/browser.rs.
import { accessible, agentTakesCustomer, base, launchWithMedia, seen, snap } from "./pages.mjs";

const timeout = 30_000;
const expect = seen(timeout);
const fail = (what) => { throw new Error(what); };
const browser = await launchWithMedia([
  "--host-resolver-rules=MAP witness.test 127.0.0.1",
  `--ignore-certificate-errors-spki-list=${process.env.SPKI}`,
]);
try {
  // Plain HTTP on a real name: not a secure page, and the pages say so.
  for (const [path, what] of [["/?tenant=demo&lang=en", "customer"], ["/agent?lang=en", "agent"]]) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${process.env.PLAIN_URL}${path}`);
    if (await page.evaluate(() => window.isSecureContext)) fail(`the plain ${what} page counts as secure`);
    await expect(page.locator("#secure-advice", { hasText: "Calls need HTTPS" }), `the ${what} page says calls need HTTPS`);
    await accessible(page, `the ${what} page over plain HTTP`);
  }

  // The plain listener beside HTTPS only redirects.
  const redirected = await (await browser.newContext()).newPage();
  const answer = await redirected.goto(`${process.env.REDIRECT_URL}/agent?from=plain`);
  if (redirected.url() !== `${base}/agent?from=plain`) fail(`http:// went to ${redirected.url()}`);
  if (!(await answer.headerValue("strict-transport-security"))?.includes("max-age=")) fail("no HSTS over HTTPS");

  // Over HTTPS: a secure page, no advice, and a video call both ways.
  const { agent, customer } = await agentTakesCustomer(browser, timeout);
  for (const [page, who] of [[agent, "agent"], [customer, "customer"]]) {
    if (!(await page.evaluate(() => window.isSecureContext))) fail(`the ${who} page over HTTPS is not secure`);
    if (await page.locator("#secure-advice").isVisible()) fail(`the ${who} page over HTTPS says calls need HTTPS`);
  }
  await agent.click("#call-video");
  // Each side plays the other's camera (the fake device's picture moves).
  const playing = (page, who) => page.waitForFunction(
    () => [...document.querySelectorAll("#remote video")].some((v) => v.videoWidth > 0 && v.currentTime > 1),
    null, { timeout },
  ).catch(() => fail(`the ${who} never played the other side's video over HTTPS`));
  await playing(customer, "customer");
  await playing(agent, "agent");
  await snap(customer, "https-customer-in-a-video-call");
  await snap(agent, "https-agent-in-a-video-call");
  console.log(JSON.stringify({ ok: true }));
} finally {
  await browser.close();
}
