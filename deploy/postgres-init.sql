-- One database and one role per module: each service owns its data and cannot read the others'.
-- Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d). Development
-- passwords for a laptop only: production databases and credentials come from the Helm chart's Secrets.
CREATE ROLE identity LOGIN PASSWORD 'identity';
CREATE DATABASE identity OWNER identity;
CREATE ROLE records LOGIN PASSWORD 'records';
CREATE DATABASE records OWNER records;
CREATE ROLE consent LOGIN PASSWORD 'consent';
CREATE DATABASE consent OWNER consent;
CREATE ROLE access LOGIN PASSWORD 'access';
CREATE DATABASE access OWNER access;
-- PostgreSQL 15+ gives PUBLIC no CREATE on the public schema, so each owner needs its own.
\connect identity
ALTER SCHEMA public OWNER TO identity;
\connect records
ALTER SCHEMA public OWNER TO records;
\connect consent
ALTER SCHEMA public OWNER TO consent;
\connect access
ALTER SCHEMA public OWNER TO access;
