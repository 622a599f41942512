#!/usr/bin/env bash
# Build freeDiameter 1.2.1 with its RADIUS/Diameter gateway app_radgw from
# Debian's `freediameter` source package (Debian's patches applied), to run
# eapay-server's Diameter EAP front end behind a real RFC 4072 client
# (scripts/freediameter-radgw.sh, tests/tests/diameter_radgw.rs).
#
# Debian's binary packages (freediameter, freediameter-extensions) do not
# ship app_radgw, and its extensions must come from the same build as the
# daemon, so everything is built here.
#
# Usage: scripts/build-freediameter.sh
#   EAPAY_TOOLS_DIR  install prefix (default: <repo>/.tools)
# Produces
#   $TOOLS/bin/freeDiameterd
#   $TOOLS/lib/libfdcore.so* and libfdproto.so* (the daemon finds them
#       through its RUNPATH, $TOOLS/lib; no LD_LIBRARY_PATH needed)
#   $TOOLS/lib/freeDiameter/*.fdx (dict_eap, dict_nasreq, rt_default,
#       acl_wl, dbg_msg_dumps, app_radgw, ...) and the app_radgw plugins
#       $TOOLS/lib/freeDiameter/{auth,acct,echodrop,debug}.rgwx
# cmake -DBUILD_APP_RADGW=ON -DDISABLE_SCTP=ON -DBUILD_TESTING=OFF
# -DCMAKE_BUILD_TYPE=Release (SCTP: these machines have none). Build
# dependencies missing on the machine are installed with apt-get (root or
# passwordless sudo). A second run is a no-op while the stamp file matches
# this script's hash.
set -Eeuo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)
TOOLS=${EAPAY_TOOLS_DIR:-$REPO/.tools}
mkdir -p "$TOOLS"
TOOLS=$(cd "$TOOLS" && pwd)
BIN=$TOOLS/bin
LIB=$TOOLS/lib
EXT=$LIB/freeDiameter
SRC=$TOOLS/src
STAMP=$TOOLS/.build-freediameter.stamp
LOG=$TOOLS/logs/build-freediameter.log
ME=build-freediameter.sh

# Anything that changes the build lives in this script, so its hash is the
# configuration hash.
CONFIG_HASH=$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)

# What the gateway needs at run time.
NEEDED_EXTENSIONS=(dict_nasreq.fdx dict_eap.fdx rt_default.fdx acl_wl.fdx dbg_msg_dumps.fdx app_radgw.fdx
    auth.rgwx acct.rgwx echodrop.rgwx debug.rgwx)

up_to_date() {
    local e
    [[ -x $BIN/freeDiameterd && -f $STAMP ]] || return 1
    [[ $(cat "$STAMP") == "$CONFIG_HASH" ]] || return 1
    for e in "${NEEDED_EXTENSIONS[@]}"; do
        [[ -f $EXT/$e ]] || return 1
    done
}

report() {
    echo "freeDiameterd: $BIN/freeDiameterd"
    echo "libraries: $(cd "$LIB" && echo libfdcore.so* libfdproto.so* | sed "s|\([^ ]*\)|$LIB/\1|g")"
    echo "extensions: $EXT (app_radgw.fdx, auth.rgwx, acct.rgwx, dict_eap.fdx, dict_nasreq.fdx, rt_default.fdx, ...)"
}

if up_to_date; then
    report
    exit 0
fi

# shellcheck source=lib/tool-build.sh
source "$REPO/scripts/lib/tool-build.sh"

# Serialize concurrent invocations (e.g. parallel test jobs).
STEP="lock $TOOLS"
exec 9>"$TOOLS/.build-freediameter.lock"
flock 9
if up_to_date; then
    report
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    fi
fi
as_root() {
    if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        echo "$ME: need root (or passwordless sudo) for: $*" >>"$LOG"
        return 1
    fi
    "${SUDO[@]}" "$@"
}
export DEBIAN_FRONTEND=noninteractive

# --------------------------------------------------------------------------
# 1. Private deb-src entry mirroring the system's deb entries. The same file,
#    byte for byte, as scripts/build-eapol-test.sh writes (header included),
#    so that the two scripts never rewrite each other's file (each rewrite
#    costs an apt-get update).
# --------------------------------------------------------------------------
STEP="configure deb-src apt source"
SYS_SOURCES=/etc/apt/sources.list.d/debian.sources
if [[ -f $SYS_SOURCES ]]; then
    PRIV_SOURCES=/etc/apt/sources.list.d/eapay-deb-src.sources
    want=$(
        echo "# Managed by eapay scripts/build-eapol-test.sh (deb-src for 'apt-get source wpa')"
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
    )
elif [[ -f /etc/apt/sources.list ]]; then
    PRIV_SOURCES=/etc/apt/sources.list.d/eapay-deb-src.list
    want=$(
        echo "# Managed by eapay scripts/build-eapol-test.sh (deb-src for 'apt-get source wpa')"
        sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' /etc/apt/sources.list
    )
else
    echo "$ME: no $SYS_SOURCES nor /etc/apt/sources.list to derive deb-src from" >>"$LOG"
    false
fi
grep -q '^\(Types: \)\?deb-src' <<<"$want"
need_update=0
if [[ ! -f $PRIV_SOURCES ]] || [[ $(cat "$PRIV_SOURCES") != "$want" ]]; then
    log "writing $PRIV_SOURCES"
    printf '%s\n' "$want" | as_root tee "$PRIV_SOURCES" >/dev/null
    need_update=1
fi

# --------------------------------------------------------------------------
# 2. Build dependencies (Debian's Build-Depends minus debhelper, pkg-config
#    and txt2man: no package and no man pages are built). CMake stops with
#    "Unable to find idna.h" without libidn11-dev (libidn2-dev is not enough);
#    libsctp-dev is needed for its headers even with DISABLE_SCTP.
# --------------------------------------------------------------------------
BUILD_DEPS=(gcc g++ make cmake flex bison libsctp-dev libidn11-dev libgnutls28-dev libgcrypt20-dev
    libc6-dev dpkg-dev xz-utils patch)
missing=()
for p in "${BUILD_DEPS[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null; then
        missing+=("$p")
    fi
done
if [[ $need_update -eq 0 ]] &&
    ! apt-cache showsrc --only-source freediameter 2>/dev/null | grep '^Package: freediameter$' >/dev/null; then
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
        if [[ $need_update -eq 0 ]]; then
            # Stale package lists: refresh once and retry.
            log "retrying after apt-get update"
            run as_root apt-get update
            run as_root apt-get install -y --no-install-recommends "${missing[@]}"
        else
            false
        fi
    fi
fi

# --------------------------------------------------------------------------
# 3. Fetch and unpack Debian's freediameter source. dpkg-source -x applies
#    debian/patches/series (3.0 quilt), as the notes' `patch -p1` loop does.
# --------------------------------------------------------------------------
STEP="apt-get source freediameter"
FD=$SRC/freediameter
if [[ ! -f $FD/CMakeLists.txt || ! -f $FD/extensions/app_radgw/rgwx_auth.c || ! -f $FD/.eapay-source-version ]]; then
    rm -rf "$SRC/dl-freediameter" "$FD" "$FD.tmp"
    mkdir -p "$SRC/dl-freediameter"
    APT_SRC_OPTS=()
    # As root, apt cannot drop privileges to _apt for a download into a
    # root-owned dir and warns "Download is performed unsandboxed"; say so.
    [[ $(id -u) -eq 0 ]] && APT_SRC_OPTS=(-o APT::Sandbox::User=root)
    log "apt-get source --download-only freediameter"
    (cd "$SRC/dl-freediameter" && run apt-get "${APT_SRC_OPTS[@]}" source --download-only freediameter)
    STEP="dpkg-source -x freediameter"
    dsc=$(ls "$SRC"/dl-freediameter/freediameter_*.dsc | head -n1)
    log "dpkg-source -x $(basename "$dsc") (Debian patches applied)"
    run dpkg-source --no-check -x "$dsc" "$FD.tmp"
    mv "$FD.tmp" "$FD"
    basename "$dsc" .dsc >"$FD/.eapay-source-version"
fi
log "using source $(cat "$FD/.eapay-source-version")"
STEP="check freeDiameter version"
grep -q '^freediameter_1\.2\.1-' "$FD/.eapay-source-version" || {
    echo "$ME: want freeDiameter 1.2.1, Debian has $(cat "$FD/.eapay-source-version")" >>"$LOG"
    false
}

# --------------------------------------------------------------------------
# 4. Configure and build (out of tree, into a staging prefix).
# --------------------------------------------------------------------------
BUILD=$SRC/build-freediameter
STAGE=$SRC/stage-freediameter
STEP="cmake freeDiameter"
rm -rf "$BUILD" "$STAGE"
mkdir -p "$BUILD"
log "cmake (app_radgw on, SCTP off, tests off, Release)"
run cmake -S "$FD" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_APP_RADGW=ON \
    -DDISABLE_SCTP=ON \
    -DBUILD_TESTING=OFF \
    -DBUILD_DICT_EAP=ON \
    -DBUILD_DICT_NASREQ=ON \
    -DBUILD_RT_DEFAULT=ON \
    -DBUILD_ACL_WL=ON \
    -DBUILD_DBG_MSG_DUMPS=ON \
    -DCMAKE_INSTALL_PREFIX="$TOOLS" \
    -DCMAKE_INSTALL_RPATH="$LIB" \
    -DCMAKE_SKIP_RPATH=OFF \
    -DDEFAULT_CONF_PATH="$TOOLS/etc/freeDiameter"

STEP="make freeDiameter"
log "building freeDiameter (make -j$(nproc 2>/dev/null || echo 2))"
run make -C "$BUILD" -j"$(nproc 2>/dev/null || echo 2)"

STEP="make install (staging)"
run make -C "$BUILD" install DESTDIR="$STAGE"

# --------------------------------------------------------------------------
# 5. Verify and install.
# --------------------------------------------------------------------------
STAGED=$STAGE$TOOLS
STEP="verify the staged build"
for e in "${NEEDED_EXTENSIONS[@]}"; do
    [[ -f $STAGED/lib/freeDiameter/$e ]] || {
        echo "$ME: the build produced no $e" >>"$LOG"
        false
    }
done
[[ -x $STAGED/bin/freeDiameterd ]]
runpath=$(readelf -d "$STAGED/bin/freeDiameterd" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p;s/.*(RPATH).*\[\(.*\)\]/\1/p')
[[ $runpath == *"$LIB"* ]] || {
    echo "$ME: freeDiameterd has no RUNPATH $LIB (got '$runpath')" >>"$LOG"
    false
}

STEP="install into $TOOLS"
mkdir -p "$BIN" "$EXT"
# Libraries first (symlinks kept), then extensions, then the daemon.
cp -a "$STAGED"/lib/libfdcore.so* "$STAGED"/lib/libfdproto.so* "$LIB/"
for f in "$STAGED"/lib/freeDiameter/*; do
    install -m 0644 "$f" "$EXT/.$(basename "$f").tmp"
    mv -f "$EXT/.$(basename "$f").tmp" "$EXT/$(basename "$f")"
done
install -m 0755 "$STAGED/bin/freeDiameterd" "$BIN/.freeDiameterd.tmp"
mv -f "$BIN/.freeDiameterd.tmp" "$BIN/freeDiameterd"

STEP="verify freeDiameterd runs"
ver=$("$BIN/freeDiameterd" --version 2>&1 || true)
grep -q 'freeDiameter.*1\.2\.1' <<<"$ver" || {
    echo "$ME: freeDiameterd --version printed: $ver" >>"$LOG"
    false
}
if ldd "$BIN/freeDiameterd" | grep -q 'not found'; then
    ldd "$BIN/freeDiameterd" >>"$LOG" 2>&1
    false
fi
log "$(head -n1 <<<"$ver") ($(cat "$FD/.eapay-source-version"))"

echo "$CONFIG_HASH" >"$STAMP"
log "done"
report
