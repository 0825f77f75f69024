-- Password hashes (argon2id, PHC strings), by user. Kept out of the event
-- log on purpose: the log is append-only, hash-chained and relayed to Kafka,
-- and a credential must be replaceable and erasable.
CREATE TABLE credentials (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL
);
