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

# shellcheck source=lib/debian-source.sh
source "$REPO/scripts/lib/debian-source.sh"

# --------------------------------------------------------------------------
# 1-3. Debian's freediameter source (dpkg-source -x applies
#      debian/patches/series) and its Build-Depends minus debhelper,
#      pkg-config and txt2man (no package, no man pages). CMake stops with
#      "Unable to find idna.h" without libidn11-dev (libidn2-dev is not
#      enough); libsctp-dev is needed for its headers even with DISABLE_SCTP.
# --------------------------------------------------------------------------
FD=$SRC/freediameter
debian_source freediameter "$FD" gcc g++ make cmake flex bison libsctp-dev libidn11-dev libgnutls28-dev \
    libgcrypt20-dev libc6-dev dpkg-dev xz-utils patch
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
