-- A tenant's own events in log order, without scanning every tenant's:
-- `GET /api/events` reads one tenant's events only, so that a page's
-- length says nothing of the other tenants' volume (issue 27, L6).
CREATE INDEX events_tenant_order ON events (tenant_id, position);
