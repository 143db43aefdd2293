#!/usr/bin/env bash
# Entrypoint of the lab PostgreSQL image. Same contract as the official image's entrypoint,
# written from its documentation:
#   - CMD `postgres [options]` (or just options) starts the server; anything else is exec'd;
#   - started as root it prepares PGDATA and the socket directory, then drops to `postgres`;
#   - on an empty PGDATA it runs initdb (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_INITDB_ARGS),
#     allows POSTGRES_HOST_AUTH_METHOD from anywhere in $PGDATA/pg_hba.conf, creates
#     POSTGRES_DB and runs /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz against a
#     temporary server that listens on the Unix socket only;
#   - every POSTGRES_* variable may instead be given as POSTGRES_*_FILE (a file to read).
set -Eeuo pipefail

die() { echo "docker-entrypoint: $*" >&2; exit 1; }

# load_var NAME: NAME from the environment or from the file named by NAME_FILE.
load_var() {
	local name=$1 file_name="${1}_FILE"
	if [ -n "${!name:-}" ] && [ -n "${!file_name:-}" ]; then
		die "set $name or $file_name, not both"
	fi
	if [ -n "${!file_name:-}" ]; then
		[ -r "${!file_name}" ] || die "$file_name: cannot read ${!file_name}"
		export "$name=$(<"${!file_name}")"
		unset "$file_name"
	fi
}

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
	exec "$@"
fi

for v in POSTGRES_PASSWORD POSTGRES_USER POSTGRES_DB POSTGRES_INITDB_ARGS POSTGRES_HOST_AUTH_METHOD; do
	load_var "$v"
done
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
: "${PGDATA:?PGDATA must be set}"

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chmod 0700 "$PGDATA"
	chmod 3775 /var/run/postgresql
	find "$PGDATA" /var/run/postgresql ! -user postgres -exec chown postgres:postgres {} +
	# Secrets were read as root above; the unprivileged run inherits them via the environment.
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

first_start() {
	local method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256} f
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$method" != trust ]; then
		die "the database is not initialised and POSTGRES_PASSWORD is empty (set POSTGRES_HOST_AUTH_METHOD=trust to allow that)"
	fi
	echo "docker-entrypoint: initialising $PGDATA"
	# shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words by contract
	initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
		${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
	printf '\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"

	# Temporary server: the given options, but no TCP listener.
	local opts
	opts=""  # printf '%q' of no argument would print '' (an empty argument postgres refuses)
	[ $# -lt 2 ] || opts=$(printf '%q ' "${@:2}")
	PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -w -o "$opts -c listen_addresses='' -p 5432" start

	export PGPASSWORD=${POSTGRES_PASSWORD:-}
	local psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" -h /var/run/postgresql)
	if [ "$POSTGRES_DB" != postgres ]; then
		"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh)
				echo "docker-entrypoint: running $f"
				if [ -x "$f" ]; then "$f"; else
					# shellcheck disable=SC1090
					. "$f"
				fi ;;
			*.sql) echo "docker-entrypoint: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
			*.sql.gz) echo "docker-entrypoint: running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
			*) if [ -e "$f" ]; then echo "docker-entrypoint: ignoring $f"; fi ;;
		esac
	done
	unset PGPASSWORD

	pg_ctl -D "$PGDATA" -m fast -w stop
	echo "docker-entrypoint: initialisation complete"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	first_start "$@"
fi
unset POSTGRES_PASSWORD
exec "$@"
