-- A tenant's own events in commit order, without scanning every tenant's:
-- `GET /api/events` reads one tenant's events only, so that a page's
-- length says nothing of the other tenants' volume (issue 27, L6).
CREATE INDEX events_tenant_commit_order ON events (tenant_id, transaction_id, position);
