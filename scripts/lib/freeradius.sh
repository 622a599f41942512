# shellcheck shell=bash
# find_freeradius: the FreeRADIUS binary: $FREERADIUS, else freeradius
# (Debian) or radiusd in PATH or /usr/sbin (sourced by the FreeRADIUS scripts).
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
