#!/usr/bin/env bash
# The status page against the real local stack (scripts/run-local --debug: bcoin regtest
# under the supervisor, the stratum server with simulated Bitaxes, the snapshot agent, the
# updater and the status service):
#  1. end to end in real headless Chromium (tests/web/status.mjs): first-visit setup, live
#     numbers, every page, a setting round trip, notifications, CSRF, viewer role, login
#     throttle; screenshots land in $MINEBOX_SCREENSHOTS (default target/screenshots);
#  2. schemathesis fuzzes every operation of the served OpenAPI document as a signed-in
#     admin and fails on any 5xx or any answer that does not match the document.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
state=$(mktemp -d)
shots=${MINEBOX_SCREENSHOTS:-$target/screenshots}
web=127.0.0.1:18080
log=$state/run-local.log
stack=""
cleanup() {
  if [ -n "$stack" ]; then kill -TERM "$stack" 2>/dev/null || true; wait "$stack" 2>/dev/null || true; fi
  rm -rf "$state"
}
trap cleanup EXIT
fail() { echo "status-web: FAIL: $*" >&2; if [ -f "$log" ]; then tail -40 "$log" >&2; fi; exit 1; }

# A stack already on these ports (another run of this check, or scripts/run-local) would answer
# in this one's place and fail it in confusing ways: say so instead.
for port in 18080 3333 3390 3391 3392 3393; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "127.0.0.1:$port is in use: another local stack is running (stop it, then run this check again)"
  fi
done

# Built first so the wait below is for the stack, not the compiler (a no-op after scripts/test's build).
(cd "$root" && cargo build --locked -q -p minebox-stratum -p minebox-supervisor -p minebox-simminer -p minebox-status -p minebox-snapshot-agent -p minebox-updater)
MINEBOX_STATE=$state/box "$root/scripts/run-local" --debug --no-setup --web "$web" --miners 3 >"$log" 2>&1 &
stack=$!
for _ in $(seq 600); do
  curl -fs "http://$web/api/v1/health" >/dev/null 2>&1 && break
  kill -0 "$stack" 2>/dev/null || fail "the local stack exited"
  sleep 0.5
done
curl -fs "http://$web/api/v1/health" >/dev/null || fail "the status page did not come up"

echo "status-web: end-to-end in Chromium"
node "$root/tests/web/status.mjs" "http://$web" "$state/box/minebox.toml" "$shots" || fail "end-to-end test"

echo "status-web: schemathesis against /api/v1/openapi.json"
# The e2e test ends by tripping the login throttle for this address: wait it out.
sleep 31
jar=$state/cookies
resp=$(curl -fs -c "$jar" -H 'Content-Type: application/json' -d '{"password":"correct horse battery"}' "http://$web/api/v1/auth/login") \
  || fail "login for the fuzzer"
csrf=$(printf '%s' "$resp" | python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
cookie=$(awk '$6 == "minebox_session" {print $7}' "$jar")
# Excluded: the endless event stream, sign-out (it would end the fuzzer's own session), and
# the LAN miner scan and "Mine on this box": they send requests to the devices of the network
# this check runs on (tests/lan_miners.rs covers them on a network of its own); revoking a
# session and editing or removing a user by path (the fuzzer would revoke its own session or
# disable the admin it signed in as; tests/users.rs covers both, refusals included).
python3 -m schemathesis.cli run "http://$web/api/v1/openapi.json" --url "http://$web" \
  -H "Cookie: minebox_session=$cookie" -H "X-CSRF-Token: $csrf" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path /api/v1/events --exclude-path /api/v1/auth/logout \
  --exclude-path /api/v1/miners/scan --exclude-path '/api/v1/miners/{ip}/point-here' \
  --exclude-path '/api/v1/sessions/{id}' --exclude-path '/api/v1/users/{name}' \
  --phases examples,coverage,fuzzing --max-examples "${FUZZ_EXAMPLES:-40}" --seed 1 --request-timeout 30 --suppress-health-check all \
  || fail "schemathesis found problems"
echo "status-web: ok"
