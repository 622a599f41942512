# Sourced by hostapd-aka-server.sh and freeradius-tls-server.sh: the pid
# files of the third-party servers they start in a run directory.

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
