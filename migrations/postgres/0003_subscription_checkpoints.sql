-- Where each consumer of the log (the Kafka outbox relay, …) has got to.
CREATE TABLE subscription_checkpoints (
    name      TEXT   PRIMARY KEY,
    commit_id BIGINT NOT NULL,
    position  BIGINT NOT NULL
);
