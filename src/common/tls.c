/*
 * tls — the daemons' one TLS policy (see tls.h): contexts for servers and
 * clients, host name expectations, and readable failure reasons.
 *
 * Why these defaults: TLS 1.0/1.1 are deprecated (RFC 8996); the TLS 1.2 list
 * keeps only suites with forward secrecy and authenticated encryption, which
 * every client of the last decade speaks. Compression (CRIME) and renegotiation
 * (a denial-of-service lever) are off. Not for: I/O of any kind.
 */
#include "common/tls.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/unconst.h"
#include "common/xalloc.h"

/* The options every context gets, server or client. */
static int tls_apply_policy(SSL_CTX *ctx)
{
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		return -EINVAL;
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_TLS12) != 1)
		return -EINVAL;
	return 0;
}

/* OpenSSL's reason for the last failure ("key values mismatch"), or "unknown error". */
static const char *tls_last_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());
	return r != NULL ? r : "unknown error";
}

/* Loads a certificate chain and its key into ctx; NULL or a new message. */
static char *tls_load_pair(SSL_CTX *ctx, const char *cert, const char *key)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		return xasprintf("cannot load TLS certificate %s: %s", cert, tls_last_reason());
	/* This also checks that the key is the certificate's ("key values mismatch"). */
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		return xasprintf("cannot load TLS key %s: %s", key, tls_last_reason());
	if (SSL_CTX_check_private_key(ctx) != 1)
		return xasprintf("TLS key %s does not match certificate %s", key, cert);
	return NULL;
}

SSL_CTX *tls_server_context(const char *cert, const char *key, const char *client_ca, char **err)
{
	*err = NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*err = xstrdup("cannot create a TLS context");
		return NULL;
	}
	if (tls_apply_policy(ctx) < 0) {
		*err = xstrdup("cannot apply the TLS policy");
		goto fail;
	}
	if ((*err = tls_load_pair(ctx, cert, key)) != NULL)
		goto fail;
	if (client_ca != NULL) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
		if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1 || names == NULL) {
			if (names != NULL)
				sk_X509_NAME_pop_free(names, X509_NAME_free);
			*err =
			    xasprintf("cannot load client CA %s: %s", client_ca, tls_last_reason());
			goto fail;
		}
		/* The names go into the CertificateRequest, so clients pick the right cert. */
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	ERR_clear_error();
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_client_context(const char *ca_file, const char *cert, const char *key, bool verify,
			    char **err)
{
	*err = NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*err = xstrdup("cannot create a TLS context");
		return NULL;
	}
	if (tls_apply_policy(ctx) < 0) {
		*err = xstrdup("cannot apply the TLS policy");
		goto fail;
	}
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			*err = xasprintf("cannot load CA file %s: %s", ca_file, tls_last_reason());
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		*err = xstrdup("cannot load the system's CA certificates");
		goto fail;
	}
	if ((cert == NULL) != (key == NULL)) {
		*err = xstrdup("a client certificate needs both certificate and key");
		goto fail;
	}
	if (cert != NULL && (*err = tls_load_pair(ctx, cert, key)) != NULL)
		goto fail;
	SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	ERR_clear_error();
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_client_expect_host(SSL *ssl, const char *host)
{
	if (host == NULL || *host == '\0')
		return 0;
	/* A bracketed IPv6 literal ("[::1]") is matched without its brackets. */
	char bare[256];
	size_t n = strlen(host);
	if (host[0] == '[' && n > 2 && host[n - 1] == ']' && n - 2 < sizeof(bare)) {
		memcpy(bare, host + 1, n - 2);
		bare[n - 2] = '\0';
		host = bare;
	}
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	/* X509_VERIFY_PARAM_set1_ip_asc fails for anything but an IP literal. */
	if (X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1)
		return 0;
	ERR_clear_error();
	X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	/* The SNI macro casts its argument to void *; OpenSSL copies the name. */
	if (SSL_set1_host(ssl, host) != 1 || SSL_set_tlsext_host_name(ssl, unconst(host)) != 1)
		return -ENOMEM;
	return 0;
}

const char *tls_error_text(SSL *ssl, char *buf, size_t len)
{
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	unsigned long e = ERR_peek_error();
	if (vr != X509_V_OK) {
		snprintf(buf, len, "certificate verify failed: %s",
			 X509_verify_cert_error_string(vr));
	} else if (e != 0) {
		ERR_error_string_n(e, buf, len);
	} else {
		snprintf(buf, len, "handshake failed");
	}
	ERR_clear_error();
	return buf;
}

ssize_t tls_io_result(SSL *ssl, int r, short *want, ssize_t clean_close)
{
	if (r > 0)
		return r;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*want = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return clean_close;
	default:
		ERR_clear_error();
		return -ECONNRESET;
	}
}
