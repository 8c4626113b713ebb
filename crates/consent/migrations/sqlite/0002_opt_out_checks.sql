-- The national data opt-out as a dated check: when the status was last checked and where the result
-- came from (a batch of the national service's answers, or a manual record). A status written before
-- this migration was a manual record, checked when it was written. Times are microseconds since the
-- Unix epoch; 0 means never checked.
ALTER TABLE national_data_opt_outs ADD COLUMN check_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE national_data_opt_outs ADD COLUMN check_source TEXT NOT NULL DEFAULT '';
UPDATE national_data_opt_outs SET check_time = update_time, check_source = 'manual';

ALTER TABLE national_data_opt_out_versions ADD COLUMN check_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE national_data_opt_out_versions ADD COLUMN check_source TEXT NOT NULL DEFAULT '';
UPDATE national_data_opt_out_versions SET check_time = update_time, check_source = 'manual';
