# shellcheck shell=bash
# find_freeradius: the FreeRADIUS binary: $FREERADIUS, else freeradius
# (Debian) or radiusd in PATH or /usr/sbin (sourced by the FreeRADIUS scripts,
# after scripts/lib/pidfile.sh, whose port_inodes it uses).
find_freeradius() {
    local name
    if [[ -n ${FREERADIUS:-} ]]; then
        echo "$FREERADIUS"
        return
    fi
    for name in freeradius radiusd; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return
        fi
        if [[ -x /usr/sbin/$name ]]; then
            echo "/usr/sbin/$name"
            return
        fi
    done
    echo /usr/sbin/freeradius
}

# await_freeradius PID SECRET PORT [PORT...]: returns once FreeRADIUS (PID)
# has bound every UDP PORT and, if radclient is installed, answers
# Status-Server on the first (it answers once its threads run). On failure
# it calls the script's `failed WHY` (one line, the end of its log, exit 1).
await_freeradius() {
    local pid=$1 secret=$2 i answered
    shift 2
    local ports=("$@")
    bound() {
        local port inode found
        for port in "${ports[@]}"; do
            found=1
            for inode in $(port_inodes udp "$port"); do
                if find "/proc/$pid/fd" -lname "socket:\[$inode\]" 2>/dev/null | grep -q .; then
                    found=0
                    break
                fi
            done
            [[ $found -eq 0 ]] || return 1
        done
        return 0
    }
    for ((i = 0; i < 200; i++)); do
        [[ -d /proc/$pid ]] || failed "freeradius exited at start-up"
        bound && break
        sleep 0.05
    done
    bound || failed "freeradius did not bind UDP port(s) ${ports[*]} within 10 s"
    if command -v radclient >/dev/null 2>&1; then
        answered=0
        for ((i = 0; i < 20; i++)); do
            if printf 'Message-Authenticator = 0x00\n' |
                radclient -q -r 1 -t 1 "127.0.0.1:${ports[0]}" status "$secret" >/dev/null 2>&1; then
                answered=1
                break
            fi
            [[ -d /proc/$pid ]] || failed "freeradius exited at start-up"
        done
        [[ $answered -eq 1 ]] || failed "freeradius does not answer Status-Server on 127.0.0.1:${ports[0]}"
    fi
}
