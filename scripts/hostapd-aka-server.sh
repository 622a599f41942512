#!/usr/bin/env bash
# Run hostapd's integrated RADIUS/EAP server for EAP-AKA, EAP-AKA' and EAP-SIM
# with the cards of an eapay ledger, to measure it beside eapay-server with the
# same cards and the same load generator.
#
# Usage:
#   eapay-server card export --format hostapd --out EXPORT [--config eapay.toml]
#   scripts/hostapd-aka-server.sh --cards-export EXPORT --port 18120 --secret S \
#       [--run-dir D] [--foreground] [--debug]
#   scripts/hostapd-aka-server.sh --stop --run-dir D
#
# Starts hlr_auc_gw (Milenage vectors, and GSM-Milenage triplets for SIM
# cards, from EXPORT/hlr_auc_gw.milenage_db,
# listening on the Unix socket D/hlr_auc_gw.sock) and hostapd (driver=none:
# no radio, only the RADIUS authentication server on UDP port PORT, EAP users
# from EXPORT/hostapd.eap_user, `eap_sim_db=unix:D/hlr_auc_gw.sock`).
# The only RADIUS client is 127.0.0.1 with secret S. hostapd cannot bind its
# RADIUS server to one address: it listens on 0.0.0.0:PORT, and packets from
# other addresses are dropped as unknown clients.
#
# By default both run in the background (pid files D/hostapd.pid and
# D/hlr_auc_gw.pid, logs D/hostapd.log and D/hlr_auc_gw.log) and the script
# returns once hostapd's port is bound, printing on stdout:
#   hostapd pid PID            <- its CPU time: fields 14-15 of /proc/PID/stat
#   hlr_auc_gw pid PID
#   listening radius auth 127.0.0.1:PORT
#   run dir D
# `--stop --run-dir D` stops both (SIGTERM by pid file). With --foreground the
# same lines are printed, then the script waits for hostapd and stops
# hlr_auc_gw when hostapd exits or the script is interrupted (Ctrl-C).
# D defaults to ${TMPDIR:-/tmp}/eapay-hostapd-PORT.
#
# hostapd settings: eap_sim_id=0 (no pseudonyms, no fast re-authentication:
# every authentication is a full one, as eapay does it), and
# eap_sim_aka_result_ind=1 (hostapd answers a peer's AT_RESULT_IND with a
# protected success Notification). hostapd always starts AKA with
# AKA-Identity/AT_ANY_ID_REQ and sends AKA' network name "WLAN" (hard-coded
# in hostapd 2.10), not the issuer realm eapay uses. Its RADIUS server keeps
# at most 1000 sessions and each finished one for 5 s (radius_server.c), so
# it completes at most 200 authentications/s and answers new conversations
# beyond that with an immediate Access-Reject: drive it below that rate when
# measuring its CPU time per authentication. hlr_auc_gw runs with its
# default IND length (5 bits, as eapay) and without -u, so SQNs restart at
# the exported values each run: cards that are ahead resynchronise (AUTS)
# once. --debug runs hostapd with -d (debug output in D/hostapd.log), which
# costs hostapd CPU: not for measurements.
#
# Binaries: $HOSTAPD and $HLR_AUC_GW, else $EAPAY_TOOLS_DIR/bin or
# <repo>/.tools/bin (scripts/build-hostapd.sh builds both).
set -Eeuo pipefail

ME=hostapd-aka-server.sh
SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)
TOOLS=${EAPAY_TOOLS_DIR:-$REPO/.tools}
HOSTAPD=${HOSTAPD:-$TOOLS/bin/hostapd}
HLR_AUC_GW=${HLR_AUC_GW:-$TOOLS/bin/hlr_auc_gw}

die() {
    echo "$ME: $*" >&2
    exit 2
}

EXPORT= PORT= SECRET= RUN_DIR= FOREGROUND=0 DEBUG=0 STOP=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --cards-export) EXPORT=${2:-}; shift 2 || die "--cards-export needs a directory" ;;
    --port) PORT=${2:-}; shift 2 || die "--port needs a number" ;;
    --secret) SECRET=${2:-}; shift 2 || die "--secret needs a value" ;;
    --run-dir) RUN_DIR=${2:-}; shift 2 || die "--run-dir needs a directory" ;;
    --foreground) FOREGROUND=1; shift ;;
    --debug) DEBUG=1; shift ;;
    --stop) STOP=1; shift ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# live_pid FILE PROGRAM, stop_one FILE PROGRAM, wait_in_foreground PID FILE:PROGRAM...
. "$(dirname "$SCRIPT_PATH")/lib/pidfile.sh"

if [[ $STOP -eq 1 ]]; then
    [[ -n $RUN_DIR ]] || die "--stop needs --run-dir"
    stop_one "$RUN_DIR/hostapd.pid" "$HOSTAPD"
    stop_one "$RUN_DIR/hlr_auc_gw.pid" "$HLR_AUC_GW"
    exit 0
fi

[[ -n $EXPORT ]] || die "--cards-export DIR is required (eapay-server card export --format hostapd --out DIR)"
[[ $PORT =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "--port must be 1..65535"
[[ -n $SECRET ]] || die "--secret is required"
[[ $SECRET != *[[:space:]]* ]] || die "--secret must not contain white space (hostapd's client file)"
EXPORT=$(cd "$EXPORT" 2>/dev/null && pwd) || die "--cards-export: no directory '$EXPORT'"
EAP_USER=$EXPORT/hostapd.eap_user
MILENAGE=$EXPORT/hlr_auc_gw.milenage_db
[[ -r $EAP_USER && -r $MILENAGE ]] ||
    die "$EXPORT has no hostapd.eap_user and hlr_auc_gw.milenage_db (eapay-server card export --format hostapd --out $EXPORT)"
[[ -x $HOSTAPD ]] || die "no hostapd at $HOSTAPD (run scripts/build-hostapd.sh, or set HOSTAPD)"
[[ -x $HLR_AUC_GW ]] || die "no hlr_auc_gw at $HLR_AUC_GW (run scripts/build-hostapd.sh, or set HLR_AUC_GW)"

RUN_DIR=${RUN_DIR:-${TMPDIR:-/tmp}/eapay-hostapd-$PORT}
mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
SOCK=$RUN_DIR/hlr_auc_gw.sock
# sockaddr_un.sun_path holds 107 characters.
((${#SOCK} < 108)) || die "--run-dir path too long for a Unix socket: $SOCK"

for pair in "hostapd.pid:$HOSTAPD" "hlr_auc_gw.pid:$HLR_AUC_GW"; do
    if pid=$(live_pid "$RUN_DIR/${pair%%:*}" "${pair#*:}"); then
        die "$(basename "${pair#*:}") already runs from $RUN_DIR (pid $pid); stop it: $0 --stop --run-dir $RUN_DIR"
    fi
done

# hostapd's RADIUS client list: address/prefix, one separator, the secret.
printf '127.0.0.1/32 %s\n' "$SECRET" >"$RUN_DIR/radius_clients"
chmod 600 "$RUN_DIR/radius_clients"
cat >"$RUN_DIR/hostapd.conf" <<EOF
# Written by eapay scripts/hostapd-aka-server.sh: hostapd as a RADIUS server
# for EAP-AKA/AKA' only (no radio).
driver=none
interface=eapay-as$PORT
logger_stdout=-1
logger_stdout_level=$([[ $DEBUG -eq 1 ]] && echo 0 || echo 2)
logger_syslog=0
eap_server=1
eap_user_file=$EAP_USER
eap_sim_db=unix:$SOCK
eap_sim_id=0
eap_sim_aka_result_ind=1
radius_server_clients=$RUN_DIR/radius_clients
radius_server_auth_port=$PORT
EOF

HLR_LOG=$RUN_DIR/hlr_auc_gw.log
HOSTAPD_LOG=$RUN_DIR/hostapd.log
: >"$HLR_LOG"
: >"$HOSTAPD_LOG"
rm -f "$SOCK"

# failed WHAT LOG: hostapd or hlr_auc_gw did not come up.
failed() { fail_started "$2" "$1" "$RUN_DIR/hostapd.pid:$HOSTAPD" "$RUN_DIR/hlr_auc_gw.pid:$HLR_AUC_GW"; }

# hlr_auc_gw: -i 5 is its default IND length, spelt out because the
# exported SQNs assume it.
# (It always logs each request on stdout; there is no quieter mode.)
hlr_args=(-s "$SOCK" -m "$MILENAGE" -i 5)
"$HLR_AUC_GW" "${hlr_args[@]}" >>"$HLR_LOG" 2>&1 </dev/null &
HLR_PID=$!
echo "$HLR_PID" >"$RUN_DIR/hlr_auc_gw.pid"
for ((i = 0; i < 100; i++)); do
    [[ -S $SOCK ]] && break
    [[ -d /proc/$HLR_PID ]] || failed "hlr_auc_gw exited at start-up" "$HLR_LOG"
    sleep 0.05
done
[[ -S $SOCK ]] || failed "hlr_auc_gw did not create $SOCK within 5 s" "$HLR_LOG"

if [[ -n $(port_inodes udp "$PORT") ]]; then
    failed "UDP port $PORT is already in use (hostapd binds 0.0.0.0:$PORT)" /dev/null
fi

hostapd_args=()
[[ $DEBUG -eq 1 ]] && hostapd_args+=(-d)
"$HOSTAPD" "${hostapd_args[@]}" "$RUN_DIR/hostapd.conf" >>"$HOSTAPD_LOG" 2>&1 </dev/null &
HOSTAPD_PID=$!
echo "$HOSTAPD_PID" >"$RUN_DIR/hostapd.pid"

# Ready once hostapd holds a UDP socket bound to PORT (/proc/net/udp: local
# port in hex, socket inode in column 10).
bound() {
    local inode
    for inode in $(port_inodes udp "$PORT"); do
        find "/proc/$HOSTAPD_PID/fd" -lname "socket:\[$inode\]" 2>/dev/null | grep -q . && return 0
    done
    return 1
}
for ((i = 0; i < 100; i++)); do
    [[ -d /proc/$HOSTAPD_PID ]] || failed "hostapd exited at start-up" "$HOSTAPD_LOG"
    bound && break
    sleep 0.05
done
bound || failed "hostapd did not bind UDP port $PORT within 5 s" "$HOSTAPD_LOG"

echo "hostapd pid $HOSTAPD_PID"
echo "hlr_auc_gw pid $HLR_PID"
echo "listening radius auth 127.0.0.1:$PORT"
echo "run dir $RUN_DIR"

if [[ $FOREGROUND -eq 1 ]]; then
    wait_in_foreground "$HOSTAPD_PID" "$RUN_DIR/hostapd.pid:$HOSTAPD" "$RUN_DIR/hlr_auc_gw.pid:$HLR_AUC_GW"
fi
