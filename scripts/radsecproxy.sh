#!/usr/bin/env bash
# Run radsecproxy (Debian 12: 1.9.2) in front of eapay-server: terminals
# speak RADIUS over UDP to radsecproxy, which carries every request to
# eapay-server over RADIUS/TLS (RFC 6614) with a terminal certificate that
# eapay-server registers (`eapay-server terminal issue`, then the
# [[radius.tls.clients]] entry it prints).
#
# Usage:
#   scripts/radsecproxy.sh --server HOST:PORT --server-name NAME \
#       --cert FILE --key FILE --ca FILE --port P --secret S \
#       [--tls-version 1.2|1.3] [--sslkeylog FILE] [--run-dir D] \
#       [--foreground] [--debug]
#   scripts/radsecproxy.sh --stop --run-dir D
#
# Writes D/radsecproxy.conf (0600: it holds the UDP secret; the key stays
# where --key names it) and starts `radsecproxy -f -c D/radsecproxy.conf`,
# which:
#   - listens on 127.0.0.1:P (UDP) for one client, 127.0.0.1, secret S,
#     authentication and accounting on the same port;
#   - keeps one TLS connection to eapay-server's [radius.tls] listen
#     address HOST:PORT, presenting --cert/--key (the terminal's, CN = its
#     name, clientAuth) and trusting only --ca (eapay-server's data_dir/
#     ca.pem) for the server's certificate, whose DNS name must be NAME
#     (aaa.<realm>: `CertificateNameCheck off` with
#     `MatchCertificateAttribute SubjectAltName:DNS:/^NAME$/`; radsecproxy's
#     own name check compares the server block's host, here an address the
#     certificate does not name); TLS 1.3 only by default (`TlsVersion
#     TLS1_3`), 1.2 or later with --tls-version 1.2;
#   - sends every request whatever its realm (realm *) to that server, with
#     the RadSec secret "radsec" (RFC 6614 §2.3), and checks it with
#     Status-Server every 25 s (`StatusServer on`), which also keeps the
#     connection within eapay-server's idle_timeout_secs.
#
# By default radsecproxy runs in the background (pid file D/radsecproxy.pid,
# log D/radsecproxy.log) and the script returns once it has bound P and its
# TLS connection to eapay-server is up, printing on stdout:
#   radsecproxy pid PID
#   listening radius auth 127.0.0.1:P
#   run dir D
# `--stop --run-dir D` stops it (SIGTERM by pid file). With --foreground the
# same lines are printed, then the script waits for radsecproxy and stops it
# when the script is interrupted (Ctrl-C). D defaults to
# ${TMPDIR:-/tmp}/eapay-radsecproxy-P. --debug logs every packet (-d 5).
# --sslkeylog FILE builds scripts/sslkeylog.c and preloads it, so that
# radsecproxy writes its TLS secrets to FILE (NSS key log format) for
# tshark: for test captures only.
#
# radsecproxy 1.9.2 and eapay-server, found by running them (payments and
# the TLS leg are in tests/tests/radsec_interop.rs):
#   - Payments: the terminal's attributes arrive in their order, the Eapay
#     ones untouched; radsecproxy checks the terminal's Message-Authenticator
#     and signs the request again with "radsec" (it does not add one where
#     the terminal sent none: eapay-server then drops an Access-Request).
#     Replies keep eapay-server's order, Message-Authenticator first, signed
#     again with S; MS-MPPE keys are re-encrypted with S. No Proxy-State is
#     added. It uses identifiers of its own towards the server.
#   - TLS 1.3 works (OpenSSL 3.0); it refuses a server certificate that does
#     not chain to --ca, or whose name differs from NAME.
#   - Reconnection: it never reconnects within 30 s of its last successful
#     connection (connect_wait). A connection eapay-server closes sooner
#     (idle_timeout_secs below 30) leaves it without a server for the rest
#     of those 30 s: its requests are dropped ("could not send request").
#     Keep idle_timeout_secs above the 25 s Status-Server period (the
#     default 300 is).
#   - Retries: over TLS it never retransmits (RetryCount is fixed at 0) and
#     waits 10 s for an answer; a terminal's retransmission of a request
#     still open is ignored (duplicate), a later one is answered from its
#     cache for DuplicateInterval (10 s).
#   - Accounting (settlements, the terminals' reversals) does NOT work
#     through 1.9.2, and is routed here only so that it cannot be answered
#     wrongly: (1) an Accounting-Request without User-Name (eapay's
#     settlements have none) is answered by radsecproxy itself and never
#     forwarded, so a terminal would drop a reversal the issuer never saw;
#     the configuration's `settlements` rewrite gives it a User-Name, so
#     that it is forwarded instead; (2) 1.9.2 computes the
#     Message-Authenticator of accounting packets over their authenticator,
#     FreeRADIUS and eapay over 16 zero octets (RFC 3579 defines only
#     Access-*): it drops an eapay-terminal reversal ("message
#     authenticator, wrong value") and the Accounting-Response of
#     eapay-server to a forwarded settlement, which eapay-server has carried
#     out: the terminal keeps retrying, which is safe (settlements are
#     idempotent) but never ends. radsecproxy
#     1.11.2's ChangeLog lists "Fix Message-Authenticator validation for
#     Accounting-Response" (not tried here); meanwhile send settlements to
#     eapay-server's accounting port directly.
#
# The binary: $RADSECPROXY, else radsecproxy in PATH or /usr/sbin. Errors
# are one line on stderr and exit 2; a proxy that does not come up prints
# the end of its log and exits 1.
set -Eeuo pipefail

ME=radsecproxy.sh
SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")

die() {
    echo "$ME: $*" >&2
    exit 2
}

SERVER= SERVER_NAME= CERT= KEY= CA= PORT= SECRET= TLS_VERSION=1.3 KEYLOG= RUN_DIR= FOREGROUND=0 DEBUG=0 STOP=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --server) SERVER=${2:-}; shift 2 || die "--server needs HOST:PORT" ;;
    --server-name) SERVER_NAME=${2:-}; shift 2 || die "--server-name needs a DNS name" ;;
    --cert) CERT=${2:-}; shift 2 || die "--cert needs a file" ;;
    --key) KEY=${2:-}; shift 2 || die "--key needs a file" ;;
    --ca) CA=${2:-}; shift 2 || die "--ca needs a file" ;;
    --port) PORT=${2:-}; shift 2 || die "--port needs a number" ;;
    --secret) SECRET=${2:-}; shift 2 || die "--secret needs a value" ;;
    --tls-version) TLS_VERSION=${2:-}; shift 2 || die "--tls-version needs 1.2 or 1.3" ;;
    --sslkeylog) KEYLOG=${2:-}; shift 2 || die "--sslkeylog needs a file" ;;
    --run-dir) RUN_DIR=${2:-}; shift 2 || die "--run-dir needs a directory" ;;
    --foreground) FOREGROUND=1; shift ;;
    --debug) DEBUG=1; shift ;;
    --stop) STOP=1; shift ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

find_radsecproxy() {
    if [[ -n ${RADSECPROXY:-} ]]; then
        echo "$RADSECPROXY"
    elif command -v radsecproxy >/dev/null 2>&1; then
        command -v radsecproxy
    else
        echo /usr/sbin/radsecproxy
    fi
}
BIN=$(find_radsecproxy)

# live_pid FILE PROGRAM, stop_one FILE PROGRAM, wait_in_foreground PID FILE:PROGRAM...,
# fail_started LOG WHAT FILE:PROGRAM..., port_inodes udp|tcp PORT
. "$(dirname "$SCRIPT_PATH")/lib/pidfile.sh"
# build_sslkeylog DIR
. "$(dirname "$SCRIPT_PATH")/lib/sslkeylog.sh"

if [[ $STOP -eq 1 ]]; then
    [[ -n $RUN_DIR ]] || die "--stop needs --run-dir"
    stop_one "$RUN_DIR/radsecproxy.pid" "$BIN"
    exit 0
fi

valid_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 > 0 && 10#$1 < 65536)); }

[[ -n $SERVER ]] || die "--server HOST:PORT is required (eapay-server's [radius.tls] listen address)"
if [[ $SERVER =~ ^\[([0-9A-Fa-f:.]+)\]:([0-9]+)$ ]] || [[ $SERVER =~ ^([A-Za-z0-9.-]+):([0-9]+)$ ]]; then
    valid_port "${BASH_REMATCH[2]}" || die "--server: port must be 1..65535"
else
    die "--server must be HOST:PORT (e.g. 127.0.0.1:2083), not '$SERVER'"
fi
[[ -n $SERVER_NAME ]] || die "--server-name is required (the DNS name in eapay-server's certificate: aaa.<realm>)"
[[ $SERVER_NAME =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "--server-name must be a DNS name, not '$SERVER_NAME'"
for pair in "--cert:$CERT" "--key:$KEY" "--ca:$CA"; do
    option=${pair%%:*} file=${pair#*:}
    [[ -n $file ]] || die "$option is required"
    [[ -r $file ]] || die "$option: cannot read '$file'"
done
valid_port "$PORT" || die "--port must be 1..65535"
PORT=$((10#$PORT))
[[ -n $SECRET ]] || die "--secret is required"
# A radsecproxy option value ends at white space and reads % escapes, and a
# leading quote changes its type: keep secrets to plain printable words.
[[ $SECRET =~ ^[A-Za-z0-9._~+=/:@,-]+$ ]] || die "--secret must be letters, digits and ._~+=/:@,- only (radsecproxy option value)"
case $TLS_VERSION in
1.3) TLS_VERSION_OPTION=TLS1_3 ;;
1.2) TLS_VERSION_OPTION=TLS1_2: ;;
*) die "--tls-version must be 1.2 or 1.3" ;;
esac
[[ -x $BIN ]] || die "no radsecproxy at $BIN (apt-get install radsecproxy, or set RADSECPROXY)"

RUN_DIR=${RUN_DIR:-${TMPDIR:-/tmp}/eapay-radsecproxy-$PORT}
mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
CERT=$(readlink -f "$CERT") KEY=$(readlink -f "$KEY") CA=$(readlink -f "$CA")
for path in "$RUN_DIR" "$CERT" "$KEY" "$CA"; do
    [[ $path =~ ^[A-Za-z0-9._/+-]+$ ]] || die "$path: radsecproxy reads paths up to white space; use plain paths"
done

if pid=$(live_pid "$RUN_DIR/radsecproxy.pid" "$BIN"); then
    die "radsecproxy already runs from $RUN_DIR (pid $pid); stop it: $0 --stop --run-dir $RUN_DIR"
fi

CONF=$RUN_DIR/radsecproxy.conf
LOG=$RUN_DIR/radsecproxy.log
# The realm's name escaped for the certificate match (dots are literal).
NAME_RE=${SERVER_NAME//./\\.}

cat >"$CONF" <<EOF
# Written by eapay scripts/radsecproxy.sh: RADIUS/UDP on 127.0.0.1:$PORT to
# eapay-server over RADIUS/TLS at $SERVER ($SERVER_NAME).
ListenUDP 127.0.0.1:$PORT

tls eapay {
    CACertificateFile $CA
    CertificateFile $CERT
    CertificateKeyFile $KEY
    TlsVersion $TLS_VERSION_OPTION
}

# radsecproxy 1.9 answers an Accounting-Request without User-Name itself
# and forwards nothing; eapay's settlements name no user. A User-Name of
# their own (only where there is none) has them forwarded to the issuer.
rewrite settlements {
    SupplementAttribute 1:'eapay-settlement
}

client terminals {
    host 127.0.0.1
    type udp
    secret $SECRET
    RewriteIn settlements
}

server eapay {
    host $SERVER
    type tls
    tls eapay
    secret radsec
    StatusServer on
    # The name check would compare the host above; the certificate names
    # $SERVER_NAME, which is what is matched instead.
    CertificateNameCheck off
    MatchCertificateAttribute SubjectAltName:DNS:/^$NAME_RE\$/
}

realm * {
    server eapay
    accountingServer eapay
}
EOF
chmod 600 "$CONF"

if ! out=$("$BIN" -p -c "$CONF" 2>&1); then
    die "radsecproxy refuses $CONF: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
fi

: >"$LOG"
failed() { fail_started "$LOG" "$1" "$RUN_DIR/radsecproxy.pid:$BIN"; }

if [[ -n $(port_inodes udp "$PORT") ]]; then
    failed "UDP port $PORT is already in use"
fi

PRELOAD=()
if [[ -n $KEYLOG ]]; then
    : >>"$KEYLOG" || die "--sslkeylog: cannot write '$KEYLOG'"
    PRELOAD=(env "SSLKEYLOGFILE=$(readlink -f "$KEYLOG")" "LD_PRELOAD=$(build_sslkeylog "$RUN_DIR")")
fi
args=(-f -c "$CONF" -d 3)
[[ $DEBUG -eq 1 ]] && args=(-f -c "$CONF" -d 5)
"${PRELOAD[@]}" "$BIN" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
RP_PID=$!
echo "$RP_PID" >"$RUN_DIR/radsecproxy.pid"

# Up: P bound by this process and the TLS connection to the server made.
# A refused certificate is retried forever by radsecproxy: give up at once.
bound() {
    local inode
    for inode in $(port_inodes udp "$PORT"); do
        find "/proc/$RP_PID/fd" -lname "socket:\[$inode\]" 2>/dev/null | grep -q . && return 0
    done
    return 1
}
for ((i = 0; i < 200; i++)); do
    [[ -d /proc/$RP_PID ]] || failed "radsecproxy exited at start-up"
    if grep -q -e 'certificate verification failed' -e 'tlsconnect: TLS: ' -e 'TLS connection to eapay .* failed' "$LOG"; then
        failed "radsecproxy's TLS connection to $SERVER failed"
    fi
    if bound && grep -q 'tlsconnect: TLS connection to eapay .* up' "$LOG"; then
        break
    fi
    sleep 0.05
done
bound || failed "radsecproxy did not bind UDP port $PORT within 10 s"
grep -q 'tlsconnect: TLS connection to eapay .* up' "$LOG" ||
    failed "radsecproxy did not connect to $SERVER within 10 s"

echo "radsecproxy pid $RP_PID"
echo "listening radius auth 127.0.0.1:$PORT"
echo "run dir $RUN_DIR"

if [[ $FOREGROUND -eq 1 ]]; then
    wait_in_foreground "$RP_PID" "$RUN_DIR/radsecproxy.pid:$BIN"
fi
