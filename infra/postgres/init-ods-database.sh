#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised: the `ods` role and its catalog database next
# to Prefect's. The password comes from the container environment (infra/.env), never from this file.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v ods_password="$ODS_DB_PASSWORD" <<'SQL'
CREATE ROLE ods LOGIN PASSWORD :'ods_password';
CREATE DATABASE ods OWNER ods;
SQL
