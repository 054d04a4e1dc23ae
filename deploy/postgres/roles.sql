-- Least-privilege roles for mes-gateway. Run once as a superuser in the `mes` database,
-- AFTER `mesgw db migrate` has been run by the owner role:
--     createdb -O mesgw_owner mes
--     MESGW_STORE__DSN=postgresql://mesgw_owner@host/mes mesgw db migrate --config ...
--     psql -d mes -f deploy/postgres/roles.sql
-- Passwords are set separately (\password ROLE), never in this file.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_owner') THEN
        CREATE ROLE mesgw_owner LOGIN;          -- owns the schema, runs migrations
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_recorder') THEN
        CREATE ROLE mesgw_recorder LOGIN;       -- the recorder: inserts only
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_review') THEN
        CREATE ROLE mesgw_review LOGIN;         -- the review service and clerk CLI: appends only
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_reader') THEN
        CREATE ROLE mesgw_reader LOGIN;         -- dashboards, ERP exports: read only
    END IF;
END
$$;

GRANT CONNECT ON DATABASE mes TO mesgw_recorder, mesgw_review, mesgw_reader;
GRANT USAGE ON SCHEMA public TO mesgw_recorder, mesgw_review, mesgw_reader;
-- The recorder appends raw events and dead letters, and maintains the typed tables.
GRANT SELECT, INSERT ON events, dead_letters TO mesgw_recorder;
GRANT SELECT, INSERT, UPDATE ON counts, state_intervals, downtimes, work_orders, shifts
    TO mesgw_recorder;
GRANT DELETE ON events TO mesgw_recorder;   -- retention pruning on plain PostgreSQL
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO mesgw_recorder;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mesgw_reader;
-- The review service (`mesgw review`, `mesgw correct|confirm|export|user`) reads everything
-- and only appends: revisions, the export ledger, users and their API tokens. It has no
-- UPDATE or DELETE on any record of production or of a correction, and the revisions and
-- ledger tables refuse both by trigger too. The two exceptions hold no history: the review
-- page's login sessions (web_sessions: created, touched, ended) and a user's password hash
-- (`mesgw user passwd`).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mesgw_review;
GRANT INSERT ON revisions, export_runs, export_lines, users, api_tokens TO mesgw_review;
GRANT SELECT, INSERT, UPDATE, DELETE ON web_sessions TO mesgw_review;
GRANT UPDATE (password_hash) ON users TO mesgw_review;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO mesgw_review;
