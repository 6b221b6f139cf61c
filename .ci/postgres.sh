#!/usr/bin/env bash
# A local PostgreSQL for the records-store tests, on a fresh Debian/Ubuntu machine (run as root).
#
# Installs the server if it is missing, starts a cluster, creates a role that may create
# databases (each test makes and drops its own), and prints the line to export, e.g.
#   eval "$(.ci/postgres.sh)"   # sets OPENFRT_TEST_POSTGRES_URL
# Everything but that final export line goes to stderr so that `eval` stays safe.
set -euo pipefail

role="${OPENFRT_PG_ROLE:-openfrt}"
password="${OPENFRT_PG_PASSWORD:-openfrt}"
database="${OPENFRT_PG_DATABASE:-openfrt}"

log() { echo "postgres.sh: $*" >&2; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing PostgreSQL"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
fi

version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    log "creating cluster $version/main"
    pg_createcluster "$version" main >&2
fi
port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')"
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    log "starting cluster $version/main on port $port"
    pg_ctlcluster "$version" main start >&2
fi
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
done
pg_isready -h 127.0.0.1 -p "$port" >&2

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -qAt -p $port $*"; }

if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname = '$role'\"")" != "1" ]; then
    log "creating role $role"
    psql_admin "-c \"CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password'\"" >&2
fi
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = '$database'\"")" != "1" ]; then
    log "creating database $database"
    psql_admin "-c \"CREATE DATABASE $database OWNER $role\"" >&2
fi

echo "export OPENFRT_TEST_POSTGRES_URL=postgresql+psycopg://$role:$password@127.0.0.1:$port/$database"
