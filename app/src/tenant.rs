//! A tenant's directory (its users, groups, scripts, policies: the tenant
//! stream folded) and the commands on it.

use chrono::Utc;
use witness_domain::refusal;
use witness_domain::tenant::{Tenant, TenantCommand, TenantState};
use witness_engine::EventStore;
use witness_schemas::{Actor, Role, StreamId, TenantId, UserId};

use crate::{Error, Kind};

/// The tenant's state as of now.
pub async fn directory(store: &EventStore, tenant: &TenantId) -> Result<TenantState, Error> {
    Ok(witness_engine::executor::current::<Tenant>(store, &StreamId::tenant(tenant)).await?.state)
}

/// Runs a tenant command on `tenant`'s stream as `actor`.
pub async fn on_tenant_stream(
    store: &EventStore,
    tenant: &TenantId,
    actor: &Actor,
    command: TenantCommand,
) -> Result<(), Error> {
    let stream = StreamId::tenant(tenant);
    witness_engine::executor::execute::<Tenant>(store, tenant, &stream, actor, Utc::now(), command).await?;
    Ok(())
}

/// Creates `tenant`, named `name`.
pub async fn create_tenant(store: &EventStore, tenant: &TenantId, name: &str) -> Result<(), Error> {
    let command = TenantCommand::Create { name: name.to_owned() };
    on_tenant_stream(store, tenant, &Actor::system(), command).await
}

/// Adds a user and sets their password. Returns their id.
pub async fn create_user(
    store: &EventStore,
    tenant: &TenantId,
    by: &Actor,
    login: &str,
    role: Role,
    display_name: &str,
    password: &str,
) -> Result<UserId, Error> {
    if password.chars().count() < crate::credentials::MIN_PASSWORD {
        return Err(Error::new(
            Kind::Unprocessable,
            refusal!(
                "password_short",
                "a password needs at least {min} characters",
                min = crate::credentials::MIN_PASSWORD
            ),
        ));
    }
    let user_id = UserId::new();
    let command =
        TenantCommand::AddUser { user_id, login: login.to_owned(), role, display_name: display_name.to_owned() };
    on_tenant_stream(store, tenant, by, command).await?;
    store.save_credential(user_id, &crate::credentials::hash_password(password)).await?;
    Ok(user_id)
}
