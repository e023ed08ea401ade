#!/bin/sh
# Makes sure the Debian packages the test suite drives for real are installed.
# As root it installs the missing ones; otherwise it names them and the suite skips what needs
# them (under CI=true those tests fail instead).
set -eu

# ruby, ruby-activerecord, ruby-sqlite3: the seed's Rails models read and write our database file;
# ruby-pg: the same on PostgreSQL.
# unixodbc and its drivers (libsqliteodbc, odbc-postgresql, tdsodbc) and a postgresql server:
# the sync job reads real sources through real ODBC drivers.
# chromium: the browser Playwright drives through the page (Playwright never downloads one).
# nginx, curl, systemd: docs/deploy/ run for real (the tests start their own nginx in their own
# folder; systemd-analyze checks the unit; curl follows the event stream as an operator does).
PACKAGES="ruby ruby-activerecord ruby-sqlite3 ruby-pg unixodbc libsqliteodbc odbc-postgresql tdsodbc postgresql chromium nginx curl systemd"

missing=""
for package in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
missing=${missing# }

if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages for the tests: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "missing Debian packages for the tests: $missing"
    echo "install them with: sudo apt-get install $missing"
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
fi
