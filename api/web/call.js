// One side of a call through the Witness SFU, shared by the customer page
// and the agent workbench. Two RTCPeerConnections: `pub` carries what this
// browser sends (it offers, the server answers; a screen share is a new
// offer), `sub` what it receives (the server offers, it answers). Signaling
// rides the page's /api/ws socket as `media.*` messages (see api/src/calls.rs).
import { t } from "/web/common.js";

const GATHER_MS = 3000;

// Resolves once `pc` has gathered its ICE candidates (or after GATHER_MS):
// the SDP then carries them and no trickling is needed.
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_MS);
  });
}

// Null on a secure page (HTTPS, or localhost); else why a call here cannot
// use the camera or the microphone: browsers give them to secure pages only.
export function insecureAdvice(secure = window.isSecureContext && Boolean(navigator.mediaDevices)) {
  return secure ? null : t("call.needs_https");
}

// The microphone (and camera if `video`), each left out if refused:
// { tracks, blocked: { mic?: Error, camera?: Error } }. Asked together
// first (one prompt), then one by one. On a page that is not secure there
// is nothing to ask: both are blocked, as `InsecureContext`.
async function capture(video) {
  if (insecureAdvice()) {
    const e = Object.assign(new Error(insecureAdvice()), { name: "InsecureContext" });
    return { tracks: [], blocked: video ? { mic: e, camera: e } : { mic: e } };
  }
  const ask = (constraints) => navigator.mediaDevices.getUserMedia(constraints).then((m) => m.getTracks());
  try {
    return { tracks: await ask({ audio: true, video }), blocked: {} };
  } catch { /* one of them was refused: ask for each */ }
  const tracks = [], blocked = {};
  for (const [device, constraints] of [["mic", { audio: true }], ...(video ? [["camera", { video: true }]] : [])]) {
    try { tracks.push(...(await ask(constraints))); } catch (e) { blocked[device] = e; }
  }
  return { tracks, blocked };
}

// What to tell a person whose browser was refused `blocked` devices, for
// their browser (WeChat's in-app browser, iOS, Chrome, Firefox), in the
// page's language; null if nothing was refused.
export function deviceAdvice(blocked, userAgent = navigator.userAgent) {
  const devices = Object.keys(blocked);
  if (!devices.length) return null;
  const names = devices.map((d) => t(d === "mic" ? "call.microphone" : "call.camera_device")).join(t("call.devices_and"));
  const errors = Object.values(blocked).map((e) => e?.name);
  if (errors.every((n) => n === "InsecureContext")) return insecureAdvice(false);
  if (errors.every((n) => n === "NotFoundError")) return t("call.not_found", { devices: names });
  if (errors.every((n) => n === "NotReadableError")) return t("call.in_use", { devices: names });
  const how = /MicroMessenger/i.test(userAgent) ? "call.how_wechat"
    : /iPhone|iPad/i.test(userAgent) ? "call.how_ios"
      : /Firefox/i.test(userAgent) ? "call.how_firefox" : "call.how_chrome";
  return t("call.not_allowed", { devices: names, how: t(how) });
}

export class CallClient {
  // `send(obj)` writes a frame on the page's WebSocket; `view` is the element
  // remote media is shown in; `onChange()` is called when the state changes.
  constructor(send, session, view, onChange = () => {}) {
    Object.assign(this, { send, session, view, onChange });
    this.waiting = new Map(); // reply type -> {resolve, reject}
    this.pub = this.sub = null;
    this.local = new MediaStream();
    this.senders = {}; // mic | camera | screen -> RTCRtpSender
    this.active = false;
    this.sinkId = ""; // the sound output chosen ("": the system's)
    this.beautified = null; // while the beauty filter is on: { raw, stop }
  }

  // Feeds a WebSocket frame; true if it was this call's.
  handle(frame) {
    if (!frame.type?.startsWith("media.") || (frame.session && frame.session !== this.session)) return false;
    const waiter = this.waiting.get(frame.type) || (frame.type === "media.error" && [...this.waiting.values()][0]);
    if (frame.type === "media.error") {
      if (waiter) { this.waiting.clear(); waiter.reject(new Error(frame.message)); }
      else console.warn("media:", frame.message);
      return true;
    }
    if (frame.type === "media.offer") { this.answer(frame.sdp).catch((e) => console.warn("media:", e)); return true; }
    if (frame.type === "media.left") { this.teardown(); return true; }
    if (waiter) { this.waiting.delete(frame.type); waiter.resolve(frame); }
    return true;
  }

  request(message, reply) {
    return new Promise((resolve, reject) => {
      this.waiting.set(reply, { resolve, reject });
      this.send({ session: this.session, ...message });
    });
  }

  // Joins the call and sends the microphone, and the camera if `video`.
  // A device the browser is refused (permission denied, none, in use) is
  // left out — the call goes on with what there is, even with nothing to
  // send (the person still hears, sees and chats) — and reported as
  // blocked; `this.blocked` holds the errors by device.
  async join(video) {
    const { ice_servers: iceServers } = await this.request({ type: "media.join" }, "media.joined");
    this.active = true;
    this.pub = new RTCPeerConnection({ iceServers });
    this.sub = new RTCPeerConnection({ iceServers });
    this.sub.ontrack = (e) => this.show(e.track, e.streams[0]);
    const { tracks, blocked } = await capture(video);
    this.blocked = blocked;
    for (const track of tracks) {
      this.local.addTrack(track);
      if (track.kind === "audio") this.senders.mic = this.pub.addTrack(track, this.local);
      else this.senders.camera = this.addCamera(track);
    }
    if (tracks.length) await this.publish();
    for (const device of Object.keys(blocked)) this.device(device, false, true);
    this.onChange();
  }

  // (Re)negotiates what this browser sends.
  async publish() {
    await this.pub.setLocalDescription(await this.pub.createOffer());
    await gathered(this.pub);
    const screens = this.senders.screen?.track ? [this.senders.screen.track.id] : [];
    const { sdp } = await this.request({ type: "media.publish", sdp: this.pub.localDescription.sdp, screens }, "media.answer");
    await this.pub.setRemoteDescription({ type: "answer", sdp });
  }

  async answer(sdp) {
    await this.sub.setRemoteDescription({ type: "offer", sdp });
    await this.sub.setLocalDescription(await this.sub.createAnswer());
    await gathered(this.sub);
    this.send({ type: "media.answer", session: this.session, sdp: this.sub.localDescription.sdp });
  }

  show(track, stream) {
    const id = `remote-${stream ? stream.id : track.id}`;
    let el = document.getElementById(id);
    if (!el) {
      el = document.createElement(track.kind === "audio" ? "audio" : "video");
      Object.assign(el, { id, autoplay: true, playsInline: true });
      el.dataset.kind = track.kind;
      this.view.append(el);
    }
    if (this.sinkId && track.kind === "audio") el.setSinkId?.(this.sinkId).catch(() => {});
    el.srcObject = stream || new MediaStream([track]);
    track.onended = () => el.remove();
    stream?.addEventListener("removetrack", () => { if (!stream.getTracks().length) el.remove(); });
  }

  // Plays what this call receives on the sound output `deviceId` (a
  // phone's loudspeaker or earpiece, a headset), where the browser lets a
  // page choose (setSinkId).
  async speaker(deviceId) {
    this.sinkId = deviceId;
    const sounding = [...this.view.querySelectorAll("audio, video")].filter((el) => el.srcObject?.getAudioTracks().length);
    await Promise.all(sounding.map((el) => el.setSinkId?.(deviceId)));
  }

  // The beauty filter (美颜): the camera as sent is the camera smoothed (a
  // blurred copy laid over it) and brightened, drawn on a canvas in this
  // browser; off, the camera itself again. Nothing leaves the page unfiltered
  // while it is on.
  async beauty(on) {
    const sender = this.senders.camera;
    if (!sender || on === Boolean(this.beautified)) return;
    if (!on) {
      const { raw, stop } = this.beautified;
      this.beautified = null;
      await sender.replaceTrack(raw);
      stop();
      this.onChange();
      return;
    }
    const raw = sender.track;
    const video = Object.assign(document.createElement("video"), { muted: true, playsInline: true, srcObject: new MediaStream([raw]) });
    await video.play();
    const { width = 640, height = 480 } = raw.getSettings();
    const canvas = Object.assign(document.createElement("canvas"), { width, height });
    const ctx = canvas.getContext("2d");
    let running = true;
    const draw = () => {
      if (!running) return;
      ctx.globalAlpha = 1;
      ctx.filter = "brightness(1.15) saturate(1.05)";
      ctx.drawImage(video, 0, 0, width, height);
      ctx.globalAlpha = 0.65;
      ctx.filter = "blur(3px) brightness(1.18)";
      ctx.drawImage(video, 0, 0, width, height);
      video.requestVideoFrameCallback(draw);
    };
    draw();
    const [filtered] = canvas.captureStream(30).getVideoTracks();
    filtered.enabled = raw.enabled;
    this.beautified = { raw, stop: () => { running = false; filtered.stop(); video.srcObject = null; } };
    await sender.replaceTrack(filtered);
    this.onChange();
  }

  // Turns the camera on (audio → video) or switches to the next camera.
  async camera(next = false) {
    await this.beauty(false);
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    const current = this.senders.camera?.track?.getSettings().deviceId;
    const pick = next && devices.length > 1 ? devices[(devices.findIndex((d) => d.deviceId === current) + 1) % devices.length] : null;
    const [track] = (await navigator.mediaDevices.getUserMedia({ video: pick ? { deviceId: { exact: pick.deviceId } } : true })).getVideoTracks();
    if (this.senders.camera) {
      this.senders.camera.track?.stop();
      await this.senders.camera.replaceTrack(track);
    } else {
      this.senders.camera = this.addCamera(track);
      await this.publish();
    }
    this.device("camera", true);
  }

  // The camera goes out as simulcast: a half-size and a full-size layer.
  // The server sends each receiver the largest its bandwidth allows (and
  // records the largest); a browser short of uplink drops the full one.
  addCamera(track) {
    this.local.addTrack(track);
    return this.pub.addTransceiver(track, {
      direction: "sendonly",
      streams: [this.local],
      sendEncodings: [
        { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 300_000 },
        { rid: "f", maxBitrate: 1_200_000 },
      ],
    }).sender;
  }

  // Mic or camera on/off; the other side and the record learn of it.
  toggle(kind) {
    const track = this.senders[kind]?.track;
    if (!track) return false;
    track.enabled = !track.enabled;
    if (kind === "camera" && this.beautified) this.beautified.raw.enabled = track.enabled;
    this.device(kind, track.enabled);
    this.onChange();
    return track.enabled;
  }

  device(device, enabled, blocked = false) {
    this.send({ type: "media.device", session: this.session, device, enabled, blocked });
  }

  async shareScreen() {
    const [track] = (await navigator.mediaDevices.getDisplayMedia({ video: true })).getVideoTracks();
    this.senders.screen = this.pub.addTrack(track, new MediaStream([track]));
    track.onended = () => this.stopScreen();
    await this.publish();
    this.onChange();
  }

  async stopScreen() {
    const sender = this.senders.screen;
    if (!sender) return;
    delete this.senders.screen;
    sender.track?.stop();
    this.pub.removeTrack(sender);
    await this.publish();
    this.onChange();
  }

  // What this browser received and decoded so far, from getStats.
  // What arrives (packets, decoded frames), the sender reports the server
  // sent with it (`reports`, by kind), which simulcast layers go out
  // (`layersSent`: the RIDs with bytes sent), the bandwidth estimate they
  // go out under (`sendEstimate`, bit/s) and the round trips measured from
  // the server's receiver reports (`roundTrips`, by kind).
  async stats() {
    const out = { audioPackets: 0, framesDecoded: 0, videoTracks: 0, reports: { audio: 0, video: 0 }, layersSent: [], sendEstimate: 0, roundTrips: { audio: 0, video: 0 } };
    if (!this.sub) return out;
    (await this.sub.getStats()).forEach((s) => {
      if (s.type === "remote-outbound-rtp") out.reports[s.kind] += s.reportsSent || 0;
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "audio") out.audioPackets += s.packetsReceived || 0;
      if (s.kind === "video") { out.framesDecoded += s.framesDecoded || 0; out.videoTracks += 1; }
    });
    (await this.pub.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video" && s.rid && s.bytesSent > 0) out.layersSent.push(s.rid);
      // The browser's estimate of what it may send (it rises only on the
      // server's transport-wide congestion-control feedback).
      if (s.type === "candidate-pair" && s.nominated) out.sendEstimate = Math.max(out.sendEstimate, s.availableOutgoingBitrate || 0);
      // Round trips measured from the server's receiver reports.
      if (s.type === "remote-inbound-rtp") out.roundTrips[s.kind] += s.roundTripTimeMeasurements || 0;
    });
    out.layersSent.sort();
    return out;
  }

  hangUp() {
    if (this.active) this.send({ type: "media.leave", session: this.session });
    this.teardown();
  }

  teardown() {
    this.beautified?.stop();
    this.beautified?.raw.stop();
    this.beautified = null;
    this.active = false;
    this.local.getTracks().forEach((t) => t.stop());
    this.senders.screen?.track?.stop();
    this.pub?.close();
    this.sub?.close();
    this.pub = this.sub = null;
    this.senders = {};
    this.local = new MediaStream();
    this.view.replaceChildren();
    this.onChange();
  }
}

// Adds the call controls (#mic, #cam, #switch-cam, #screen, #beauty
// before the page's own buttons in #call-buttons, #hang-up and the sound
// output #speaker after them; the page wires #hang-up) and wires them to
// the call `current()` returns; returns the function that redraws their
// labels (and then calls `extra`, for a page's own controls). #beauty
// shows while `beautyOffered()` (the tenant's choice) and the camera is on.
export function callControls(current, show, extra = () => {}, beautyOffered = () => false) {
  const $ = (id) => document.getElementById(id);
  // The same buttons on every page, around the page's own (#call-buttons).
  const button = (id, text, secondary = true) =>
    Object.assign(document.createElement("button"), { id, textContent: text, className: secondary ? "secondary" : "" });
  const beauty = Object.assign(button("beauty", t("call.beauty")), { hidden: true });
  $("call-buttons").prepend(button("mic", t("call.mute")), button("cam", t("call.camera")), button("switch-cam", t("call.switch_camera")), button("screen", t("call.share_screen")), beauty);
  const speaker = Object.assign(document.createElement("select"), { id: "speaker", hidden: true });
  speaker.setAttribute("aria-label", t("call.speaker"));
  $("call-buttons").append(button("hang-up", t("call.hang_up"), false), speaker);
  // The sound outputs, once a call has asked for the microphone (browsers
  // name devices only then), where the page may choose one.
  const listOutputs = async () => {
    if (!("setSinkId" in HTMLMediaElement.prototype)) return;
    const outputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audiooutput");
    speaker.replaceChildren(...outputs.map((d, i) => Object.assign(document.createElement("option"), { value: d.deviceId, textContent: d.label || t("call.speaker_n", { n: i + 1 }) })));
    speaker.value = current()?.sinkId || outputs[0]?.deviceId || "";
    speaker.hidden = outputs.length < 2;
  };
  let listed = false;
  const draw = () => {
    const call = current();
    const s = call?.senders || {};
    $("mic").textContent = t(s.mic?.track?.enabled === false ? "call.unmute" : "call.mute");
    $("cam").textContent = t(!s.camera || s.camera.track?.enabled === false ? "call.camera_on" : "call.camera_off");
    $("screen").textContent = t(s.screen ? "call.stop_sharing" : "call.share_screen");
    beauty.hidden = !(beautyOffered() && s.camera);
    // The camera as sent (the beauty filter's output while it is on), small
    // and mirrored, where the page has a place for it.
    const self = $("self-view");
    if (self) {
      const track = s.camera?.track?.readyState === "live" ? s.camera.track : null;
      if ((self.srcObject?.getVideoTracks()[0] ?? null) !== track) self.srcObject = track ? new MediaStream([track]) : null;
      self.classList.toggle("hidden", !track);
    }
    beauty.setAttribute("aria-pressed", String(Boolean(call?.beautified)));
    if (call?.active && !listed) { listed = true; listOutputs().catch(() => {}); }
    if (!call?.active) listed = false;
    extra();
  };
  beauty.onclick = () => current()?.beauty(!current().beautified).catch(show);
  speaker.onchange = () => current()?.speaker(speaker.value).catch(show);
  $("mic").onclick = () => current()?.toggle("mic");
  $("cam").onclick = () => (current()?.senders.camera ? current().toggle("camera") : current()?.camera().then(draw, show));
  $("switch-cam").onclick = () => current()?.camera(true).then(draw, show);
  $("screen").onclick = () => (current()?.senders.screen ? current().stopScreen() : current()?.shareScreen())?.catch(show);
  return draw;
}
