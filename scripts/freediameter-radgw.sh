#!/usr/bin/env bash
# Run freeDiameter's RADIUS/Diameter gateway (app_radgw, the RFC 4005/4072
# translation agent) in front of eapay-server's Diameter EAP front end: a
# RADIUS client (eapol_test, a terminal) talks RADIUS to the gateway, the
# gateway talks Diameter EAP (DER/DEA) to eapay-server.
#
# Usage:
#   scripts/build-freediameter.sh            # once: .tools/bin/freeDiameterd + extensions
#   scripts/freediameter-radgw.sh --run-dir D --radius-port P --secret S \
#       --diameter-server 127.0.0.1:PORT --server-host aaa.REALM --realm REALM \
#       [--identity radgw.REALM] [--drop N]... [--dump-messages] [--eapay]
#   scripts/freediameter-radgw.sh --stop --run-dir D
#
# Writes D/freediameter.conf, D/radgw.conf and D/rt_default.conf and starts
# freeDiameterd in the background (pid file D/freediameter.pid, log
# D/freediameter.log, at debug level: app_radgw logs each Diameter error it
# turns into an Access-Reject):
#   - Diameter identity --identity (default radgw.REALM), realm REALM. The
#     gateway answers the RADIUS clients on the local host under that
#     identity: it is the Origin-Host of every DER, so eapay-server needs a
#     [[diameter.peers]] entry with origin_host = that identity, address
#     127.0.0.1/32 and the merchants the RADIUS clients act for.
#   - No Diameter listener (Port = 0, SecPort = 0: TLS off, no certificate),
#     no SCTP; one peer, `ConnectPeer = "aaa.REALM" { ConnectTo = HOST; Port
#     = PORT; No_TLS; }` (HOST must be a numeric address), the only
#     connection it opens. rt_default routes Destination-Realm REALM to it.
#   - dict_nasreq.fdx, dict_eap.fdx, rt_default.fdx, and app_radgw.fdx with
#     the auth.rgwx plugin only (accounting is off): RADIUS authentication
#     on 127.0.0.1:P (UDP, IPv4 only), one RADIUS client, 127.0.0.1, secret S.
#     The Destination-Realm of a new conversation is the realm of User-Name.
#   - --drop N (repeatable) loads the echodrop.rgwx plugin before auth.rgwx
#     with `DROP code N`: RADIUS attribute N is not translated (e.g. 77,
#     Connect-Info, which eapol_test always sends and eapay-server's Diameter
#     dictionary does not know: a DER with it gets 5001 DIAMETER_AVP_UNSUPPORTED).
#   - --eapay uses eapay's variant of the auth plugin, auth_eapay.rgwx (built
#     by scripts/build-freediameter.sh from scripts/freediameter/), and
#     loads dict_eapay.fdx: vendor 32473's attributes cross the gateway both
#     ways (Vendor-Specific <-> vendor AVPs, same types), so a payment's
#     attributes reach the server and its approval reaches the RADIUS
#     client. Without it the gateway is freeDiameter's, unmodified.
#   - --dump-messages also loads dbg_msg_dumps.fdx (0x0080): every Diameter
#     message sent and received is logged as a tree.
# The script returns once the Diameter connection to the server is open
# (the log shows the peer's state change to 'STATE_OPEN') and the RADIUS
# port is bound, printing on stdout:
#   freediameter pid PID
#   diameter peer aaa.REALM open
#   listening radius auth 127.0.0.1:P
#   run dir D
# `--stop --run-dir D` stops it (SIGTERM by pid file).
#
# What an unmodified app_radgw 1.2.1 translates (extensions/app_radgw/rgwx_auth.c):
# EAP-Message -> EAP-Payload, User-Name, NAS-IP-Address, NAS-Port-Type,
# Framed-MTU, Called/Calling-Station-Id ... -> their AVPs; Vendor-Specific of
# Microsoft (311) only, every other vendor is discarded (eapay's payment
# attributes, vendor 32473, never reach the server). Answers: Result-Code 1001
# -> Access-Challenge with State "Diameter/<Origin-Host>/<Origin-Realm>/
# <Session-Id>" (the next request's State gives back Session-Id and
# Destination-Host), 2001 -> Access-Accept (+ Class "Diameter/<Session-Id>"),
# anything else -> Access-Reject; EAP-Payload -> EAP-Message,
# EAP-Master-Session-Key -> MS-MPPE-Recv/Send-Key, Reply-Message ->
# Reply-Message; vendor AVPs are not translated back.
#
# Binary: $FREEDIAMETERD, else $EAPAY_TOOLS_DIR/bin/freeDiameterd or
# <repo>/.tools/bin/freeDiameterd; extensions from $FREEDIAMETER_EXT_DIR, else
# lib/freeDiameter beside bin/. Errors in the arguments are one line on stderr
# and exit 2; a gateway that does not come up prints one line, the end of its
# log, and exits 1.
set -Eeuo pipefail

ME=freediameter-radgw.sh
SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)
TOOLS=${EAPAY_TOOLS_DIR:-$REPO/.tools}
FDD=${FREEDIAMETERD:-$TOOLS/bin/freeDiameterd}
EXT=${FREEDIAMETER_EXT_DIR:-$(dirname "$(dirname "$FDD")")/lib/freeDiameter}

die() {
    echo "$ME: $*" >&2
    exit 2
}

RUN_DIR= PORT= SECRET= SERVER= SERVER_HOST= REALM= IDENTITY= DUMP=0 STOP=0 DROP=() EAPAY=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --run-dir) RUN_DIR=${2:-}; shift 2 || die "--run-dir needs a directory" ;;
    --radius-port) PORT=${2:-}; shift 2 || die "--radius-port needs a number" ;;
    --secret) SECRET=${2:-}; shift 2 || die "--secret needs a value" ;;
    --diameter-server) SERVER=${2:-}; shift 2 || die "--diameter-server needs HOST:PORT" ;;
    --server-host) SERVER_HOST=${2:-}; shift 2 || die "--server-host needs the server's Diameter identity" ;;
    --realm) REALM=${2:-}; shift 2 || die "--realm needs a realm" ;;
    --identity) IDENTITY=${2:-}; shift 2 || die "--identity needs a Diameter identity" ;;
    --drop) DROP+=("${2:-}"); shift 2 || die "--drop needs a RADIUS attribute type" ;;
    --dump-messages) DUMP=1; shift ;;
    --eapay) EAPAY=1; shift ;;
    --stop) STOP=1; shift ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# live_pid FILE PROGRAM, stop_one FILE PROGRAM
. "$(dirname "$SCRIPT_PATH")/lib/pidfile.sh"

if [[ $STOP -eq 1 ]]; then
    [[ -n $RUN_DIR ]] || die "--stop needs --run-dir"
    stop_one "$RUN_DIR/freediameter.pid" "$FDD"
    exit 0
fi

[[ -n $RUN_DIR ]] || die "--run-dir DIR is required"
[[ $PORT =~ ^[0-9]{1,5}$ ]] && ((10#$PORT > 0 && 10#$PORT < 65536)) || die "--radius-port must be 1..65535"
PORT=$((10#$PORT))
[[ -n $SECRET ]] || die "--secret is required"
# The secret goes into a double-quoted string of radgw.conf.
[[ $SECRET != *[\"\\]* && $SECRET != *[[:cntrl:]]* ]] ||
    die "--secret must not contain double quotes, backslashes or control characters (radgw.conf string)"
[[ $SERVER =~ ^([0-9]{1,3}(\.[0-9]{1,3}){3}):([0-9]{1,5})$ ]] ||
    die "--diameter-server must be IPV4:PORT (a numeric address: freeDiameter drops loopback names)"
SERVER_IP=${BASH_REMATCH[1]}
SERVER_PORT=$((10#${BASH_REMATCH[3]}))
((SERVER_PORT > 0 && SERVER_PORT < 65536)) || die "--diameter-server port must be 1..65535"
fqdn_ok() { [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; }
fqdn_ok "$REALM" || die "--realm must be a realm (letters, digits, '.', '-')"
fqdn_ok "$SERVER_HOST" || die "--server-host must be a Diameter identity (letters, digits, '.', '-')"
IDENTITY=${IDENTITY:-radgw.$REALM}
fqdn_ok "$IDENTITY" || die "--identity must be a Diameter identity (letters, digits, '.', '-')"
[[ $IDENTITY == *.* ]] || die "--identity must be an FQDN (freeDiameter takes its realm from it otherwise)"
[[ -x $FDD ]] || die "no freeDiameterd at $FDD (run scripts/build-freediameter.sh, or set FREEDIAMETERD)"
for e in dict_nasreq.fdx dict_eap.fdx rt_default.fdx app_radgw.fdx auth.rgwx; do
    [[ -f $EXT/$e ]] || die "no $e in $EXT (run scripts/build-freediameter.sh, or set FREEDIAMETER_EXT_DIR)"
done
[[ $DUMP -eq 0 || -f $EXT/dbg_msg_dumps.fdx ]] || die "no dbg_msg_dumps.fdx in $EXT"
for code in "${DROP[@]}"; do
    [[ $code =~ ^[0-9]{1,3}$ ]] && ((10#$code > 0 && 10#$code < 256 && 10#$code != 26)) ||
        die "--drop takes a RADIUS attribute type 1..255 other than 26, not '$code'"
done
[[ ${#DROP[@]} -eq 0 || -f $EXT/echodrop.rgwx ]] || die "no echodrop.rgwx in $EXT"
[[ $EAPAY -eq 0 || (-f $EXT/auth_eapay.rgwx && -f $EXT/dict_eapay.fdx) ]] ||
    die "no auth_eapay.rgwx or dict_eapay.fdx in $EXT: run scripts/build-freediameter.sh"

mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
for path in "$RUN_DIR" "$EXT"; do
    [[ $path != *[\"\\]* && $path != *[[:cntrl:]]* ]] ||
        die "$path: freeDiameter cannot read paths with double quotes or backslashes"
done

PID_FILE=$RUN_DIR/freediameter.pid
if pid=$(live_pid "$PID_FILE" "$FDD"); then
    die "freeDiameterd already runs from $RUN_DIR (pid $pid); stop it: $0 --stop --run-dir $RUN_DIR"
fi

CONF=$RUN_DIR/freediameter.conf
LOG=$RUN_DIR/freediameter.log

cat >"$RUN_DIR/rt_default.conf" <<EOF
# Written by eapay scripts/freediameter-radgw.sh: realm $REALM -> $SERVER_HOST.
dr="$REALM" : "$SERVER_HOST" += DEFAULT_REALM ;
EOF

{
    echo "# Written by eapay scripts/freediameter-radgw.sh: RADIUS attributes the gateway drops."
    for code in "${DROP[@]}"; do
        echo "DROP code $((10#$code)) ;"
    done
} >"$RUN_DIR/echodrop.conf"

AUTH_PLUGIN=auth.rgwx
[[ $EAPAY -eq 1 ]] && AUTH_PLUGIN=auth_eapay.rgwx
{
    echo "# Written by eapay scripts/freediameter-radgw.sh: app_radgw, RADIUS"
    echo "# authentication only, for the RADIUS client 127.0.0.1."
    if [[ ${#DROP[@]} -gt 0 ]]; then
        echo "RGWX = \"$EXT/echodrop.rgwx\" : \"$RUN_DIR/echodrop.conf\" : auth;"
    fi
    cat <<EOF
RGWX = "$EXT/$AUTH_PLUGIN" : auth;
nas = 127.0.0.1 / "$SECRET" ;
auth_server_enable = 1;
auth_server_port = $PORT;
auth_server_ip4 = 127.0.0.1;
auth_server_ip6 = disable;
acct_server_enable = 0;
EOF
} >"$RUN_DIR/radgw.conf"
chmod 600 "$RUN_DIR/radgw.conf"

{
    cat <<EOF
# Written by eapay scripts/freediameter-radgw.sh: freeDiameter as a
# RADIUS/Diameter translation agent in front of $SERVER_HOST ($SERVER).
Identity = "$IDENTITY";
Realm = "$REALM";
# No Diameter listener: the gateway only connects to its one peer.
Port = 0;
SecPort = 0;
No_SCTP;
Prefer_TCP;
No_IPv6;
NoRelay;
TcTimer = 6;
AppServThreads = 4;
LoadExtension = "$EXT/dict_nasreq.fdx";
LoadExtension = "$EXT/dict_eap.fdx";
EOF
    if [[ $EAPAY -eq 1 ]]; then
        echo "LoadExtension = \"$EXT/dict_eapay.fdx\";"
    fi
    cat <<EOF
LoadExtension = "$EXT/rt_default.fdx" : "$RUN_DIR/rt_default.conf";
LoadExtension = "$EXT/app_radgw.fdx" : "$RUN_DIR/radgw.conf";
EOF
    if [[ $DUMP -eq 1 ]]; then
        echo "LoadExtension = \"$EXT/dbg_msg_dumps.fdx\" : \"0x0080\";"
    fi
    cat <<EOF
ConnectPeer = "$SERVER_HOST" { ConnectTo = "$SERVER_IP"; Port = $SERVER_PORT; No_TLS; No_SCTP; Prefer_TCP; };
EOF
} >"$CONF"
chmod 600 "$CONF"

: >"$LOG"

# A server that did not come up: one line, the end of its log, exit 1.
failed() { fail_started "$LOG" "$1" "$PID_FILE:$FDD"; }

if [[ -n $(port_inodes udp "$PORT") ]]; then
    failed "UDP port $PORT is already in use"
fi

# -dd: debug level (FD_LOG_DEBUG): app_radgw logs the Result-Code of each
# answer that it turns into an Access-Reject. (Its per-attribute traces, such
# as "VSA attribute from vendor N discarded", are TRACE_DEBUG(FULL), which a
# Release build never prints: --dump-messages shows what went out instead.)
"$FDD" -dd -c "$CONF" >>"$LOG" 2>&1 </dev/null &
FD_PID=$!
echo "$FD_PID" >"$PID_FILE"

bound() {
    local inode
    for inode in $(port_inodes udp "$PORT"); do
        find "/proc/$FD_PID/fd" -lname "socket:\[$inode\]" 2>/dev/null | grep -q . && return 0
    done
    return 1
}
# freeDiameter logs each peer state change as:  'OLD' -> 'NEW' 'peer'
peer_open() {
    grep -F "'STATE_OPEN'" "$LOG" 2>/dev/null | grep -qiF "'$SERVER_HOST'"
}
# A refused capabilities exchange (e.g. CEA 3010 DIAMETER_UNKNOWN_PEER):
#   Connection to 'aaa.REALM' failed: 'CEA with unexpected error code'; ...
#      Capabilities-Exchange-Answer(257)[--E-], ..., { Result-Code(268)[-M]='DIAMETER_UNKNOWN_PEER' (3010 (0xbc2)) }, ...
peer_refused() {
    local why code
    why=$(grep -F "Connection to '$SERVER_HOST' failed" "$LOG" 2>/dev/null | head -n1) || return 1
    [[ -n $why ]] || return 1
    code=$(grep -o "Result-Code(268)[^}]*" "$LOG" | grep -v "DIAMETER_SUCCESS" | head -n1 | sed "s/.*='\([A-Z_]*\)' (\([0-9]*\).*/\2 \1/")
    echo "${why#*failed: }${code:+ (Result-Code $code)}" | sed 's/; CER\/CEA dump://'
}
for ((i = 0; i < 400; i++)); do
    [[ -d /proc/$FD_PID ]] || failed "freeDiameterd exited at start-up"
    bound && peer_open && break
    if why=$(peer_refused); then
        failed "$SERVER_HOST at $SERVER refused the connection: $why (is $IDENTITY a [[diameter.peers]] origin_host there, address 127.0.0.1?)"
    fi
    sleep 0.05
done
bound || failed "freeDiameterd did not bind UDP 127.0.0.1:$PORT within 20 s"
peer_open || failed "no open Diameter connection to $SERVER_HOST at $SERVER within 20 s (is it a configured peer with origin_host $IDENTITY?)"

echo "freediameter pid $FD_PID"
echo "diameter peer $SERVER_HOST open"
echo "listening radius auth 127.0.0.1:$PORT"
echo "run dir $RUN_DIR"
