#!/usr/bin/env bash
# CI smoke test of prefect.yaml against a real Prefect server, run after the unit tests:
#   1. `prefect server start` on a free port of 127.0.0.1, in a temp PREFECT_HOME;
#   2. a process work pool and `prefect deploy --all` from the repository root;
#   3. the deployed schedules, time zones and concurrency limits compared with prefect.yaml;
#   4. regenerate-feed and monthly-newsletter run through one `prefect worker --run-once`,
#      with storage and output in a temp folder;
#   5. both runs COMPLETED, feed.xml and the newsletter draft written, repository untouched.
# Prints one PASS or FAIL line (with the server, CLI and worker logs on failure).
# About 30-35 s on 2 idle cores, up to ~110 s when the machine is busy.
# Usage: .ci/deploy-smoke.sh  (needs the project installed: pip install -e '.[test]')
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
START=$SECONDS
TMP="$(mktemp -d "${TMPDIR:-/tmp}/kraftsamling-smoke.XXXXXX")"
SERVER_PID=""
PUBLIC_URL="https://kraftsamling.example/"

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        # The server runs in its own process group (setsid): end it with its children.
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # so that cleanup runs on Ctrl-C or a CI timeout too

fail() {
    for log in server cli worker; do
        if [ -s "$TMP/$log.log" ]; then
            echo "----- last lines of the $log log -----" >&2
            tail -n 60 "$TMP/$log.log" >&2
        fi
    done
    echo "deploy-smoke: FAIL: $* ($((SECONDS - START)) s)" >&2
    exit 1
}

step() { echo "deploy-smoke: [$((SECONDS - START)) s] $*"; }

# Run a CLI command with its output in cli.log (shown on failure).
cli() { echo "\$ $*" >>"$TMP/cli.log"; "$@" >>"$TMP/cli.log" 2>&1; }

# Read JSON from the API: api_get PATH PYTHON-EXPRESSION-ON-r
api_get() {
    curl -sf "$API/$1" | python3 -c "import json, sys; r = json.load(sys.stdin); print($2)"
}

# Untracked and ignored files count too: a run that wrote into the repo would show here.
git_state() { git status --porcelain --ignored | grep -v '__pycache__/$' || true; }
BEFORE="$(git_state)"

export PREFECT_HOME="$TMP/prefect-home"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_LOGGING_LEVEL=INFO
unset PREFECT_API_URL PREFECT_API_KEY PREFECT_PROFILE
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
API="http://127.0.0.1:$PORT/api"

# --- 1. a real server ---------------------------------------------------------------------
setsid prefect server start --host 127.0.0.1 --port "$PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 180); do
    curl -sf "$API/health" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the Prefect server exited while starting"
    sleep 0.5
done
curl -sf "$API/health" >/dev/null 2>&1 || fail "the Prefect server was not healthy within 90 s"
export PREFECT_API_URL="$API"
step "server healthy on $API"

# --- 2. deploy everything in prefect.yaml ---------------------------------------------------
POOL="$(python3 -c 'import yaml; print(yaml.safe_load(open("prefect.yaml"))["deployments"][0]["work_pool"]["name"])')"
cli prefect work-pool create "$POOL" --type process || fail "prefect work-pool create $POOL"
cli prefect --no-prompt deploy --all || fail "prefect deploy --all"
step "deployed prefect.yaml to work pool $POOL"

# --- 3. what the server holds is what prefect.yaml says ---------------------------------------
# Then pause the schedules: they would fire with production parameters (publish-episodes every
# 15 minutes), and pausing deletes their pending runs, so the worker runs only ours.
python3 - "$API" <<'PY' || fail "the deployments on the server differ from prefect.yaml"
import json
import sys
import time
import urllib.error
import urllib.request

import yaml

api = sys.argv[1]


def call(method, path, body=None):
    request = urllib.request.Request(
        f"{api}/{path}",
        method=method,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    # A busy 2-core machine can make the fresh server answer 503 for a moment: retry those.
    for attempt in range(6):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == 5:
                raise
            time.sleep(2)


wanted = yaml.safe_load(open("prefect.yaml"))["deployments"]
held = {d["name"]: d for d in call("POST", "deployments/filter", {})}
problems = []
for entry in wanted:
    got = held.get(entry["name"])
    if got is None:
        problems.append(f"{entry['name']}: not deployed")
        continue
    schedules = [(s["schedule"].get("cron"), s["schedule"].get("timezone")) for s in got["schedules"]]
    limit = entry["concurrency_limit"]
    checks = {
        "entrypoint": (got["entrypoint"], entry["entrypoint"]),
        "parameters": (got["parameters"], entry["parameters"]),
        "schedules": (schedules, [(s["cron"], s["timezone"]) for s in entry["schedules"]]),
        "limit": ((got.get("global_concurrency_limit") or {}).get("limit"), limit["limit"]),
        "collision strategy": (
            (got.get("concurrency_options") or {}).get("collision_strategy"),
            limit["collision_strategy"],
        ),
    }
    problems += [f"{entry['name']}: {k} is {a!r}, expected {b!r}" for k, (a, b) in checks.items() if a != b]
for problem in problems:
    print(f"deploy-smoke: {problem}", file=sys.stderr)
if problems:
    sys.exit(1)
for deployment in held.values():
    for schedule in deployment["schedules"]:
        call("PATCH", f"deployments/{deployment['id']}/schedules/{schedule['id']}", {"active": False})
PY
step "deployments match prefect.yaml (entrypoints, parameters, schedules, limits); schedules paused"

# --- 4. two runs through a process worker ---------------------------------------------------
run_deployment() { # NAME PARAM...: prints the new flow run's id
    local name="$1"
    shift
    local args=()
    for param in "$@"; do args+=(--param "$param"); done
    prefect --no-prompt deployment run "$name" "${args[@]}" >"$TMP/run.log" 2>&1 ||
        { cat "$TMP/run.log" >>"$TMP/cli.log"; return 1; }
    cat "$TMP/run.log" >>"$TMP/cli.log"
    sed -n 's/.*UUID: \([0-9a-f-]\{36\}\).*/\1/p' "$TMP/run.log"
}
FEED_RUN="$(run_deployment regenerate-feed/regenerate-feed \
    "storage=$TMP/storage" "public_url=$PUBLIC_URL")" || fail "deployment run regenerate-feed"
NEWS_RUN="$(run_deployment newsletter/monthly-newsletter \
    "posts=[\"$REPO/demo/posts.xml\"]" \
    "events=[\"$REPO/demo/events.ics\", \"$REPO/demo/events.yaml\"]" \
    "out=$TMP/newsletters" "storage=$TMP/storage" "public_url=$PUBLIC_URL" "force=true")" ||
    fail "deployment run monthly-newsletter"
[ -n "$FEED_RUN" ] && [ -n "$NEWS_RUN" ] || fail "no flow run id in the output of prefect deployment run"
step "flow runs created: feed $FEED_RUN, newsletter $NEWS_RUN"

# One poll picks up both runs; the worker waits for them and exits.
timeout 90 prefect worker start --pool "$POOL" --run-once >"$TMP/worker.log" 2>&1 ||
    fail "the worker failed or took longer than 90 s"
step "worker done"

# --- 5. results --------------------------------------------------------------------------
for run in "$FEED_RUN" "$NEWS_RUN"; do
    state="$(api_get "flow_runs/$run" 'r["state_type"], r["name"], r["state"]["message"]')" ||
        fail "cannot read flow run $run"
    case "$state" in
        "COMPLETED "*) ;;
        *) fail "flow run $run (state, name, message): $state; expected COMPLETED" ;;
    esac
done
# Nothing else ran: the paused schedules started no run with production parameters.
started="$(curl -sf -X POST "$API/flow_runs/filter" -H 'content-type: application/json' \
    -d '{"flow_runs": {"start_time": {"is_null_": false}}}' |
    python3 -c 'import json, sys; print(" ".join(sorted(r["id"] for r in json.load(sys.stdin))))')" ||
    fail "cannot list the flow runs"
[ "$started" = "$(printf '%s\n' "$FEED_RUN" "$NEWS_RUN" | LC_ALL=C sort | xargs)" ] ||
    fail "runs other than ours started: $started"
[ -s "$TMP/storage/podcast/feed.xml" ] || fail "no podcast/feed.xml in the run's storage"
grep -q '<rss' "$TMP/storage/podcast/feed.xml" || fail "podcast/feed.xml is not an RSS feed"
ls "$TMP"/newsletters/*/index.html >/dev/null 2>&1 || fail "no newsletter draft in $TMP/newsletters"
AFTER="$(git_state)"
if [ "$BEFORE" != "$AFTER" ]; then
    diff <(echo "$BEFORE") <(echo "$AFTER") >&2 || true
    fail "the repository changed during the smoke test (git status above)"
fi
echo "deploy-smoke: PASS: deployed 3, ran regenerate-feed and monthly-newsletter to COMPLETED" \
    "through a process worker, feed.xml and draft written, repo untouched ($((SECONDS - START)) s)"
