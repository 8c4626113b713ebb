-- The clinical terms ListRecords filters on, read from each version's payload when it is written:
-- the codings of its top-level `code` and `category` (`\n<system>\t<code>\n...`, empty when none)
-- and its top-level `status` string (empty when none). NULL only on versions written before this
-- migration, until the start-up backfill (terms_backfill) has read their payloads.
ALTER TABLE record_versions
    ADD COLUMN codes TEXT,
    ADD COLUMN categories TEXT,
    ADD COLUMN fhir_status TEXT;

-- Progress of the backfill: versions with seq <= target_seq were written before the migration;
-- those up to done_seq have their terms.
CREATE TABLE terms_backfill (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    done_seq BIGINT NOT NULL,
    target_seq BIGINT NOT NULL
);
INSERT INTO terms_backfill (id, done_seq, target_seq) SELECT 1, 0, seq FROM feed_head WHERE id = 1;
