/*
 * tls — the OpenSSL contexts every TLS endpoint of the daemons uses, built in one
 * place so that they all follow one policy: TLS 1.2 or newer, no compression, no
 * renegotiation, for TLS 1.2 only forward-secret AEAD suites (ECDHE/DHE with
 * AES-GCM or ChaCha20-Poly1305), TLS 1.3 with OpenSSL's default suites. Clients
 * verify the peer's certificate and host name unless told not to.
 *
 * Not for: I/O. The HTTP server, the SMTP listener and client, and the IMAP reader
 * drive their SSL objects themselves.
 */
#ifndef LAZARET_TLS_H
#define LAZARET_TLS_H

#include <stdbool.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* The TLS 1.2 cipher list (TLS 1.3 suites are OpenSSL's defaults). */
#define TLS_CIPHERS_TLS12                                                                          \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
	"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"   \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

/*
 * A server context with certificate chain cert and key (PEM paths). client_ca
 * (PEM path, may be NULL): when set, a client must present a certificate that
 * chains to it, else the handshake fails. Returns a new context (SSL_CTX_free), or
 * NULL with *err a new message naming the file at fault (caller frees).
 */
SSL_CTX *tls_server_context(const char *cert, const char *key, const char *client_ca, char **err);

/*
 * A client context. ca_file (PEM path) is the trust anchor; NULL: the system's
 * default store. cert/key (PEM paths, both or neither): a client certificate.
 * verify false turns off certificate checks (only for operators who say so).
 * Returns a new context, or NULL with *err set (caller frees).
 */
SSL_CTX *tls_client_context(const char *ca_file, const char *cert, const char *key, bool verify,
			    char **err);

/*
 * Prepares ssl (from a client context) for a server named host: SNI when host is
 * a name, and the certificate must match host (DNS name, or IP address in the
 * subjectAltName when host is a literal address). 0 or -ENOMEM.
 */
int tls_client_expect_host(SSL *ssl, const char *host);

/*
 * Why a handshake failed, for logs: the verification result when the peer's
 * certificate was refused ("certificate verify failed: unable to get local issuer
 * certificate"), else the OpenSSL error queue's first entry, else "handshake
 * failed". Clears the error queue. Writes into buf, returns buf.
 */
const char *tls_error_text(SSL *ssl, char *buf, size_t len);

/*
 * What an SSL_read/SSL_write result r on a non-blocking socket means: r > 0 bytes
 * pass through; wanting to read or write is -EAGAIN with *want the poll event
 * (POLLIN, POLLOUT); a session the peer closed cleanly (close_notify) is
 * clean_close, the caller's choice (0 to see it as an end of stream, -ECONNRESET
 * to see it as any other loss); anything else is -ECONNRESET, with OpenSSL's error
 * queue cleared.
 */
ssize_t tls_io_result(SSL *ssl, int r, short *want, ssize_t clean_close);

#endif
