-- Where each consumer of the log (the Kafka outbox relay, …) has got to.
CREATE TABLE subscription_checkpoints (
    name      TEXT    PRIMARY KEY,
    commit_id INTEGER NOT NULL,
    position  INTEGER NOT NULL
);
