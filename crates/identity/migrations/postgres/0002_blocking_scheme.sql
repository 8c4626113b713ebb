-- The scheme that wrote blocking_keys (BLOCKING_SCHEME in the service's code; 0: unknown, written
-- before this table). A service that finds another scheme here rebuilds every patient's keys
-- before it serves, so that a release that changes the keys never matches against stale ones.
CREATE TABLE blocking_scheme (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO blocking_scheme (id, version) VALUES (1, 0);
