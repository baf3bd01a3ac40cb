#!/usr/bin/env bash
# What the test suite talks to, from Debian's packages: a real MQTT broker, pseudo-terminal serial links, an
# InfluxDB-protocol server, Prometheus's promtool and a browser (README "Tests and benchmarks"), and the machine's
# PostgreSQL on 127.0.0.1:5432. Run by `npm test` before anything else (npm's pretest). As root it installs what is
# missing with apt-get and starts an installed PostgreSQL that is stopped; otherwise it prints the one command to run,
# and stops.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have mosquitto || need+=(mosquitto)
have socat || need+=(socat)
have victoria-metrics || need+=(victoria-metrics)
[ -x /usr/bin/chromium ] || need+=(chromium)
have zsh || need+=(zsh) # the CLI completion test loads the zsh script
have promtool || need+=(prometheus) # only its promtool: `promtool check metrics` on /metrics, and docs/monitoring's rules and scrape example

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "test-deps: installing ${need[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "test-deps: the tests need ${need[*]}; install them once with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
    exit 1
  fi
fi

# PostgreSQL: the machine's server on 127.0.0.1:5432 (database `test`, trust auth for local TCP).
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up && [ "$(id -u)" -eq 0 ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "test-deps: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
fi
if ! pg_up; then
  echo "test-deps: the PostgreSQL tests need a server on 127.0.0.1:5432 with a database \"test\" that user postgres reaches without a password (DATABASE_URL overrides it)" >&2
  exit 1
fi
