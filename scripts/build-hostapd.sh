#!/usr/bin/env bash
# Build hostapd with its integrated RADIUS server and EAP-AKA/AKA'/SIM server
# (vectors from hlr_auc_gw), from the same Debian `wpa` source tree as
# scripts/build-eapol-test.sh, so eapay can be measured against hostapd with
# the very same cards (`eapay-server card export --format hostapd`,
# scripts/hostapd-aka-server.sh).
#
# Debian's `hostapd` binary package would do as a RADIUS server, but its
# hlr_auc_gw is not packaged; building both from one source keeps versions
# aligned. Stock source, no patches: the figures are hostapd's as shipped.
#
# Usage: scripts/build-hostapd.sh
#   EAPAY_TOOLS_DIR  install prefix (default: <repo>/.tools)
# Produces $TOOLS/bin/hostapd (and, through build-eapol-test.sh, which
# fetches the source, $TOOLS/bin/hlr_auc_gw and eapol_test). A second run is
# a no-op while the stamp file matches this script's hash.
set -Eeuo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)
TOOLS=${EAPAY_TOOLS_DIR:-$REPO/.tools}
mkdir -p "$TOOLS"
TOOLS=$(cd "$TOOLS" && pwd)
export EAPAY_TOOLS_DIR=$TOOLS
BIN=$TOOLS/bin
SRC=$TOOLS/src
WPA=$SRC/wpa
# Objects of our own: build-eapol-test.sh builds hlr_auc_gw in the tree's
# default build/ directory with another .config.
BUILDDIR=$SRC/build-eapay-hostapd
CONFIG=$WPA/hostapd/.config-eapay-hostapd
STAMP=$TOOLS/.build-hostapd.stamp
LOG=$TOOLS/logs/build-hostapd.log
ME=build-hostapd.sh

# Anything that changes the build lives in this script, so its hash is the
# configuration hash.
CONFIG_HASH=$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)

up_to_date() {
    [[ -x $BIN/hostapd && -x $BIN/hlr_auc_gw && -f $STAMP ]] &&
        [[ $(cat "$STAMP") == "$CONFIG_HASH" ]]
}

report() {
    echo "hostapd: $BIN/hostapd"
}

if up_to_date; then
    report
    exit 0
fi

# shellcheck source=lib/tool-build.sh
source "$REPO/scripts/lib/tool-build.sh"


# --------------------------------------------------------------------------
# 1. The source tree (and hlr_auc_gw): build-eapol-test.sh fetches Debian's
#    wpa source and is a no-op when its tools are current.
# --------------------------------------------------------------------------
STEP="scripts/build-eapol-test.sh (source tree, hlr_auc_gw)"
"$REPO/scripts/build-eapol-test.sh" || {
    rc=$?
    echo "$ME: scripts/build-eapol-test.sh failed (exit $rc); see $TOOLS/logs/build-eapol-test.log" >&2
    exit "$rc"
}

# Serialize with build-eapol-test.sh (same source tree) and parallel runs.
STEP="lock $TOOLS"
exec 9>"$TOOLS/.build-eapol-test.lock"
flock 9
if up_to_date; then
    report
    exit 0
fi
log "using source $(cat "$WPA/.eapay-source-version" 2>/dev/null || echo "$WPA")"

# --------------------------------------------------------------------------
# 2. hostapd: no radio driver, integrated RADIUS server, EAP-SIM/AKA/AKA'
#    server (eap_sim_db talks to hlr_auc_gw over a Unix socket).
# --------------------------------------------------------------------------
STEP="write $CONFIG"
cat >"$CONFIG" <<'EOF'
# Written by eapay scripts/build-hostapd.sh -- hostapd as a RADIUS/EAP server.
CONFIG_DRIVER_NONE=y
CONFIG_TLS=openssl
CONFIG_EAP=y
CONFIG_EAP_SIM=y
CONFIG_EAP_AKA=y
CONFIG_EAP_AKA_PRIME=y
CONFIG_RADIUS_SERVER=y
CONFIG_IPV6=y
CONFIG_NO_VLAN=y
EOF

STEP="make hostapd"
log "building hostapd"
rm -rf "$BUILDDIR"
rm -f "$WPA/hostapd/hostapd"
run make -C "$WPA/hostapd" CONFIG_FILE="$CONFIG" BUILDDIR="$BUILDDIR" \
    -j"$(nproc 2>/dev/null || echo 2)" hostapd

# --------------------------------------------------------------------------
# 3. Verify and install.
# --------------------------------------------------------------------------
STEP="verify hostapd has the RADIUS server and EAP-AKA'"
grep -aq 'radius_server_clients' "$WPA/hostapd/hostapd"
grep -aq "AKA'" "$WPA/hostapd/hostapd"
grep -aq 'eap_sim_aka_result_ind' "$WPA/hostapd/hostapd"
STEP="verify hostapd runs"
# (`hostapd -v` prints the version on stderr and exits 1.)
ver=$("$WPA/hostapd/hostapd" -v 2>&1 || true)
[[ $ver == *"hostapd v"* ]]
log "$(grep -o 'hostapd v[^ ]*' <<<"$ver" | head -n1) ($(cat "$WPA/.eapay-source-version" 2>/dev/null || echo unknown source)), RADIUS server + EAP-SIM/AKA/AKA'"

STEP="install hostapd into $BIN"
install -m 0755 "$WPA/hostapd/hostapd" "$BIN/.hostapd.tmp"
mv -f "$BIN/.hostapd.tmp" "$BIN/hostapd"
echo "$CONFIG_HASH" >"$STAMP"
log "done"
report
