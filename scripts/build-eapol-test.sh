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

# shellcheck source=lib/debian-source.sh
source "$REPO/scripts/lib/debian-source.sh"

# --------------------------------------------------------------------------
# 1-3. Debian's wpa source (patches applied) and what builds it (minimal:
#      no dbus/libnl/pcsc/readline, since we build neither nl80211 nor a
#      control interface client).
# --------------------------------------------------------------------------
WPA=$SRC/wpa
debian_source wpa "$WPA" gcc make libc6-dev libssl-dev dpkg-dev xz-utils

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
