-- QA evaluations (QaEvaluated events), one row each: the read model the
-- `qa` table of the reports is built from (joined with `sessions` for the
-- agent who handled the session).
CREATE TABLE qa_evaluations (
    evaluation_id TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    evaluator_id  TEXT NOT NULL,
    -- total_score / max_score, in percent, rounded.
    score         BIGINT NOT NULL,
    evaluated_at  TEXT NOT NULL
);
CREATE INDEX qa_evaluations_session ON qa_evaluations (session_id);
