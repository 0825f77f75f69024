//! A session as a party to it may see it, and commands run on it as them.
//!
//! Whoever acts — a customer through their visitor token, staff through
//! theirs, the CLI — is an [`Acting`]: a tenant, a role, a subject and the
//! actor the record names. A session is found only in the caller's tenant
//! and, for a customer, only if it is theirs; otherwise it does not exist
//! (the same refusal, whether it exists elsewhere or not).

use chrono::Utc;
use witness_domain::refusal;
use witness_domain::session::{Session, SessionCommand, SessionState};
use witness_domain::Refusal;
use witness_engine::executor::execute;
use witness_engine::{AppendResult, EventStore};
use witness_schemas::{Actor, RecordedEvent, Role, SessionId, StreamId, TenantId, UserId};

use crate::{Error, Kind};

/// Who acts.
pub trait Acting {
    fn tenant(&self) -> &TenantId;
    fn role(&self) -> Role;
    /// A user's id (staff), or a visitor's reference (a customer).
    fn subject(&self) -> &str;
    /// Who the record says acted.
    fn actor(&self) -> Actor;

    /// The user's id; a customer has none.
    fn user_id(&self) -> Result<UserId, Error> {
        self.subject()
            .parse()
            .map_err(|_| Error::new(Kind::Forbidden, refusal!("staff_only", "this needs a staff account")))
    }

    /// Refuses unless the role is one of `roles`.
    fn require(&self, roles: &[Role]) -> Result<(), Error> {
        if roles.contains(&self.role()) {
            return Ok(());
        }
        let names: Vec<String> = roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
        Err(Error::new(
            Kind::Forbidden,
            refusal!("role_needed", "this needs the role {roles}", roles = names.join(" / ")),
        ))
    }
}

/// A session as the caller may see it.
#[derive(Debug)]
pub struct Loaded {
    pub id: SessionId,
    pub state: SessionState,
}

impl Loaded {
    /// Whether `who` reads this session's personal data unmasked: its
    /// customer, the agent handling it or offered it, and the roles that
    /// see personal data everywhere.
    pub fn unmasked_for(&self, who: &impl Acting) -> bool {
        match who.role() {
            Role::Customer => who.subject() == self.state.customer_ref,
            Role::Agent => who
                .user_id()
                .is_ok_and(|me| self.state.agent() == Some(me) || self.state.offer().is_some_and(|o| o.agent_id == me)),
            r => r.sees_personal_data(),
        }
    }

    /// Refuses (with `refusal`) anyone but the agent the session is
    /// assigned to.
    pub fn require_assigned_agent(&self, who: &impl Acting, refusal: Refusal) -> Result<(), Error> {
        who.require(&[Role::Agent])?;
        if self.state.agent() != Some(who.user_id()?) {
            return Err(Error::new(Kind::Forbidden, refusal));
        }
        Ok(())
    }

    /// The session's events, read now (readable: personal fields decrypted).
    pub async fn events(&self, store: &EventStore) -> Result<Vec<RecordedEvent>, Error> {
        Ok(store.read_stream(&StreamId::session(self.id), 1).await?)
    }
}

/// Loads session `id` if `who` may see it: same tenant and, for a
/// customer, their own. The state comes from the one the executor keeps
/// between commands, brought up to date: a chat message does not read the
/// session's whole history.
pub async fn load(store: &EventStore, who: &impl Acting, id: &str) -> Result<Loaded, Error> {
    let none = || Error::not_found(refusal!("no_session", "no such session"));
    let id: SessionId = id.parse().map_err(|_| none())?;
    let folded = witness_engine::executor::current::<Session>(store, &StreamId::session(id)).await?;
    if folded.tenant.as_ref() != Some(who.tenant()) {
        return Err(none());
    }
    if who.role() == Role::Customer && who.subject() != folded.state.customer_ref {
        return Err(none());
    }
    Ok(Loaded { id, state: folded.state })
}

/// Runs `command` on session `id` as `who`: the session's version after it.
pub async fn run(store: &EventStore, who: &impl Acting, id: SessionId, command: SessionCommand) -> Result<u64, Error> {
    Ok(appended(store, who, id, command).await?.last_version())
}

/// Runs `command` on session `id` as `who`: what it appended.
///
/// An agent acts on a session only as its agent: every command an agent
/// runs, except those by which one takes a session (accepting or declining
/// an offer, picking it from the queue) and what the media server reports
/// of the call (a leave may come after a transfer), goes to the decider as
/// [`SessionCommand::ByAgent`]. Callers check the same before, for a
/// precise refusal; this makes it hold when the session is transferred
/// between that check and the append.
pub async fn appended(
    store: &EventStore,
    who: &impl Acting,
    id: SessionId,
    command: SessionCommand,
) -> Result<AppendResult, Error> {
    use SessionCommand as C;
    let command = match (who.role(), command) {
        (
            Role::Agent,
            free @ (C::AcceptOffer { .. } | C::DeclineOffer { .. } | C::Assign { .. } | C::CallMedia { .. }),
        ) => free,
        (Role::Agent, command) => command.by_agent(who.user_id()?),
        (_, command) => command,
    };
    let stream = StreamId::session(id);
    Ok(execute::<Session>(store, who.tenant(), &stream, &who.actor(), Utc::now(), command).await?)
}
