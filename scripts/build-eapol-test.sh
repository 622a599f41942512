#!/usr/bin/env bash
# Build wpa_supplicant's `eapol_test` (with the SIM/USIM Milenage simulators)
# and hostapd's `hlr_auc_gw` from Debian's `wpa` source package.
#
# Debian's `eapoltest` binary package is built without CONFIG_USIM_SIMULATOR /
# CONFIG_SIM_SIMULATOR, so EAP-AKA/AKA'/SIM interop tests need our own build.
#
# Usage: scripts/build-eapol-test.sh
#   EAPAY_TOOLS_DIR  install prefix (default: <repo>/.tools)
# Produces $TOOLS/bin/eapol_test and $TOOLS/bin/hlr_auc_gw.  A second run is a
# no-op while the stamp file matches this script's hash.
set -Eeuo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)
TOOLS=${EAPAY_TOOLS_DIR:-$REPO/.tools}
mkdir -p "$TOOLS"
TOOLS=$(cd "$TOOLS" && pwd)
BIN=$TOOLS/bin
SRC=$TOOLS/src
STAMP=$TOOLS/.build-eapol-test.stamp
LOG=$TOOLS/logs/build-eapol-test.log
ME=build-eapol-test.sh

# Anything that changes the build lives in this script, so its hash is the
# configuration hash.
CONFIG_HASH=$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)

up_to_date() {
    [[ -x $BIN/eapol_test && -x $BIN/hlr_auc_gw && -f $STAMP ]] &&
        [[ $(cat "$STAMP") == "$CONFIG_HASH" ]]
}

report() {
    echo "eapol_test: $BIN/eapol_test"
    echo "hlr_auc_gw: $BIN/hlr_auc_gw"
}

if up_to_date; then
    report
    exit 0
fi

# shellcheck source=lib/tool-build.sh
source "$REPO/scripts/lib/tool-build.sh"

# Serialize concurrent invocations (e.g. parallel test jobs).
STEP="lock $TOOLS"
exec 9>"$TOOLS/.build-eapol-test.lock"
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
# 1. Private deb-src entry mirroring the system's deb entries.
# --------------------------------------------------------------------------
STEP="configure deb-src apt source"
SYS_SOURCES=/etc/apt/sources.list.d/debian.sources
if [[ -f $SYS_SOURCES ]]; then
    PRIV_SOURCES=/etc/apt/sources.list.d/eapay-deb-src.sources
    # deb822: copy every enabled stanza whose Types includes "deb", with
    # Types replaced by deb-src (URIs, Suites, Components, Signed-By kept).
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
# 2. Build dependencies (minimal: no dbus/libnl/pcsc/readline needed since we
#    build neither nl80211 nor a control interface client).
# --------------------------------------------------------------------------
BUILD_DEPS=(gcc make libc6-dev libssl-dev dpkg-dev xz-utils)
missing=()
for p in "${BUILD_DEPS[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null; then
        missing+=("$p")
    fi
done
if [[ $need_update -eq 0 ]] && ! apt-cache showsrc --only-source wpa 2>/dev/null | grep '^Package: wpa$' >/dev/null; then
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
# 3. Fetch and unpack Debian's wpa source (Debian patches applied).
# --------------------------------------------------------------------------
STEP="apt-get source wpa"
WPA=$SRC/wpa
if [[ ! -f $WPA/wpa_supplicant/Makefile || ! -f $WPA/hostapd/Makefile ]]; then
    rm -rf "$SRC/dl" "$WPA" "$WPA.tmp"
    mkdir -p "$SRC/dl"
    APT_SRC_OPTS=()
    # As root, apt cannot drop privileges to _apt for a download into a
    # root-owned dir and warns "Download is performed unsandboxed"; say so.
    [[ $(id -u) -eq 0 ]] && APT_SRC_OPTS=(-o APT::Sandbox::User=root)
    log "apt-get source --download-only wpa"
    (cd "$SRC/dl" && run apt-get "${APT_SRC_OPTS[@]}" source --download-only wpa)
    STEP="dpkg-source -x wpa"
    dsc=$(ls "$SRC"/dl/wpa_*.dsc | head -n1)
    log "dpkg-source -x $(basename "$dsc")"
    run dpkg-source --no-check -x "$dsc" "$WPA.tmp"
    mv "$WPA.tmp" "$WPA"
    basename "$dsc" .dsc >"$WPA/.eapay-source-version"
fi
log "using source $(cat "$WPA/.eapay-source-version" 2>/dev/null || echo "$WPA")"

# --------------------------------------------------------------------------
# 4. eapol_test
# --------------------------------------------------------------------------
STEP="write wpa_supplicant/.config"
cat >"$WPA/wpa_supplicant/.config" <<'EOF'
# Written by eapay scripts/build-eapol-test.sh -- eapol_test only.
CONFIG_EAPOL_TEST=y
CONFIG_DRIVER_NONE=y
CONFIG_TLS=openssl
CONFIG_TLSV11=y
CONFIG_TLSV12=y
CONFIG_PKCS12=y
CONFIG_IEEE8021X_EAPOL=y
CONFIG_EAP_MD5=y
CONFIG_EAP_MSCHAPV2=y
CONFIG_EAP_TLS=y
CONFIG_EAP_TTLS=y
CONFIG_EAP_PEAP=y
CONFIG_EAP_GTC=y
CONFIG_EAP_OTP=y
CONFIG_EAP_SIM=y
CONFIG_EAP_AKA=y
CONFIG_EAP_AKA_PRIME=y
CONFIG_SIM_SIMULATOR=y
CONFIG_USIM_SIMULATOR=y
CONFIG_EAP_TLSV1_3=y
CONFIG_IPV6=y
CONFIG_DEBUG_FILE=y
EOF

STEP="make eapol_test"
log "building eapol_test"
run make -C "$WPA/wpa_supplicant" clean
run make -C "$WPA/wpa_supplicant" -j"$(nproc 2>/dev/null || echo 2)" eapol_test

# --------------------------------------------------------------------------
# 5. hlr_auc_gw (Milenage/GSM authentication gateway; no SQLite database)
# --------------------------------------------------------------------------
STEP="write hostapd/.config"
cat >"$WPA/hostapd/.config" <<'EOF'
# Written by eapay scripts/build-eapol-test.sh -- hlr_auc_gw only.
CONFIG_TLS=openssl
CONFIG_DRIVER_NONE=y
CONFIG_EAP_SIM=y
CONFIG_EAP_AKA=y
CONFIG_EAP_AKA_PRIME=y
EOF

STEP="make hlr_auc_gw"
log "building hlr_auc_gw"
run make -C "$WPA/hostapd" clean
run make -C "$WPA/hostapd" -j"$(nproc 2>/dev/null || echo 2)" hlr_auc_gw

# --------------------------------------------------------------------------
# 6. Verify and install.
# --------------------------------------------------------------------------
STEP="verify eapol_test has the USIM/SIM simulator"
grep -aq 'Use internal Milenage implementation for UMTS authentication' "$WPA/wpa_supplicant/eapol_test"
grep -aq 'Use internal GSM-Milenage implementation' "$WPA/wpa_supplicant/eapol_test"
STEP="verify eapol_test and hlr_auc_gw run"
# (`eapol_test -h` prints usage but exits 255; -v exits 0.)
ver=$("$WPA/wpa_supplicant/eapol_test" -v 2>&1)
[[ $ver == "eapol_test v"* ]]
hlr_help=$("$WPA/hostapd/hlr_auc_gw" -h 2>&1)
[[ $hlr_help == *"HLR/AuC testing gateway"* ]]
log "$ver ($(cat "$WPA/.eapay-source-version" 2>/dev/null || echo unknown source)), USIM/SIM simulator: yes"

STEP="install binaries into $BIN"
for b in wpa_supplicant/eapol_test hostapd/hlr_auc_gw; do
    install -m 0755 "$WPA/$b" "$BIN/.$(basename "$b").tmp"
    mv -f "$BIN/.$(basename "$b").tmp" "$BIN/$(basename "$b")"
done
echo "$CONFIG_HASH" >"$STAMP"
log "done"
report
