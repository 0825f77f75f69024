//! SFU load: N concurrent 1:1 calls through the real SFU, each participant
//! an in-process WebRTC peer (ICE, DTLS, SRTP, UDP on loopback) sending VP8
//! at 500 kbit/s and Opus, replayed from a pre-encoded clip so no encoder
//! runs. The peers are built on the sans-I/O `rtc` stack, all driven by
//! one thread through one socket, each connection with a loopback address
//! of its own (`benches/rtc_peers`: they encrypt their media past their
//! connections' interceptors and count what they receive by its RTP
//! header); SFU_PEERS=webrtc makes them the `webrtc` crate's `TestPeer`s
//! instead, which cost more CPU — taken from the SFU on this 2-core
//! machine.
//! Measures forwarded packets/s and Mbit/s, the process's CPU per forwarded
//! Mbit/s, the delay from a peer's send to the other peer's receive
//! (p50/p99, which includes the peers' own work, so it bounds the SFU's
//! added latency from above), and the latency the SFU itself adds
//! (`AddedLatency`: from a datagram's arrival in the SFU's socket, by the
//! kernel's receive timestamp, until the forwarded packet is sent). Runs a
//! light baseline (SFU_BASELINE calls), then N calls without and with
//! recording, in the same process. Each phase streams for SFU_WARMUP
//! seconds (default 2: every track's first packets open it on the SFU and
//! on its subscriber's connection — call set-up, not forwarding) before
//! the SFU_SECONDS it measures. The last column is the share of the
//! machine's CPU time the hypervisor gave to other guests meanwhile
//! (`steal` in /proc/stat): on a shared VM, stalls no code here controls.
//! Before and after the runs it times two yardsticks of the machine's
//! speed (a loopback datagram, a SHA-256), which on this VM changes by
//! about two times from hour to hour.
//!
//!   cargo bench --bench sfu_load                  # SFU_CALLS=100 SFU_SECONDS=10 SFU_WARMUP=2 SFU_BASELINE=10 SFU_PIN=0 SFU_PEERS=rtc
//!
//! Under `cargo test` (the test suite builds every target) it makes a
//! smoke run instead: 1 and 2 calls for 2 s, failing unless the peers
//! received over 90 % of what the SFU forwarded.
//!
//! CPU is the whole process: the SFU *and* the synthetic peers. The SFU's
//! own share is at most that.
//!
//! Each stream starts at its own point of the clip (a fixed pseudo-random
//! phase per stream), as independent calls do; SFU_ALIGNED=1 starts them
//! all at the clip's beginning instead, so every publisher sends its frames
//! — and its keyframes — at the same instant (the worst case: the SFU gets
//! the whole room's frames as one burst every 33 ms).
//!
//! SFU_PIN=1 splits the machine: the SFU (its media thread, and the
//! runtime that builds its recorders) on CPU 0, the peers on CPU 1 — as if
//! the peers were on another machine and the SFU had one core. It then
//! also reports the CPU of the threads named `sfu` alone.
//!
//! SFU_STACK=rtc or SFU_STACK=str0m puts a bare forwarder in the SFU's
//! place (`benches/bare_sfu`: one thread driving sans-I/O connections on
//! the `rtc` crate Witness's SFU drives, or on `str0m`) under the same
//! load and peers: what forwarding costs on those stacks without Witness's
//! SFU around it. No recorded phase then.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use witness_media::loopback::{percentile, Clip, Received, SendTimes, Signaling, TestPeer};
use witness_media::server::{AddedLatency, MediaConfig, MediaServer};
use witness_schemas::ParticipantRole;

mod bare_sfu;
mod rtc_peers;
use bare_sfu::BareSfu;
use rtc_peers::RtcPeer;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Stream `i`'s starting point in its clip: up to 10 s (taken modulo the
/// clip's length), the same for every run (splitmix64 of `i`).
fn phase(i: u64) -> Duration {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Duration::from_micros((z ^ (z >> 31)) % 10_000_000)
}

/// CPU seconds (user + system) of a `/proc/…/stat` file's process or thread.
fn stat_seconds(path: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11..13).map(|f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum()).unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds this process used so far.
fn cpu_seconds() -> f64 {
    stat_seconds(std::path::Path::new("/proc/self/stat"))
}

/// The machine's stolen and total CPU time so far, in ticks: what the
/// hypervisor ran elsewhere while this machine's CPUs had work.
fn machine_steal() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .map(|cpu| cpu.split_whitespace().skip(1).take(8).filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_default();
    (ticks.get(7).copied().unwrap_or(0.0), ticks.iter().sum())
}

/// This machine's speed now, by two yardsticks timed on the calling
/// thread (medians of three): µs to send one 1,200-byte datagram on
/// loopback and receive it (system calls and the network stack, which are
/// much of what the SFU and the peers spend per packet) and ms to hash 16
/// MiB with SHA-256 (plain computation). This VM's speed changes by about
/// two times from one hour to the next; these say which kind of hour a
/// run had, so runs of different hours can be compared.
fn machine_speed() -> (f64, f64) {
    use sha2::Digest;
    let median = |mut runs: Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    };
    let from = std::net::UdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
    let to = std::net::UdpSocket::bind("127.0.0.1:0").expect("a loopback socket");
    let address = to.local_addr().expect("bound");
    let (datagram, mut buf) = ([0u8; 1200], [0u8; 2048]);
    let rounds = 10_000;
    let udp = (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..rounds {
                from.send_to(&datagram, address).expect("a loopback send");
                to.recv(&mut buf).expect("a loopback receive");
            }
            start.elapsed().as_secs_f64() * 1e6 / rounds as f64
        })
        .collect();
    let data = vec![7u8; 16 << 20];
    let hash = (0..3)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(&data)));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (median(udp), median(hash))
}

/// CPU seconds the SFU runtime's threads (named `sfu`) used so far.
fn sfu_cpu_seconds() -> f64 {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
    tasks
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "sfu"))
        .map(|t| stat_seconds(&t.path().join("stat")))
        .sum()
}

/// Pins the calling thread (and the threads it starts) to one CPU, with
/// util-linux's `taskset` (the workspace forbids the `unsafe` a direct
/// `sched_setaffinity` would take).
fn pin_to(cpu: usize) {
    let tid = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = tid.file_name().and_then(|t| t.to_str()).expect("a thread id").to_owned();
    let pinned = std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(pinned, "taskset could not pin thread {tid} to CPU {cpu}");
}

fn runtime(name: &str, threads: usize, cpu: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(threads).thread_name(name).enable_all();
    if let Some(cpu) = cpu {
        builder.on_thread_start(move || pin_to(cpu));
    }
    builder.build().expect("a tokio runtime")
}

struct Outcome {
    calls: u64,
    record: bool,
    forwarded_pps: f64,
    forwarded_mbps: f64,
    cpu_cores: f64,
    p50_ms: f64,
    p99_ms: f64,
    added_p50_ms: f64,
    added_p99_ms: f64,
    received_ratio: f64,
    sfu_cores: f64,
    /// The share of the machine's CPU time the hypervisor gave to others
    /// while ours wanted it (`steal` in /proc/stat).
    steal: f64,
}

/// The SFU under load: Witness's, or a bare forwarder it is compared with
/// (`SFU_STACK=str0m` or `SFU_STACK=rtc`: `benches/bare_sfu`).
enum Sfu {
    Witness(MediaServer),
    Bare(BareSfu),
}

impl Sfu {
    fn forwarded_packets(&self) -> u64 {
        match self {
            Sfu::Witness(server) => server.counters().forwarded.get(),
            Sfu::Bare(server) => server.forwarded_packets(),
        }
    }
}

/// `SFU_STACK`, if it names a bare forwarder.
fn bare_stack() -> Option<&'static str> {
    match std::env::var("SFU_STACK").as_deref() {
        Ok("str0m") => Some("str0m"),
        Ok("rtc") => Some("rtc"),
        _ => None,
    }
}

fn sfu_pinned() -> bool {
    env("SFU_PIN", 0) == 1
}

/// A synthetic participant: on the sans-I/O `rtc` stack (`SFU_PEERS=rtc`,
/// the default: `benches/rtc_peers`) or the `webrtc` crate's
/// [`TestPeer`] (`SFU_PEERS=webrtc`).
enum Peer {
    Rtc(RtcPeer),
    Webrtc(Arc<TestPeer>),
}

fn webrtc_peers() -> bool {
    std::env::var("SFU_PEERS").as_deref() == Ok("webrtc")
}

impl Peer {
    async fn join(
        server: &impl Signaling,
        room: &str,
        name: &str,
        role: ParticipantRole,
        sent: Arc<SendTimes>,
    ) -> Peer {
        let peer = if webrtc_peers() {
            TestPeer::join(server, room, name, role, sent).await.map(|p| Peer::Webrtc(Arc::new(p)))
        } else {
            RtcPeer::join(server, room, name, role, sent).await.map(Peer::Rtc)
        };
        peer.expect("peer joins")
    }

    fn received(&self) -> &Received {
        match self {
            Peer::Rtc(peer) => &peer.received,
            Peer::Webrtc(peer) => &peer.received,
        }
    }

    /// Streams the clips from the given phases into them until `until`.
    fn stream(
        &self,
        video: &Arc<Clip>,
        audio: &Arc<Clip>,
        phases: [Duration; 2],
        until: Instant,
        sent: &Arc<SendTimes>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        match self {
            Peer::Rtc(peer) => {
                let done = peer.stream(video.clone(), audio.clone(), phases, until);
                vec![tokio::spawn(async move {
                    let _ = done.await;
                })]
            }
            Peer::Webrtc(peer) => [(video, true, phases[0]), (audio, false, phases[1])]
                .into_iter()
                .map(|(clip, is_video, phase)| {
                    let (peer, clip, sent) = (peer.clone(), clip.clone(), sent.clone());
                    tokio::spawn(async move { peer.stream(clip, is_video, phase, until, sent).await })
                })
                .collect(),
        }
    }

    async fn close(self) {
        match self {
            Peer::Rtc(peer) => peer.close(),
            Peer::Webrtc(peer) => {
                if let Ok(peer) = Arc::try_unwrap(peer) {
                    peer.close().await;
                }
            }
        }
    }
}

struct Load {
    calls: u64,
    seconds: u64,
    record: bool,
    ports: (u16, u16),
}

async fn run(load: Load, sfu: &tokio::runtime::Handle, video: Arc<Clip>, audio: Arc<Clip>) -> Outcome {
    let Load { calls, seconds, record, ports } = load;
    let dir = tempfile::tempdir().unwrap();
    // Only Witness's SFU has the probe.
    let latency = bare_stack().is_none().then(|| Arc::new(AddedLatency::default()));
    let pin = sfu_pinned();
    let setup = move || {
        if pin {
            pin_to(0)
        }
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.0));
    let server = if let Some(stack) = bare_stack() {
        let started = match stack {
            "str0m" => BareSfu::start::<bare_sfu::str0m::Str0m>(addr, setup),
            _ => BareSfu::start::<bare_sfu::rtc::Rtc>(addr, setup),
        };
        Sfu::Bare(started.expect("the bare forwarder's port"))
    } else {
        let config = MediaConfig {
            ports,
            // Pinned, the SFU has one core: one media thread.
            threads: if pin { 1 } else { witness_media::server::default_media_threads() },
            recordings_dir: dir.path().to_owned(),
            latency: latency.clone(),
            ..Default::default()
        };
        // Started from the SFU runtime's thread, the media thread inherits
        // its CPU (pinned or not).
        let (server, mut reports) = sfu.spawn(async move { MediaServer::new(config) }).await.unwrap();
        tokio::spawn(async move { while reports.recv().await.is_some() {} });
        Sfu::Witness(server)
    };
    let sent = Arc::new(SendTimes::default());
    let mut peers = Vec::new();
    for call in 0..calls {
        let room = format!("call-{call}");
        if let (true, Sfu::Witness(server)) = (record, &server) {
            server.start_recording(&room, &room).unwrap();
        }
        for (name, role) in [("customer", ParticipantRole::Customer), ("agent", ParticipantRole::Agent)] {
            peers.push(match &server {
                Sfu::Witness(server) => Peer::join(server, &room, name, role, sent.clone()).await,
                Sfu::Bare(server) => Peer::join(server, &room, name, role, sent.clone()).await,
            });
        }
    }
    // Let the subscriber connections finish negotiating before streaming.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The streams run through the warm-up (each track's first packets open
    // it on the SFU and on its subscriber's connection: call set-up, not
    // forwarding), then for the measured seconds.
    let warmup = Duration::from_secs(env("SFU_WARMUP", 2));
    let until = Instant::now() + warmup + Duration::from_secs(seconds);
    let aligned = env("SFU_ALIGNED", 0) == 1;
    let mut streams = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let i = 2 * i as u64;
        let phases = if aligned { [Duration::ZERO; 2] } else { [phase(i), phase(i + 1)] };
        streams.extend(peer.stream(&video, &audio, phases, until, &sent));
    }
    tokio::time::sleep(warmup).await;
    let forwarded_before = server.forwarded_packets();
    if let Some(latency) = &latency {
        latency.delays_us.lock().unwrap().clear();
    }
    for peer in &peers {
        let received = peer.received();
        received.delays_us.lock().unwrap().clear();
        received.video_packets.store(0, Ordering::Relaxed);
        received.audio_packets.store(0, Ordering::Relaxed);
    }
    let cpu_before = cpu_seconds();
    let sfu_cpu_before = sfu_cpu_seconds();
    let steal_before = machine_steal();
    let start = Instant::now();
    for s in streams {
        let _ = s.await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let sfu_cpu = sfu_cpu_seconds() - sfu_cpu_before;
    let steal_after = machine_steal();
    let steal = (steal_after.0 - steal_before.0) / (steal_after.1 - steal_before.1).max(1.0);
    let forwarded = server.forwarded_packets() - forwarded_before;
    let offered_bytes_per_s = (video.bytes_per_second + audio.bytes_per_second) as f64;
    let forwarded_mbps = offered_bytes_per_s * 8.0 * (peers.len() as f64) / 1e6;
    let mut delays: Vec<u64> = Vec::new();
    let mut received = 0u64;
    for peer in &peers {
        let r = peer.received();
        delays.extend(r.delays_us.lock().unwrap().iter());
        received += r.video_packets.load(Ordering::Relaxed) + r.audio_packets.load(Ordering::Relaxed);
    }
    delays.sort_unstable();
    let mut added: Vec<u64> = latency.map(|l| l.delays_us.lock().unwrap().clone()).unwrap_or_default();
    added.sort_unstable();
    let outcome = Outcome {
        calls,
        record,
        forwarded_pps: forwarded as f64 / elapsed,
        forwarded_mbps,
        cpu_cores: cpu / elapsed,
        p50_ms: percentile(&delays, 0.5) as f64 / 1000.0,
        p99_ms: percentile(&delays, 0.99) as f64 / 1000.0,
        added_p50_ms: percentile(&added, 0.5) as f64 / 1000.0,
        added_p99_ms: percentile(&added, 0.99) as f64 / 1000.0,
        received_ratio: received as f64 / forwarded.max(1) as f64,
        sfu_cores: sfu_cpu / elapsed,
        steal,
    };
    for peer in peers {
        peer.close().await;
    }
    if let Sfu::Witness(server) = &server {
        for call in 0..calls {
            server.close_room(&format!("call-{call}"), "bench over").await;
        }
    }
    outcome
}

fn main() {
    // `cargo test --all-targets` runs benches too, without `--bench`: then
    // a smoke run, so that the test suite knows the load generator still
    // works (over 90 % of what the SFU forwarded received, in every phase);
    // only `cargo bench` loads the machine.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sfu_load bench: a smoke run; measure with `cargo bench --bench sfu_load`");
        let shared = runtime("shared", 2, None);
        let handle = shared.handle().clone();
        let outcomes = shared.block_on(bench(handle, false, Scale { calls: 2, seconds: 2, baseline: 1, speed: false }));
        for o in outcomes {
            assert!(
                o.received_ratio > 0.9,
                "{} calls: received {:.3} of what was forwarded",
                o.calls,
                o.received_ratio
            );
        }
        return;
    }
    let scale = Scale {
        calls: env("SFU_CALLS", 100),
        seconds: env("SFU_SECONDS", 10),
        baseline: env("SFU_BASELINE", 10),
        speed: true,
    };
    if sfu_pinned() {
        pin_to(1);
        let sfu = runtime("sfu", 1, Some(0));
        runtime("peers", 1, Some(1)).block_on(bench(sfu.handle().clone(), true, scale));
    } else {
        let shared = runtime("shared", 2, None);
        let handle = shared.handle().clone();
        shared.block_on(bench(handle, false, scale));
    }
}

/// How much load, and whether to time the machine's speed too.
struct Scale {
    calls: u64,
    seconds: u64,
    baseline: u64,
    speed: bool,
}

/// Runs the phases and prints the table; returns the phases' outcomes.
async fn bench(sfu: tokio::runtime::Handle, pinned: bool, scale: Scale) -> Vec<Outcome> {
    let Scale { calls, seconds, baseline, speed } = scale;
    witness_media::recorder::init().expect("GStreamer (scripts/bench.sh installs it)");
    eprintln!("capturing 3 s of VP8 at 500 kbit/s and Opus to replay…");
    let video = Arc::new(Clip::capture(true, 500, 3.0).unwrap());
    let audio = Arc::new(Clip::capture(false, 32, 3.0).unwrap());
    eprintln!(
        "clip: video {:.0} kbit/s, audio {:.0} kbit/s (RTP payload + header)",
        video.bytes_per_second as f64 * 8.0 / 1000.0,
        audio.bytes_per_second as f64 * 8.0 / 1000.0
    );
    let speed_before = if speed { machine_speed() } else { (0.0, 0.0) };
    let mut outcomes = Vec::new();
    let mut phases =
        vec![(baseline, false, (41_000, 41_999)), (calls, false, (42_000, 42_999)), (calls, true, (43_000, 43_999))];
    if bare_stack().is_some() {
        phases.pop(); // a bare forwarder does not record
    }
    for (n, record, ports) in phases {
        eprintln!("{n} calls{} for {seconds} s…", if record { " with recording" } else { "" });
        let load = Load { calls: n, seconds, record, ports };
        let outcome = run(load, &sfu, video.clone(), audio.clone()).await;
        assert!(outcome.forwarded_pps > 0.0, "{n} calls: the SFU forwarded nothing");
        outcomes.push(outcome);
    }
    if speed {
        let speed_after = machine_speed();
        println!(
            "machine speed before / after the runs: {:.2} / {:.2} µs per 1,200-byte datagram sent and received on loopback, {:.1} / {:.1} ms per SHA-256 of 16 MiB",
            speed_before.0, speed_after.0, speed_before.1, speed_after.1
        );
    }
    if pinned {
        println!("SFU_PIN=1: SFU on CPU 0 (one thread), peers on CPU 1");
    }
    if let Some(stack) = bare_stack() {
        println!("SFU_STACK={stack}: a bare forwarder (benches/bare_sfu), not Witness's SFU: no recording, no added-latency probe");
    }
    if env("SFU_ALIGNED", 0) == 1 {
        println!("SFU_ALIGNED=1: every stream starts at the clip's beginning (frames in step)");
    } else {
        println!("each stream starts at its own point of the clip");
    }
    println!("| calls | recording | forwarded packets/s | forwarded Mbit/s | CPU (cores, whole process) | SFU thread (cores) | CPU per forwarded Mbit/s | send→receive p50 | p99 | added by the SFU p50 | p99 | received / forwarded | stolen by the hypervisor |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.2} | {} | {:.4} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.3} | {:.1} % |",
            o.calls,
            if o.record { "yes" } else { "no" },
            o.forwarded_pps,
            o.forwarded_mbps,
            o.cpu_cores,
            if pinned {
                format!("{:.2} ({:.1} µs per packet)", o.sfu_cores, o.sfu_cores * 1e6 / o.forwarded_pps.max(1e-9))
            } else {
                "–".to_owned()
            },
            o.cpu_cores / o.forwarded_mbps.max(1e-9),
            o.p50_ms,
            o.p99_ms,
            o.added_p50_ms,
            o.added_p99_ms,
            o.received_ratio,
            o.steal * 100.0
        );
    }
    println!(
        "packets the recorders dropped (recording too far behind): {}",
        witness_media::recorder::COUNTERS.dropped.get()
    );
    if let [baseline, plain, recorded] = &outcomes[..] {
        println!(
            "recording cost: {:.2} % of a core per call ({} tracks per call); p99 {}x the baseline's",
            (recorded.cpu_cores - plain.cpu_cores) * 100.0 / calls as f64,
            4,
            format_args!("{:.1}", plain.p99_ms / baseline.p99_ms.max(1e-9))
        );
    }
    outcomes
}
