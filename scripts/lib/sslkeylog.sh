# shellcheck shell=bash
# Sourced by the scripts that run an OpenSSL program whose TLS a test
# capture must decrypt (radsecproxy.sh, freeradius-proxy.sh --sslkeylog):
#
# build_sslkeylog DIR: builds scripts/sslkeylog.c into DIR/sslkeylog.so
# (needs a C compiler; no OpenSSL headers) and prints its path; on failure
# calls the script's `die` with the compiler's words.
build_sslkeylog() {
    local dir=$1 src out cc
    src=$(dirname "${BASH_SOURCE[0]}")/../sslkeylog.c
    out=$dir/sslkeylog.so
    cc=$(command -v cc || command -v gcc || true)
    [[ -n $cc ]] || die "--sslkeylog needs a C compiler (apt-get install gcc)"
    if ! "$cc" -shared -fPIC -O2 -o "$out" "$src" -ldl 2>"$dir/sslkeylog.build.log"; then
        die "--sslkeylog: building $src failed: $(head -n 3 "$dir/sslkeylog.build.log" | tr '\n' ' ')"
    fi
    echo "$out"
}
