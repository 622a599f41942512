#!/usr/bin/env bash
# Run FreeRADIUS 3.2 as the card payment agency's RADIUS proxy in front of
# eapay-server: terminals talk to FreeRADIUS, which routes the issuer's realm
# to eapay-server (its home server) and relays the answers back.
#
# Usage:
#   scripts/freeradius-proxy.sh --home HOST:PORT --home-secret S --realm R \
#       --port P --secret S2 [--home-acct HOST:PORT] [--acct-port Q] \
#       [--response-window SECS] [--run-dir D] [--foreground] [--debug]
#   scripts/freeradius-proxy.sh --home-tls HOST:PORT --tls-cert FILE \
#       --tls-key FILE --tls-ca FILE --realm R --port P --secret S2 \
#       [--tls-server-name NAME] [--acct-port Q] [--response-window SECS] \
#       [--sslkeylog FILE] [--run-dir D] [--foreground] [--debug]
#   scripts/freeradius-proxy.sh --stop --run-dir D
#
# Lays out a self-contained configuration in D (D/raddb/radiusd.conf and
# D/raddb/proxy.conf, 0600: they hold the secrets; the system's
# /etc/freeradius is neither read nor changed) and starts
# `freeradius -f -d D/raddb`, which:
#   - listens on 127.0.0.1 (UDP): authentication on P, accounting on Q
#     (default P + 1, where eapay-terminal sends reversals by default), with
#     one client, 127.0.0.1, secret S2, `require_message_authenticator = yes`
#     (an Access-Request without Message-Authenticator is dropped), and
#     answers Status-Server itself;
#   - proxies every Access-Request whose User-Name ends in @R (the card NAIs:
#     0<id>@R AKA, 6<id>@R AKA', 1<id>@R SIM, <id>@R TLS, anonymous@R TTLS,
#     and the pseudonyms and re-authentication identities of the same realm)
#     to the home server `eapay-auth` at HOST:PORT with secret S, User-Name
#     unchanged (`nostrip`); anything else is rejected. The EAP conversation
#     is not touched: no eap module is loaded (the card authenticates to the
#     issuer end to end, through the proxy). Accounting-Requests for @R, and
#     settlements (Eapay-Settlement-Action: they carry no User-Name), go to
#     the home server `eapay-acct` at --home-acct (default HOST:PORT+1);
#   - loads dictionaries/radius/dictionary.eapay, so the Eapay attributes
#     are named in its log; no attr_filter runs, so they pass both ways
#     unchanged (the receipt, split over several Eapay-Receipt attributes,
#     stays in order);
#   - checks the home servers with Status-Server (`status_check =
#     status-server`, each carries a Message-Authenticator), which 3.2 sends
#     only while a home server is zombie or dead: response_window SECS
#     (--response-window, default 5: no answer to a proxied request for that
#     long and the home server is zombie, a Status-Server goes out at once,
#     and one answer makes it alive again), zombie_period the same (then it
#     is dead, and needs 3 answers), check_interval 6 s and
#     num_answers_to_alive 3 (the smallest FreeRADIUS accepts),
#     check_timeout 3 s. Its log says "Marking home server ... as zombie",
#     "Sent Status-Server", "Received response to status check", "Marking
#     home server ... alive", "... as dead";
#   - has a read-only control socket D/control.sock for radmin
#     (`radmin -f D/control.sock -e "show home_server state 127.0.0.1 PORT"`).
#
# By default FreeRADIUS runs in the background (pid file D/freeradius.pid,
# log D/radius.log) and the script returns once it has bound its ports and,
# if radclient is installed, answered a Status-Server, printing on stdout:
#   freeradius pid PID
#   listening radius auth 127.0.0.1:P
#   listening radius acct 127.0.0.1:Q
#   run dir D
# `--stop --run-dir D` stops it (SIGTERM by pid file). With --foreground the
# same lines are printed, then the script waits for FreeRADIUS and stops it
# when the script is interrupted (Ctrl-C). D defaults to
# ${TMPDIR:-/tmp}/eapay-freeradius-proxy-P. --debug adds -xx and logs every
# request and proxied packet in D/radius.log.
#
# FreeRADIUS 3.2.1 (Debian 12) as a proxy for eapay:
#   - It sends the home server the terminal's attributes in their order, with
#     a fresh Message-Authenticator (signed with S) and its own Proxy-State
#     appended; it drops every Proxy-State of the home server's reply and
#     appends the terminal's own Proxy-State attributes after the rest. The
#     reply keeps the home server's attribute order, so eapay-server's
#     Message-Authenticator stays first: the terminal needs no
#     --lax-message-authenticator behind this proxy (FreeRADIUS's own EAP
#     replies put it after EAP-Message).
#   - It checks a Message-Authenticator in a home server's reply when there
#     is one, but 3.2.1 cannot require one: it has no
#     `require_message_authenticator` for home servers and ignores the line
#     silently (it is not in its parsed configuration). It is written anyway,
#     for releases with the Blast-RADIUS changes (check that yours knows it);
#     eapay-server always sends a Message-Authenticator, first.
#   - Status-Server only while zombie or dead (above); while alive it sends
#     none, so a live eapay-server sees no status checks.
#   - A proxied request the home server does not answer within
#     response_window, and any request while the home server is dead, gets
#     an Access-Reject of FreeRADIUS's own with no attributes at all (no
#     Message-Authenticator, no EAP-Failure, no Eapay-Decline-Code).
#     eapay-terminal drops it ("lacks a required Message-Authenticator"),
#     and once its payment attributes went out, stores a reversal: the
#     payment is in doubt, as after a timeout.
#
# RADIUS over TLS (RFC 6614) to eapay-server: with --home-tls HOST:PORT
# (eapay-server's [radius.tls] listen address) instead of --home, the
# realm's authentication and accounting both go to one home server
# `eapay-tls` (`type = auth+acct`, `proto = tcp`, `secret = radsec`) over
# one TLS connection that presents --tls-cert/--tls-key (a terminal
# certificate from `eapay-server terminal issue`, registered in
# [[radius.tls.clients]]) and trusts only --tls-ca (eapay-server's
# data_dir/ca.pem) for the server's certificate, whose common name must be
# --tls-server-name (default aaa.R, the name eapay-server's certificate
# carries: `check_cert_cn`); TLS 1.2 or 1.3. The listeners, the client and
# the routing are the same. --sslkeylog FILE preloads scripts/sslkeylog.c
# so that FreeRADIUS writes its TLS secrets to FILE for tshark (test
# captures only). FreeRADIUS 3.2.1 as a RadSec client, found by running it
# (payments, the name check and settlements are in
# tests/tests/radsec_interop.rs):
#   - It opens the connection at the first request it proxies (not at
#     start-up) and a new one at the next request after eapay-server
#     closed an idle one (idle_timeout_secs): nothing is lost.
#   - TLS 1.3 is negotiated; the server's chain is verified against
#     --tls-ca (another CA: "unknown CA" alert) and its common name against
#     check_cert_cn (another name: "internal error" alert); either way the
#     request is not proxied and the payment fails. Without check_cert_cn
#     any server certificate of that CA would do (the example in Debian's
#     sites-available/tls has none).
#   - It names the home server's certificate in TLS-Client-Cert-*
#     attributes of its log (3.2.1's fix_cert_order = no).
#   - The Eapay attributes, Message-Authenticator first in replies,
#     MS-MPPE keys and Proxy-State behave as over UDP (below); settlements
#     reach the issuer and their Accounting-Responses come back (FreeRADIUS
#     and eapay-server compute an accounting Message-Authenticator alike).
#   - `status_check = status-server` is accepted for the TLS home server;
#     as over UDP, 3.2 sends it only while the home server is zombie or dead.
#   - It stalled, at TLS 1.3, when the server's NewSessionTickets crossed
#     its first request (logged as sent, never written: the payment timed
#     out); eapay-server sends none since.
#
# The binary: $FREERADIUS, else freeradius (Debian) or radiusd in PATH or
# /usr/sbin. Errors are one line on stderr and exit 2; a server that does
# not come up prints the end of its log and exits 1.
set -Eeuo pipefail

ME=freeradius-proxy.sh
SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)

die() {
    echo "$ME: $*" >&2
    exit 2
}

HOME_AUTH= HOME_ACCT= HOME_SECRET= REALM= PORT= ACCT_PORT= SECRET= RUN_DIR= WINDOW=5 FOREGROUND=0 DEBUG=0 STOP=0
HOME_TLS= TLS_CERT= TLS_KEY= TLS_CA= TLS_NAME= KEYLOG=
while [[ $# -gt 0 ]]; do
    case $1 in
    --home) HOME_AUTH=${2:-}; shift 2 || die "--home needs HOST:PORT" ;;
    --home-acct) HOME_ACCT=${2:-}; shift 2 || die "--home-acct needs HOST:PORT" ;;
    --home-secret) HOME_SECRET=${2:-}; shift 2 || die "--home-secret needs a value" ;;
    --home-tls) HOME_TLS=${2:-}; shift 2 || die "--home-tls needs HOST:PORT" ;;
    --tls-cert) TLS_CERT=${2:-}; shift 2 || die "--tls-cert needs a file" ;;
    --tls-key) TLS_KEY=${2:-}; shift 2 || die "--tls-key needs a file" ;;
    --tls-ca) TLS_CA=${2:-}; shift 2 || die "--tls-ca needs a file" ;;
    --tls-server-name) TLS_NAME=${2:-}; shift 2 || die "--tls-server-name needs a name" ;;
    --sslkeylog) KEYLOG=${2:-}; shift 2 || die "--sslkeylog needs a file" ;;
    --realm) REALM=${2:-}; shift 2 || die "--realm needs a realm" ;;
    --port) PORT=${2:-}; shift 2 || die "--port needs a number" ;;
    --acct-port) ACCT_PORT=${2:-}; shift 2 || die "--acct-port needs a number" ;;
    --secret) SECRET=${2:-}; shift 2 || die "--secret needs a value" ;;
    --response-window) WINDOW=${2:-}; shift 2 || die "--response-window needs seconds" ;;
    --run-dir) RUN_DIR=${2:-}; shift 2 || die "--run-dir needs a directory" ;;
    --foreground) FOREGROUND=1; shift ;;
    --debug) DEBUG=1; shift ;;
    --stop) STOP=1; shift ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# find_freeradius
. "$(dirname "$SCRIPT_PATH")/lib/freeradius.sh"
FREERADIUS_BIN=$(find_freeradius)

# live_pid FILE PROGRAM, stop_one FILE PROGRAM, wait_in_foreground PID FILE:PROGRAM...
. "$(dirname "$SCRIPT_PATH")/lib/pidfile.sh"
# build_sslkeylog DIR
. "$(dirname "$SCRIPT_PATH")/lib/sslkeylog.sh"

if [[ $STOP -eq 1 ]]; then
    [[ -n $RUN_DIR ]] || die "--stop needs --run-dir"
    stop_one "$RUN_DIR/freeradius.pid" "$FREERADIUS_BIN"
    exit 0
fi

valid_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 > 0 && 10#$1 < 65536)); }

# split_host_port OPTION VALUE: sets HOST and HPORT (IPv4 address or name,
# or [IPv6]:PORT).
split_host_port() {
    local option=$1 value=$2
    if [[ $value =~ ^\[([0-9A-Fa-f:.]+)\]:([0-9]+)$ ]] || [[ $value =~ ^([A-Za-z0-9.-]+):([0-9]+)$ ]]; then
        HOST=${BASH_REMATCH[1]}
        HPORT=${BASH_REMATCH[2]}
    else
        die "$option must be HOST:PORT (e.g. 127.0.0.1:1812), not '$value'"
    fi
    valid_port "$HPORT" || die "$option: port must be 1..65535"
    HPORT=$((10#$HPORT))
}

if [[ -n $HOME_TLS ]]; then
    [[ -z $HOME_AUTH && -z $HOME_ACCT && -z $HOME_SECRET ]] ||
        die "--home-tls replaces --home, --home-acct and --home-secret (RadSec carries both, secret radsec)"
    split_host_port --home-tls "$HOME_TLS"
    HOME_HOST=$HOST HOME_PORT=$HPORT
    for pair in "--tls-cert:$TLS_CERT" "--tls-key:$TLS_KEY" "--tls-ca:$TLS_CA"; do
        option=${pair%%:*} file=${pair#*:}
        [[ -n $file ]] || die "$option is required with --home-tls"
        [[ -r $file ]] || die "$option: cannot read '$file'"
    done
    TLS_CERT=$(readlink -f "$TLS_CERT") TLS_KEY=$(readlink -f "$TLS_KEY") TLS_CA=$(readlink -f "$TLS_CA")
    HOME_SECRET=radsec
else
    [[ -z $TLS_CERT && -z $TLS_KEY && -z $TLS_CA && -z $TLS_NAME ]] ||
        die "--tls-cert, --tls-key, --tls-ca and --tls-server-name go with --home-tls"
    [[ -n $HOME_AUTH ]] || die "--home HOST:PORT is required (eapay-server's RADIUS authentication address)"
    split_host_port --home "$HOME_AUTH"
    HOME_HOST=$HOST HOME_PORT=$HPORT
    if [[ -n $HOME_ACCT ]]; then
        split_host_port --home-acct "$HOME_ACCT"
        ACCT_HOST=$HOST ACCT_HPORT=$HPORT
    else
        ((HOME_PORT < 65535)) || die "--home port 65535 leaves no accounting port: give --home-acct"
        ACCT_HOST=$HOME_HOST ACCT_HPORT=$((HOME_PORT + 1))
    fi
    [[ -n $HOME_SECRET ]] || die "--home-secret is required (the secret eapay-server has for this proxy)"
fi
[[ -n $REALM ]] || die "--realm is required (the issuer's realm, eapay-server's [server] realm)"
[[ $REALM =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "--realm must be a domain name, not '$REALM'"
if [[ -n $HOME_TLS ]]; then
    TLS_NAME=${TLS_NAME:-aaa.$REALM}
    [[ $TLS_NAME =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] ||
        die "--tls-server-name must be a DNS name, not '$TLS_NAME'"
fi
valid_port "$PORT" || die "--port must be 1..65535"
PORT=$((10#$PORT))
if [[ -n $ACCT_PORT ]]; then
    valid_port "$ACCT_PORT" || die "--acct-port must be 1..65535"
    ACCT_PORT=$((10#$ACCT_PORT))
else
    ((PORT < 65535)) || die "--port 65535 leaves no accounting port: give --acct-port"
    ACCT_PORT=$((PORT + 1))
fi
((ACCT_PORT != PORT)) || die "--acct-port must differ from --port"
[[ -n $SECRET ]] || die "--secret is required"
[[ $WINDOW =~ ^[0-9]{1,2}$ ]] && ((10#$WINDOW >= 1 && 10#$WINDOW <= 30)) ||
    die "--response-window must be 1..30 seconds"
WINDOW=$((10#$WINDOW))
# The secrets go into single-quoted strings of the configuration.
for s in "$SECRET" "$HOME_SECRET"; do
    [[ $s != *[\'\\]* && $s != *[[:cntrl:]]* ]] ||
        die "secrets must not contain quotes, backslashes or control characters (FreeRADIUS configuration string)"
done
DICT_EAPAY=$REPO/dictionaries/radius/dictionary.eapay
[[ -r $DICT_EAPAY ]] || die "no $DICT_EAPAY"
[[ -x $FREERADIUS_BIN ]] || die "no FreeRADIUS at $FREERADIUS_BIN (apt-get install freeradius, or set FREERADIUS)"

RUN_DIR=${RUN_DIR:-${TMPDIR:-/tmp}/eapay-freeradius-proxy-$PORT}
mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
for path in "$RUN_DIR" "$DICT_EAPAY" "$TLS_CERT" "$TLS_KEY" "$TLS_CA"; do
    [[ $path != *[\'\\\$\"]* && $path != *[[:cntrl:]]* ]] ||
        die "$path: FreeRADIUS cannot read paths with quotes, backslashes or '\$'"
done

if pid=$(live_pid "$RUN_DIR/freeradius.pid" "$FREERADIUS_BIN"); then
    die "freeradius already runs from $RUN_DIR (pid $pid); stop it: $0 --stop --run-dir $RUN_DIR"
fi

RADDB=$RUN_DIR/raddb
LOG=$RUN_DIR/radius.log
rm -rf "$RADDB" "$RUN_DIR/control.sock"
mkdir -p "$RADDB"

# FreeRADIUS loads the distribution dictionaries from /usr/share/freeradius
# first, then raddb/dictionary: the Eapay vendor (32473) and its attributes.
printf '$INCLUDE %s\n' "$DICT_EAPAY" >"$RADDB/dictionary"

# The realm, its home servers and their Status-Server checks (an operator's
# proxy.conf).
if [[ -n $HOME_TLS ]]; then
    cat >"$RADDB/proxy.conf" <<EOF
# Written by eapay scripts/freeradius-proxy.sh: realm $REALM is eapay-server's,
# reached over RADIUS/TLS (RFC 6614).
proxy server {
	default_fallback = no
}

home_server eapay-tls {
	# One TLS connection carries authentication and accounting.
	type = auth+acct
	ipaddr = $HOME_HOST
	port = $HOME_PORT
	proto = tcp
	# RFC 6614 §2.3: the secret is fixed; the certificate identifies us.
	secret = radsec
	response_window = $WINDOW
	response_timeouts = 1
	zombie_period = $WINDOW
	revive_interval = 10
	status_check = status-server
	check_interval = 6
	check_timeout = 3
	num_answers_to_alive = 3
	max_outstanding = 65536
	tls {
		certificate_file = '$TLS_CERT'
		private_key_file = '$TLS_KEY'
		# The issuer CA, and the name of eapay-server's certificate:
		# without it any server certificate of that CA would do.
		ca_file = '$TLS_CA'
		check_cert_cn = '$TLS_NAME'
		tls_min_version = "1.2"
		tls_max_version = "1.3"
		fragment_size = 8192
		connect_timeout = 5
	}
}

home_server_pool eapay-tls {
	type = fail-over
	home_server = eapay-tls
}

realm $REALM {
	auth_pool = eapay-tls
	acct_pool = eapay-tls
	# The issuer sees the card's NAI as the card sent it.
	nostrip
}
EOF
else
    cat >"$RADDB/proxy.conf" <<EOF
# Written by eapay scripts/freeradius-proxy.sh: realm $REALM is eapay-server's.
proxy server {
	default_fallback = no
}

home_server eapay-auth {
	type = auth
	ipaddr = $HOME_HOST
	port = $HOME_PORT
	proto = udp
	secret = '$HOME_SECRET'
	# 3.2.1 ignores this line (no such home_server option; it checks a
	# Message-Authenticator when present, and eapay-server always sends
	# it, first); for releases with the Blast-RADIUS changes.
	require_message_authenticator = yes
	response_window = $WINDOW
	response_timeouts = 1
	zombie_period = $WINDOW
	revive_interval = 10
	status_check = status-server
	check_interval = 6
	check_timeout = 3
	num_answers_to_alive = 3
	max_outstanding = 65536
}

home_server eapay-acct {
	type = acct
	ipaddr = $ACCT_HOST
	port = $ACCT_HPORT
	proto = udp
	secret = '$HOME_SECRET'
	require_message_authenticator = yes
	response_window = $WINDOW
	response_timeouts = 1
	zombie_period = $WINDOW
	revive_interval = 10
	status_check = status-server
	check_interval = 6
	check_timeout = 3
	num_answers_to_alive = 3
	max_outstanding = 65536
}

home_server_pool eapay-auth {
	type = fail-over
	home_server = eapay-auth
}

home_server_pool eapay-acct {
	type = fail-over
	home_server = eapay-acct
}

realm $REALM {
	auth_pool = eapay-auth
	acct_pool = eapay-acct
	# The issuer sees the card's NAI as the card sent it.
	nostrip
}
EOF
fi

cat >"$RADDB/radiusd.conf" <<EOF
# Written by eapay scripts/freeradius-proxy.sh: FreeRADIUS as the payment
# agency's proxy; realm $REALM goes to eapay-server at $HOME_HOST:$HOME_PORT.
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = '$RADDB'
confdir = \${raddbdir}
logdir = '$RUN_DIR'
run_dir = '$RUN_DIR'
db_dir = '$RUN_DIR'
libdir = /usr/lib/freeradius
pidfile = '$RUN_DIR/radiusd.pid'
name = freeradius

max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no

proxy_requests = yes
\$INCLUDE proxy.conf

$(radiusd_common "$LOG")

client eapay-terminals {
	ipaddr = 127.0.0.1
	proto = udp
	secret = '$SECRET'
	require_message_authenticator = yes
	nas_type = other
}

modules {
	# User-Name "...@$REALM": Proxy-To-Realm $REALM (rlm_realm).
	realm suffix {
		format = suffix
		delimiter = "@"
		ignore_null = yes
	}
}

server default {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $PORT
		proto = udp
	}

	listen {
		type = acct
		ipaddr = 127.0.0.1
		port = $ACCT_PORT
		proto = udp
	}

	listen {
		type = control
		socket = '$RUN_DIR/control.sock'
		mode = ro
	}

	# No eap module: the EAP conversation is between the card and the
	# issuer; this server only routes it.
	authorize {
		suffix
		if (!&control:Proxy-To-Realm) {
			update control {
				&Auth-Type := Reject
			}
		}
	}

	authenticate {
	}

	preacct {
		# Settlements (reversals, captures, refunds) name no user.
		if (&Eapay-Settlement-Action) {
			update control {
				&Proxy-To-Realm := '$REALM'
			}
		}
		else {
			suffix
		}
	}

	# Accounting that is not proxied (not ours) gets no answer.
	accounting {
	}

	# Nothing filtered: the Eapay attributes and EAP-Message go back as the
	# issuer sent them.
	post-proxy {
	}

	post-auth {
		Post-Auth-Type REJECT {
		}
	}
}
EOF
chmod 600 "$RADDB/radiusd.conf" "$RADDB/proxy.conf"

: >"$LOG"

# A server that did not come up: one line, the end of its log, exit 1.
failed() { fail_started "$LOG" "$1" "$RUN_DIR/freeradius.pid:$FREERADIUS_BIN"; }

for p in "$PORT" "$ACCT_PORT"; do
    if [[ -n $(port_inodes udp "$p") ]]; then
        failed "UDP port $p is already in use"
    fi
done

PRELOAD=()
if [[ -n $KEYLOG ]]; then
    : >>"$KEYLOG" || die "--sslkeylog: cannot write '$KEYLOG'"
    PRELOAD=(env "SSLKEYLOGFILE=$(readlink -f "$KEYLOG")" "LD_PRELOAD=$(build_sslkeylog "$RUN_DIR")")
fi
args=(-f -n radiusd -d "$RADDB" -l "$LOG")
[[ $DEBUG -eq 1 ]] && args+=(-xx)
"${PRELOAD[@]}" "$FREERADIUS_BIN" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
FR_PID=$!
echo "$FR_PID" >"$RUN_DIR/freeradius.pid"

await_freeradius "$FR_PID" "$SECRET" "$PORT" "$ACCT_PORT"

echo "freeradius pid $FR_PID"
echo "listening radius auth 127.0.0.1:$PORT"
echo "listening radius acct 127.0.0.1:$ACCT_PORT"
echo "run dir $RUN_DIR"

if [[ $FOREGROUND -eq 1 ]]; then
    wait_in_foreground "$FR_PID" "$RUN_DIR/freeradius.pid:$FREERADIUS_BIN"
fi
