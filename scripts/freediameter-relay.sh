#!/usr/bin/env bash
# Run freeDiameterd (the Debian packages freediameter + freediameter-extensions,
# 1.2.1) as a Diameter relay agent between eapay terminals and eapay-server,
# to test that the terminal and the server work through a real relay (RFC 6733
# §6.1.8: Route-Record, new Hop-by-Hop ids, unknown vendor AVPs forwarded).
#
# Usage:
#   scripts/freediameter-relay.sh --run-dir D --port P --server HOST:PORT \
#       [--identity relay.issuer.test] [--realm issuer.test] \
#       [--server-host aaa.issuer.test] [--client-host demo-terminal.issuer.test ...] \
#       [--tw SECONDS] [--dump compact|tree] \
#       [--tls-cert F --tls-key F --tls-ca F]
#   scripts/freediameter-relay.sh --stop --run-dir D
#
# Writes D/freeDiameter.conf (and D/rt_default.conf, D/acl_wl.conf) and starts
# `freeDiameterd -c D/freeDiameter.conf` in the background (pid file
# D/freediameter.pid, log D/freediameter.log), which:
#   - has the Diameter identity --identity in realm --realm and listens for
#     clear TCP on port P (`SecPort = 0;`: TLS off, no certificate;
#     `No_SCTP; Prefer_TCP; No_IPv6;`). freeDiameter 1.2.1 ignores loopback
#     addresses in ListenOn, so it binds 0.0.0.0:P whatever is asked;
#   - loads dict_nasreq and dict_eap (so it parses DER/DEA), rt_default and
#     acl_wl, and dbg_msg_dumps, which logs every message sent and received
#     in one line (`--dump tree`: as a tree with every AVP) and every
#     connection made or failed;
#   - connects to eapay-server (`ConnectPeer = "--server-host" { ConnectTo =
#     HOST; Port = PORT; No_TLS; }`, HOST numeric; TcTimer 2 s between
#     attempts) and routes the realm there (rt_default:
#     `dr="REALM" : "SERVER-HOST" += 100;`);
#   - with --tls-cert/--tls-key/--tls-ca (all three), connects to
#     eapay-server over Diameter/TLS instead (RFC 6733 §13.1: TLS from the
#     first octet, so --server is the server's [diameter.tls] port): the
#     ConnectPeer loses No_TLS (freeDiameter 1.2.1 then handshakes at once;
#     TLS_old_method would be the RFC 3588 upgrade after CER), and the
#     daemon gets `TLS_Cred = "CERT" , "KEY"; TLS_CA = "CA";`. freeDiameter
#     sends no Inband-Security-Id on a TLS connection and checks that:
#       * its own certificate chains to CA and names --identity (at
#         start-up: it exits otherwise). GnuTLS reads that name from a
#         subjectAltName dNSName, or from the CN only if the certificate
#         may serve TLS servers: a clientAuth-only certificate needs the
#         dNSName (`eapay-server terminal issue --name IDENTITY` writes it);
#       * the server's certificate chains to CA and names --server-host
#         (the ConnectPeer name, also sent as SNI): eapay-server's
#         server.pem names aaa.REALM, its Origin-Host.
#     GnuTLS's "NORMAL" priority (TLS 1.3 and 1.2) is kept. The terminals'
#     side stays clear TCP (`SecPort = 0;`: no TLS listener);
#   - accepts clear-TCP connections from each --client-host (acl_wl
#     `ALLOW_IPSEC HOST`: no in-band TLS); anyone else gets CEA 3010;
#   - advertises the relay application (Auth-Application-Id 0xffffffff) in its
#     CER/CEA: it has no application of its own, so it relays every request
#     for the realm, DER (application 5) and ACR (3) alike, to a peer that
#     advertised that application;
#   - sends DWR after TwTimer (--tw, at least 6; default 30) ± 2 s of idle.
# The server must know the relay as a peer (a [[diameter.peers]] entry with
# origin_host = the relay's identity, address 127.0.0.1/32): a relayed
# request arrives on the relay's connection, so that entry's name and
# merchants are the ones the merchant rules see.
#
# The script returns once the connection to eapay-server is open (the
# relay's log says so) and port P accepts connections (freeDiameter 1.2.1
# sometimes waits a random 0-4 s before its first connection attempt, so
# this takes 0.1 to 5 s; it gives up after 15 s, or at once if the server
# refuses the relay's CER or the TLS handshake fails), printing on stdout:
#   freediameter pid PID
#   listening diameter 127.0.0.1:P
#   run dir D
# `--stop --run-dir D` stops it (SIGTERM by pid file: freeDiameterd sends DPR
# to its peers and exits). Errors are one line on stderr and exit 2; a relay
# that does not come up prints the end of its log and exits 1.
#
# The binary is $FREEDIAMETERD, else freeDiameterd in PATH or /usr/bin; the
# extensions come from $FREEDIAMETER_EXT_DIR, else /usr/lib/freeDiameter
# (Debian: /usr/lib/x86_64-linux-gnu/freeDiameter is tried too).
set -Eeuo pipefail

ME=freediameter-relay.sh
SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")

die() {
    echo "$ME: $*" >&2
    exit 2
}

RUN_DIR= PORT= IDENTITY=relay.issuer.test REALM=issuer.test SERVER_HOST=aaa.issuer.test SERVER=
CLIENT_HOSTS=() TW=30 STOP=0 DUMP=compact TLS_CERT= TLS_KEY= TLS_CA=
while [[ $# -gt 0 ]]; do
    case $1 in
    --run-dir) RUN_DIR=${2:-}; shift 2 || die "--run-dir needs a directory" ;;
    --port) PORT=${2:-}; shift 2 || die "--port needs a number" ;;
    --identity) IDENTITY=${2:-}; shift 2 || die "--identity needs a host name" ;;
    --realm) REALM=${2:-}; shift 2 || die "--realm needs a realm" ;;
    --server-host) SERVER_HOST=${2:-}; shift 2 || die "--server-host needs a host name" ;;
    --server) SERVER=${2:-}; shift 2 || die "--server needs HOST:PORT" ;;
    --client-host) CLIENT_HOSTS+=("${2:-}"); shift 2 || die "--client-host needs a host name" ;;
    --tw) TW=${2:-}; shift 2 || die "--tw needs a number of seconds" ;;
    --dump) DUMP=${2:-}; shift 2 || die "--dump needs compact or tree" ;;
    --tls-cert) TLS_CERT=${2:-}; shift 2 || die "--tls-cert needs a PEM file" ;;
    --tls-key) TLS_KEY=${2:-}; shift 2 || die "--tls-key needs a PEM file" ;;
    --tls-ca) TLS_CA=${2:-}; shift 2 || die "--tls-ca needs a PEM file" ;;
    --stop) STOP=1; shift ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

find_freediameterd() {
    if [[ -n ${FREEDIAMETERD:-} ]]; then
        echo "$FREEDIAMETERD"
    elif command -v freeDiameterd >/dev/null 2>&1; then
        command -v freeDiameterd
    else
        echo /usr/bin/freeDiameterd
    fi
}
FD_BIN=$(find_freediameterd)

# live_pid FILE PROGRAM, stop_one FILE PROGRAM
. "$(dirname "$SCRIPT_PATH")/lib/pidfile.sh"

if [[ $STOP -eq 1 ]]; then
    [[ -n $RUN_DIR ]] || die "--stop needs --run-dir"
    stop_one "$RUN_DIR/freediameter.pid" "$FD_BIN"
    exit 0
fi

[[ -n $RUN_DIR ]] || die "--run-dir DIR is required"
[[ $PORT =~ ^[0-9]{1,5}$ ]] && ((10#$PORT > 0 && 10#$PORT < 65536)) || die "--port must be 1..65535"
PORT=$((10#$PORT))
[[ $TW =~ ^[0-9]{1,5}$ ]] && ((10#$TW >= 6)) || die "--tw must be a number of seconds, at least 6 (freeDiameter's minimum)"
TW=$((10#$TW))
[[ $SERVER =~ ^([0-9.]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$ ]] ||
    die "--server must be a numeric HOST:PORT (IPv4, or [IPv6]:PORT), got '${SERVER}'"
SERVER_IP=${BASH_REMATCH[1]} SERVER_PORT=${BASH_REMATCH[2]}
SERVER_IP=${SERVER_IP#[}
SERVER_IP=${SERVER_IP%]}
((10#$SERVER_PORT > 0 && 10#$SERVER_PORT < 65536)) || die "--server port must be 1..65535"
SERVER_PORT=$((10#$SERVER_PORT))
[[ ${#CLIENT_HOSTS[@]} -gt 0 ]] || CLIENT_HOSTS=(demo-terminal.issuer.test)
fqdn='^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$'
for name in "$IDENTITY" "$SERVER_HOST" "${CLIENT_HOSTS[@]}"; do
    [[ $name =~ $fqdn ]] || die "'$name' is not a host name with a domain (a Diameter identity is an FQDN)"
done
[[ $REALM =~ $fqdn ]] || die "--realm '$REALM' is not a realm (a domain name)"
case $DUMP in
compact) DUMP_MASK=0x2028 ;; # errors as trees, send/receive and connections in one line each
tree) DUMP_MASK=0x8888 ;;    # everything as trees, every AVP
*) die "--dump must be compact or tree" ;;
esac
TLS=0
if [[ -n $TLS_CERT || -n $TLS_KEY || -n $TLS_CA ]]; then
    [[ -n $TLS_CERT && -n $TLS_KEY && -n $TLS_CA ]] || die "--tls-cert, --tls-key and --tls-ca go together"
    for f in "$TLS_CERT" "$TLS_KEY" "$TLS_CA"; do
        [[ -f $f && -r $f ]] || die "$f: no such readable file"
    done
    TLS_CERT=$(readlink -f "$TLS_CERT") TLS_KEY=$(readlink -f "$TLS_KEY") TLS_CA=$(readlink -f "$TLS_CA")
    for f in "$TLS_CERT" "$TLS_KEY" "$TLS_CA"; do
        [[ $f != *[\"\\]* && $f != *[[:cntrl:]]* ]] || die "$f: freeDiameter cannot read paths with quotes or backslashes"
    done
    TLS=1
fi
[[ -x $FD_BIN ]] || die "no freeDiameterd at $FD_BIN (apt-get install freediameter, or set FREEDIAMETERD)"

find_ext_dir() {
    local dir
    for dir in ${FREEDIAMETER_EXT_DIR:-} /usr/lib/freeDiameter /usr/lib/*-linux-gnu/freeDiameter; do
        if [[ -n $dir && -r $dir/dict_eap.fdx ]]; then
            echo "$dir"
            return
        fi
    done
}
EXT=$(find_ext_dir)
[[ -n $EXT ]] || die "no freeDiameter extensions (dict_eap.fdx) in ${FREEDIAMETER_EXT_DIR:-/usr/lib/freeDiameter} (apt-get install freediameter-extensions, or set FREEDIAMETER_EXT_DIR)"
for ext in dict_nasreq dict_eap rt_default acl_wl dbg_msg_dumps; do
    [[ -r $EXT/$ext.fdx ]] || die "no $ext.fdx in $EXT (apt-get install freediameter-extensions)"
done

mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
[[ $RUN_DIR != *[\"\\]* && $RUN_DIR != *[[:cntrl:]]* ]] || die "$RUN_DIR: freeDiameter cannot read paths with quotes or backslashes"

PID_FILE=$RUN_DIR/freediameter.pid
if pid=$(live_pid "$PID_FILE" "$FD_BIN"); then
    die "freeDiameterd already runs from $RUN_DIR (pid $pid); stop it: $0 --stop --run-dir $RUN_DIR"
fi

CONF=$RUN_DIR/freeDiameter.conf
LOG=$RUN_DIR/freediameter.log

OVER=
if [[ $TLS -eq 1 ]]; then
    OVER=", over Diameter/TLS"
    TLS_LINES="TLS_Cred = \"$TLS_CERT\" , \"$TLS_KEY\";
TLS_CA = \"$TLS_CA\";"
    SERVER_PEER="ConnectPeer = \"$SERVER_HOST\" { ConnectTo = \"$SERVER_IP\"; Port = $SERVER_PORT; };"
else
    TLS_LINES="# TLS off: SecPort = 0, and No_TLS to the server."
    SERVER_PEER="ConnectPeer = \"$SERVER_HOST\" { ConnectTo = \"$SERVER_IP\"; Port = $SERVER_PORT; No_TLS; };"
fi
printf 'dr="%s" : "%s" += 100;\n' "$REALM" "$SERVER_HOST" >"$RUN_DIR/rt_default.conf"
printf 'ALLOW_IPSEC %s\n' "${CLIENT_HOSTS[@]}" >"$RUN_DIR/acl_wl.conf"
cat >"$CONF" <<EOF
# Written by eapay scripts/freediameter-relay.sh: freeDiameterd as a relay
# agent between eapay terminals (${CLIENT_HOSTS[*]}) and eapay-server
# ($SERVER_HOST at $SERVER$OVER).
Identity = "$IDENTITY";
Realm = "$REALM";
Port = $PORT;
SecPort = 0;
$TLS_LINES
No_SCTP;
Prefer_TCP;
No_IPv6;
TwTimer = $TW;
TcTimer = 2;
LoadExtension = "$EXT/dict_nasreq.fdx";
LoadExtension = "$EXT/dict_eap.fdx";
LoadExtension = "$EXT/rt_default.fdx" : "$RUN_DIR/rt_default.conf";
LoadExtension = "$EXT/acl_wl.fdx" : "$RUN_DIR/acl_wl.conf";
LoadExtension = "$EXT/dbg_msg_dumps.fdx" : "$DUMP_MASK";
$SERVER_PEER
EOF

# The previous run's log is kept beside the new one.
[[ -s $LOG ]] && mv -f "$LOG" "$LOG.old"
: >"$LOG"

# A relay that did not come up: one line, the end of its log, exit 1.
failed() { fail_started "$LOG" "$1" "$PID_FILE:$FD_BIN"; }

if [[ -n $(port_inodes tcp "$PORT") ]]; then
    failed "TCP port $PORT is already in use"
fi

"$FD_BIN" -c "$CONF" >>"$LOG" 2>&1 </dev/null &
FD_PID=$!
echo "$FD_PID" >"$PID_FILE"

listening() {
    local inode
    for inode in $(port_inodes tcp "$PORT"); do
        find "/proc/$FD_PID/fd" -lname "socket:\[$inode\]" 2>/dev/null | grep -q . && return 0
    done
    return 1
}
# freeDiameter logs "'STATE_WAITCNXACK' -> 'STATE_WAITCEA'" and then
# "'STATE_WAITCEA' -> STATE_OPEN ... 'HOST'" once the CEA came.
server_open() {
    grep -F "'$SERVER_HOST'" "$LOG" | grep -q 'STATE_OPEN'
}
# A CEA with an error (3010 DIAMETER_UNKNOWN_PEER when the server has no
# [[diameter.peers]] entry for the relay) is final.
refused() {
    grep -F "CONNECT FAILED to $SERVER_HOST: CEA" "$LOG"
}
# A failed handshake is a certificate problem (freeDiameter logs why just
# before): the next attempt would fail the same way.
handshake_failed() {
    grep -q -F "CONNECT FAILED to $SERVER_HOST: TLS Handshake failed" "$LOG"
}
# freeDiameter's reason for a failed handshake or start-up, if it gave one.
tls_reason() {
    grep -E -o "The certificate (hostname does not match|owner does not match the hostname) '[^']*'|The certificate hasn't got a known issuer|The certificate (has |is )?expired|TLS ERROR: in 'ret = gnutls_handshake[^:]*: *.*" "$LOG" |
        head -n 1 | sed "s/TLS ERROR: in 'ret = gnutls_handshake[^:]*: *//"
}
deadline=$((SECONDS + 15))
while ((SECONDS < deadline)); do
    if [[ ! -d /proc/$FD_PID ]]; then
        grep -q 'Address already in use' "$LOG" && failed "TCP port $PORT is already in use"
        if [[ $TLS -eq 1 && -n $(tls_reason) ]]; then
            failed "freeDiameterd refused its own certificate $TLS_CERT ($(tls_reason)): it must chain to $TLS_CA and name $IDENTITY in a subjectAltName dNSName"
        fi
        failed "freeDiameterd exited at start-up"
    fi
    listening && server_open && break
    if refused >/dev/null; then
        why="is $IDENTITY an origin_host in its [[diameter.peers]], from this address"
        [[ $TLS -eq 1 ]] && why="$why, with the key_sha256 of $TLS_CERT's key"
        failed "$SERVER_HOST at $SERVER refused the relay's CER ($(refused | head -n 1 | sed 's/.*: CEA/CEA/')): $why?"
    fi
    if [[ $TLS -eq 1 ]] && handshake_failed; then
        failed "the TLS handshake with $SERVER_HOST at $SERVER failed ($(tls_reason)): is $SERVER its [diameter.tls] port, and its certificate from $TLS_CA for $SERVER_HOST?"
    fi
    sleep 0.05
done
listening || failed "freeDiameterd did not listen on TCP port $PORT within 15 s"
server_open || failed "freeDiameterd did not open its connection to $SERVER_HOST at $SERVER within 15 s"

echo "freediameter pid $FD_PID"
echo "listening diameter 127.0.0.1:$PORT"
echo "run dir $RUN_DIR"
