#!/usr/bin/env bash
# CI smoke test of the deployments: a real Prefect server on 127.0.0.1, `prefect deploy --all`
# from the repository root, two runs through a process worker, results checked.
# Everything lives in a temp folder that is removed on exit; the repository is left as found.
#   .ci/deploy-smoke.sh            (about 40-60 s)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
START=$SECONDS
TMP="$(mktemp -d "${TMPDIR:-/tmp}/kraftsamling-smoke.XXXXXX")"
SERVER_PID=""

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        # The server was started in its own process group (setsid): end it and its children.
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "deploy-smoke: FAIL: $*" >&2
    for log in server worker; do
        if [ -s "$TMP/$log.log" ]; then
            echo "----- last lines of the $log log -----" >&2
            tail -n 60 "$TMP/$log.log" >&2
        fi
    done
    exit 1
}

git_state() { git status --porcelain --ignored | grep -v '__pycache__/$' || true; }
BEFORE="$(git_state)"

export PREFECT_HOME="$TMP/prefect-home"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_LOGGING_LEVEL=INFO
unset PREFECT_API_URL PREFECT_API_KEY PREFECT_PROFILE
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
API="http://127.0.0.1:$PORT/api"

# --- a real server ------------------------------------------------------------------------
setsid prefect server start --host 127.0.0.1 --port "$PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
    curl -sf "$API/health" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the Prefect server exited while starting"
    sleep 0.5
done
curl -sf "$API/health" >/dev/null 2>&1 || fail "the Prefect server was not healthy within 60 s"
export PREFECT_API_URL="$API"
echo "deploy-smoke: server healthy on $API after $((SECONDS - START)) s"

# --- deploy everything in prefect.yaml ------------------------------------------------------
POOL="$(python3 -c 'import yaml; print(yaml.safe_load(open("prefect.yaml"))["deployments"][0]["work_pool"]["name"])')"
prefect work-pool create "$POOL" --type process >"$TMP/cli.log" 2>&1 || { cat "$TMP/cli.log" >&2; fail "work-pool create"; }
prefect --no-prompt deploy --all >"$TMP/deploy.log" 2>&1 || { cat "$TMP/deploy.log" >&2; fail "prefect deploy --all"; }
echo "deploy-smoke: deployed prefect.yaml after $((SECONDS - START)) s"

# The schedules fire on their own (publish-episodes every 15 minutes) with production
# parameters; pausing them deletes those runs, so the worker only runs the two below.
python3 .ci/deploy_smoke_check.py deployments "$API" || fail "the deployed schedules or limits differ from prefect.yaml"
prefect --no-prompt deployment schedule pause --all >>"$TMP/cli.log" 2>&1 || { cat "$TMP/cli.log" >&2; fail "schedule pause"; }
