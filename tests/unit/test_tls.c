/*
 * Tests for tls_io_result: real TLS sessions between two ends of a non-blocking
 * socket pair (a throwaway self-signed certificate made here), and a table of
 * what each SSL_read/SSL_write result maps to: bytes, -EAGAIN with the poll event
 * wanted, the caller's clean-close value, or -ECONNRESET.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/tls.h"

static char dir[] = "/tmp/lazaret-test-tls-XXXXXX";
static char cert_path[64], key_path[64];

/* A self-signed P-256 certificate and its key, as PEM files in dir. */
static void make_cert(void)
{
	assert_non_null(mkdtemp(dir));
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	assert_non_null(pk);
	X509 *x = X509_new();
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
	FILE *f = fopen(cert_path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	f = fopen(key_path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
}

struct pair {
	SSL_CTX *sctx, *cctx;
	SSL *server, *client;
	int fd[2];
};

/* A client and a server SSL over a non-blocking socket pair, handshake done. */
static void pair_open(struct pair *p)
{
	char *err = NULL;
	p->sctx = tls_server_context(cert_path, key_path, NULL, &err);
	assert_non_null(p->sctx);
	p->cctx = tls_client_context(NULL, NULL, NULL, false, &err);
	assert_non_null(p->cctx);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
	for (int i = 0; i < 2; i++)
		fcntl(p->fd[i], F_SETFL, fcntl(p->fd[i], F_GETFL) | O_NONBLOCK);
	p->server = SSL_new(p->sctx);
	p->client = SSL_new(p->cctx);
	SSL_set_fd(p->server, p->fd[0]);
	SSL_set_fd(p->client, p->fd[1]);
	SSL_set_accept_state(p->server);
	SSL_set_connect_state(p->client);
	/* The first step of a client alone: it sent its hello and waits to read. */
	short want = 0;
	assert_int_equal(tls_io_result(p->client, SSL_do_handshake(p->client), &want, 0), -EAGAIN);
	assert_int_equal(want, POLLIN);
	int done = 0;
	for (int round = 0; round < 20 && done != 3; round++) {
		if (SSL_do_handshake(p->server) == 1)
			done |= 1;
		if (SSL_do_handshake(p->client) == 1)
			done |= 2;
	}
	assert_int_equal(done, 3);
}

static void pair_close(struct pair *p)
{
	SSL_free(p->server);
	SSL_free(p->client);
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->cctx);
	if (p->fd[0] >= 0)
		close(p->fd[0]);
	close(p->fd[1]);
}

enum tls_case_end {
	END_DATA,	  /* the server sent "hello" */
	END_NOTHING,	  /* the server sent nothing yet */
	END_CLOSE_NOTIFY, /* the server closed the session cleanly */
	END_SOCKET_CLOSED /* the server's socket closed without a close_notify */
};

struct tls_case {
	const char *name;
	enum tls_case_end end;
	ssize_t clean_close; /* the caller's choice */
	ssize_t want_rc;
	short want_event; /* for -EAGAIN */
};

static const struct tls_case tls_cases[] = {
    {"bytes pass through", END_DATA, 0, 5, 0},
    {"nothing to read yet", END_NOTHING, 0, -EAGAIN, POLLIN},
    {"clean close as end of stream", END_CLOSE_NOTIFY, 0, 0, 0},
    {"clean close as a lost connection", END_CLOSE_NOTIFY, -ECONNRESET, -ECONNRESET, 0},
    {"socket closed without close_notify", END_SOCKET_CLOSED, 0, -ECONNRESET, 0},
};

static void test_io_result_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(tls_cases) / sizeof(tls_cases[0]); i++) {
		const struct tls_case *c = &tls_cases[i];
		struct pair p;
		pair_open(&p);
		switch (c->end) {
		case END_DATA:
			assert_int_equal(SSL_write(p.server, "hello", 5), 5);
			break;
		case END_NOTHING:
			break;
		case END_CLOSE_NOTIFY:
			SSL_shutdown(p.server);
			break;
		case END_SOCKET_CLOSED:
			close(p.fd[0]);
			p.fd[0] = -1;
			break;
		}
		char buf[16];
		short want = 0;
		ssize_t rc = tls_io_result(p.client, SSL_read(p.client, buf, sizeof(buf)), &want,
					   c->clean_close);
		if (rc != c->want_rc)
			fail_msg("%s: %zd, want %zd", c->name, rc, c->want_rc);
		if (c->want_rc == -EAGAIN)
			assert_int_equal(want, c->want_event);
		if (c->want_rc > 0)
			assert_memory_equal(buf, "hello", 5);
		/* Whatever went wrong was cleared: nothing left for the next caller. */
		assert_int_equal(ERR_peek_error(), 0);
		pair_close(&p);
	}
}

int main(void)
{
	/* A write to the closed end must fail with EPIPE, as in the daemons. */
	signal(SIGPIPE, SIG_IGN);
	make_cert();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_io_result_table),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(cert_path);
	unlink(key_path);
	rmdir(dir);
	return rc;
}
