//! A scripted day of customer service, driven through the real deciders,
//! the router and the store: customers arrive, ask the bot, some leave
//! content, the rest ask for a human; agents accept, decline or let offers
//! run out; calls start and end; sessions close, get rated and sometimes
//! become tickets. Reproducible from a seed (the ids are fresh each run, the
//! story is the same). Behind `witness seed --sessions`, and the workload of
//! the projection and rebuild tests.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use witness_schemas::*;

use witness_domain::routing::{Router, RouterConfig, RoutingCommand};
use witness_domain::session::{Session, SessionCommand};
use witness_domain::tenant::{Tenant, TenantCommand};
use witness_domain::ticket::{draft_from_session, Ticket, TicketCommand};
use witness_domain::{agent::Agent, agent::AgentCommand, Decider};
use witness_engine::executor::{execute, ExecuteError};
use witness_engine::EventStore;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct DayPlan {
    pub tenant: TenantId,
    pub sessions: usize,
    pub agents: usize,
    pub seed: u64,
    /// When the first customer arrives; the others follow over eight hours.
    pub start: DateTime<Utc>,
    /// What the customers, agents and bot say: the tenant's language.
    pub language: Language,
}

/// The language of a seeded day's conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Chinese,
    English,
}

impl Language {
    /// A tenant's default locale's (`zh-CN`, `en`).
    pub fn of_locale(locale: &str) -> Language {
        if locale == "en" {
            Language::English
        } else {
            Language::Chinese
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Language::Chinese => "zh-CN",
            Language::English => "en",
        }
    }

    /// `chinese` or `english`, as the day's language has it.
    fn say(self, chinese: &'static str, english: &'static str) -> MessageContent {
        let text = match self {
            Language::Chinese => chinese,
            Language::English => english,
        };
        MessageContent::Text { text: text.to_owned() }
    }
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayReport {
    pub sessions: usize,
    pub events: u64,
    pub bot_resolved: usize,
    /// Assignments to an agent (a session an agent transferred on is assigned again).
    pub assigned: usize,
    /// Sessions assigned to an agent at least once.
    pub sessions_assigned: usize,
    pub abandoned: usize,
    pub calls: usize,
    pub recording_segments: usize,
    pub tickets: usize,
    pub ratings: usize,
}

/// splitmix64: small, fast, and the same on every machine.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const BUSINESS: [(&str, &str); 3] = [("credit_card", "cards"), ("loan", "loans"), ("wealth", "wealth")];
const QUESTIONS: [(&str, &str); 4] = [
    ("信用卡年费怎么收？", "How is the annual fee of my card charged?"),
    ("怎么提高信用卡额度？", "How do I raise my card limit?"),
    ("房贷利率是多少？", "What is the mortgage rate?"),
    ("理财产品可以提前赎回吗？", "Can I redeem my fund early?"),
];

#[derive(Debug, Clone)]
enum Todo {
    Session(SessionId, Actor, SessionCommand),
    Ticket(TicketId, SessionId),
    /// Wake the router (an offer may have run out).
    Route,
}

struct Day<'a> {
    store: &'a EventStore,
    plan: &'a DayPlan,
    rng: Rng,
    now: DateTime<Utc>,
    agenda: BTreeMap<(DateTime<Utc>, u64), Todo>,
    seq: u64,
    router: Router,
    agents: Vec<UserId>,
    report: DayReport,
    assigned: std::collections::HashSet<SessionId>,
    /// Sessions started and not yet ended.
    open: std::collections::BTreeSet<SessionId>,
    /// When a `Todo::Route` is already scheduled.
    route_at: Option<DateTime<Utc>>,
}

impl Day<'_> {
    fn later(&mut self, secs: i64, todo: Todo) {
        self.seq += 1;
        self.agenda.insert((self.now + Duration::seconds(secs), self.seq), todo);
    }

    async fn session(&mut self, id: SessionId, actor: Actor, command: SessionCommand) -> Result<(), ExecuteError> {
        let stream = StreamId::session(id);
        let result = match execute::<Session>(self.store, &self.plan.tenant, &stream, &actor, self.now, command).await {
            Ok(r) => r,
            // A person acting on a session that moved on (the customer hung
            // up while the agent was accepting) is refused, as in real life.
            Err(ExecuteError::Domain(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.report.events += result.events.len() as u64;
        for recorded in &result.events {
            let event = recorded.decode()?;
            self.router.apply(&stream, &event, self.now);
            match event {
                Event::SessionStarted(_) => self.open.insert(id),
                Event::SessionEnded(_) => self.open.remove(&id),
                _ => false,
            };
            self.react(id, &event);
        }
        Ok(())
    }

    /// What the simulated customer and agents do next.
    fn react(&mut self, id: SessionId, event: &Event) {
        let customer = Actor::new(ActorKind::Customer, format!("visitor-{}", &id.to_string()[24..]));
        match event {
            Event::SessionQueued(_) if self.rng.chance(10) => {
                let wait = self.rng.between(60, 180);
                self.later(
                    wait,
                    Todo::Session(
                        id,
                        customer,
                        SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::Abandoned },
                    ),
                );
            }
            Event::AgentOffered(o) => {
                let agent = Actor::new(ActorKind::Agent, o.agent_id.to_string());
                let roll = self.rng.next() % 100;
                let delay = self.rng.between(2, 6);
                if roll < 10 {
                    let decline = SessionCommand::DeclineOffer {
                        offer_id: o.offer_id,
                        agent_id: o.agent_id,
                        reason: Some("busy".into()),
                    };
                    self.later(delay, Todo::Session(id, agent, decline));
                } else if roll >= 15 {
                    let at = self.now + Duration::seconds(delay);
                    let accept = SessionCommand::AcceptOffer { offer_id: o.offer_id, agent_id: o.agent_id, at };
                    self.later(delay, Todo::Session(id, agent, accept));
                } // else: the agent lets it run out
            }
            Event::AgentAssigned(a) => {
                self.report.assigned += 1;
                if self.assigned.insert(id) {
                    self.report.sessions_assigned += 1;
                }
                let agent = Actor::new(ActorKind::Agent, a.agent_id.to_string());
                let hello = self.plan.language.say("您好，请问有什么可以帮您？", "Hello, how can I help you?");
                self.later(
                    5,
                    Todo::Session(
                        id,
                        agent.clone(),
                        SessionCommand::AgentSays {
                            agent_id: a.agent_id,
                            message_id: MessageId::new(),
                            content: hello,
                        },
                    ),
                );
                let reply = self.plan.language.say("这个月被重复扣款了。", "I was charged twice this month.");
                self.later(
                    20,
                    Todo::Session(
                        id,
                        customer.clone(),
                        SessionCommand::CustomerSays { message_id: MessageId::new(), content: reply },
                    ),
                );
                if self.rng.chance(30) {
                    let kind = if self.rng.chance(50) { CallKind::Video } else { CallKind::Audio };
                    let call_id = CallId::new();
                    self.later(
                        30,
                        Todo::Session(
                            id,
                            agent.clone(),
                            SessionCommand::StartCall { agent_id: a.agent_id, call_id, kind },
                        ),
                    );
                    let talk = self.rng.between(60, 300);
                    if self.rng.chance(60) {
                        self.record(id, 31, talk - 2);
                    }
                    self.later(
                        30 + talk,
                        Todo::Session(id, agent.clone(), SessionCommand::EndCall { call_id, reason: None }),
                    );
                }
                if self.rng.chance(5) {
                    let to = TransferTarget::Group { group: self.rng.pick(&BUSINESS).1.to_owned() };
                    let transfer = SessionCommand::Transfer {
                        agent_id: a.agent_id,
                        to,
                        reason: "needs a specialist".into(),
                        context_summary: "double charge".into(),
                    };
                    self.later(40, Todo::Session(id, agent.clone(), transfer));
                    return;
                }
                let end = self.rng.between(120, 600) + 400;
                let ended_by = if self.rng.chance(50) { EndedBy::Agent } else { EndedBy::Customer };
                let who = if ended_by == EndedBy::Agent { agent.clone() } else { customer };
                self.later(end, Todo::Session(id, who, SessionCommand::End { ended_by, reason: EndReason::Resolved }));
                let wrap = end + self.rng.between(30, 90);
                self.later(
                    wrap,
                    Todo::Session(
                        id,
                        agent,
                        SessionCommand::CompleteWrapUp {
                            agent_id: a.agent_id,
                            disposition: "resolved".into(),
                            notes: None,
                        },
                    ),
                );
                if self.rng.chance(15) {
                    let ticket = TicketId::new();
                    self.later(wrap + 1, Todo::Ticket(ticket, id));
                }
            }
            Event::SessionEnded(e) => {
                match e.reason {
                    EndReason::Abandoned => self.report.abandoned += 1,
                    EndReason::BotResolved => self.report.bot_resolved += 1,
                    _ => {}
                }
                if e.reason != EndReason::Abandoned && self.rng.chance(65) {
                    let rating = Rating::try_from(self.rng.between(1, 5) as u8).expect("1 to 5");
                    self.later(100, Todo::Session(id, customer, SessionCommand::Rate { rating, comment: None }));
                }
            }
            Event::CallStarted(_) => self.report.calls += 1,
            Event::RecordingSegmentClosed(_) => self.report.recording_segments += 1,
            Event::SatisfactionRated(_) => self.report.ratings += 1,
            _ => {}
        }
    }

    /// A recording from `from` seconds for `secs` seconds: one 10 s segment
    /// per audio track as the recorder would report them. The hashes are
    /// synthetic (no media files are written by a seed).
    fn record(&mut self, id: SessionId, from: i64, secs: i64) {
        let recording_id = RecordingId::new();
        let recorder = Actor::system();
        let start = SessionCommand::StartRecording { recording_id, reason: RecordingReason::TenantPolicy };
        self.later(from, Todo::Session(id, recorder.clone(), start));
        for (i, at) in (10..=secs).step_by(10).enumerate() {
            for track in ["customer-audio", "agent-audio"] {
                let digest = format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    self.rng.next(),
                    self.rng.next(),
                    self.rng.next(),
                    self.rng.next()
                );
                let segment = RecordingSegmentClosed {
                    recording_id,
                    track_id: track.into(),
                    segment_index: i as u32,
                    file: format!("{recording_id}/{track}/{i:05}.webm"),
                    bytes: 80_000 + self.rng.next() % 4_000,
                    duration_ms: 10_000,
                    sha256: Sha256Hex::try_from(digest).expect("64 hex digits"),
                };
                self.later(from + at, Todo::Session(id, recorder.clone(), SessionCommand::CloseSegment { segment }));
            }
        }
        self.later(from + secs, Todo::Session(id, recorder, SessionCommand::StopRecording { recording_id }));
    }

    /// Opens a ticket from the session's context, then works it.
    async fn ticket(&mut self, ticket_id: TicketId, session_id: SessionId) -> Result<(), ExecuteError> {
        let history: Vec<Event> = self
            .store
            .read_stream(&StreamId::session(session_id), 1)
            .await?
            .iter()
            .map(|e| e.decode())
            .collect::<Result<_, _>>()?;
        let (title, description) = draft_from_session(&Session::fold(&history));
        let stream = StreamId::ticket(ticket_id);
        let agent = Actor::system();
        let create =
            TicketCommand::Create { ticket_id, session_id, title, description, priority: TicketPriority::Normal };
        let r = execute::<Ticket>(self.store, &self.plan.tenant, &stream, &agent, self.now, create).await?;
        let r2 = execute::<Ticket>(
            self.store,
            &self.plan.tenant,
            &stream,
            &agent,
            self.now + Duration::seconds(60),
            TicketCommand::ChangeStatus {
                status: TicketStatus::InProgress,
                note: Some("called the customer back".into()),
            },
        )
        .await?;
        self.report.tickets += 1;
        self.report.events += (r.events.len() + r2.events.len()) as u64;
        Ok(())
    }

    async fn route(&mut self) -> Result<(), ExecuteError> {
        for action in self.router.decide(self.now) {
            match action.into_command(self.now) {
                RoutingCommand::Session(session, command) => self.session(session, Actor::system(), command).await?,
                RoutingCommand::Agent(agent, command) => {
                    let stream = StreamId::agent(agent);
                    let r =
                        execute::<Agent>(self.store, &self.plan.tenant, &stream, &Actor::system(), self.now, command)
                            .await?;
                    for e in &r.events {
                        self.router.apply(&stream, &e.decode()?, self.now);
                    }
                    self.report.events += r.events.len() as u64;
                }
            }
        }
        // Wake up for the earliest offer deadline, unless already due to.
        if let Some(deadline) = self.router.next_deadline() {
            if self.route_at.is_none_or(|t| deadline < t) {
                self.route_at = Some(deadline);
                let secs = (deadline - self.now).num_seconds().max(0);
                self.later(secs, Todo::Route);
            }
        }
        Ok(())
    }
}

/// Runs the day. `progress` gets the number of customers who have arrived.
pub async fn run_day(
    store: &EventStore,
    plan: &DayPlan,
    mut progress: impl FnMut(usize),
) -> Result<DayReport, ExecuteError> {
    let mut day = Day {
        store,
        plan,
        rng: Rng(plan.seed),
        now: plan.start,
        agenda: BTreeMap::new(),
        seq: 0,
        router: Router::new(RouterConfig::default()),
        agents: (0..plan.agents).map(|_| UserId::new()).collect(),
        report: DayReport { sessions: plan.sessions, ..Default::default() },
        assigned: Default::default(),
        open: Default::default(),
        route_at: None,
    };
    // The agents are users of the tenant (created if it does not exist), so
    // that consoles name them: 坐席 1, 坐席 2, … with logins unique to the run.
    let tenant_stream = StreamId::tenant(&plan.tenant);
    let system = Actor::system();
    let tenant = witness_engine::executor::current::<Tenant>(store, &tenant_stream).await?.state;
    if !tenant.exists() {
        let create = TenantCommand::Create { name: plan.tenant.to_string() };
        let r = execute::<Tenant>(store, &plan.tenant, &tenant_stream, &system, day.now, create).await?;
        day.report.events += r.events.len() as u64;
    }
    for (i, &user_id) in day.agents.iter().enumerate() {
        let login = format!("seed-{}-{}", &user_id.to_string()[30..], i + 1);
        let add =
            TenantCommand::AddUser { user_id, login, role: Role::Agent, display_name: format!("坐席 {}", i + 1) };
        let r = execute::<Tenant>(store, &plan.tenant, &tenant_stream, &system, day.now, add).await?;
        day.report.events += r.events.len() as u64;
    }
    for i in 0..plan.agents {
        let agent_id = day.agents[i];
        let skill_groups = vec![BUSINESS[i % 3].1.to_owned(), BUSINESS[(i + 1) % 3].1.to_owned()];
        let capacity = 1 + (i % 3) as u32;
        let command = AgentCommand::SetPresence { agent_id, presence: Presence::Online, capacity, skill_groups };
        let actor = Actor::new(ActorKind::Agent, agent_id.to_string());
        let stream = StreamId::agent(agent_id);
        let r = execute::<Agent>(store, &plan.tenant, &stream, &actor, day.now, command).await?;
        for e in &r.events {
            day.router.apply(&stream, &e.decode()?, day.now);
        }
        day.report.events += r.events.len() as u64;
    }
    let gap = (8 * 3600 / plan.sessions.max(1) as i64).max(1);
    for i in 0..plan.sessions {
        let session_id = SessionId::new();
        let (business, group) = *day.rng.pick(&BUSINESS);
        let customer = Actor::new(ActorKind::Customer, format!("visitor-{}", &session_id.to_string()[24..]));
        let start = SessionCommand::Start {
            session_id,
            channel: *day.rng.pick(&Channel::ALL),
            business_type: business.into(),
            customer_ref: customer.id.clone().unwrap_or_default(),
            locale: Some(day.plan.language.tag().to_owned()),
        };
        let (chinese, english) = *day.rng.pick(&QUESTIONS);
        let question = day.plan.language.say(chinese, english);
        let ask = SessionCommand::CustomerSays { message_id: MessageId::new(), content: question };
        let answer = SessionCommand::BotAnswers {
            message_id: MessageId::new(),
            content: day.plan.language.say("以下是知识库中的答案。", "Here is what I found in our FAQ."),
            faq_id: Some(format!("faq-{business}")),
            score: Some(day.rng.between(30, 95) as f64 / 100.0),
        };
        let next = if day.rng.chance(35) {
            SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::BotResolved }
        } else {
            SessionCommand::RequestHuman {
                group: group.into(),
                reason: "customer asked for a human".into(),
                context_summary: format!("{business} question the FAQ did not settle"),
                priority: 0,
            }
        };
        let offset = i as i64 * gap;
        day.agenda.insert(
            (plan.start + Duration::seconds(offset), 4 * i as u64),
            Todo::Session(session_id, customer.clone(), start),
        );
        day.agenda.insert(
            (plan.start + Duration::seconds(offset + 2), 4 * i as u64 + 1),
            Todo::Session(session_id, customer.clone(), ask),
        );
        day.agenda.insert(
            (plan.start + Duration::seconds(offset + 3), 4 * i as u64 + 2),
            Todo::Session(session_id, Actor::bot(), answer),
        );
        day.agenda.insert(
            (plan.start + Duration::seconds(offset + 30), 4 * i as u64 + 3),
            Todo::Session(session_id, customer, next),
        );
    }
    day.seq = 4 * plan.sessions as u64;
    let mut arrived = 0;
    while let Some(((at, _), todo)) = day.agenda.pop_first() {
        day.now = at;
        match todo {
            Todo::Session(id, actor, command) => {
                if matches!(command, SessionCommand::Start { .. }) {
                    arrived += 1;
                    progress(arrived);
                }
                day.session(id, actor, command).await?;
            }
            Todo::Ticket(ticket_id, session_id) => day.ticket(ticket_id, session_id).await?,
            Todo::Route => day.route_at = None,
        }
        day.route().await?;
    }
    // The service closes: whoever is still waiting (every agent who could
    // take them declined or let the offer run out) gives up, and every agent
    // signs off, so the day ends with nothing open and nobody online.
    for id in std::mem::take(&mut day.open) {
        let customer = Actor::new(ActorKind::Customer, format!("visitor-{}", &id.to_string()[24..]));
        let leave = SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::Abandoned };
        day.session(id, customer, leave).await?;
    }
    for (i, &agent_id) in day.agents.iter().enumerate() {
        let command = AgentCommand::SetPresence {
            agent_id,
            presence: Presence::Offline,
            capacity: 1 + (i % 3) as u32,
            skill_groups: vec![],
        };
        let actor = Actor::new(ActorKind::Agent, agent_id.to_string());
        let r = execute::<Agent>(store, &plan.tenant, &StreamId::agent(agent_id), &actor, day.now, command).await?;
        day.report.events += r.events.len() as u64;
    }
    Ok(day.report)
}
