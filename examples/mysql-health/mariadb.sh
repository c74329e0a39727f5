#!/bin/sh
# MariaDB for the examples, unchanged: a data directory made on first start, then the
# server on loopback, running DIR/*.sql (in name order) at each start. Usage: mariadb.sh DIR PORT
set -eu
dir=$1
port=$2
user=""
if [ "$(id -u)" = 0 ]; then user=--user=root; fi
PATH="$PATH:/usr/sbin"
mkdir -p "$dir/tmp"
if [ ! -d "$dir/data/mysql" ]; then
  mariadb-install-db --no-defaults --datadir="$dir/data" --tmpdir="$dir/tmp" \
    --auth-root-authentication-method=normal --skip-test-db $user >"$dir/install.log" 2>&1
fi
cat "$dir"/*.sql > "$dir/tmp/init-all.sql"
exec mariadbd --no-defaults --datadir="$dir/data" --tmpdir="$dir/tmp" \
  --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --port="$port" \
  --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=32M \
  --init-file="$dir/tmp/init-all.sql" $user
