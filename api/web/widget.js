// Witness's customer-service widget for other web sites. On a page:
//
//   <script src="https://HOST/widget.js" data-tenant="demo" data-channel="web" async></script>
//
// adds a floating 联系客服 button that opens the customer page in a frame.
// The conversation lasts across the site's pages (the frame keeps its
// session; this page's sessionStorage remembers the widget was opened),
// and while the frame is closed a badge counts the messages that arrived.
// Works only on the web sites the tenant's admin lists (Admin → Web sites
// that may embed): elsewhere the server refuses (403) and no button
// appears. Optional: data-lang="zh-CN|en" (else the page's <html lang>,
// else the tenant's language).
(() => {
  const script = document.currentScript;
  if (!script) return;
  const server = new URL(script.src).origin;
  const tenant = script.dataset.tenant || "demo";
  const channel = script.dataset.channel || "web";
  const lang = script.dataset.lang || document.documentElement.lang || "";
  const remembered = `witness-widget-${tenant}`;
  const query = (o) => new URLSearchParams(o).toString();
  let texts, host, launcher, badge, panel, frame, unread = 0;

  const CSS = `
    :host { all: initial; }
    button { font: 15px/1.2 system-ui, "PingFang SC", "Microsoft YaHei", sans-serif; cursor: pointer; }
    .launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; padding: 12px 18px;
      border: 0; border-radius: 24px; background: #1f5fbf; color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
    .launcher:focus-visible, .close:focus-visible { outline: 3px solid #f5a623; outline-offset: 2px; }
    .badge { display: inline-block; min-width: 20px; margin-left: 8px; padding: 1px 6px; border-radius: 10px;
      background: #d0021b; color: #fff; font-size: 13px; text-align: center; }
    .panel { position: fixed; right: 20px; bottom: 20px; z-index: 2147483001; width: 400px; height: min(640px, calc(100vh - 40px));
      display: flex; flex-direction: column; background: #fff; border-radius: 10px; overflow: hidden;
      box-shadow: 0 8px 30px rgba(0,0,0,.3); }
    .bar { display: flex; align-items: center; justify-content: space-between; padding: 6px 10px; background: #1f5fbf; color: #fff;
      font: 15px system-ui, "PingFang SC", "Microsoft YaHei", sans-serif; }
    .close { border: 0; background: transparent; color: #fff; font-size: 15px; padding: 6px 8px; }
    iframe { flex: 1; width: 100%; border: 0; }
    [hidden] { display: none !important; }
    @media (max-width: 600px) { .panel { right: 0; bottom: 0; width: 100vw; height: 100vh; height: 100dvh; border-radius: 0; } }`;

  function element(tag, props, ...children) {
    const e = Object.assign(document.createElement(tag), props);
    e.append(...children);
    return e;
  }

  function build() {
    host = element("div", { id: "witness-widget" });
    const root = host.attachShadow({ mode: "open" });
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
    badge = element("span", { className: "badge", hidden: true });
    launcher = element("button", { className: "launcher", type: "button" }, texts.open, badge);
    launcher.onclick = () => show(true);
    const close = element("button", { className: "close", type: "button", textContent: `${texts.close} ✕` });
    close.onclick = () => show(false);
    panel = element("div", { className: "panel", hidden: true, role: "dialog", ariaLabel: texts.title },
      element("div", { className: "bar" }, element("span", { textContent: texts.title }), close));
    root.append(launcher, panel);
    document.body.append(host);
  }

  // The frame, made on first open and again on each page of the site once
  // opened (so messages are counted while it is closed).
  function load() {
    if (frame) return;
    frame = element("iframe", {
      title: texts.title,
      src: `${server}/?${query({ tenant, channel, lang: texts.lang, embed: "1" })}`,
    });
    frame.allow = "camera; microphone; display-capture; autoplay; fullscreen";
    panel.append(frame);
  }

  function show(open) {
    load();
    panel.hidden = !open;
    launcher.hidden = open;
    if (open) { unread = 0; drawBadge(); }
    sessionStorage.setItem(remembered, open ? "open" : "closed");
  }

  function drawBadge() {
    badge.hidden = unread === 0;
    badge.textContent = String(unread);
    badge.setAttribute("aria-label", texts.unread.replace("{n}", unread));
  }

  // The customer page tells its host of a message (counted while closed)
  // and of a call (the widget opens: the customer must see it).
  addEventListener("message", (e) => {
    if (e.origin !== server || !frame || e.source !== frame.contentWindow) return;
    if (e.data?.type === "witness:message" && panel.hidden) { unread += 1; drawBadge(); }
    if (e.data?.type === "witness:call" && panel.hidden) show(true);
  });

  async function start() {
    const answer = await fetch(`${server}/api/widget?${query(lang ? { tenant, lang } : { tenant })}`).catch(() => null);
    if (!answer?.ok) {
      console.warn(`Witness: no customer service here (${answer ? answer.status : "server unreachable"}): ` +
        `tenant ${tenant}'s admin lists the web sites that may embed it.`);
      return;
    }
    texts = await answer.json();
    build();
    const was = sessionStorage.getItem(remembered);
    if (was) show(was === "open");
  }
  if (document.body) start();
  else addEventListener("DOMContentLoaded", start);
})();
