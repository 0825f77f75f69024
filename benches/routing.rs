//! Routing decision latency: 1,000 waiting sessions, 200 agents.
//!
//! Each sample frees one agent (a `WrapUpCompleted`) and times
//! `Router::decide`, which must find the best session for that agent
//! across the queues and make one offer; the offer is then accepted so the
//! agent is busy again and the queue stays at 1,000. The baseline, timed
//! in the same run on the same router, is `decide` with nothing to do (no
//! free agent): the fixed cost of looking.
//!
//!   cargo bench --bench routing

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use witness_domain::routing::{Router, RouterConfig, RoutingAction};
use witness_schemas::*;

const AGENTS: usize = 200;
const WAITING: usize = 1_000;
const SAMPLES: usize = 20_000;
const GROUPS: [&str; 4] = ["cards", "loans", "wealth", "general"];

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("routing bench: run with `cargo bench --bench routing`");
        return;
    }
    let mut router = Router::new(RouterConfig::default());
    let mut clock = 0;
    let agents: Vec<UserId> = (0..AGENTS).map(|_| UserId::new()).collect();
    for (i, a) in agents.iter().enumerate() {
        let skills = vec![GROUPS[i % 4].to_string(), GROUPS[(i + 1) % 4].to_string()];
        let e = AgentPresenceChanged { agent_id: *a, presence: Presence::Online, capacity: 1, skill_groups: skills };
        router.apply(&StreamId::agent(*a), &e.into(), at(0));
    }
    let queue_session = |router: &mut Router, n: usize, clock: i64| {
        let s = SessionId::new();
        let e = SessionQueued { group: GROUPS[n % 4].into(), priority: (n % 3 == 0) as i32 };
        router.apply(&StreamId::session(s), &e.into(), at(clock));
    };
    // Fill: every agent gets a session (offered, accepted), then 1,000 wait.
    let mut n = 0;
    // Which session each agent holds.
    let mut holds: std::collections::HashMap<UserId, SessionId> = Default::default();
    let accept_all = |router: &mut Router,
                      holds: &mut std::collections::HashMap<UserId, SessionId>,
                      actions: Vec<RoutingAction>,
                      clock: i64| {
        for a in actions {
            if let RoutingAction::Offer { session, offer_id, agent_id, .. } = a {
                let stream = StreamId::session(session);
                router.apply(&stream, &OfferAccepted { offer_id, agent_id }.into(), at(clock));
                router.apply(&stream, &AgentAssigned { agent_id, group: String::new() }.into(), at(clock));
                holds.insert(agent_id, session);
            }
        }
    };
    while n < AGENTS * 2 {
        queue_session(&mut router, n, clock);
        n += 1;
    }
    let actions = router.decide(at(clock));
    accept_all(&mut router, &mut holds, actions, clock);
    assert_eq!(holds.len(), AGENTS, "every agent holds a session");
    while router.waiting() < WAITING {
        queue_session(&mut router, n, clock);
        n += 1;
    }
    assert_eq!(router.waiting(), WAITING);

    let mut busy: std::collections::VecDeque<UserId> = agents.iter().copied().collect();
    let mut work = Vec::with_capacity(SAMPLES);
    let mut idle = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        clock += 1;
        // Nothing to do: every agent busy.
        let t = Instant::now();
        let none = router.decide(at(clock));
        idle.push(t.elapsed());
        assert!(none.is_empty());
        // Free the agent that has been busy longest: its session ends and
        // its wrap-up completes.
        let agent = busy.pop_front().unwrap();
        let stream = StreamId::session(holds[&agent]);
        let ended = SessionEnded { ended_by: EndedBy::Customer, reason: EndReason::Resolved };
        router.apply(&stream, &ended.into(), at(clock));
        let done = WrapUpCompleted { agent_id: agent, disposition: "resolved".into(), notes: None };
        router.apply(&stream, &done.into(), at(clock));
        let t = Instant::now();
        let actions = router.decide(at(clock));
        work.push(t.elapsed());
        assert_eq!(actions.len(), 1, "one free agent, one offer");
        accept_all(&mut router, &mut holds, actions, clock);
        busy.push_back(agent);
        queue_session(&mut router, n, clock);
        n += 1;
    }
    work.sort();
    idle.sort();
    println!("routing decide(), {WAITING} waiting sessions, {AGENTS} agents, {SAMPLES} samples");
    println!("| measure | one offer to make | nothing to do (baseline) |");
    println!("|---|---|---|");
    for (name, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        println!(
            "| {name} | {:.1} µs | {:.1} µs |",
            pct(&work, p).as_secs_f64() * 1e6,
            pct(&idle, p).as_secs_f64() * 1e6
        );
    }
}
