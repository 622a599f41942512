# Sourced by build-eapol-test.sh and build-hostapd.sh after they set ME, LOG,
# BIN and SRC: the build log, its step reporting, and the failure message
# that quotes the log's last lines.

STEP=init
on_err() {
    local rc=$?
    trap - ERR
    if [[ -s $LOG ]]; then
        echo "----- last lines of $LOG -----" >&2
        tail -n 30 "$LOG" >&2 || true
        echo "------------------------------" >&2
    fi
    echo "$ME: FAILED at step '$STEP' (exit $rc); full log: $LOG" >&2
    exit "$rc"
}
trap on_err ERR

mkdir -p "$BIN" "$SRC" "$(dirname "$LOG")"
: >"$LOG"

log() { echo "$ME: $*"; echo "== $*" >>"$LOG"; }
run() { "$@" >>"$LOG" 2>&1; }
