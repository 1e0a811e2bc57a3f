#!/usr/bin/env bash
# CI: what a user does, in a clean venv with `pip install .` (no extras, not editable):
#   1. copy the working tree's files (tracked, plus untracked ones that are not ignored, so
#      uncommitted changes count) into a temp folder, and make that copy a git repository;
#   2. python3 -m venv in a temp folder; `pip install .` from the copy; `pip check`; no test
#      extra installed;
#   3. `python -m flows demo` in the copy, twice; then `git status --porcelain` there is empty;
#   4. from a temp folder outside any repository: one newsletter build with --posts/--events
#      naming the demo files; index.html written;
#   5. from another such folder: one podcast publish of the demo episodes from a drop folder
#      made there; feed.xml written, every episode published, none failed.
# The commands run with a fresh HOME (PREFECT_HOME inside it) and no KRAFTSAMLING_*, PREFECT_*,
# XDG_* or PYTHONPATH from the caller; pip keeps the caller's cache, for speed.
# Prints one line per step with its duration; a failing step is named, with its log's end.
# Usage: .ci/user-install.sh  (needs python3 and git; reaches PyPI, or pip's cache, for pip)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
MONTH="2026-12"
NOW="2026-12-01T08:00:00+01:00"
# Publishing refuses a future --now; this moment is past on any day CI runs.
PUBLISH_NOW="2026-11-20T10:00:00+01:00"

clock() { echo "${EPOCHREALTIME/,/.}"; } # seconds, whatever the locale's decimal mark
START="$(clock)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/kraftsamling-user.XXXXXX")"
TMP="$(cd "$TMP" && pwd -P)"
case "$TMP/" in "$REPO"/*) echo "user-install: TMPDIR is inside the repository" >&2 && exit 1 ;; esac
COPY="$TMP/copy"
VENV="$TMP/venv"
LOGS="$TMP/logs"
mkdir -p "$COPY" "$LOGS" "$TMP/home"

STEP=""
STEP_START="$START"
STEPS=0
LOG="$LOGS/setup.log"

elapsed() { # seconds since $1 (a clock reading), one decimal
    awk -v a="$1" -v b="$(clock)" 'BEGIN { printf "%.1f", b - a }'
}

on_exit() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        if [ -s "$LOG" ]; then
            echo "----- last lines of the log of '${STEP:-setup}' -----" >&2
            tail -n 80 "$LOG" >&2
        fi
        echo "user-install: FAIL in step '${STEP:-setup}' after $(elapsed "$STEP_START") s" \
            "(exit status $status; $(elapsed "$START") s in all)" >&2
    fi
    rm -rf "$TMP"
}
trap on_exit EXIT
trap 'exit 130' INT TERM # so that the cleanup runs on Ctrl-C or a CI timeout too

begin() {
    STEP="$1"
    STEP_START="$(clock)"
    STEPS=$((STEPS + 1))
    LOG="$LOGS/step-$STEPS.log"
    : >"$LOG"
}
end() {
    echo "user-install: ok   $STEP ($(elapsed "$STEP_START") s)"
    STEP=""
}
fail() {
    echo "user-install: $*" >>"$LOG"
    exit 1
}
# Run a command with its output in the step's log (shown if the step fails).
run() {
    echo "\$ $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

# pip keeps the caller's cache; nothing else of the caller's configuration reaches the commands.
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pip}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
while IFS= read -r name; do
    unset "$name"
done < <(compgen -e | grep -E '^(KRAFTSAMLING_|PREFECT_|XDG_|PYTHONPATH$|PYTHONHOME$|VIRTUAL_ENV$)' || true)
export HOME="$TMP/home"
export PREFECT_HOME="$HOME/.prefect"
export PREFECT_SERVER_ANALYTICS_ENABLED=false

begin "copy the working tree"
# Tracked files as they are in the working tree (deleted ones skipped), and new files that a
# `git add -A` would take: what the next commit would hold, uncommitted changes included.
git -C "$REPO" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' path; do
        if [ -f "$REPO/$path" ] || [ -L "$REPO/$path" ]; then printf '%s\0' "$path"; fi
    done |
    (cd "$REPO" && xargs -0 -r cp -P -p --parents -t "$COPY")
[ -f "$COPY/pyproject.toml" ] || fail "no pyproject.toml in the copy"
run git -C "$COPY" init -q
run git -C "$COPY" add -A
run git -C "$COPY" -c user.email=ci@localhost -c user.name=ci commit -qm copy
end

begin "venv + pip install . (no extras)"
run python3 -m venv "$VENV"
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
(cd "$COPY" && run python -m pip install -q .)
run python -m pip check
# No test extra: the commands below must work with the runtime dependencies alone.
for module in pytest moto hypothesis; do
    if python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)"
    then
        fail "$module is installed: \`pip install .\` must not bring the test extra"
    fi
done
end

begin "demo in the copy, first run"
(cd "$COPY" && run python -m flows demo)
[ -f "$COPY/.demo/newsletters/$MONTH/index.html" ] || fail "the demo wrote no .demo/newsletters/$MONTH/index.html"
end

begin "demo in the copy, second run"
(cd "$COPY" && run python -m flows demo)
changes="$(git -C "$COPY" status --porcelain)"
[ -z "$changes" ] || fail "the demo left changes in the repository:"$'\n'"$changes"
end

begin "newsletter from a folder outside the repository"
OUTSIDE="$TMP/outside-newsletter"
mkdir "$OUTSIDE"
cd "$OUTSIDE"
# The installed package, not a source tree, is what runs here.
where="$(python -c 'import flows; print(flows.__file__)')"
case "$where" in
"$VENV"/*) ;;
*) fail "flows was imported from $where, not from the venv" ;;
esac
run python -m flows newsletter --month "$MONTH" --now "$NOW" \
    --posts "$COPY/demo/posts.xml" \
    --events "$COPY/demo/events.ics" "$COPY/demo/events.yaml" \
    --out ./newsletters
[ -f "newsletters/$MONTH/index.html" ] || fail "no newsletters/$MONTH/index.html in $OUTSIDE"
cd "$REPO"
end

begin "podcast publish from a folder outside the repository"
OUTSIDE="$TMP/outside-podcast"
DROP="$OUTSIDE/drop"
mkdir -p "$DROP/inbox"
cd "$OUTSIDE"
cp -p "$COPY/episodes/show.yaml" "$COPY/episodes/cover.jpg" "$DROP/"
cp -p "$COPY"/demo/episodes/* "$DROP/inbox/"
# `cp -p` keeps the files' mtime, but the inbox also counts a fresh ctime as "still being
# copied" for settle_seconds (10 s): 0 here, so the run need not wait.
run env KRAFTSAMLING_SETTLE_SECONDS=0 python -m flows podcast --episodes "$DROP" \
    --storage "$OUTSIDE/storage" --now "$PUBLISH_NOW"
[ -s "$OUTSIDE/storage/podcast/feed.xml" ] || fail "no storage/podcast/feed.xml in $OUTSIDE"
grep -q "<item>" "$OUTSIDE/storage/podcast/feed.xml" || fail "the feed has no <item>"
left="$(find "$DROP/inbox" -type f)"
[ -z "$left" ] || fail "files left in the inbox:"$'\n'"$left"
if [ -d "$DROP/failed" ] && [ -n "$(find "$DROP/failed" -type f)" ]; then
    fail "episodes failed:"$'\n'"$(find "$DROP/failed" -type f)"
fi
cd "$REPO"
end

echo "user-install: PASS ($(elapsed "$START") s)"
