#!/usr/bin/env bash
# Side by side: credit-ledger (loaded by `import waldur` from the peer) against the Django + DRF
# peer in ../shared/peer-drf (loaded by its own load.py, on PostgreSQL), 2 workers each. The
# ledger runs on PostgreSQL, or with LEDGER_BACKEND=sqlite on its embedded default, one file.
#
# Usage (from the repository root):  [N=100000] bench/side_by_side.sh
# Environment (defaults in brackets):
#   N [100000]             project credits (and organisations, projects, organisation credits)
#   PG_URL [postgresql://root@127.0.0.1:5432]   server where both databases are made and dropped
#   LEDGER_VENV [.venv]    venv with credit-ledger installed
#   PEER_VENV [unset]      reuse this peer venv instead of building one in the scratch dir
#   LEDGER_PORT [18201]  PEER_PORT [18202]   loopback ports
#   DURATION [10]  WARMUP [2]  CONNECTIONS [4]  THREADS [2]  ROUNDS [1]   passed to bench.sh
#   CUSTOMER_NAME [Customer 000500]   organisation whose credits the customer_uuid= list shows
#   KEEP [unset]           keep both databases at the end (their names are printed)
#   LEDGER_BACKEND [postgresql]   or sqlite: the ledger's data in one SQLite file
#   PEER_DB [unset]        reuse the peer's database a KEEP run left: skips loading it
#   LEDGER_DB [unset]      reuse the ledger's database (a SQLite file's path with
#                          LEDGER_BACKEND=sqlite) a KEEP run left: skips the import
# Prints: the import (credits/s on the ledger side, time waiting for the peer, projection), the
# notifier's catch-up over the imported log, bench.sh's table (A = ledger, B = peer), the
# customer_uuid= list row, each stack's floor (an unrouted 404), and each worker's RSS.
# Stops both servers and drops both databases at the end, also after a failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
peer_dir="$root/../shared/peer-drf"
n="${N:-100000}"
pg_url="${PG_URL:-postgresql://root@127.0.0.1:5432}"
ledger_venv="${LEDGER_VENV:-$root/.venv}"
ledger_port="${LEDGER_PORT:-18201}"
peer_port="${PEER_PORT:-18202}"
customer_name="${CUSTOMER_NAME:-Customer 000500}"
for tool in psql wrk ab curl python3; do
    command -v "$tool" >/dev/null ||
        { echo "missing $tool (apt-get install -y postgresql-client wrk apache2-utils curl)" >&2; exit 2; }
done
[ -x "$ledger_venv/bin/credit-ledger" ] || { echo "no credit-ledger in $ledger_venv" >&2; exit 2; }

suffix="$(date +%s)_$$"
backend="${LEDGER_BACKEND:-postgresql}"
case "$backend" in postgresql|sqlite) ;; *) echo "LEDGER_BACKEND: postgresql or sqlite" >&2; exit 2;; esac
peer_db="${PEER_DB:-bench_peer_$suffix}"
scratch="$(mktemp -d -t side-by-side.XXXXXX)"
if [ "$backend" = sqlite ]; then
    ledger_db="${LEDGER_DB:-$(mktemp -d -t side-by-side-ledger.XXXXXX)/ledger.sqlite3}"
    ledger_database_url="sqlite:///$ledger_db"
else
    ledger_db="${LEDGER_DB:-bench_ledger_$suffix}"
    ledger_database_url="$pg_url/$ledger_db"
fi
peer_pid=""
ledger_pid=""

cleanup() {
    for pid in $ledger_pid $peer_pid; do
        kill "$pid" 2>/dev/null && for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    done
    if [ -n "${KEEP:-}" ]; then
        echo "kept: PEER_DB=$peer_db LEDGER_BACKEND=$backend LEDGER_DB=$ledger_db" >&2
    else  # what this run made; a database it was given stays
        [ -n "${PEER_DB:-}" ] || drop_database "$peer_db"
        if [ -z "${LEDGER_DB:-}" ]; then
            if [ "$backend" = sqlite ]; then rm -rf "$(dirname "$ledger_db")"; else drop_database "$ledger_db"; fi
        fi
    fi
    rm -rf "$scratch"
}
drop_database() {
    psql -q "$pg_url/postgres" -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_for() {  # url token what
    for _ in $(seq 1 120); do
        if curl -sf -o /dev/null -H "Authorization: Token $2" "$1"; then return 0; fi
        sleep 0.5
    done
    echo "$3 did not answer at $1" >&2; exit 1
}

echo "# side by side: N=$n, the ledger on $backend, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
[ -n "${PEER_DB:-}" ] || psql -q "$pg_url/postgres" -c "CREATE DATABASE \"$peer_db\""
[ -n "${LEDGER_DB:-}" ] || [ "$backend" = sqlite ] || psql -q "$pg_url/postgres" -c "CREATE DATABASE \"$ledger_db\""

# --- the peer: its venv, its own loader, 2 sync workers ---------------------------------------
peer_venv="${PEER_VENV:-$scratch/peer-venv}"
[ -x "$peer_venv/bin/gunicorn" ] || "$peer_dir/setup.sh" "$peer_venv" >/dev/null
export PEER_DATABASE_URL="$pg_url/$peer_db"
if [ -n "${PEER_DB:-}" ]; then
    peer_token="$(psql -tA "$pg_url/$peer_db" -c "SELECT key FROM authtoken_token LIMIT 1")"
else
    peer_token="$("$peer_venv/bin/python" "$peer_dir/load.py" "$n" 2> "$scratch/peer-load.log")"
    tail -1 "$scratch/peer-load.log"
fi
PEER_WORKERS=2 "$peer_dir/serve.sh" "$peer_venv" "$peer_port" > "$scratch/peer.log" 2>&1 &
peer_pid=$!
peer_url="http://127.0.0.1:$peer_port"
wait_for "$peer_url/api/customers/?page_size=1" "$peer_token" "the peer"

# --- credit-ledger: import from the peer, then serve with 2 workers ---------------------------
export LEDGER_DATABASE_URL="$ledger_database_url"
export LEDGER_ACCESS_LOG=/dev/null
cli="$ledger_venv/bin/credit-ledger"
if [ -z "${LEDGER_DB:-}" ]; then
    echo
    echo "# credit-ledger import waldur --url $peer_url (N=$n)"
    started=$(date +%s.%N)
    status=0
    "$cli" import waldur --url "$peer_url" --token "$peer_token" 2> "$scratch/import.err" || status=$?
    python3 -c "import sys; print(f'import command: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s wall, exit {sys.argv[3]}')" \
        "$started" "$(date +%s.%N)" "$status"
    grep '^rejected' "$scratch/import.err" | head -5 >&2 || true
    [ "$status" = 0 ] || { echo "the import did not come out clean" >&2; exit 1; }
    # The import analyses the ledger's tables at its end, as the peer's loader does its own.
fi
# The notifier `serve` starts follows the whole log once; measured here, not beside the
# benchmark (it took a core for 100 s after an import, and every figure below with it).
started=$(date +%s.%N)
"$cli" notify --once
python3 -c "import sys; print(f'notifier caught up: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s wall')" \
    "$started" "$(date +%s.%N)"
ledger_token="$("$cli" users create "bench-$suffix" --staff | tail -1)"
"$cli" serve --port "$ledger_port" --workers 2 > "$scratch/ledger.log" 2>&1 &
ledger_pid=$!
ledger_url="http://127.0.0.1:$ledger_port"
wait_for "$ledger_url/api/project-credits/?page_size=1" "$ledger_token" "credit-ledger"

# --- the peer's benchmark, plus a customer_uuid= list ---------------------------------------
echo
LABEL_A=ledger LABEL_B=peer "$peer_dir/bench.sh" "$ledger_url" "$ledger_token" "$peer_url" "$peer_token"

customer_uuid="$(curl -sfG -H "Authorization: Token $ledger_token" --data-urlencode "name=$customer_name" \
    "$ledger_url/api/customers/" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["uuid"])')"
cat > "$scratch/one.lua" <<'LUA'
wrk.headers["Authorization"] = "Token " .. os.getenv("BENCH_TOKEN")
wrk.headers["Accept"] = "application/json"
done = function(summary, latency, requests)
    io.write(string.format("%.2f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
LUA
one() {  # base token path -> "req/s p50 p99 errors"
    BENCH_TOKEN="$2" wrk -t "${THREADS:-2}" -c "${CONNECTIONS:-4}" -d "${DURATION:-10}s" \
        --timeout 10s -s "$scratch/one.lua" "$1$3" | tail -1
}
row() {  # label path: one table row, both sides
    read -r a_rps a_p50 a_p99 a_err <<<"$(one "$ledger_url" "$ledger_token" "$2")"
    read -r b_rps b_p50 b_p99 b_err <<<"$(one "$peer_url" "$peer_token" "$2")"
    printf '| %-24s | %12s | %10s | %10s | %12s | %10s | %10s | %7s |\n' "$1" \
        "$a_rps" "$a_p50" "$a_p99" "$b_rps" "$b_p50" "$b_p99" \
        "$(python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'{a / b:.2f}' if b else 'n/a')" "$a_rps" "$b_rps")"
}
row "customer_uuid= list" "/api/project-credits/?customer_uuid=$customer_uuid"
[ "$a_err$b_err" = 00 ] || echo "WARNING: customer_uuid= list errors: ledger $a_err, peer $b_err" >&2
# Each stack's floor: a path no route matches, answered 404 by the framework after the
# middleware, with no database work. A request can be no cheaper than this on its side, so
# the ledger's floor over the peer's retrieve bounds the retrieve's ratio. (wrk counts the
# 404s as errors; they are what is measured here.)
row "floor: unrouted 404" "/api/no-such-resource/"

# --- memory of the serving workers ---------------------------------------------------------
echo
for side in ledger:$ledger_pid peer:$peer_pid; do
    for worker in $(pgrep -P "${side#*:}"); do
        echo "${side%%:*} worker $worker RSS $(awk '/^VmRSS/ {printf "%.0f MB", $2 / 1024}' "/proc/$worker/status")"
    done
done
