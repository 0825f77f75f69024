#!/usr/bin/env python3
"""A customer's side of Witness without Witness's own pages.

What an app or a mini-program does, written from docs/integration.md alone,
in Python with aiortc (a WebRTC stack that is not a browser's): a visitor
token, a session, a question to the bot, a request for a person, and, when
the agent starts a call, a video call through Witness's SFU: it sends a
camera (a moving test picture) and a microphone (silence), and decodes what
the agent sends.

    python witness_app.py --base http://127.0.0.1:8080 --tenant demo \\
        --say "信用卡年费怎么收？" --frames 60

Each step is printed as one JSON line on stdout (`{"step": ...}`), so a
program can follow it; the last is {"step": "done", ...} with what was
sent and decoded. Exits 1 with {"step": "error", "error": ...} on failure.

Requires: aiortc, websockets (PyPI).
"""

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request

import av
from aiortc import (MediaStreamTrack, RTCConfiguration, RTCIceServer,
                    RTCPeerConnection, RTCSessionDescription, VideoStreamTrack)
from aiortc.mediastreams import AudioStreamTrack
from websockets.asyncio.client import connect


def say(step, **fields):
    print(json.dumps({"step": step, **fields}, ensure_ascii=False), flush=True)


class WitnessError(Exception):
    """An error answer: `status`, the stable `code` and the text for people."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class Api:
    """The REST half: JSON in and out, `Authorization: Bearer` once a token is had."""

    def __init__(self, base, lang):
        self.base, self.lang, self.token = base.rstrip("/"), lang, None

    def _call(self, method, path, body):
        headers = {"accept-language": self.lang}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = answer.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            error = json.loads(e.read() or b"{}")
            raise WitnessError(e.code, error.get("code"), error.get("error")) from None

    async def call(self, method, path, body=None):
        return await asyncio.to_thread(self._call, method, path, body)


class TestPicture(VideoStreamTrack):
    """A camera: 320×240 at 15 frames a second, stripes that move."""

    def __init__(self):
        super().__init__()
        self.count = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(320, 240, "yuv420p")
        shift = self.count * 4
        for index, plane in enumerate(frame.planes):
            width, height = (320, 240) if index == 0 else (160, 120)
            if index == 0:
                row = bytes(((x + shift) // 16 % 2) * 180 + 40 for x in range(width))
            else:
                row = bytes([96 if index == 1 else 160]) * width
            row += bytes(plane.line_size - width)
            plane.update(row * height)
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


class Call:
    """One call: `pub` sends (this side offers, the server answers), `sub`
    receives (the server offers whenever what is received changes, this
    side answers). Signaling rides the session's WebSocket."""

    def __init__(self, socket, session):
        self.socket, self.session = socket, session
        self.waiting = {}
        self.pub = self.sub = None
        self.camera = TestPicture()
        self.decoded = {"video": 0, "audio": 0}
        self.readers = []
        self.kinds = []
        # The server's offers, answered one at a time and only once the
        # receiving connection exists (one can come right after media.joined).
        self.offers = asyncio.Queue()

    async def send(self, message):
        await self.socket.send(json.dumps({"session": self.session, **message}))

    async def request(self, message, reply):
        future = asyncio.get_running_loop().create_future()
        self.waiting[reply] = future
        await self.send(message)
        return await asyncio.wait_for(future, 20)

    def handle(self, frame):
        """Takes a `media.*` frame from the socket."""
        kind = frame["type"]
        if kind == "media.error":
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(WitnessError(409, "media", frame.get("message")))
            self.waiting.clear()
        elif kind == "media.offer":
            self.offers.put_nowait(frame["sdp"])
        elif kind in self.waiting:
            future = self.waiting.pop(kind)
            if not future.done():
                future.set_result(frame)

    async def join(self):
        joined = await self.request({"type": "media.join"}, "media.joined")
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in joined.get("ice_servers", [])]
        config = RTCConfiguration(iceServers=servers)
        self.pub, self.sub = RTCPeerConnection(config), RTCPeerConnection(config)
        self.sub.on("track", self.receive)
        self.readers.append(asyncio.ensure_future(self.answer_offers()))
        self.pub.addTrack(AudioStreamTrack())
        self.pub.addTrack(self.camera)
        # aiortc gathers every candidate before setLocalDescription returns:
        # the offer carries them, nothing trickles.
        await self.pub.setLocalDescription(await self.pub.createOffer())
        answer = await self.request({"type": "media.publish", "sdp": self.pub.localDescription.sdp, "screens": []},
                                    "media.answer")
        await self.pub.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def answer_offers(self):
        while True:
            sdp = await self.offers.get()
            await self.sub.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            await self.send({"type": "media.answer", "sdp": self.sub.localDescription.sdp})

    def receive(self, track: MediaStreamTrack):
        self.kinds.append(track.kind)

        async def read():
            try:
                while True:
                    await track.recv()
                    self.decoded[track.kind] += 1
            except Exception:  # the track ended (MediaStreamError)
                pass
        self.readers.append(asyncio.ensure_future(read()))

    async def close(self):
        for reader in self.readers:
            reader.cancel()
        for pc in (self.pub, self.sub):
            if pc:
                await pc.close()


async def run(args):
    api = Api(args.base, args.lang)
    # 1. A visitor token (no account): the app's own user id stays in the app.
    visitor = await api.call("POST", "/api/visitors", {"tenant": args.tenant, "channel": args.channel})
    api.token = visitor["token"]
    # 2. A session.
    started = await api.call("POST", "/api/sessions", {"business_type": args.business, "locale": args.lang})
    session = started["session_id"]
    say("session", session=session)

    ws_base = args.base.replace("http", "ws", 1).rstrip("/")
    async with connect(f"{ws_base}/api/ws?session={session}") as socket:
        # 3. The live feed: the token is the first message.
        await socket.send(json.dumps({"type": "auth", "token": api.token}))
        hello = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if hello.get("type") != "hello":
            raise WitnessError(401, "socket", str(hello))
        call, ended, events = None, asyncio.Event(), asyncio.Queue()

        async def read():
            nonlocal call
            async for text in socket:
                frame = json.loads(text)
                if frame["type"] == "event":
                    await events.put(frame["event"])
                elif frame["type"].startswith("media.") and call:
                    call.handle(frame)
        reader = asyncio.ensure_future(read())

        async def until(event_type, seconds=args.timeout):
            while True:
                event = await asyncio.wait_for(events.get(), seconds)
                if event["event_type"] == event_type:
                    return event

        # 4. A question for the bot; its answer arrives as a BotMessage.
        await api.call("POST", f"/api/sessions/{session}/messages", {"kind": "text", "text": args.say})
        bot = await until("BotMessage")
        say("bot", text=bot["payload"]["content"].get("text", ""))
        # 5. A person: queued, then an agent is assigned.
        await api.call("POST", f"/api/sessions/{session}/human")
        say("queued")
        await until("AgentAssigned")
        say("agent")
        await api.call("POST", f"/api/sessions/{session}/messages", {"kind": "text", "text": args.greet})
        # 6. The agent starts a video call: join it, send, receive.
        started = await until("CallStarted")
        say("call", kind=started["payload"]["kind"])
        call = Call(socket, session)
        await call.join()
        say("joined")
        waited = 0
        while call.decoded["video"] < args.frames:
            await asyncio.sleep(0.2)
            waited += 1
            if waited % 25 == 0:  # every 5 s: what there is, on stderr
                stats = [(s.kind, s.packetsReceived, s.packetsLost) for s in (await call.sub.getStats()).values()
                         if s.type == "inbound-rtp"]
                print(f"waiting for video: decoded {call.decoded}, receiving {call.sub.connectionState} {stats}, "
                      f"sending {call.pub.connectionState}, tracks {call.kinds}", file=sys.stderr, flush=True)
        say("decoding", frames=call.decoded["video"], audio=call.decoded["audio"])
        # 7. Held until the agent hangs up.
        await until("CallEnded")
        sent = call.camera.count
        await call.close()
        say("done", session=session, video_frames_decoded=call.decoded["video"],
            audio_frames_decoded=call.decoded["audio"], video_frames_sent=sent)
        reader.cancel()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the server, http(s)://host:port")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--channel", default="app", choices=["app", "mini_program", "h5", "web", "wechat", "api"])
    parser.add_argument("--business", default="cards")
    parser.add_argument("--lang", default="zh-CN")
    parser.add_argument("--say", default="信用卡年费怎么收？", help="the question for the bot")
    parser.add_argument("--greet", default="您好，我想咨询一下年费。", help="the first words to the agent")
    parser.add_argument("--frames", type=int, default=60, help="video frames of the agent's to decode")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for each step")
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except Exception as e:  # one line a program can read, then a non-zero exit
        say("error", error=f"{type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
