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

# radiusd_common LOG: the log, security and thread pool sections both
# configurations share (log to the file LOG, no per-request log lines,
# Status-Server answered, no reject delay).
radiusd_common() {
    cat <<EOF
log {
	destination = files
	file = '$1'
	colourise = no
	stripped_names = no
	auth = no
	auth_badpass = no
	auth_goodpass = no
}

security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}

thread pool {
	start_servers = 4
	max_servers = 32
	min_spare_servers = 2
	max_spare_servers = 8
	max_requests_per_server = 0
	auto_limit_acct = no
}
EOF
}
