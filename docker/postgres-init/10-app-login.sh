#!/bin/sh
# The bundled PostgreSQL's init step (docker-compose.yml mounts this directory as
# /docker-entrypoint-initdb.d; the image runs it once, on an empty data directory): the login the
# archive's service connects with (APP_DATABASE_URL), owning nothing and holding only the role
# evidence_app, which the archive's migrations then grant what the app needs. Tested by
# tests/api/docker-compose.test.ts against a real PostgreSQL.
set -eu
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_password="$POSTGRES_APP_PASSWORD" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'evidence_app') THEN
    CREATE ROLE evidence_app NOLOGIN;
  END IF;
END $$;
CREATE ROLE evidence_service LOGIN PASSWORD :'app_password';
SELECT current_setting('server_version_num')::int >= 160000 AS pg16 \gset
\if :pg16
GRANT evidence_app TO evidence_service WITH INHERIT TRUE, SET FALSE;
\else
GRANT evidence_app TO evidence_service;
\endif
SQL
