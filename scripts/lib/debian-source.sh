# Sourced (after scripts/lib/tool-build.sh) by the scripts that build a tool
# from a Debian source package: build-eapol-test.sh (wpa) and
# build-freediameter.sh (freediameter). One function, debian_source, does
# what both need before their own build:
#   1. a private deb-src entry mirroring the system's deb entries (one file
#      for every script, so they never rewrite each other's and cost each
#      other an apt-get update);
#   2. the build dependencies that are missing, with apt-get update only
#      when the lists may be stale;
#   3. `apt-get source --download-only` and `dpkg-source -x` (Debian's
#      patches applied), unless DEST already holds that source.

SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
fi
as_root() {
    if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        echo "$ME: need root (or passwordless sudo) for: $*" >>"$LOG"
        return 1
    fi
    "${SUDO[@]}" "$@"
}
export DEBIAN_FRONTEND=noninteractive

# The deb-src lines for the system's deb entries, with their header.
deb_src_entries() {
    local header="# Managed by eapay scripts/lib/debian-source.sh (deb-src for 'apt-get source')"
    if [[ -f $SYS_SOURCES ]]; then
        echo "$header"
        # deb822: copy every enabled stanza whose Types includes "deb", with
        # Types replaced by deb-src (URIs, Suites, Components, Signed-By kept).
        awk '
        function flush(  i) {
            if (n > 0 && has_deb && enabled) {
                if (out++) print ""
                print "Types: deb-src"
                for (i = 1; i <= n; i++) print lines[i]
            }
            n = 0; has_deb = 0; enabled = 1; skip = 0
        }
        BEGIN { n = 0; has_deb = 0; enabled = 1; out = 0; skip = 0 }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]/   { if (!skip) lines[++n] = $0; next }
        {
            key = tolower(substr($0, 1, index($0, ":") - 1))
            if (key == "types") { if ($0 ~ /[: \t]deb([ \t]|$)/) has_deb = 1; skip = 1; next }
            if (key == "enabled") { if (tolower($2) == "no") enabled = 0; skip = 1; next }
            skip = 0; lines[++n] = $0
        }
        END { flush() }' "$SYS_SOURCES"
    else
        echo "$header"
        sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' /etc/apt/sources.list
    fi
}

# debian_source PACKAGE DEST DEP...: PACKAGE's Debian source unpacked in
# DEST (DEST/.eapay-source-version names it), DEPs installed.
debian_source() {
    local package=$1 dest=$2
    shift 2
    local deps=("$@") need_update=0 missing=() p want priv

    STEP="configure deb-src apt source"
    SYS_SOURCES=/etc/apt/sources.list.d/debian.sources
    if [[ -f $SYS_SOURCES ]]; then
        priv=/etc/apt/sources.list.d/eapay-deb-src.sources
    elif [[ -f /etc/apt/sources.list ]]; then
        priv=/etc/apt/sources.list.d/eapay-deb-src.list
    else
        echo "$ME: no $SYS_SOURCES nor /etc/apt/sources.list to derive deb-src from" >>"$LOG"
        return 1
    fi
    want=$(deb_src_entries)
    grep -q '^\(Types: \)\?deb-src' <<<"$want"
    if [[ ! -f $priv ]] || [[ $(cat "$priv") != "$want" ]]; then
        log "writing $priv"
        printf '%s\n' "$want" | as_root tee "$priv" >/dev/null
        need_update=1
    fi

    for p in "${deps[@]}"; do
        if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null; then
            missing+=("$p")
        fi
    done
    if [[ $need_update -eq 0 ]] &&
        ! apt-cache showsrc --only-source "$package" 2>/dev/null | grep "^Package: $package\$" >/dev/null; then
        need_update=1
    fi
    if [[ $need_update -eq 0 && ${#missing[@]} -gt 0 ]]; then
        for p in "${missing[@]}"; do
            if ! apt-cache policy "$p" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
                need_update=1
            fi
        done
    fi
    STEP="apt-get update"
    if [[ $need_update -eq 1 ]]; then
        log "apt-get update"
        run as_root apt-get update
    fi
    STEP="install build dependencies (${missing[*]:-none})"
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]}"
        if ! run as_root apt-get install -y --no-install-recommends "${missing[@]}"; then
            [[ $need_update -eq 0 ]] || return 1
            # Stale package lists: refresh once and retry.
            log "retrying after apt-get update"
            run as_root apt-get update
            run as_root apt-get install -y --no-install-recommends "${missing[@]}"
        fi
    fi

    STEP="apt-get source $package"
    if [[ ! -f $dest/.eapay-source-version ]]; then
        local dl=$dest.dl dsc
        rm -rf "$dl" "$dest" "$dest.tmp"
        mkdir -p "$dl"
        local opts=()
        # As root, apt cannot drop privileges to _apt for a download into a
        # root-owned dir and warns "Download is performed unsandboxed"; say so.
        [[ $(id -u) -eq 0 ]] && opts=(-o APT::Sandbox::User=root)
        log "apt-get source --download-only $package"
        (cd "$dl" && run apt-get "${opts[@]}" source --download-only "$package")
        STEP="dpkg-source -x $package"
        dsc=$(ls "$dl/${package}_"*.dsc | head -n1)
        log "dpkg-source -x $(basename "$dsc") (Debian patches applied)"
        run dpkg-source --no-check -x "$dsc" "$dest.tmp"
        basename "$dsc" .dsc >"$dest.tmp/.eapay-source-version"
        mv "$dest.tmp" "$dest"
        rm -rf "$dl"
    fi
    log "using source $(cat "$dest/.eapay-source-version")"
}
