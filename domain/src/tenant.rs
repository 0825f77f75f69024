//! A tenant and its user directory, on the stream `tenant-<slug>`.
//!
//! Creating a tenant twice, or a second user with a login the tenant already
//! has, is refused: the stream's version makes the check race-free.
//! Passwords are not here; see [`witness_schemas::UserCreated`].

use std::collections::BTreeMap;

use witness_schemas::*;

use super::{Decider, DomainError};
use crate::refusal;

/// A directory entry.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: UserId,
    pub login: String,
    pub role: Role,
    pub display_name: String,
    /// Tokens issued up to this time are refused (the last sign-out or
    /// revocation).
    pub revoked_before: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantState {
    pub name: Option<String>,
    /// By login.
    pub users: BTreeMap<String, User>,
    /// The tenant's recording policy, if it set one.
    pub record_calls: Option<bool>,
    /// Days each class of data is kept after its session ends (absent: forever).
    pub retention: BTreeMap<DataClass, u32>,
    /// Legal holds in force, by session (`None`: the whole tenant), with their reasons.
    pub holds: BTreeMap<Option<SessionId>, String>,
    /// The QA evaluation form (empty: none set).
    pub qa_form: Vec<QaCriterion>,
    /// The automatic QA rules, if set.
    pub qa_rules: Option<QaRulesSet>,
    /// Every version of every dual-recording script, by id, oldest first.
    pub scripts: BTreeMap<String, Vec<DualRecordingScriptSet>>,
    /// The skill groups, if the tenant set them (else: those its agents name).
    pub groups: Option<Vec<SkillGroup>>,
    /// The wrap-up dispositions, if the tenant set them (else: any text).
    pub dispositions: Option<Vec<String>>,
    /// The tenant's time zone, if it set one (else: Beijing time).
    pub time_zone: Option<i32>,
    /// The tenant's default language, if it set one (else: [`DEFAULT_LOCALE`]).
    pub locale: Option<String>,
    /// The web sites that may embed the customer page, as browsers name
    /// their origin (`https://www.bank.example`).
    pub embed_origins: Vec<String>,
    /// Calls offer the beauty filter (美颜).
    pub beauty_filter: bool,
}

/// The most web sites a tenant may let embed its customer page.
pub const MAX_EMBED_ORIGINS: usize = 20;

/// `origin` as a browser sends it in `Origin` (`https://host[:port]`,
/// lower case, no default port, no path), or why it is not one. A trailing
/// `/` is forgiven; paths, wildcards, user names and other schemes are not.
pub fn embed_origin(origin: &str) -> Result<String, super::Refusal> {
    let quoted = format!("{origin:?}");
    let trimmed = origin.trim();
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed).to_ascii_lowercase();
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(refusal!(
            "origin_no_scheme",
            "{origin} is not a web site's origin (no http:// or https://), e.g. https://www.bank.example",
            origin = quoted
        ));
    };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => {
            return Err(refusal!(
                "origin_scheme",
                "{origin} is not a web site's origin (only http and https), e.g. https://www.bank.example",
                origin = quoted
            ))
        }
    };
    // An IPv6 address is bracketed and holds colons of its own.
    let (host, port) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((v6, "")) => (&rest[..v6.len() + 2], None),
        Some((v6, after)) => (&rest[..v6.len() + 2], Some(after.strip_prefix(':').unwrap_or("none"))),
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            || (host.starts_with('[')
                && host.ends_with(']')
                && host[1..host.len() - 1].chars().all(|c| c.is_ascii_hexdigit() || c == ':')));
    if !host_ok {
        return Err(refusal!(
            "origin_host",
            "{origin} is not a web site's origin (a host name only: no path, wildcard or user name), e.g. \
             https://www.bank.example",
            origin = quoted
        ));
    }
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(p) if p == default_port => Ok(format!("{scheme}://{host}")),
        Some(p) if p.parse::<u16>().is_ok_and(|p| p > 0) && !p.starts_with('0') => Ok(format!("{scheme}://{host}:{p}")),
        Some(_) => Err(refusal!(
            "origin_port",
            "{origin} is not a web site's origin (a port from 1 to 65535), e.g. https://www.bank.example",
            origin = quoted
        )),
    }
}

/// The languages a tenant may choose as its default.
pub const LOCALES: [&str; 2] = ["zh-CN", "en"];

/// The language of a tenant that set none: Simplified Chinese.
pub const DEFAULT_LOCALE: &str = "zh-CN";

/// The time zone of a tenant that set none: Beijing time, UTC+08:00.
pub const DEFAULT_UTC_OFFSET_MINUTES: i32 = 480;

impl User {
    /// "Display Name (login)": how consoles name staff (the login is their
    /// work number).
    pub fn name_and_login(&self) -> String {
        format!("{} ({})", self.display_name, self.login)
    }
}

impl TenantState {
    /// The tenant's time zone as minutes east of UTC.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.time_zone.unwrap_or(DEFAULT_UTC_OFFSET_MINUTES)
    }

    /// The tenant's default language, a tag of [`LOCALES`].
    pub fn locale(&self) -> &str {
        self.locale.as_deref().unwrap_or(DEFAULT_LOCALE)
    }
}

impl TenantState {
    /// Version `version` of script `id`, if there is one.
    pub fn script(&self, id: &str, version: u32) -> Option<&DualRecordingScriptSet> {
        self.scripts.get(id)?.iter().find(|s| s.version == version)
    }
}

impl TenantState {
    pub fn exists(&self) -> bool {
        self.name.is_some()
    }

    pub fn user(&self, id: UserId) -> Option<&User> {
        self.users.values().find(|u| u.user_id == id)
    }
}

#[derive(Debug, Clone)]
pub enum TenantCommand {
    Create {
        name: String,
    },
    AddUser {
        user_id: UserId,
        login: String,
        role: Role,
        display_name: String,
    },
    /// Refuses every token of `user_id` issued up to `before`.
    RevokeTokens {
        user_id: UserId,
        before: chrono::DateTime<chrono::Utc>,
        reason: String,
    },
    /// Entries already checked by the importer (see the API's `kb` module).
    ImportFaq {
        entries: Vec<FaqEntry>,
    },
    /// Record every call from its start, or only on an agent's demand.
    SetRecordingPolicy {
        record_calls: bool,
    },
    SetRetention {
        class: DataClass,
        days: Option<u32>,
    },
    PlaceLegalHold {
        session_id: Option<SessionId>,
        reason: String,
    },
    ReleaseLegalHold {
        session_id: Option<SessionId>,
        reason: String,
    },
    SetQaForm {
        criteria: Vec<QaCriterion>,
    },
    SetQaRules(QaRulesSet),
    /// The skill groups, all of them.
    SetGroups(Vec<SkillGroup>),
    /// The wrap-up dispositions, all of them.
    SetDispositions(Vec<String>),
    /// The time zone, as minutes east of UTC.
    SetTimeZone(i32),
    /// One of [`LOCALES`].
    SetLocale(String),
    /// The web sites that may embed the customer page, all of them.
    SetEmbedOrigins(Vec<String>),
    /// What calls offer.
    SetCallOptions {
        beauty_filter: bool,
    },
    /// A new version of a dual-recording script.
    SetScript {
        script_id: String,
        title: String,
        steps: Vec<ScriptStep>,
    },
}

/// The longest retention a tenant may set: a hundred years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Debug)]
pub struct Tenant;

/// The most skill groups a tenant may have.
pub const MAX_GROUPS: usize = 100;

/// Group names are what agents list in their skills: letters, digits and
/// `._-`, 1 to 64 of them.
fn valid_group(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Logins are what people type: letters, digits and `._-@`, 1 to 64 of them.
fn valid_login(login: &str) -> bool {
    (1..=64).contains(&login.len()) && login.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

impl Decider for Tenant {
    type State = TenantState;
    type Command = TenantCommand;

    fn decide(state: &TenantState, command: TenantCommand) -> Result<Vec<Event>, DomainError> {
        match command {
            TenantCommand::Create { name } => {
                if state.exists() {
                    return Err(DomainError::Invalid(refusal!("tenant_exists", "the tenant already exists")));
                }
                let name = name.trim().to_owned();
                if name.is_empty() || name.chars().count() > 200 {
                    return Err(DomainError::Invalid(refusal!(
                        "tenant_name_length",
                        "a tenant name is 1 to 200 characters"
                    )));
                }
                Ok(vec![TenantCreated { name }.into()])
            }
            TenantCommand::AddUser { user_id, login, role, display_name } => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if !valid_login(&login) {
                    return Err(DomainError::Invalid(refusal!(
                        "login_format",
                        "login {login}: use 1 to 64 letters, digits or ._-@",
                        login = format!("{login:?}")
                    )));
                }
                if state.users.contains_key(&login) {
                    return Err(DomainError::Invalid(refusal!(
                        "login_taken",
                        "login {login} is taken in this tenant",
                        login = format!("{login:?}")
                    )));
                }
                if role == Role::Customer {
                    return Err(DomainError::Invalid(refusal!(
                        "customers_are_visitors",
                        "customers are visitors, not accounts"
                    )));
                }
                Ok(vec![UserCreated { user_id, login, role, display_name: display_name.trim().to_owned() }.into()])
            }
            TenantCommand::RevokeTokens { user_id, before, reason } => {
                if state.user(user_id).is_none() {
                    return Err(DomainError::Invalid(refusal!("no_user", "no such user in this tenant")));
                }
                Ok(vec![UserTokensRevoked { user_id, before, reason }.into()])
            }
            TenantCommand::ImportFaq { entries } => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if entries.is_empty() {
                    return Err(DomainError::Invalid(refusal!("faq_empty", "an FAQ import needs at least one entry")));
                }
                Ok(vec![FaqImported { entries }.into()])
            }
            TenantCommand::SetRecordingPolicy { record_calls } => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if state.record_calls == Some(record_calls) {
                    return Ok(vec![]);
                }
                Ok(vec![RecordingPolicySet { record_calls }.into()])
            }
            TenantCommand::SetRetention { class, days } => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if days.is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d)) {
                    return Err(DomainError::Invalid(refusal!(
                        "retention_range",
                        "retention is 1 to {max} days, or none (keep forever)",
                        max = MAX_RETENTION_DAYS
                    )));
                }
                if state.retention.get(&class).copied() == days {
                    return Ok(vec![]);
                }
                Ok(vec![RetentionSet { class, days }.into()])
            }
            TenantCommand::PlaceLegalHold { session_id, reason } => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if reason.trim().is_empty() {
                    return Err(DomainError::Invalid(refusal!("hold_needs_reason", "a legal hold needs a reason")));
                }
                if state.holds.contains_key(&session_id) {
                    return Err(DomainError::Invalid(refusal!("hold_in_force", "that legal hold is already in force")));
                }
                Ok(vec![LegalHoldPlaced { session_id, reason: reason.trim().to_owned() }.into()])
            }
            TenantCommand::SetQaForm { criteria } => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if criteria.is_empty() {
                    return Err(DomainError::Invalid(refusal!(
                        "qa_form_empty",
                        "a QA form needs at least one criterion"
                    )));
                }
                let mut names = std::collections::BTreeSet::new();
                for c in &criteria {
                    if c.name.trim().is_empty() || !names.insert(c.name.trim()) {
                        return Err(DomainError::Invalid(refusal!(
                            "criterion_name",
                            "criterion names must be set and unique: {name}",
                            name = format!("{:?}", c.name)
                        )));
                    }
                    if !(c.weight.is_finite() && c.weight > 0.0 && c.max_score.is_finite() && c.max_score > 0.0) {
                        return Err(DomainError::Invalid(refusal!(
                            "criterion_weights",
                            "criterion {name}: weight and max_score must be positive numbers",
                            name = format!("{:?}", c.name)
                        )));
                    }
                }
                Ok(vec![QaFormSet { criteria }.into()])
            }
            TenantCommand::SetDispositions(dispositions) => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                let dispositions: Vec<String> = dispositions.iter().map(|d| d.trim().to_owned()).collect();
                let mut seen = std::collections::BTreeSet::new();
                let valid = (1..=50).contains(&dispositions.len())
                    && dispositions.iter().all(|d| (1..=64).contains(&d.chars().count()) && seen.insert(d.clone()));
                if !valid {
                    return Err(DomainError::Invalid(refusal!(
                        "dispositions_list",
                        "from 1 to 50 dispositions, each 1 to 64 characters, none twice"
                    )));
                }
                Ok(vec![DispositionsSet { dispositions }.into()])
            }
            TenantCommand::SetTimeZone(utc_offset_minutes) => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if !(-720..=840).contains(&utc_offset_minutes) || utc_offset_minutes % 15 != 0 {
                    return Err(DomainError::Invalid(refusal!(
                        "time_zone_range",
                        "a time zone of {minutes} minutes: from -720 to 840, in steps of 15",
                        minutes = utc_offset_minutes
                    )));
                }
                Ok(vec![TimeZoneSet { utc_offset_minutes }.into()])
            }
            TenantCommand::SetLocale(locale) => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if !LOCALES.contains(&locale.as_str()) {
                    return Err(DomainError::Invalid(refusal!(
                        "language_choice",
                        "a language of {choices}",
                        choices = LOCALES.join(" / ")
                    )));
                }
                Ok(vec![TenantLocaleSet { locale }.into()])
            }
            TenantCommand::SetEmbedOrigins(origins) => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if origins.len() > MAX_EMBED_ORIGINS {
                    return Err(DomainError::Invalid(refusal!(
                        "too_many_sites",
                        "at most {max} web sites",
                        max = MAX_EMBED_ORIGINS
                    )));
                }
                let mut normal = Vec::with_capacity(origins.len());
                for origin in &origins {
                    let origin = embed_origin(origin).map_err(DomainError::Invalid)?;
                    if !normal.contains(&origin) {
                        normal.push(origin);
                    }
                }
                Ok(vec![EmbedOriginsSet { origins: normal }.into()])
            }
            TenantCommand::SetCallOptions { beauty_filter } => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if state.beauty_filter == beauty_filter {
                    return Ok(vec![]);
                }
                Ok(vec![CallOptionsSet { beauty_filter }.into()])
            }
            TenantCommand::SetGroups(groups) => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                let mut names = std::collections::BTreeSet::new();
                for g in &groups {
                    if !valid_group(&g.name) {
                        return Err(DomainError::Invalid(refusal!(
                            "group_name",
                            "group name {name}: 1 to 64 letters, digits and `._-`",
                            name = format!("{:?}", g.name)
                        )));
                    }
                    if g.label.trim().is_empty() || g.label.chars().count() > 100 {
                        return Err(DomainError::Invalid(refusal!(
                            "group_label",
                            "group {name}: a label of 1 to 100 characters",
                            name = format!("{:?}", g.name)
                        )));
                    }
                    if let Some(h) = &g.hours {
                        let (open, close) = (BusinessHours::minutes(&h.open), BusinessHours::minutes(&h.close));
                        let valid = open.zip(close).is_some_and(|(o, c)| o < c)
                            && !h.days.is_empty()
                            && h.days.iter().all(|d| (1..=7).contains(d))
                            && (-720..=840).contains(&h.utc_offset_minutes)
                            && !h.closed_message.trim().is_empty()
                            && h.closed_message.chars().count() <= 500;
                        if !valid {
                            return Err(DomainError::Invalid(refusal!(
                                "group_hours",
                                "group {name}: hours need days 1 to 7, HH:MM open before close, an offset from -720 \
                                 to 840 minutes and a closed message of 1 to 500 characters",
                                name = format!("{:?}", g.name)
                            )));
                        }
                    }
                    if !names.insert(g.name.as_str()) {
                        return Err(DomainError::Invalid(refusal!(
                            "group_twice",
                            "group {name} is named twice",
                            name = format!("{:?}", g.name)
                        )));
                    }
                }
                if groups.is_empty() || groups.len() > MAX_GROUPS {
                    return Err(DomainError::Invalid(refusal!(
                        "group_count",
                        "from 1 to {max} groups",
                        max = MAX_GROUPS
                    )));
                }
                Ok(vec![SkillGroupsSet { groups }.into()])
            }
            TenantCommand::SetQaRules(mut rules) => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                if [rules.greeting_within_secs, rules.response_sla_secs, rules.silence_secs].contains(&Some(0)) {
                    return Err(DomainError::Invalid(refusal!("rule_limit", "rule limits are at least 1 second")));
                }
                rules.forbidden_words = rules.forbidden_words.iter().map(|w| w.trim().to_owned()).collect();
                if rules.forbidden_words.iter().any(String::is_empty) {
                    return Err(DomainError::Invalid(refusal!(
                        "forbidden_word_empty",
                        "a forbidden word cannot be empty"
                    )));
                }
                Ok(vec![rules.into()])
            }
            TenantCommand::SetScript { script_id, title, steps } => {
                if !state.exists() {
                    return Err(DomainError::Invalid(refusal!("no_tenant", "no such tenant")));
                }
                let valid_id = !script_id.is_empty()
                    && script_id.len() <= 64
                    && script_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
                if !valid_id {
                    return Err(DomainError::Invalid(refusal!(
                        "script_id",
                        "a script id is 1 to 64 letters, digits, - or _"
                    )));
                }
                if title.trim().is_empty() || steps.is_empty() {
                    return Err(DomainError::Invalid(refusal!(
                        "script_empty",
                        "a script needs a title and at least one step"
                    )));
                }
                if let Some(i) = steps.iter().position(|s| s.text.trim().is_empty() || s.evidence.is_empty()) {
                    return Err(DomainError::Invalid(refusal!(
                        "script_step",
                        "step {step}: a step needs its text and the evidence it requires",
                        step = i + 1
                    )));
                }
                let version = state.scripts.get(&script_id).map_or(0, Vec::len) as u32 + 1;
                Ok(vec![DualRecordingScriptSet { script_id, version, title: title.trim().to_owned(), steps }.into()])
            }
            TenantCommand::ReleaseLegalHold { session_id, reason } => {
                if !state.holds.contains_key(&session_id) {
                    return Err(DomainError::Invalid(refusal!("no_hold", "no such legal hold in force")));
                }
                if reason.trim().is_empty() {
                    return Err(DomainError::Invalid(refusal!(
                        "release_needs_reason",
                        "releasing a legal hold needs a reason"
                    )));
                }
                Ok(vec![LegalHoldReleased { session_id, reason: reason.trim().to_owned() }.into()])
            }
        }
    }

    fn evolve(mut state: TenantState, event: &Event) -> TenantState {
        match event {
            Event::TenantCreated(e) => state.name = Some(e.name.clone()),
            Event::UserCreated(e) => {
                let user = User {
                    user_id: e.user_id,
                    login: e.login.clone(),
                    role: e.role,
                    display_name: e.display_name.clone(),
                    revoked_before: None,
                };
                state.users.insert(e.login.clone(), user);
            }
            Event::UserTokensRevoked(e) => {
                if let Some(user) = state.users.values_mut().find(|u| u.user_id == e.user_id) {
                    user.revoked_before = user.revoked_before.max(Some(e.before));
                }
            }
            Event::RecordingPolicySet(e) => state.record_calls = Some(e.record_calls),
            Event::RetentionSet(e) => match e.days {
                Some(days) => _ = state.retention.insert(e.class, days),
                None => _ = state.retention.remove(&e.class),
            },
            Event::LegalHoldPlaced(e) => _ = state.holds.insert(e.session_id, e.reason.clone()),
            Event::LegalHoldReleased(e) => _ = state.holds.remove(&e.session_id),
            Event::QaFormSet(e) => state.qa_form = e.criteria.clone(),
            Event::QaRulesSet(e) => state.qa_rules = Some(e.clone()),
            Event::SkillGroupsSet(e) => state.groups = Some(e.groups.clone()),
            Event::DispositionsSet(e) => state.dispositions = Some(e.dispositions.clone()),
            Event::TimeZoneSet(e) => state.time_zone = Some(e.utc_offset_minutes),
            Event::TenantLocaleSet(e) => state.locale = Some(e.locale.clone()),
            Event::EmbedOriginsSet(e) => state.embed_origins = e.origins.clone(),
            Event::CallOptionsSet(e) => state.beauty_filter = e.beauty_filter,
            Event::DualRecordingScriptSet(e) => state.scripts.entry(e.script_id.clone()).or_default().push(e.clone()),
            _ => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::TestHarness;

    fn created() -> Event {
        TenantCreated { name: "Acme Bank".into() }.into()
    }

    fn add(user_id: UserId, login: &str, role: Role) -> TenantCommand {
        TenantCommand::AddUser { user_id, login: login.into(), role, display_name: "Li Na".into() }
    }

    #[test]
    fn a_default_language_is_one_witness_speaks_and_chinese_until_set() {
        assert_eq!(Tenant::fold(&[created()]).locale(), "zh-CN");
        TestHarness::<Tenant>::given([created()])
            .when(TenantCommand::SetLocale("en".into()))
            .then([TenantLocaleSet { locale: "en".into() }.into()]);
        for bad in ["fr", "zh", "EN", ""] {
            TestHarness::<Tenant>::given([created()]).when(TenantCommand::SetLocale(bad.into())).refused();
        }
        TestHarness::<Tenant>::given([]).when(TenantCommand::SetLocale("en".into())).refused();
        assert_eq!(Tenant::fold(&[created(), TenantLocaleSet { locale: "en".into() }.into()]).locale(), "en");
    }

    #[test]
    fn the_beauty_filter_is_off_until_the_tenant_turns_it_on() {
        assert!(!Tenant::fold(&[created()]).beauty_filter);
        let set = |beauty_filter| TenantCommand::SetCallOptions { beauty_filter };
        TestHarness::<Tenant>::given([]).when(set(true)).refused();
        TestHarness::<Tenant>::given([created()]).when(set(false)).then([]);
        TestHarness::<Tenant>::given([created()]).when(set(true)).then([CallOptionsSet { beauty_filter: true }.into()]);
        assert!(Tenant::fold(&[created(), CallOptionsSet { beauty_filter: true }.into()]).beauty_filter);
    }

    #[test]
    fn embed_origins_are_stored_as_browsers_send_them_and_anything_else_is_refused() {
        TestHarness::<Tenant>::given([created()])
            .when(TenantCommand::SetEmbedOrigins(vec![
                "https://WWW.Bank.example/".into(),
                "https://www.bank.example:443".into(),
                "http://localhost:8080".into(),
                "http://[::1]:81".into(),
                "http://[::1]".into(),
            ]))
            .then([EmbedOriginsSet {
                origins: vec![
                    "https://www.bank.example".into(),
                    "http://localhost:8080".into(),
                    "http://[::1]:81".into(),
                    "http://[::1]".into(),
                ],
            }
            .into()]);
        TestHarness::<Tenant>::given([created()])
            .when(TenantCommand::SetEmbedOrigins(vec![]))
            .then([EmbedOriginsSet { origins: vec![] }.into()]);
        for bad in [
            "www.bank.example",
            "ftp://bank.example",
            "https://bank.example/path",
            "https://*.bank.example",
            "https://user@bank.example",
            "https://bank.example:0",
            "https://bank.example:65536",
            "https://bank.example:08",
            "http://[::1]x",
            "http://[::1]:",
            "https://",
            "*",
            "null",
        ] {
            TestHarness::<Tenant>::given([created()]).when(TenantCommand::SetEmbedOrigins(vec![bad.into()])).refused();
        }
        let many = (0..=MAX_EMBED_ORIGINS).map(|i| format!("https://s{i}.example")).collect();
        TestHarness::<Tenant>::given([created()]).when(TenantCommand::SetEmbedOrigins(many)).refused();
        let set = EmbedOriginsSet { origins: vec!["https://a.example".into()] };
        assert_eq!(Tenant::fold(&[created(), set.into()]).embed_origins, ["https://a.example"]);
    }

    #[test]
    fn a_time_zone_is_a_whole_quarter_hour_within_a_day_of_utc_and_beijing_until_set() {
        assert_eq!(Tenant::fold(&[created()]).utc_offset_minutes(), 480);
        for ok in [480, 0, -720, 840, 345] {
            TestHarness::<Tenant>::given([created()])
                .when(TenantCommand::SetTimeZone(ok))
                .then([TimeZoneSet { utc_offset_minutes: ok }.into()]);
        }
        for bad in [841, -721, 481, 10_000] {
            TestHarness::<Tenant>::given([created()]).when(TenantCommand::SetTimeZone(bad)).refused();
        }
        TestHarness::<Tenant>::given([]).when(TenantCommand::SetTimeZone(480)).refused();
        let set = Tenant::fold(&[created(), TimeZoneSet { utc_offset_minutes: -300 }.into()]);
        assert_eq!(set.utc_offset_minutes(), -300);
    }

    #[test]
    fn dispositions_are_set_whole_trimmed_and_unique() {
        let set = |list: &[&str]| TenantCommand::SetDispositions(list.iter().map(|d| d.to_string()).collect());
        TestHarness::<Tenant>::given([created()])
            .when(set(&[" 已解决 ", "需回访"]))
            .then([DispositionsSet { dispositions: vec!["已解决".into(), "需回访".into()] }.into()]);
        for bad in [&[][..], &["a", "a"], &[" "], &[&"x".repeat(65) as &str]] {
            TestHarness::<Tenant>::given([created()]).when(set(bad)).refused();
        }
    }

    #[test]
    fn skill_groups_are_set_whole_with_valid_unique_names_and_labels() {
        let group = |name: &str, label: &str| SkillGroup {
            name: name.into(),
            label: label.into(),
            when_nobody_online: NobodyOnline::Refuse,
            hours: None,
            message_after_secs: None,
        };
        let set = |groups: Vec<SkillGroup>| TenantCommand::SetGroups(groups);
        let hours = |open: &str, close: &str, days: Vec<u8>| BusinessHours {
            utc_offset_minutes: 480,
            days,
            open: open.into(),
            close: close.into(),
            closed_message: "closed".into(),
        };
        let with = |h| SkillGroup { hours: Some(h), ..group("loans", "贷款") };
        TestHarness::<Tenant>::given([created()])
            .when(set(vec![with(hours("09:00", "17:30", vec![1, 5]))]))
            .then([SkillGroupsSet { groups: vec![with(hours("09:00", "17:30", vec![1, 5]))] }.into()]);
        for bad in [
            hours("18:00", "09:00", vec![1]),
            hours("9:00", "17:00", vec![1]),
            hours("09:00", "17:00", vec![8]),
            hours("09:00", "17:00", vec![]),
        ] {
            TestHarness::<Tenant>::given([created()]).when(set(vec![with(bad)])).refused();
        }
        // Open on its own clock: 09:00–17:30 in China is 01:00–09:30 UTC.
        let h = hours("09:00", "17:30", vec![1, 2, 3, 4, 5]);
        let utc = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        assert!(h.is_open(utc("2026-12-07T01:00:00Z")), "Monday 09:00 in Beijing");
        assert!(!h.is_open(utc("2026-12-07T00:59:00Z")), "Monday 08:59");
        assert!(!h.is_open(utc("2026-12-07T09:30:00Z")), "Monday 17:30: closed");
        assert!(!h.is_open(utc("2026-12-06T03:00:00Z")), "Sunday");
        let good = vec![group("cards", "信用卡"), group("loans", "贷款")];
        TestHarness::<Tenant>::given([]).when(set(good.clone())).refused();
        TestHarness::<Tenant>::given([created()])
            .when(set(good.clone()))
            .then([SkillGroupsSet { groups: good.clone() }.into()]);
        for bad in [
            vec![],
            vec![group("cards", "a"), group("cards", "b")],
            vec![group("", "a")],
            vec![group("信用卡", "a")],
            vec![group("cards", " ")],
            vec![group("cards", &"x".repeat(101))],
            (0..=MAX_GROUPS).map(|i| group(&format!("g{i}"), "g")).collect(),
        ] {
            TestHarness::<Tenant>::given([created()]).when(set(bad)).refused();
        }
        let state = Tenant::fold(&[created(), SkillGroupsSet { groups: good.clone() }.into()]);
        assert_eq!(state.groups, Some(good));
    }

    #[test]
    fn a_tenant_sets_its_recording_policy_and_setting_it_again_changes_nothing() {
        let set = |record_calls| TenantCommand::SetRecordingPolicy { record_calls };
        TestHarness::<Tenant>::given([]).when(set(true)).refused();
        TestHarness::<Tenant>::given([created()])
            .when(set(true))
            .then([RecordingPolicySet { record_calls: true }.into()]);
        TestHarness::<Tenant>::given([created(), RecordingPolicySet { record_calls: true }.into()])
            .when(set(true))
            .then([]);
        let state = Tenant::fold(&[created(), RecordingPolicySet { record_calls: false }.into()]);
        assert_eq!(state.record_calls, Some(false));
    }

    #[test]
    fn retention_is_set_per_class_and_holds_are_placed_once_and_released_once() {
        let session = SessionId::new();
        let set = |class, days| TenantCommand::SetRetention { class, days };
        TestHarness::<Tenant>::given([created()]).when(set(DataClass::Recordings, Some(30))).then([RetentionSet {
            class: DataClass::Recordings,
            days: Some(30),
        }
        .into()]);
        let thirty: Event = RetentionSet { class: DataClass::Recordings, days: Some(30) }.into();
        TestHarness::<Tenant>::given([created(), thirty.clone()]).when(set(DataClass::Recordings, Some(30))).then([]);
        for days in [Some(0), Some(MAX_RETENTION_DAYS + 1)] {
            let refused = TestHarness::<Tenant>::given([created()]).when(set(DataClass::Attachments, days));
            assert!(matches!(refused.refused(), DomainError::Invalid(_)));
        }
        let forever: Event = RetentionSet { class: DataClass::Recordings, days: None }.into();
        assert!(Tenant::fold(&[created(), thirty.clone(), forever]).retention.is_empty());
        assert_eq!(Tenant::fold(&[created(), thirty]).retention[&DataClass::Recordings], 30);

        let hold = |session_id| TenantCommand::PlaceLegalHold { session_id, reason: " case 7 ".into() };
        let placed: Event = LegalHoldPlaced { session_id: Some(session), reason: "case 7".into() }.into();
        TestHarness::<Tenant>::given([created()]).when(hold(Some(session))).then([placed.clone()]);
        TestHarness::<Tenant>::given([created(), placed.clone()]).when(hold(Some(session))).refused();
        TestHarness::<Tenant>::given([created(), placed.clone()]).when(hold(None)).then([LegalHoldPlaced {
            session_id: None,
            reason: "case 7".into(),
        }
        .into()]);
        let release = |session_id| TenantCommand::ReleaseLegalHold { session_id, reason: "closed".into() };
        TestHarness::<Tenant>::given([created()]).when(release(Some(session))).refused();
        let released: Event = LegalHoldReleased { session_id: Some(session), reason: "closed".into() }.into();
        TestHarness::<Tenant>::given([created(), placed.clone()]).when(release(Some(session))).then([released.clone()]);
        assert!(Tenant::fold(&[created(), placed, released]).holds.is_empty());
    }

    #[test]
    fn a_tenant_is_created_once() {
        TestHarness::<Tenant>::given([]).when(TenantCommand::Create { name: " Acme Bank ".into() }).then([created()]);
        let refused = TestHarness::<Tenant>::given([created()]).when(TenantCommand::Create { name: "x".into() });
        assert_eq!(refused.refused(), DomainError::Invalid(refusal!("tenant_exists", "the tenant already exists")));
    }

    #[test]
    fn a_user_is_added_with_a_login_unique_in_the_tenant() {
        let id = UserId::new();
        TestHarness::<Tenant>::given([created()]).when(add(id, "li.na", Role::Agent)).then([UserCreated {
            user_id: id,
            login: "li.na".into(),
            role: Role::Agent,
            display_name: "Li Na".into(),
        }
        .into()]);
        let taken = UserCreated { user_id: id, login: "li.na".into(), role: Role::Agent, display_name: "x".into() };
        let refused =
            TestHarness::<Tenant>::given([created(), taken.into()]).when(add(UserId::new(), "li.na", Role::Supervisor));
        assert!(matches!(refused.refused(), DomainError::Invalid(r) if r.code == "login_taken"));
    }

    #[test]
    fn users_need_an_existing_tenant_a_sane_login_and_a_staff_role() {
        assert!(TestHarness::<Tenant>::given([])
            .when(add(UserId::new(), "a", Role::Agent))
            .refused()
            .to_string()
            .contains("no such tenant"));
        for bad in ["", "has space", "引号", &"x".repeat(65)] {
            TestHarness::<Tenant>::given([created()]).when(add(UserId::new(), bad, Role::Agent)).refused();
        }
        TestHarness::<Tenant>::given([created()]).when(add(UserId::new(), "visitor", Role::Customer)).refused();
    }

    #[test]
    fn faq_entries_are_imported_into_an_existing_tenant_only() {
        let entries = vec![FaqEntry { id: "a".into(), question: "Q?".into(), answer: "A.".into() }];
        TestHarness::<Tenant>::given([created()])
            .when(TenantCommand::ImportFaq { entries: entries.clone() })
            .then([FaqImported { entries: entries.clone() }.into()]);
        TestHarness::<Tenant>::given([]).when(TenantCommand::ImportFaq { entries }).refused();
        TestHarness::<Tenant>::given([created()]).when(TenantCommand::ImportFaq { entries: vec![] }).refused();
    }
}
