/*
 * sslkeylog.so: makes a program linked against OpenSSL 1.1.1/3.x write its
 * TLS secrets to $SSLKEYLOGFILE in the NSS key log format, so that tshark
 * (-o tls.keylog_file:FILE) decrypts its traffic. For test captures only:
 * whoever reads the file reads the traffic.
 *
 * OpenSSL 3.0 (Debian 12) does not honour SSLKEYLOGFILE by itself (3.5
 * does), and neither radsecproxy 1.9 nor FreeRADIUS 3.2 has a key log
 * option; this library, preloaded, installs OpenSSL's key log callback on
 * every SSL_CTX the program makes a connection from.
 *
 *   cc -shared -fPIC -O2 -o sslkeylog.so scripts/sslkeylog.c -ldl
 *   SSLKEYLOGFILE=/tmp/keys LD_PRELOAD=$PWD/sslkeylog.so radsecproxy -f -c conf
 *
 * scripts/radsecproxy.sh --sslkeylog FILE builds and preloads it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Declared here rather than taken from <openssl/ssl.h>, so that the
 * library builds without the OpenSSL headers; the program under test
 * brings libssl, and these resolve against it at run time. */
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef void (*keylog_cb)(const SSL *, const char *);
void SSL_CTX_set_keylog_callback(SSL_CTX *ctx, keylog_cb cb);

static void write_line(const SSL *ssl, const char *line) {
    (void)ssl;
    const char *path = getenv("SSLKEYLOGFILE");
    if (!path || !*path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    size_t len = strlen(line);
    char *buf = malloc(len + 1);
    if (buf) {
        /* One write per line: O_APPEND keeps concurrent threads' lines whole. */
        memcpy(buf, line, len);
        buf[len] = '\n';
        ssize_t ignored = write(fd, buf, len + 1);
        (void)ignored;
        free(buf);
    }
    close(fd);
}

SSL *SSL_new(SSL_CTX *ctx) {
    static SSL *(*real)(SSL_CTX *);
    if (!real)
        real = (SSL * (*)(SSL_CTX *)) dlsym(RTLD_NEXT, "SSL_new");
    if (ctx)
        SSL_CTX_set_keylog_callback(ctx, write_line);
    return real ? real(ctx) : NULL;
}
