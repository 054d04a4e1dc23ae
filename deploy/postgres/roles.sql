-- Least-privilege roles for mes-gateway. Run once per PostgreSQL cluster as a superuser,
-- before anything else (the file names no database, so any database name works):
--     psql -U postgres -f deploy/postgres/roles.sql
--     createdb -U postgres -O mesgw_owner mes
--     MESGW_STORE__DSN=postgresql://mesgw_owner@db/mes mesgw db migrate --config ...
-- `mesgw db migrate` (as the owner) then grants the recorder, the review service and the
-- reader their rights on
-- every table, at every run (gateway/store/grants.py). Passwords are set separately
-- (\password mesgw_recorder), never in this file.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_owner') THEN
        CREATE ROLE mesgw_owner LOGIN;          -- owns the database and schema, runs migrations
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_recorder') THEN
        CREATE ROLE mesgw_recorder LOGIN;       -- the recorder: insert (and upsert its tables)
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_review') THEN
        CREATE ROLE mesgw_review LOGIN;         -- the review service and clerk CLI: appends only
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mesgw_reader') THEN
        CREATE ROLE mesgw_reader LOGIN;         -- dashboards, ERP exports: read only
    END IF;
END
$$;
