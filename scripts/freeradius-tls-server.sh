#!/usr/bin/env bash
# Run FreeRADIUS 3.2 as the RADIUS/EAP server for the EAP-TLS, EAP-TTLS and
# EAP-SIM cards of an eapay ledger, to test interoperability and to measure
# it beside eapay-server with the same cards and the same load generator.
# (The name is older than its SIM support.)
#
# Usage:
#   eapay-server card export --format freeradius --out EXPORT --card-dir CARDS \
#       [--config eapay.toml]
#   scripts/freeradius-tls-server.sh --export EXPORT --port 18120 --secret S \
#       [--run-dir D] [--tls-max 1.2|1.3] [--foreground] [--debug]
#   scripts/freeradius-tls-server.sh --stop --run-dir D
#
# Lays out a self-contained configuration in D (D/raddb/radiusd.conf, 0600:
# it holds the secret; the system's /etc/freeradius is neither read nor
# changed) and starts `freeradius -f -d D/raddb`, which:
#   - listens for authentication on 127.0.0.1:PORT (UDP) only, with one
#     client, 127.0.0.1, secret S, `require_message_authenticator = yes`
#     (an Access-Request without Message-Authenticator is dropped, as
#     eapay-server does by default), and answers Status-Server;
#   - runs the eap module with EAP-TLS and EAP-TTLS sharing one TLS
#     configuration: certificate_file EXPORT/server.pem (the issuer's server
#     chain and key, so the cards' server pin holds), ca_file EXPORT/ca.pem
#     (the issuer CA, which signed the cards' client certificates at
#     `card issue`: FreeRADIUS validates them against it), tls_min_version
#     "1.2", tls_max_version "1.3" (or --tls-max), fragment_size 1024 with
#     the TLS Message Length on the first fragment of a fragmented message
#     only (include_length = no, as eapay), and session resumption: the TLS
#     session cache (24 h), which FreeRADIUS 3.2 keeps on disk only, two
#     files per session in D/tlscache (0700);
#   - EAP-SIM for a SIM card's permanent NAI 1<card-id>@realm, with the
#     three triplets the export wrote for it in EXPORT/users (rlm_eap_sim
#     has no authentication centre: the same three serve every run);
#   - EAP-TLS first for any other identity (the permanent NAI <card-id>@realm);
#     EAP-TTLS right away, with no Nak round trip, for an anonymous@...
#     outer identity, with inner PAP checked by the files module against
#     EXPORT/users (card id and PIN) in the virtual server inner-tunnel.
# It is a plain AAA server: it knows nothing of payments. It ignores the
# Eapay attributes of a request (they are loaded from dictionaries/radius
# so that its debug output names them) and accepts every certificate the
# issuer CA signed, blocked cards included (it has no ledger).
#
# By default FreeRADIUS runs in the background (pid file D/freeradius.pid,
# log D/radius.log) and the script returns once it has bound its port and,
# if radclient is installed, answered a Status-Server, printing on stdout:
#   freeradius pid PID         <- its CPU time: fields 14-15 of /proc/PID/stat
#   listening radius auth 127.0.0.1:PORT
#   run dir D
# `--stop --run-dir D` stops it (SIGTERM by pid file). With --foreground the
# same lines are printed, then the script waits for FreeRADIUS and stops it
# when the script is interrupted (Ctrl-C). D defaults to
# ${TMPDIR:-/tmp}/eapay-freeradius-PORT; for measurements put it on a tmpfs
# (e.g. /dev/shm/...) so that the session files do not measure the disk.
# --debug adds -xx and logs every request in D/radius.log (like -X, but
# keeping the thread pool), which costs FreeRADIUS CPU: not for measurements.
#
# FreeRADIUS 3.2.1 as seen from eapay's cards, eapol_test and bench:
#   - Its replies carry Message-Authenticator after EAP-Message (and State),
#     not first (3.2.1 predates the Blast-RADIUS changes): drive it with
#     `eapay-terminal bench --lax-message-authenticator`.
#   - TLS 1.3 works for EAP-TLS and for TTLS/PAP (wpa_supplicant 2.10 and
#     our cards). It warns at start-up that "most supplicants" cannot.
#   - Resumption at TLS 1.3: the ticket a resumed handshake issues is stored
#     without its attributes ("Couldn't open ....vps" in the log), so the next
#     resumption with it falls back to a full handshake: a card alternates
#     full and resumed. At TLS 1.2 (--tls-max 1.2) every resumption works.
#   - TTLS at TLS 1.3 and our cards: a card that sends its inner PAP with its
#     TLS Finished (eapay's cards do; eapol_test waits a round trip) gets
#     Access-Accept at once and never the session ticket FreeRADIUS issued,
#     so it never resumes; at TLS 1.2 it does.
#   - Fragments: with fragment_size 1024 it sends 1004 TLS octets per EAP
#     packet; a smaller Framed-MTU becomes the number of TLS octets itself,
#     so its EAP packets exceed that Framed-MTU by the 6-10 header octets.
#
# The binary: $FREERADIUS, else freeradius (Debian) or radiusd in PATH or
# /usr/sbin. Errors are one line on stderr and exit 2; a server that does
# not come up prints the end of its log and exits 1.
set -Eeuo pipefail

ME=freeradius-tls-server.sh
SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT_PATH")/.." && pwd)

die() {
    echo "$ME: $*" >&2
    exit 2
}

EXPORT= PORT= SECRET= RUN_DIR= TLS_MAX=1.3 FOREGROUND=0 DEBUG=0 STOP=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --export) EXPORT=${2:-}; shift 2 || die "--export needs a directory" ;;
    --port) PORT=${2:-}; shift 2 || die "--port needs a number" ;;
    --secret) SECRET=${2:-}; shift 2 || die "--secret needs a value" ;;
    --run-dir) RUN_DIR=${2:-}; shift 2 || die "--run-dir needs a directory" ;;
    --tls-max) TLS_MAX=${2:-}; shift 2 || die "--tls-max needs 1.2 or 1.3" ;;
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

if [[ $STOP -eq 1 ]]; then
    [[ -n $RUN_DIR ]] || die "--stop needs --run-dir"
    stop_one "$RUN_DIR/freeradius.pid" "$FREERADIUS_BIN"
    exit 0
fi

[[ -n $EXPORT ]] || die "--export DIR is required (eapay-server card export --format freeradius --out DIR --card-dir CARDS)"
[[ $PORT =~ ^[0-9]{1,5}$ ]] && ((10#$PORT > 0 && 10#$PORT < 65536)) || die "--port must be 1..65535"
PORT=$((10#$PORT))
[[ -n $SECRET ]] || die "--secret is required"
# The secret goes into a single-quoted string of the configuration.
[[ $SECRET != *[\'\\]* && $SECRET != *[[:cntrl:]]* ]] ||
    die "--secret must not contain quotes, backslashes or control characters (FreeRADIUS configuration string)"
[[ $TLS_MAX == 1.2 || $TLS_MAX == 1.3 ]] || die "--tls-max must be 1.2 or 1.3"
EXPORT=$(cd "$EXPORT" 2>/dev/null && pwd) || die "--export: no directory '$EXPORT'"
for file in ca.pem server.pem server-key.pem users; do
    [[ -r $EXPORT/$file ]] ||
        die "$EXPORT has no $file (eapay-server card export --format freeradius --out $EXPORT --card-dir CARDS)"
done
[[ -x $FREERADIUS_BIN ]] || die "no FreeRADIUS at $FREERADIUS_BIN (apt-get install freeradius, or set FREERADIUS)"

RUN_DIR=${RUN_DIR:-${TMPDIR:-/tmp}/eapay-freeradius-$PORT}
mkdir -p "$RUN_DIR"
chmod 700 "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
for path in "$EXPORT" "$RUN_DIR"; do
    [[ $path != *[\'\\\$\"]* && $path != *[[:cntrl:]]* ]] ||
        die "$path: FreeRADIUS cannot read paths with quotes, backslashes or '\$'"
done

if pid=$(live_pid "$RUN_DIR/freeradius.pid" "$FREERADIUS_BIN"); then
    die "freeradius already runs from $RUN_DIR (pid $pid); stop it: $0 --stop --run-dir $RUN_DIR"
fi

RADDB=$RUN_DIR/raddb
LOG=$RUN_DIR/radius.log
rm -rf "$RADDB" "$RUN_DIR/tlscache"
mkdir -p "$RADDB" "$RUN_DIR/tlscache"
chmod 700 "$RUN_DIR/tlscache"

# Our attribute names in FreeRADIUS's debug output (it loads the
# distribution dictionaries from /usr/share/freeradius first).
DICT_EAPAY=$REPO/dictionaries/radius/dictionary.eapay
if [[ -r $DICT_EAPAY ]]; then
    printf '$INCLUDE %s\n' "$DICT_EAPAY" >"$RADDB/dictionary"
else
    : >"$RADDB/dictionary"
fi

cat >"$RADDB/radiusd.conf" <<EOF
# Written by eapay scripts/freeradius-tls-server.sh: FreeRADIUS as the
# RADIUS/EAP server of eapay's EAP-TLS and EAP-TTLS/PAP cards (export $EXPORT).
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
proxy_requests = no

$(radiusd_common "$LOG")

client eapay-nas {
	ipaddr = 127.0.0.1
	proto = udp
	secret = '$SECRET'
	require_message_authenticator = yes
	nas_type = other
}

modules {
	eap {
		default_eap_type = tls
		timer_expire = 60
		ignore_unknown_eap_types = no
		cisco_accounting_username_bug = no
		max_sessions = \${max_requests}

		tls-config tls-common {
			certificate_file = '$EXPORT/server.pem'
			private_key_file = '$EXPORT/server-key.pem'
			ca_file = '$EXPORT/ca.pem'
			auto_chain = no
			fragment_size = 1024
			include_length = no
			cipher_list = "DEFAULT"
			cipher_server_preference = no
			tls_min_version = "1.2"
			tls_max_version = "$TLS_MAX"
			ecdh_curve = ""
			cache {
				enable = yes
				lifetime = 24
				name = "eapay-freeradius"
				max_entries = 65536
				persist_dir = '$RUN_DIR/tlscache'
			}
			verify {
			}
			ocsp {
				enable = no
			}
		}

		tls {
			tls = tls-common
			require_client_cert = yes
		}

		ttls {
			tls = tls-common
			default_eap_type = md5
			copy_request_to_tunnel = no
			use_tunneled_reply = no
			virtual_server = "inner-tunnel"
			require_client_cert = no
		}

		# EAP-SIM: the triplets come from the users file (control attributes).
		sim {
		}
	}

	files {
		filename = '$EXPORT/users'
	}

	pap {
		normalise = yes
	}
}

server default {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $PORT
		proto = udp
	}

	authorize {
		# Our TTLS cards present anonymous@realm outside the tunnel: offer
		# TTLS first, as eapay-server does, instead of TLS and a Nak.
		if (&User-Name =~ /^anonymous@/) {
			update control {
				&EAP-Type := TTLS
			}
		}
		# SIM cards (1<card-id>@realm): EAP-Type := SIM and their triplets.
		if (&User-Name =~ /^1/) {
			files
		}
		eap {
			ok = return
		}
	}

	authenticate {
		Auth-Type eap {
			eap
		}
	}

	post-auth {
		Post-Auth-Type REJECT {
			eap
		}
	}
}

server inner-tunnel {
	authorize {
		files
		pap
	}

	authenticate {
		Auth-Type PAP {
			pap
		}
	}

	post-auth {
		Post-Auth-Type REJECT {
		}
	}
}
EOF
chmod 600 "$RADDB/radiusd.conf"

: >"$LOG"

# A server that did not come up: one line, the end of its log, exit 1.
failed() { fail_started "$LOG" "$1" "$RUN_DIR/freeradius.pid:$FREERADIUS_BIN"; }

if [[ -n $(port_inodes udp "$PORT") ]]; then
    failed "UDP port $PORT is already in use"
fi

args=(-f -n radiusd -d "$RADDB" -l "$LOG")
[[ $DEBUG -eq 1 ]] && args+=(-xx)
"$FREERADIUS_BIN" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
FR_PID=$!
echo "$FR_PID" >"$RUN_DIR/freeradius.pid"

await_freeradius "$FR_PID" "$SECRET" "$PORT"

echo "freeradius pid $FR_PID"
echo "listening radius auth 127.0.0.1:$PORT"
echo "run dir $RUN_DIR"

if [[ $FOREGROUND -eq 1 ]]; then
    wait_in_foreground "$FR_PID" "$RUN_DIR/freeradius.pid:$FREERADIUS_BIN"
fi
