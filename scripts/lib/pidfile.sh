# Sourced by the scripts that start third-party servers in a run directory
# (hostapd-aka-server.sh, freeradius-tls-server.sh, freediameter-radgw.sh,
# freediameter-relay.sh): their pid files, running them in the foreground,
# giving up on one that did not come up, and the sockets on a port.

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

# fail_started LOG WHAT FILE:PROGRAM...: for a server that did not come up:
# WHAT on stderr, the end of LOG, every FILE:PROGRAM stopped, exit 1.
fail_started() {
    local log=$1 what=$2 pair
    shift 2
    echo "$ME: $what" >&2
    if [[ -s $log ]]; then
        echo "----- last lines of $log -----" >&2
        tail -n 25 "$log" >&2 || true
    fi
    for pair in "$@"; do
        stop_one "${pair%:*}" "${pair##*:}" >/dev/null
    done
    exit 1
}

# port_inodes udp|tcp PORT: the inodes of the UDP sockets bound to PORT, or
# of the TCP sockets listening on it, on any address.
port_inodes() {
    local proto=$1 hex
    hex=$(printf '%04X' "$2")
    if [[ $proto == tcp ]]; then
        awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null
    else
        awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p { print $10 }' \
            /proc/net/udp /proc/net/udp6 2>/dev/null
    fi
}
