//! The tenant's access log: who read personal data, and which audit
//! exports were taken (`StreamId::access`, a stream per tenant and day).

use witness_engine::{EventStore, ExpectedVersion};
use witness_projections::audit::AuditManifest;
use witness_schemas::{Actor, AuditExported, Event, NewEvent, StreamId, TenantId};

use crate::Error;

/// Records that `actor` took the audit export `manifest` describes.
pub async fn record_export(
    store: &EventStore,
    tenant: &TenantId,
    actor: &Actor,
    manifest: &AuditManifest,
) -> Result<(), Error> {
    let event = AuditExported {
        format: manifest.format.clone(),
        from: manifest.from,
        to: manifest.to,
        events: manifest.events,
        unmasked: manifest.unmasked,
        sha256: manifest.sha256.clone(),
    };
    log_access(store, tenant, actor, event.into()).await
}

/// Appends to the tenant's access log of today: no rules to check, and no
/// order to keep with other writers of the day.
pub async fn log_access(store: &EventStore, tenant: &TenantId, actor: &Actor, event: Event) -> Result<(), Error> {
    let stream = StreamId::access(tenant, chrono::Utc::now().date_naive());
    let new = NewEvent::new(event, actor.clone());
    store.append(tenant, &stream, ExpectedVersion::Any, vec![new]).await?;
    Ok(())
}
