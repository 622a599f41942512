# Sourced by hostapd-aka-server.sh and freeradius-tls-server.sh: the pid
# files of the third-party servers they start in a run directory, and
# running them in the foreground.

# The pid in FILE if that process is alive and runs PROGRAM.
live_pid() {
    local file=$1 program=$2 pid
    [[ -f $file ]] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$program" || return 1
    echo "$pid"
}

# SIGTERM the process of a pid file (if it is still ours), wait up to 5 s.
stop_one() {
    local file=$1 program=$2 pid i
    if pid=$(live_pid "$file" "$program"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stopped $(basename "$program") pid $pid"
    fi
    rm -f "$file"
}

# Waits for PID (a child of this shell) in the foreground and exits with its
# status; on any exit, Ctrl-C or SIGTERM included, stops each FILE:PROGRAM
# given (stop_one), so nothing is left running.
wait_in_foreground() {
    local pid=$1
    shift
    STOP_ON_EXIT=("$@")
    cleanup() {
        trap - INT TERM EXIT
        local pair
        for pair in "${STOP_ON_EXIT[@]}"; do
            stop_one "${pair%:*}" "${pair##*:}" >/dev/null
        done
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    local rc=0
    wait "$pid" || rc=$?
    exit "$rc"
}
