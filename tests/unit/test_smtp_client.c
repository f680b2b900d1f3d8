/*
 * Tests for smtp_client: a scripted SMTP server runs in a thread on loopback and
 * answers from a table; the client's result and the bytes the server saw are
 * checked. One test talks to Postfix's smtp-sink when it is installed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/tls.h"
#include "smtp/smtp_client.h"
#include "smtp/smtp_failover.h"

/* Special expectations and replies of a script step. */
#define EXPECT_NOTHING ""	 /* send the reply without reading (the greeting) */
#define EXPECT_DATA    "<data>"	 /* read the message up to the lone dot */
#define REPLY_CLOSE    "<close>" /* close the connection instead of answering */
#define REPLY_HANG     "<hang>"	 /* stop answering; wait for the client to give up */

struct step {
	const char *expect; /* the client line must start with this (case-insensitive) */
	const char *reply;  /* sent as is: include CRLFs */
};

#define SERVER_IO_TIMEOUT_MS 10000

struct script_server {
	int lfd;
	int family;
	unsigned port;
	pthread_t thread;
	const struct step *steps;
	char transcript[16384]; /* client lines, each followed by '\n' */
	unsigned char *data;	/* the DATA bytes as received, final dot included */
	size_t data_len, data_cap;
	char peer[INET6_ADDRSTRLEN];
	char mismatch[8192]; /* first deviation from the script, "" if none */
	char rbuf[8192];
	size_t rlen;
};

/* Reads more bytes into the server's buffer; false on EOF, error or timeout. */
static bool server_fill(struct script_server *s, int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (s->rlen == sizeof(s->rbuf))
		return false;
	if (poll(&p, 1, SERVER_IO_TIMEOUT_MS) <= 0)
		return false;
	ssize_t n = recv(fd, s->rbuf + s->rlen, sizeof(s->rbuf) - s->rlen, 0);
	if (n <= 0)
		return false;
	s->rlen += (size_t)n;
	return true;
}

static bool server_read_line(struct script_server *s, int fd, char *line, size_t cap)
{
	for (;;) {
		char *nl = memchr(s->rbuf, '\n', s->rlen);
		if (nl != NULL) {
			size_t n = (size_t)(nl - s->rbuf) + 1;
			size_t k = n - 1;
			if (k > 0 && s->rbuf[k - 1] == '\r')
				k--;
			if (k >= cap)
				k = cap - 1;
			memcpy(line, s->rbuf, k);
			line[k] = '\0';
			memmove(s->rbuf, s->rbuf + n, s->rlen - n);
			s->rlen -= n;
			return true;
		}
		if (!server_fill(s, fd))
			return false;
	}
}

static void server_data_add(struct script_server *s, const char *p, size_t n)
{
	if (s->data_len + n > s->data_cap) {
		s->data_cap = (s->data_len + n) * 2;
		s->data = realloc(s->data, s->data_cap);
		if (s->data == NULL)
			abort(); /* not a cmocka assert: this runs on the server thread */
	}
	memcpy(s->data + s->data_len, p, n);
	s->data_len += n;
}

/* Reads DATA bytes up to and including CRLF.CRLF, byte for byte. */
static bool server_read_data(struct script_server *s, int fd)
{
	for (;;) {
		for (size_t i = 0; i < s->rlen; i++) {
			server_data_add(s, s->rbuf + i, 1);
			bool end = (s->data_len == 3 && memcmp(s->data, ".\r\n", 3) == 0) ||
				   (s->data_len >= 5 &&
				    memcmp(s->data + s->data_len - 5, "\r\n.\r\n", 5) == 0);
			if (end) {
				memmove(s->rbuf, s->rbuf + i + 1, s->rlen - i - 1);
				s->rlen -= i + 1;
				return true;
			}
		}
		s->rlen = 0;
		if (!server_fill(s, fd))
			return false;
	}
}

static void server_send(int fd, const char *text)
{
	size_t n = strlen(text);
	while (n > 0) {
		ssize_t k = send(fd, text, n, MSG_NOSIGNAL);
		if (k <= 0)
			return;
		text += k;
		n -= (size_t)k;
	}
}

static void *server_thread(void *arg)
{
	struct script_server *s = arg;
	struct pollfd p = {.fd = s->lfd, .events = POLLIN};
	if (poll(&p, 1, SERVER_IO_TIMEOUT_MS) <= 0) {
		snprintf(s->mismatch, sizeof(s->mismatch), "no connection");
		return NULL;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept(s->lfd, (struct sockaddr *)&ss, &sl);
	if (fd < 0)
		return NULL;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, s->peer,
			  sizeof(s->peer));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, s->peer,
			  sizeof(s->peer));
	char line[4096];
	for (const struct step *st = s->steps; st->expect != NULL; st++) {
		if (strcmp(st->expect, EXPECT_DATA) == 0) {
			if (!server_read_data(s, fd)) {
				snprintf(s->mismatch, sizeof(s->mismatch), "message not complete");
				break;
			}
		} else if (st->expect[0] != '\0') {
			if (!server_read_line(s, fd, line, sizeof(line))) {
				if (s->mismatch[0] == '\0')
					snprintf(s->mismatch, sizeof(s->mismatch),
						 "client went away, expected \"%s\"", st->expect);
				break;
			}
			size_t tl = strlen(s->transcript);
			snprintf(s->transcript + tl, sizeof(s->transcript) - tl, "%s\n", line);
			if (strncasecmp(line, st->expect, strlen(st->expect)) != 0 &&
			    s->mismatch[0] == '\0')
				snprintf(s->mismatch, sizeof(s->mismatch),
					 "expected \"%s\", got \"%s\"", st->expect, line);
		}
		if (strcmp(st->reply, REPLY_CLOSE) == 0)
			break;
		if (strcmp(st->reply, REPLY_HANG) == 0) {
			/* Read and ignore until the client closes. */
			char junk[512];
			struct pollfd q = {.fd = fd, .events = POLLIN};
			while (poll(&q, 1, SERVER_IO_TIMEOUT_MS) > 0 &&
			       recv(fd, junk, sizeof(junk), 0) > 0)
				;
			break;
		}
		server_send(fd, st->reply);
	}
	close(fd);
	return NULL;
}

/* Starts a server for one session on 127.0.0.1 (or ::1) port 0. */
static int server_start(struct script_server *s, const struct step *steps, int family)
{
	memset(s, 0, sizeof(*s));
	s->steps = steps;
	s->family = family;
	s->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return -errno;
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		sl = sizeof(*a);
	}
	if (bind(s->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(s->lfd, 8) < 0) {
		int rc = -errno;
		close(s->lfd);
		return rc;
	}
	getsockname(s->lfd, (struct sockaddr *)&ss, &sl);
	s->port = family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
				    : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	assert_int_equal(pthread_create(&s->thread, NULL, server_thread, s), 0);
	return 0;
}

static void server_join(struct script_server *s)
{
	pthread_join(s->thread, NULL);
	close(s->lfd);
}

static void server_free(struct script_server *s)
{
	free(s->data);
	s->data = NULL;
}

static char *server_hostport(const struct script_server *s)
{
	static __thread char buf[64];
	if (s->family == AF_INET6)
		snprintf(buf, sizeof(buf), "[::1]:%u", s->port);
	else
		snprintf(buf, sizeof(buf), "127.0.0.1:%u", s->port);
	return buf;
}

/* A port nothing listens on: bound, then closed. */
static unsigned closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sl), 0);
	getsockname(fd, (struct sockaddr *)&a, &sl);
	close(fd);
	return ntohs(a.sin_port);
}

static const struct smtp_client_options default_opts = {
    .helo_name = "client.test",
    .timeout_ms = 5000,
};

/* ---- table of whole sessions ---- */

#define GREET                                                                                      \
	{                                                                                          \
		EXPECT_NOTHING, "220 srv.test ESMTP\r\n"                                           \
	}
#define EHLO_OK                                                                                    \
	{                                                                                          \
		"EHLO client.test", "250-srv.test\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n"         \
	}
#define MAIL_OK                                                                                    \
	{                                                                                          \
		"MAIL FROM:<s@x.test>", "250 2.1.0 ok\r\n"                                         \
	}
#define RCPT_OK                                                                                    \
	{                                                                                          \
		"RCPT TO:", "250 2.1.5 ok\r\n"                                                     \
	}
#define DATA_OK                                                                                    \
	{                                                                                          \
		"DATA", "354 go ahead\r\n"                                                         \
	}
#define BODY_OK                                                                                    \
	{                                                                                          \
		EXPECT_DATA, "250 2.0.0 queued as Q1\r\n"                                          \
	}
#define QUIT_OK                                                                                    \
	{                                                                                          \
		"QUIT", "221 2.0.0 bye\r\n"                                                        \
	}
#define END_STEP                                                                                   \
	{                                                                                          \
		NULL, NULL                                                                         \
	}

struct want_rcpt {
	enum smtp_client_outcome outcome;
	int code;
	const char *reply; /* exact reply text, or NULL to skip; prefix "~" = substring */
};

struct session_case {
	const char *name;
	struct step script[16];
	const char *rcpts[3];
	size_t nrcpts;
	const char *body;
	int64_t timeout_ms;
	int want_rc;
	int want_session_code;
	const char *want_error;	    /* substring of res.error, or NULL: no error */
	const char *want_lines;	    /* substring of the server's transcript, or NULL */
	const char *unwanted_lines; /* must not be in the transcript, or NULL */
	struct want_rcpt want[3];
	int64_t max_elapsed_ms; /* 0: not checked */
	bool tls;		/* opt.tls_ctx set: STARTTLS required */
};

#define EHLO_STARTTLS                                                                              \
	{                                                                                          \
		"EHLO client.test", "250-srv.test\r\n250-8BITMIME\r\n250 STARTTLS\r\n"             \
	}

static const struct session_case session_cases[] = {
    /* TLS required (the gateway -> manager channel): no transaction in clear, ever. */
    {
	.name = "tls required: no STARTTLS offered, nothing sent",
	.script = {GREET, EHLO_OK, QUIT_OK, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.tls = true,
	.unwanted_lines = "MAIL",
	.want = {{SMTP_CLIENT_DEFERRED, 0, "~does not offer STARTTLS"}},
    },
    {
	.name = "tls required: STARTTLS refused is a deferral, not a rejection",
	.script = {GREET,
		   EHLO_STARTTLS,
		   {"STARTTLS", "454 4.7.0 TLS not available\r\n"},
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.tls = true,
	.unwanted_lines = "MAIL",
	.want = {{SMTP_CLIENT_DEFERRED, 454, "454 4.7.0 TLS not available"},
		 {SMTP_CLIENT_DEFERRED, 454, "454 4.7.0 TLS not available"}},
    },
    {
	.name = "tls required: EHLO refused, no HELO fallback",
	.script = {GREET, {"EHLO", "502 5.5.2 no EHLO\r\n"}, QUIT_OK, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.tls = true,
	.unwanted_lines = "\nHELO",
	.want = {{SMTP_CLIENT_DEFERRED, 502, "~refused EHLO: 502 5.5.2 no EHLO"}},
    },
    {
	.name = "tls required: bytes after the 220 are an injection",
	.script = {GREET,
		   EHLO_STARTTLS,
		   {"STARTTLS", "220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n"},
		   END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.tls = true,
	.want_rc = -EPROTO,
	.want_error = "sent data after its STARTTLS reply",
	.want = {{SMTP_CLIENT_DEFERRED, 0, "~sent data after its STARTTLS reply"}},
    },
    {
	.name = "tls required: a peer that does not speak TLS after 220",
	.script = {GREET, EHLO_STARTTLS, {"STARTTLS", "220 2.0.0 go ahead\r\n"}, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.tls = true,
	.want_rc = -EPROTO,
	.want_error = "TLS with 127.0.0.1:",
	.want = {{SMTP_CLIENT_DEFERRED, 0, "~failed: "}},
    },
    {
	.name = "all accepted",
	.script = {GREET, EHLO_OK, MAIL_OK, RCPT_OK, RCPT_OK, DATA_OK, BODY_OK, QUIT_OK, END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.want_lines = "MAIL FROM:<s@x.test> SIZE=",
	.unwanted_lines = "BODY=8BITMIME",
	.want = {{SMTP_CLIENT_DELIVERED, 250, "250 2.0.0 queued as Q1"},
		 {SMTP_CLIENT_DELIVERED, 250, "250 2.0.0 queued as Q1"}},
    },
    {
	.name = "one recipient 550, one 250",
	.script = {GREET,
		   EHLO_OK,
		   MAIL_OK,
		   {"RCPT TO:<a@y.test>", "550 5.1.1 <a@y.test>: no such user\r\n"},
		   {"RCPT TO:<b@y.test>", "250 2.1.5 ok\r\n"},
		   DATA_OK,
		   BODY_OK,
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.want = {{SMTP_CLIENT_REJECTED, 550, "550 5.1.1 <a@y.test>: no such user"},
		 {SMTP_CLIENT_DELIVERED, 250, "250 2.0.0 queued as Q1"}},
    },
    {
	.name = "RCPT 450 for one",
	.script = {GREET,
		   EHLO_OK,
		   MAIL_OK,
		   {"RCPT TO:<a@y.test>", "250 ok\r\n"},
		   {"RCPT TO:<b@y.test>", "450 4.2.1 mailbox busy\r\n"},
		   DATA_OK,
		   BODY_OK,
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.want = {{SMTP_CLIENT_DELIVERED, 250, "250 2.0.0 queued as Q1"},
		 {SMTP_CLIENT_DEFERRED, 450, "450 4.2.1 mailbox busy"}},
    },
    {
	.name = "every RCPT refused: no DATA",
	.script = {GREET,
		   EHLO_OK,
		   MAIL_OK,
		   {"RCPT TO:", "550 5.1.1 unknown\r\n"},
		   {"RCPT TO:", "451 4.3.0 later\r\n"},
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.unwanted_lines = "DATA",
	.want = {{SMTP_CLIENT_REJECTED, 550, "550 5.1.1 unknown"},
		 {SMTP_CLIENT_DEFERRED, 451, "451 4.3.0 later"}},
    },
    {
	.name = "greeting 554",
	.script = {{EXPECT_NOTHING, "554 5.7.1 no service for you\r\n"}, QUIT_OK, END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.want_session_code = 554,
	.unwanted_lines = "EHLO",
	.want = {{SMTP_CLIENT_REJECTED, 554, "554 5.7.1 no service for you"},
		 {SMTP_CLIENT_REJECTED, 554, "554 5.7.1 no service for you"}},
    },
    {
	.name = "MAIL 451",
	.script = {GREET, EHLO_OK, {"MAIL FROM:", "451 4.3.0 queue full\r\n"}, QUIT_OK, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.want_session_code = 451,
	.unwanted_lines = "RCPT",
	.want = {{SMTP_CLIENT_DEFERRED, 451, "451 4.3.0 queue full"}},
    },
    {
	.name = "MAIL 553",
	.script = {GREET, EHLO_OK, {"MAIL FROM:", "553 5.1.8 bad sender\r\n"}, QUIT_OK, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.want_session_code = 553,
	.want = {{SMTP_CLIENT_REJECTED, 553, "553 5.1.8 bad sender"}},
    },
    {
	.name = "DATA final 552",
	.script = {GREET,
		   EHLO_OK,
		   MAIL_OK,
		   RCPT_OK,
		   RCPT_OK,
		   DATA_OK,
		   {EXPECT_DATA, "552 5.3.4 message too big\r\n"},
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.want = {{SMTP_CLIENT_REJECTED, 552, "552 5.3.4 message too big"},
		 {SMTP_CLIENT_REJECTED, 552, "552 5.3.4 message too big"}},
    },
    {
	.name = "DATA command 451",
	.script = {GREET,
		   EHLO_OK,
		   MAIL_OK,
		   RCPT_OK,
		   {"DATA", "451 4.3.0 try later\r\n"},
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.want = {{SMTP_CLIENT_DEFERRED, 451, "451 4.3.0 try later"}},
    },
    {
	.name = "server closes mid-session",
	.script = {GREET, EHLO_OK, MAIL_OK, RCPT_OK, {"RCPT TO:<b@y.test>", REPLY_CLOSE}, END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.want_rc = -ECONNRESET,
	.want_error = "lost connection with 127.0.0.1:",
	.want = {{SMTP_CLIENT_DEFERRED, 0, "~during RCPT TO"},
		 {SMTP_CLIENT_DEFERRED, 0, "~during RCPT TO"}},
    },
    {
	.name = "server closes before the final reply",
	.script = {GREET, EHLO_OK, MAIL_OK, RCPT_OK, DATA_OK, {EXPECT_DATA, REPLY_CLOSE}, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.want_rc = -ECONNRESET,
	.want_error = "during end of data",
	.want = {{SMTP_CLIENT_DEFERRED, 0, NULL}},
    },
    {
	.name = "multiline replies",
	.script = {{EXPECT_NOTHING, "220-srv.test first\r\n220-second\r\n220 third\r\n"},
		   {"EHLO", "250-srv.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"},
		   MAIL_OK,
		   {"RCPT TO:<a@y.test>",
		    "550-5.7.1 first line\r\n550-5.7.1 second line\r\n550 5.7.1 last line\r\n"},
		   RCPT_OK,
		   DATA_OK,
		   {EXPECT_DATA, "250-2.0.0 accepted\r\n250 2.0.0 queued as M1\r\n"},
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test", "b@y.test"},
	.nrcpts = 2,
	.want = {{SMTP_CLIENT_REJECTED, 550,
		  "550-5.7.1 first line 550-5.7.1 second line 550 5.7.1 last line"},
		 {SMTP_CLIENT_DELIVERED, 250, "250-2.0.0 accepted 250 2.0.0 queued as M1"}},
    },
    {
	.name = "EHLO 502 falls back to HELO",
	.script = {GREET,
		   {"EHLO client.test", "502 5.5.1 command not implemented\r\n"},
		   {"HELO client.test", "250 srv.test\r\n"},
		   {"MAIL FROM:<s@x.test>", "250 ok\r\n"},
		   RCPT_OK,
		   DATA_OK,
		   BODY_OK,
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.body = "Subject: caf\xc3\xa9\r\n\r\n8-bit body \xe3\x81\x82\r\n",
	.unwanted_lines = "BODY=8BITMIME",
	.want = {{SMTP_CLIENT_DELIVERED, 250, "250 2.0.0 queued as Q1"}},
    },
    {
	.name = "EHLO 421 ends the session",
	.script = {GREET, {"EHLO", "421 4.3.2 shutting down\r\n"}, QUIT_OK, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.want_session_code = 421,
	.unwanted_lines = "HELO",
	.want = {{SMTP_CLIENT_DEFERRED, 421, "421 4.3.2 shutting down"}},
    },
    {
	.name = "8-bit body gets BODY=8BITMIME when offered",
	.script = {GREET,
		   EHLO_OK,
		   {"MAIL FROM:<s@x.test> SIZE=", "250 ok\r\n"},
		   RCPT_OK,
		   DATA_OK,
		   BODY_OK,
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.body = "Subject: x\r\n\r\n\x1b$B$3$s$K$A$O\x1b(B \xe3\x81\x82\r\n",
	.want_lines = " BODY=8BITMIME",
	.unwanted_lines = "SMTPUTF8",
	.want = {{SMTP_CLIENT_DELIVERED, 250, NULL}},
    },
    {
	.name = "8-bit byte last in a body of odd length gets BODY=8BITMIME",
	.script = {GREET,
		   EHLO_OK,
		   {"MAIL FROM:<s@x.test> SIZE=", "250 ok\r\n"},
		   RCPT_OK,
		   DATA_OK,
		   BODY_OK,
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.body = "Subject: x\r\n\r\nabcdefgh\xe9",
	.want_lines = " BODY=8BITMIME",
	.want = {{SMTP_CLIENT_DELIVERED, 250, NULL}},
    },
    {
	.name = "8-bit byte first of the third eight gets BODY=8BITMIME",
	.script = {GREET,
		   EHLO_OK,
		   {"MAIL FROM:<s@x.test> SIZE=", "250 ok\r\n"},
		   RCPT_OK,
		   DATA_OK,
		   BODY_OK,
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.body = "Subject: abc\r\n\r\n\x80"
		"bcdefgh\r\n",
	.want_lines = " BODY=8BITMIME",
	.want = {{SMTP_CLIENT_DELIVERED, 250, NULL}},
    },
    {
	.name = "non-ASCII recipient gets SMTPUTF8 when offered",
	.script = {GREET,
		   {"EHLO", "250-srv.test\r\n250 SMTPUTF8\r\n"},
		   MAIL_OK,
		   RCPT_OK,
		   RCPT_OK,
		   DATA_OK,
		   BODY_OK,
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test", "\xe5\xb1\xb1\xe7\x94\xb0@y.test"},
	.nrcpts = 2,
	.want_lines = "MAIL FROM:<s@x.test> SMTPUTF8\n",
	.want = {{SMTP_CLIENT_DELIVERED, 250, NULL}, {SMTP_CLIENT_DELIVERED, 250, NULL}},
    },
    {
	.name = "non-ASCII recipient without SMTPUTF8 is refused locally",
	.script = {GREET,
		   {"EHLO", "250 srv.test\r\n"},
		   MAIL_OK,
		   {"RCPT TO:<a@y.test>", "250 ok\r\n"},
		   DATA_OK,
		   BODY_OK,
		   QUIT_OK,
		   END_STEP},
	.rcpts = {"a@y.test", "\xe5\xb1\xb1\xe7\x94\xb0@y.test"},
	.nrcpts = 2,
	.unwanted_lines = "SMTPUTF8",
	.want = {{SMTP_CLIENT_DELIVERED, 250, NULL},
		 {SMTP_CLIENT_REJECTED, 0, "~SMTPUTF8 is required"}},
    },
    {
	.name = "malformed reply",
	.script = {GREET, {"EHLO", "hello there\r\n"}, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.want_rc = -EPROTO,
	.want_error = "malformed reply with 127.0.0.1:",
	.want = {{SMTP_CLIENT_DEFERRED, 0, NULL}},
    },
    {
	.name = "continuation lines with another code are malformed",
	.script = {GREET, {"EHLO", "250-srv.test\r\n251 odd\r\n"}, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.want_rc = -EPROTO,
	.want_error = "malformed reply with 127.0.0.1:",
	.want = {{SMTP_CLIENT_DEFERRED, 0, NULL}},
    },
    {
	.name = "server stops answering: timeout",
	.script = {GREET, EHLO_OK, {"MAIL FROM:", REPLY_HANG}, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.timeout_ms = 300,
	.want_rc = -ETIMEDOUT,
	.want_error = "timed out with 127.0.0.1:",
	.want = {{SMTP_CLIENT_DEFERRED, 0, "~during MAIL FROM"}},
	.max_elapsed_ms = 2000,
    },
    {
	.name = "silent server: greeting timeout",
	.script = {{EXPECT_NOTHING, REPLY_HANG}, END_STEP},
	.rcpts = {"a@y.test"},
	.nrcpts = 1,
	.timeout_ms = 300,
	.want_rc = -ETIMEDOUT,
	.want_error = "during greeting",
	.want = {{SMTP_CLIENT_DEFERRED, 0, NULL}},
	.max_elapsed_ms = 2000,
    },
};

static void check_reply(const char *want, const char *got)
{
	if (want == NULL)
		return;
	assert_non_null(got);
	if (want[0] == '~') {
		if (strstr(got, want + 1) == NULL)
			fail_msg("reply \"%s\" does not contain \"%s\"", got, want + 1);
	} else {
		assert_string_equal(got, want);
	}
}

static void test_sessions(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(session_cases) / sizeof(session_cases[0]); i++) {
		const struct session_case *tc = &session_cases[i];
		struct script_server srv;
		print_message("case: %s\n", tc->name);
		assert_int_equal(server_start(&srv, tc->script, AF_INET), 0);

		struct smtp_client_options opt = default_opts;
		if (tc->timeout_ms)
			opt.timeout_ms = tc->timeout_ms;
		char *tls_err = NULL;
		if (tc->tls) {
			opt.tls_ctx = tls_client_context(NULL, NULL, NULL, true, &tls_err);
			assert_non_null(opt.tls_ctx);
			free(tls_err);
		}
		const char *body = tc->body ? tc->body : "Subject: hi\r\n\r\nhello\r\n";
		struct smtp_client_message msg = {
		    .sender = "s@x.test",
		    .rcpts = tc->rcpts,
		    .nrcpts = tc->nrcpts,
		    .body = (const unsigned char *)body,
		    .body_len = strlen(body),
		};
		struct smtp_client_result res;
		int64_t t0 = clock_mono_ms();
		int rc = smtp_client_send(server_hostport(&srv), &opt, &msg, &res);
		int64_t elapsed = clock_mono_ms() - t0;
		server_join(&srv);

		if (srv.mismatch[0] != '\0' && tc->want_rc == 0)
			fail_msg("%s: server: %s\ntranscript:\n%s", tc->name, srv.mismatch,
				 srv.transcript);
		assert_int_equal(rc, tc->want_rc);
		assert_true(res.connected);
		assert_int_equal(res.session_code, tc->want_session_code);
		if (tc->want_session_code)
			assert_string_equal(res.session_reply, tc->want[0].reply);
		else
			assert_null(res.session_reply);
		if (tc->want_error) {
			assert_non_null(res.error);
			if (strstr(res.error, tc->want_error) == NULL)
				fail_msg("%s: error \"%s\" lacks \"%s\"", tc->name, res.error,
					 tc->want_error);
		} else {
			assert_null(res.error);
		}
		if (tc->want_lines && strstr(srv.transcript, tc->want_lines) == NULL)
			fail_msg("%s: transcript lacks \"%s\":\n%s", tc->name, tc->want_lines,
				 srv.transcript);
		if (tc->unwanted_lines && strstr(srv.transcript, tc->unwanted_lines) != NULL)
			fail_msg("%s: transcript has \"%s\":\n%s", tc->name, tc->unwanted_lines,
				 srv.transcript);
		assert_int_equal(res.nrcpts, tc->nrcpts);
		for (size_t k = 0; k < tc->nrcpts; k++) {
			assert_int_equal(res.rcpts[k].outcome, tc->want[k].outcome);
			assert_int_equal(res.rcpts[k].code, tc->want[k].code);
			assert_non_null(res.rcpts[k].reply);
			check_reply(tc->want[k].reply, res.rcpts[k].reply);
		}
		if (tc->max_elapsed_ms)
			assert_true(elapsed < tc->max_elapsed_ms);
		if (tc->timeout_ms)
			assert_true(elapsed >= tc->timeout_ms - 20);
		assert_false(res.tls);
		smtp_client_result_free(&res);
		server_free(&srv);
		if (opt.tls_ctx != NULL)
			SSL_CTX_free(opt.tls_ctx);
	}
}

/* ---- the bytes on the wire ---- */

struct encoding_case {
	const char *name;
	const char *header;
	const char *body;
	size_t body_len;  /* 0: strlen(body) */
	const char *want; /* what the server reads after 354, final dot included */
};

static const struct encoding_case encoding_cases[] = {
    {"CRLF kept", NULL, "A: 1\r\n\r\nbody\r\n", 0, "A: 1\r\n\r\nbody\r\n.\r\n"},
    {"bare LF becomes CRLF", NULL, "A: 1\n\nline1\nline2\n", 0,
     "A: 1\r\n\r\nline1\r\nline2\r\n.\r\n"},
    {"bare CR becomes CRLF", NULL, "a\rb\r\r\n", 0, "a\r\nb\r\n\r\n.\r\n"},
    {"missing final line end added", NULL, "A: 1\r\n\r\nno end", 0, "A: 1\r\n\r\nno end\r\n.\r\n"},
    {"trailing CR ends the line", NULL, "x\r", 0, "x\r\n.\r\n"},
    {"leading dots doubled", NULL, ".one\r\n..two\n.\r\nmid.dle\r\n", 0,
     "..one\r\n...two\r\n..\r\nmid.dle\r\n.\r\n"},
    {"dot first in the body", NULL, ".", 0, "..\r\n.\r\n"},
    {"smuggled end of data is stuffed", NULL, "a\r\n.\r\nMAIL FROM:<x@y>\r\n", 0,
     "a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n"},
    {"bare-LF dot line is stuffed", NULL, "a\n.\nb\n", 0, "a\r\n..\r\nb\r\n.\r\n"},
    {"bare-CR dot line is stuffed", NULL, "a\r.\r\n", 0, "a\r\n..\r\n.\r\n"},
    {"empty body", NULL, "", 0, ".\r\n"},
    {"header prepended", "X-Lazaret-Released: m1; 2026-01-01T00:00:00Z\r\n",
     "Subject: s\r\n\r\nb\r\n", 0,
     "X-Lazaret-Released: m1; 2026-01-01T00:00:00Z\r\nSubject: s\r\n\r\nb\r\n.\r\n"},
    {"header with LF and a dot body", "X-A: 1\n", ".b", 0, "X-A: 1\r\n..b\r\n.\r\n"},
    {"NUL bytes pass", NULL, "a\0b\r\n", 5, "a\0b\r\n.\r\n"},
};

static void test_encoding(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(encoding_cases) / sizeof(encoding_cases[0]); i++) {
		const struct encoding_case *tc = &encoding_cases[i];
		const struct step script[] = {GREET,   EHLO_OK, MAIL_OK, RCPT_OK,
					      DATA_OK, BODY_OK, QUIT_OK, END_STEP};
		struct script_server srv;
		print_message("case: %s\n", tc->name);
		assert_int_equal(server_start(&srv, script, AF_INET), 0);
		const char *rcpts[] = {"a@y.test"};
		size_t blen = tc->body_len ? tc->body_len : strlen(tc->body);
		struct smtp_client_message msg = {.sender = "s@x.test",
						  .rcpts = rcpts,
						  .nrcpts = 1,
						  .header = tc->header,
						  .body = (const unsigned char *)tc->body,
						  .body_len = blen};
		struct smtp_client_result res;
		int rc = smtp_client_send(server_hostport(&srv), &default_opts, &msg, &res);
		server_join(&srv);
		assert_int_equal(rc, 0);
		assert_string_equal(srv.mismatch, "");
		assert_int_equal(res.rcpts[0].outcome, SMTP_CLIENT_DELIVERED);
		size_t wlen = strlen(tc->want);
		if (strcmp(tc->name, "NUL bytes pass") == 0)
			wlen = 8;
		assert_int_equal(srv.data_len, wlen);
		assert_memory_equal(srv.data, tc->want, wlen);
		smtp_client_result_free(&res);
		server_free(&srv);
	}
}

/* A body larger than the write chunk, every line starting with a dot. */
static void test_large_body(void **state)
{
	(void)state;
	const size_t lines = 30000;
	const char *line = ".0123456789\n"; /* 12 bytes in, 14 out */
	char *body = malloc(lines * 12 + 1);
	assert_non_null(body);
	for (size_t i = 0; i < lines; i++)
		memcpy(body + i * 12, line, 12);
	const struct step script[] = {GREET,   EHLO_OK, MAIL_OK, RCPT_OK,
				      DATA_OK, BODY_OK, QUIT_OK, END_STEP};
	struct script_server srv;
	assert_int_equal(server_start(&srv, script, AF_INET), 0);
	const char *rcpts[] = {"a@y.test"};
	struct smtp_client_message msg = {.sender = "s@x.test",
					  .rcpts = rcpts,
					  .nrcpts = 1,
					  .body = (const unsigned char *)body,
					  .body_len = lines * 12};
	struct smtp_client_result res;
	assert_int_equal(smtp_client_send(server_hostport(&srv), &default_opts, &msg, &res), 0);
	server_join(&srv);
	assert_int_equal(res.rcpts[0].outcome, SMTP_CLIENT_DELIVERED);
	assert_int_equal(srv.data_len, lines * 14 + 3);
	for (size_t i = 0; i < lines; i++)
		assert_memory_equal(srv.data + i * 14, "..0123456789\r\n", 14);
	assert_memory_equal(srv.data + lines * 14, ".\r\n", 3);
	/* SIZE= counts the message as sent, without the stuffed dots. */
	char want[64];
	snprintf(want, sizeof(want), "SIZE=%zu\n", lines * 13);
	if (strstr(srv.transcript, want) == NULL)
		fail_msg("no %s in:\n%s", want, srv.transcript);
	smtp_client_result_free(&res);
	server_free(&srv);
	free(body);
}

/*
 * The DATA encoding, byte by byte as RFC 5321 says it: every CR, LF or CRLF
 * ends a line with CRLF, a leading dot is doubled, the data ends with the
 * lone dot (after a CRLF when the last line is open). *size is the message
 * size without the stuffed dots. A reference for the encoder's fast path.
 */
static size_t reference_encoding(const unsigned char *in, size_t n, unsigned char *out,
				 size_t *size)
{
	size_t o = 0, stuffed = 0;
	bool bol = true;
	for (size_t i = 0; i < n; i++) {
		if (in[i] == '\r' || in[i] == '\n') {
			if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
			bol = true;
			continue;
		}
		if (bol && in[i] == '.') {
			out[o++] = '.';
			stuffed++;
		}
		out[o++] = in[i];
		bol = false;
	}
	if (!bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	*size = o - stuffed;
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

/* Random bodies of line ends, dots, NULs and text (each a header and a body,
 * cut anywhere) arrive as the reference encodes them, with their SIZE=. */
static void test_encoding_random(void **state)
{
	(void)state;
	static const unsigned char alphabet[] = {'\r', '\n', '.', '\0', 'a', 'b', ' '};
	unsigned seed = 20261206;
	for (int round = 0; round < 150; round++) {
		size_t n = (size_t)(rand_r(&seed) % 400);
		unsigned char *in = malloc(n + 1);
		unsigned char *want = malloc(2 * n + 8);
		assert_non_null(in);
		assert_non_null(want);
		for (size_t i = 0; i < n; i++)
			in[i] = alphabet[rand_r(&seed) % sizeof(alphabet)];
		/* the header is a C string: cut before its first NUL */
		size_t hlen = n > 0 ? (size_t)(rand_r(&seed) % (n + 1)) : 0;
		const unsigned char *nul = memchr(in, '\0', hlen);
		if (nul != NULL)
			hlen = (size_t)(nul - in);
		char *header = strndup((const char *)in, hlen);
		assert_non_null(header);
		size_t size = 0;
		size_t wlen = reference_encoding(in, n, want, &size);

		const struct step script[] = {GREET,   EHLO_OK, MAIL_OK, RCPT_OK,
					      DATA_OK, BODY_OK, QUIT_OK, END_STEP};
		struct script_server srv;
		assert_int_equal(server_start(&srv, script, AF_INET), 0);
		const char *rcpts[] = {"a@y.test"};
		struct smtp_client_message msg = {.sender = "s@x.test",
						  .rcpts = rcpts,
						  .nrcpts = 1,
						  .header = hlen > 0 ? header : NULL,
						  .body = in + hlen,
						  .body_len = n - hlen};
		struct smtp_client_result res;
		int rc = smtp_client_send(server_hostport(&srv), &default_opts, &msg, &res);
		server_join(&srv);
		assert_int_equal(rc, 0);
		assert_string_equal(srv.mismatch, "");
		if (srv.data_len != wlen || memcmp(srv.data, want, wlen) != 0)
			fail_msg("round %d: %zu bytes in, %zu out, %zu wanted", round, n,
				 srv.data_len, wlen);
		char want_size[64];
		snprintf(want_size, sizeof(want_size), "SIZE=%zu\n", size);
		if (strstr(srv.transcript, want_size) == NULL)
			fail_msg("round %d: no %s in:\n%s", round, want_size, srv.transcript);
		smtp_client_result_free(&res);
		server_free(&srv);
		free(header);
		free(want);
		free(in);
	}
}

/* A megabyte of bare CRs (one line end each, no LF anywhere) is encoded in
 * linear time: each CR's search for the next LF is not repeated. */
static void test_encoding_bare_crs(void **state)
{
	(void)state;
	const size_t n = 1 << 20;
	unsigned char *body = malloc(n);
	assert_non_null(body);
	for (size_t i = 0; i < n; i++)
		body[i] = i % 2 == 0 ? 'x' : '\r';
	const struct step script[] = {GREET,   EHLO_OK, MAIL_OK, RCPT_OK,
				      DATA_OK, BODY_OK, QUIT_OK, END_STEP};
	struct script_server srv;
	assert_int_equal(server_start(&srv, script, AF_INET), 0);
	const char *rcpts[] = {"a@y.test"};
	struct smtp_client_message msg = {
	    .sender = "s@x.test", .rcpts = rcpts, .nrcpts = 1, .body = body, .body_len = n};
	struct smtp_client_result res;
	assert_int_equal(smtp_client_send(server_hostport(&srv), &default_opts, &msg, &res), 0);
	server_join(&srv);
	assert_int_equal(res.rcpts[0].outcome, SMTP_CLIENT_DELIVERED);
	assert_int_equal(srv.data_len, n / 2 * 3 + 3);
	for (size_t i = 0; i < n / 2; i++)
		assert_memory_equal(srv.data + i * 3, "x\r\n", 3);
	smtp_client_result_free(&res);
	server_free(&srv);
	free(body);
}

/* ---- connecting ---- */

static void test_connection_refused(void **state)
{
	(void)state;
	unsigned port = closed_port();
	char hostport[64], want[96];
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", port);
	snprintf(want, sizeof(want), "connect to 127.0.0.1:%u: Connection refused", port);
	const char *rcpts[] = {"a@y.test", "b@y.test"};
	struct smtp_client_message msg = {.sender = "",
					  .rcpts = rcpts,
					  .nrcpts = 2,
					  .body = (const unsigned char *)"x\r\n",
					  .body_len = 3};
	struct smtp_client_result res;
	assert_int_equal(smtp_client_send(hostport, &default_opts, &msg, &res), -ECONNREFUSED);
	assert_false(res.connected);
	assert_null(res.peer);
	assert_string_equal(res.error, want);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(res.rcpts[i].outcome, SMTP_CLIENT_DEFERRED);
		assert_int_equal(res.rcpts[i].code, 0);
		assert_string_equal(res.rcpts[i].reply, want);
	}
	smtp_client_result_free(&res);
}

static void test_source_address(void **state)
{
	(void)state;
	const struct step script[] = {GREET,   EHLO_OK, {"MAIL FROM:<>", "250 ok\r\n"},
				      RCPT_OK, DATA_OK, BODY_OK,
				      QUIT_OK, END_STEP};
	const char *sources[] = {"127.0.0.2", "127.0.0.3"};
	for (size_t i = 0; i < 2; i++) {
		struct script_server srv;
		assert_int_equal(server_start(&srv, script, AF_INET), 0);
		const char *rcpts[] = {"a@y.test"};
		struct smtp_client_message msg = {.sender = "",
						  .rcpts = rcpts,
						  .nrcpts = 1,
						  .body = (const unsigned char *)"x\r\n",
						  .body_len = 3};
		struct smtp_client_options opt = default_opts;
		opt.source_address = sources[i];
		struct smtp_client_result res;
		assert_int_equal(smtp_client_send(server_hostport(&srv), &opt, &msg, &res), 0);
		server_join(&srv);
		assert_string_equal(srv.mismatch, "");
		assert_string_equal(srv.peer, sources[i]);
		assert_int_equal(res.rcpts[0].outcome, SMTP_CLIENT_DELIVERED);
		smtp_client_result_free(&res);
		server_free(&srv);
	}
}

static void test_source_address_unusable(void **state)
{
	(void)state;
	const struct {
		const char *source;
		int want_rc;
		const char *want_error;
	} cases[] = {
	    {"192.0.2.1", -EADDRNOTAVAIL, "bind to 192.0.2.1: Cannot assign requested address"},
	    {"not-an-ip", -EINVAL, "invalid source address \"not-an-ip\""},
	};
	unsigned port = closed_port();
	char hostport[64];
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%u", port);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *rcpts[] = {"a@y.test"};
		struct smtp_client_message msg = {
		    .sender = "s@x.test", .rcpts = rcpts, .nrcpts = 1};
		struct smtp_client_options opt = default_opts;
		opt.source_address = cases[i].source;
		struct smtp_client_result res;
		assert_int_equal(smtp_client_send(hostport, &opt, &msg, &res), cases[i].want_rc);
		assert_false(res.connected);
		assert_string_equal(res.error, cases[i].want_error);
		assert_int_equal(res.rcpts[0].outcome, SMTP_CLIENT_DEFERRED);
		smtp_client_result_free(&res);
	}
}

static void test_ipv6(void **state)
{
	(void)state;
	const struct step script[] = {GREET,   EHLO_OK, MAIL_OK, RCPT_OK,
				      DATA_OK, BODY_OK, QUIT_OK, END_STEP};
	struct script_server srv;
	if (server_start(&srv, script, AF_INET6) < 0) {
		skip();
		return;
	}
	const char *rcpts[] = {"a@y.test"};
	struct smtp_client_message msg = {.sender = "s@x.test",
					  .rcpts = rcpts,
					  .nrcpts = 1,
					  .body = (const unsigned char *)"x\r\n",
					  .body_len = 3};
	struct smtp_client_result res;
	assert_int_equal(smtp_client_send(server_hostport(&srv), &default_opts, &msg, &res), 0);
	server_join(&srv);
	char want_peer[64];
	snprintf(want_peer, sizeof(want_peer), "[::1]:%u", srv.port);
	assert_string_equal(res.peer, want_peer);
	assert_string_equal(srv.peer, "::1");
	assert_int_equal(res.rcpts[0].outcome, SMTP_CLIENT_DELIVERED);
	smtp_client_result_free(&res);
	server_free(&srv);
}

/* What the progress callback saw, in order. */
struct progress_log {
	int stages[4];
	size_t nstages;
	enum smtp_client_outcome at_data[2];
	bool data_seen_before_quit; /* the server had the data, not yet QUIT */
	struct script_server *srv;
};

static void progress_record(void *arg, enum smtp_client_stage stage,
			    const struct smtp_client_result *res)
{
	struct progress_log *pl = arg;
	if (pl->nstages < 4)
		pl->stages[pl->nstages++] = (int)stage;
	if (stage == SMTP_CLIENT_AT_DATA_REPLY) {
		for (size_t i = 0; i < 2 && i < res->nrcpts; i++)
			pl->at_data[i] = res->rcpts[i].outcome;
		/* The callback runs before QUIT is written: the server cannot have it. */
		pl->data_seen_before_quit = strstr(pl->srv->transcript, "QUIT") == NULL;
	}
}

static void test_progress(void **state)
{
	(void)state;
	const struct step script[] = {
	    GREET,   EHLO_OK, MAIL_OK, RCPT_OK, {"RCPT TO:", "550 5.1.1 no\r\n"},
	    DATA_OK, BODY_OK, QUIT_OK, END_STEP};
	struct script_server srv;
	assert_int_equal(server_start(&srv, script, AF_INET), 0);
	const char *rcpts[] = {"a@y.test", "b@y.test"};
	struct smtp_client_message msg = {.sender = "s@x.test",
					  .rcpts = rcpts,
					  .nrcpts = 2,
					  .body = (const unsigned char *)"x\r\n",
					  .body_len = 3};
	struct progress_log pl = {.srv = &srv};
	struct smtp_client_options opt = default_opts;
	opt.progress = progress_record;
	opt.progress_arg = &pl;
	struct smtp_client_result res;
	assert_int_equal(smtp_client_send(server_hostport(&srv), &opt, &msg, &res), 0);
	server_join(&srv);
	assert_int_equal(pl.nstages, 2);
	assert_int_equal(pl.stages[0], SMTP_CLIENT_AT_RCPTS_DONE);
	assert_int_equal(pl.stages[1], SMTP_CLIENT_AT_DATA_REPLY);
	assert_int_equal(pl.at_data[0], SMTP_CLIENT_DELIVERED);
	assert_int_equal(pl.at_data[1], SMTP_CLIENT_REJECTED);
	assert_true(pl.data_seen_before_quit);
	assert_non_null(strstr(srv.transcript, "QUIT"));
	smtp_client_result_free(&res);
	server_free(&srv);

	/* Every RCPT refused: no DATA, so neither stage is reached. */
	const struct step refused[] = {GREET,	EHLO_OK, MAIL_OK, {"RCPT TO:", "550 5.1.1 no\r\n"},
				       QUIT_OK, END_STEP};
	assert_int_equal(server_start(&srv, refused, AF_INET), 0);
	struct progress_log none = {.srv = &srv};
	opt.progress_arg = &none;
	msg.nrcpts = 1;
	assert_int_equal(smtp_client_send(server_hostport(&srv), &opt, &msg, &res), 0);
	server_join(&srv);
	assert_int_equal(none.nstages, 0);
	smtp_client_result_free(&res);
	server_free(&srv);
}

/* ---- smtp_failover: the primary, then the secondary for what it deferred ---- */

enum failover_host {
	FO_NONE,   /* not given (NULL) */
	FO_CLOSED, /* a port nothing listens on */
	FO_SCRIPT, /* a scripted server */
};

enum { FO_HOST_NONE, FO_HOST_PRIMARY, FO_HOST_SECONDARY };

struct failover_want {
	enum smtp_client_outcome outcome;
	int host;	       /* FO_HOST_* that decided it */
	const char *reply_sub; /* substring of the reply, or NULL: no reply */
};

struct failover_case {
	const char *name;
	enum failover_host primary_kind, secondary_kind;
	struct step primary[12], secondary[12];
	size_t nrcpts; /* of a@y.test, b@y.test */
	int want_rc;
	struct failover_want want[2];
	size_t want_sessions;	      /* calls of the attempted hook */
	bool want_failing_over;	      /* its flag on the first call */
	size_t want_secondary_n;      /* recipients of the secondary session, 0: none */
	size_t want_secondary_first;  /* the message index of its first recipient */
	const char *secondary_absent; /* must not be in it */
};

static const struct failover_case failover_cases[] = {
    {
	.name = "primary takes all: the secondary is not contacted",
	.primary_kind = FO_SCRIPT,
	.secondary_kind = FO_CLOSED,
	.primary = {GREET, EHLO_OK, MAIL_OK, RCPT_OK, RCPT_OK, DATA_OK, BODY_OK, QUIT_OK, END_STEP},
	.nrcpts = 2,
	.want_rc = 0,
	.want = {{SMTP_CLIENT_DELIVERED, FO_HOST_PRIMARY, "queued as Q1"},
		 {SMTP_CLIENT_DELIVERED, FO_HOST_PRIMARY, "queued as Q1"}},
	.want_sessions = 1,
	.want_failing_over = false,
    },
    {
	.name = "primary down: the secondary gets every recipient",
	.primary_kind = FO_CLOSED,
	.secondary_kind = FO_SCRIPT,
	.secondary = {GREET,
		      EHLO_OK,
		      MAIL_OK,
		      {"RCPT TO:<a@y.test>", "250 ok\r\n"},
		      {"RCPT TO:<b@y.test>", "250 ok\r\n"},
		      DATA_OK,
		      {EXPECT_DATA, "250 2.0.0 queued as S1\r\n"},
		      QUIT_OK,
		      END_STEP},
	.nrcpts = 2,
	.want_rc = 0,
	.want = {{SMTP_CLIENT_DELIVERED, FO_HOST_SECONDARY, "queued as S1"},
		 {SMTP_CLIENT_DELIVERED, FO_HOST_SECONDARY, "queued as S1"}},
	.want_sessions = 2,
	.want_failing_over = true,
	.want_secondary_n = 2,
	.want_secondary_first = 0,
    },
    {
	.name = "a 4xx recipient goes to the secondary, the delivered one does not",
	.primary_kind = FO_SCRIPT,
	.secondary_kind = FO_SCRIPT,
	.primary = {GREET,
		    EHLO_OK,
		    MAIL_OK,
		    {"RCPT TO:<a@y.test>", "250 ok\r\n"},
		    {"RCPT TO:<b@y.test>", "451 4.3.0 try later\r\n"},
		    DATA_OK,
		    BODY_OK,
		    QUIT_OK,
		    END_STEP},
	.secondary = {GREET,
		      EHLO_OK,
		      MAIL_OK,
		      {"RCPT TO:<b@y.test>", "250 ok\r\n"},
		      DATA_OK,
		      {EXPECT_DATA, "250 2.0.0 queued as S1\r\n"},
		      QUIT_OK,
		      END_STEP},
	.nrcpts = 2,
	.want_rc = 0,
	.want = {{SMTP_CLIENT_DELIVERED, FO_HOST_PRIMARY, "queued as Q1"},
		 {SMTP_CLIENT_DELIVERED, FO_HOST_SECONDARY, "queued as S1"}},
	.want_sessions = 2,
	.want_failing_over = true,
	.want_secondary_n = 1,
	.want_secondary_first = 1,
	.secondary_absent = "a@y.test",
    },
    {
	.name = "a 5xx is final: only the 4xx one is tried again, and defers again",
	.primary_kind = FO_SCRIPT,
	.secondary_kind = FO_SCRIPT,
	.primary = {GREET,
		    EHLO_OK,
		    MAIL_OK,
		    {"RCPT TO:<a@y.test>", "550 5.1.1 no such user\r\n"},
		    {"RCPT TO:<b@y.test>", "451 4.3.0 try later\r\n"},
		    QUIT_OK,
		    END_STEP},
	.secondary = {GREET,
		      EHLO_OK,
		      MAIL_OK,
		      {"RCPT TO:<b@y.test>", "452 4.2.2 full\r\n"},
		      QUIT_OK,
		      END_STEP},
	.nrcpts = 2,
	.want_rc = -EAGAIN,
	.want = {{SMTP_CLIENT_REJECTED, FO_HOST_PRIMARY, "550 5.1.1 no such user"},
		 {SMTP_CLIENT_DEFERRED, FO_HOST_SECONDARY, "452 4.2.2 full"}},
	.want_sessions = 2,
	.want_failing_over = true,
	.want_secondary_n = 1,
	.want_secondary_first = 1,
	.secondary_absent = "a@y.test",
    },
    {
	.name = "rejected by the primary: -EPERM, the secondary is not contacted",
	.primary_kind = FO_SCRIPT,
	.secondary_kind = FO_CLOSED,
	.primary = {GREET,
		    EHLO_OK,
		    MAIL_OK,
		    {"RCPT TO:<a@y.test>", "550 5.1.1 no\r\n"},
		    QUIT_OK,
		    END_STEP},
	.nrcpts = 1,
	.want_rc = -EPERM,
	.want = {{SMTP_CLIENT_REJECTED, FO_HOST_PRIMARY, "550 5.1.1 no"}},
	.want_sessions = 1,
	.want_failing_over = false,
    },
    {
	.name = "no secondary: a deferral stays deferred",
	.primary_kind = FO_SCRIPT,
	.secondary_kind = FO_NONE,
	.primary = {GREET,
		    EHLO_OK,
		    MAIL_OK,
		    {"RCPT TO:<a@y.test>", "451 4.3.0 later\r\n"},
		    QUIT_OK,
		    END_STEP},
	.nrcpts = 1,
	.want_rc = -EAGAIN,
	.want = {{SMTP_CLIENT_DEFERRED, FO_HOST_PRIMARY, "451 4.3.0 later"}},
	.want_sessions = 1,
	.want_failing_over = false,
    },
    {
	.name = "no primary: the secondary alone",
	.primary_kind = FO_NONE,
	.secondary_kind = FO_SCRIPT,
	.secondary = {GREET, EHLO_OK, MAIL_OK, RCPT_OK, DATA_OK, BODY_OK, QUIT_OK, END_STEP},
	.nrcpts = 1,
	.want_rc = 0,
	.want = {{SMTP_CLIENT_DELIVERED, FO_HOST_SECONDARY, "queued as Q1"}},
	.want_sessions = 1,
	.want_failing_over = false,
	.want_secondary_n = 1,
	.want_secondary_first = 0,
    },
    {
	.name = "no host at all",
	.primary_kind = FO_NONE,
	.secondary_kind = FO_NONE,
	.nrcpts = 1,
	.want_rc = -EHOSTUNREACH,
	.want = {{SMTP_CLIENT_DEFERRED, FO_HOST_NONE, NULL}},
	.want_sessions = 0,
    },
};

/* What the hooks saw. */
struct failover_log {
	size_t sessions;
	bool first_failing_over;
	size_t secondary_n, secondary_first; /* from the attempted hook */
	size_t data_replies;		     /* progress at SMTP_CLIENT_AT_DATA_REPLY */
	bool progress_mapped;		     /* every progress result matched its idx */
};

static void failover_progress(void *arg, enum smtp_client_stage stage,
			      const struct smtp_failover_session *ss,
			      const struct smtp_client_result *res)
{
	struct failover_log *fl = arg;
	if (stage != SMTP_CLIENT_AT_DATA_REPLY)
		return;
	fl->data_replies++;
	/* The session's result holds its own recipients, in the order idx names them. */
	if (res->nrcpts != ss->n)
		fl->progress_mapped = false;
}

static void failover_attempted(void *arg, const struct smtp_failover_session *ss,
			       const struct smtp_client_result *res, bool failing_over)
{
	struct failover_log *fl = arg;
	if (fl->sessions++ == 0)
		fl->first_failing_over = failing_over;
	if (ss->secondary) {
		fl->secondary_n = ss->n;
		fl->secondary_first = ss->idx[0];
	}
	assert_int_equal(res->nrcpts, ss->n);
}

static void test_failover_table(void **state)
{
	(void)state;
	const char *all[] = {"a@y.test", "b@y.test"};
	for (size_t i = 0; i < sizeof(failover_cases) / sizeof(failover_cases[0]); i++) {
		const struct failover_case *c = &failover_cases[i];
		struct script_server ps, ss;
		char primary[64], secondary[64];
		const char *hosts[2] = {NULL, NULL};
		const enum failover_host kinds[2] = {c->primary_kind, c->secondary_kind};
		struct script_server *srv[2] = {&ps, &ss};
		const struct step *scripts[2] = {c->primary, c->secondary};
		char *bufs[2] = {primary, secondary};
		for (int h = 0; h < 2; h++) {
			if (kinds[h] == FO_SCRIPT) {
				assert_int_equal(server_start(srv[h], scripts[h], AF_INET), 0);
				snprintf(bufs[h], 64, "%s", server_hostport(srv[h]));
			} else if (kinds[h] == FO_CLOSED) {
				snprintf(bufs[h], 64, "127.0.0.1:%u", closed_port());
			}
			hosts[h] = kinds[h] == FO_NONE ? NULL : bufs[h];
		}
		struct smtp_client_message msg = {.sender = "s@x.test",
						  .rcpts = all,
						  .nrcpts = c->nrcpts,
						  .body = (const unsigned char *)"x\r\n",
						  .body_len = 3};
		struct failover_log fl = {.progress_mapped = true};
		struct smtp_failover_hooks hooks = {
		    .progress = failover_progress, .attempted = failover_attempted, .arg = &fl};
		struct smtp_failover_rcpt out[2];
		int rc = smtp_failover_send(hosts[0], hosts[1], &default_opts, &msg, &hooks, out);
		for (int h = 0; h < 2; h++)
			if (kinds[h] == FO_SCRIPT)
				server_join(srv[h]);
		if (rc != c->want_rc)
			fail_msg("%s: rc %d, want %d", c->name, rc, c->want_rc);
		for (size_t k = 0; k < c->nrcpts; k++) {
			const struct failover_want *w = &c->want[k];
			const char *want_host = w->host == FO_HOST_PRIMARY     ? hosts[0]
						: w->host == FO_HOST_SECONDARY ? hosts[1]
									       : NULL;
			if (out[k].outcome != w->outcome || out[k].host != want_host)
				fail_msg("%s: rcpt %zu: %s from %s, want %s from %s", c->name, k,
					 smtp_client_outcome_name(out[k].outcome),
					 out[k].host ? out[k].host : "none",
					 smtp_client_outcome_name(w->outcome),
					 want_host ? want_host : "none");
			if (w->reply_sub == NULL)
				assert_null(out[k].reply);
			else if (out[k].reply == NULL || strstr(out[k].reply, w->reply_sub) == NULL)
				fail_msg("%s: rcpt %zu: reply \"%s\", want \"%s\" in it", c->name,
					 k, out[k].reply ? out[k].reply : "(null)", w->reply_sub);
		}
		if (fl.sessions != c->want_sessions ||
		    fl.first_failing_over != c->want_failing_over)
			fail_msg("%s: %zu sessions (failing over %d), want %zu (%d)", c->name,
				 fl.sessions, fl.first_failing_over, c->want_sessions,
				 c->want_failing_over);
		assert_int_equal(fl.secondary_n, c->want_secondary_n);
		if (c->want_secondary_n > 0)
			assert_int_equal(fl.secondary_first, c->want_secondary_first);
		assert_true(fl.progress_mapped);
		for (int h = 0; h < 2; h++) {
			if (kinds[h] != FO_SCRIPT)
				continue;
			if (srv[h]->mismatch[0] != '\0')
				fail_msg("%s: %s server: %s", c->name,
					 h == 0 ? "primary" : "secondary", srv[h]->mismatch);
			server_free(srv[h]);
		}
		if (c->secondary_absent != NULL)
			assert_null(strstr(ss.transcript, c->secondary_absent));
		smtp_failover_rcpts_free(out, c->nrcpts);
		for (size_t k = 0; k < c->nrcpts; k++)
			assert_null(out[k].reply);
	}
	/* No recipient: nothing to send. */
	struct smtp_client_message none = {.sender = "s@x.test"};
	struct smtp_failover_rcpt out[1];
	assert_int_equal(smtp_failover_send("127.0.0.1:1", NULL, &default_opts, &none, NULL, out),
			 -EINVAL);
}

static void test_session_cap(void **state)
{
	(void)state;
	const struct step script[] = {GREET, EHLO_OK, {"MAIL FROM:", REPLY_HANG}, END_STEP};
	struct script_server srv;
	assert_int_equal(server_start(&srv, script, AF_INET), 0);
	const char *rcpts[] = {"a@y.test"};
	struct smtp_client_message msg = {.sender = "s@x.test",
					  .rcpts = rcpts,
					  .nrcpts = 1,
					  .body = (const unsigned char *)"x\r\n",
					  .body_len = 3};
	struct smtp_client_options opt = default_opts;
	opt.timeout_ms = 10000;
	opt.session_timeout_ms = 300;
	struct smtp_client_result res;
	int64_t t0 = clock_mono_ms();
	assert_int_equal(smtp_client_send(server_hostport(&srv), &opt, &msg, &res), -ETIMEDOUT);
	int64_t elapsed = clock_mono_ms() - t0;
	server_join(&srv);
	assert_true(elapsed >= 280 && elapsed < 3000);
	assert_int_equal(res.rcpts[0].outcome, SMTP_CLIENT_DEFERRED);
	smtp_client_result_free(&res);
	server_free(&srv);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	const char *evil[] = {"a@y.test>\r\nRCPT TO:<b@y.test"};
	const char *good[] = {"a@y.test"};
	struct {
		const char *sender;
		const char *const *rcpts;
		size_t nrcpts;
		const char *host;
	} cases[] = {
	    {"s@x.test", good, 0, "127.0.0.1:25"},
	    {"s@x.test", evil, 1, "127.0.0.1:25"},
	    {"s@x.test\r\nDATA", good, 1, "127.0.0.1:25"},
	    {"s@x.test", good, 1, "127.0.0.1:notaport"},
	    {"s@x.test", good, 1, "::1:25"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_client_message msg = {
		    .sender = cases[i].sender, .rcpts = cases[i].rcpts, .nrcpts = cases[i].nrcpts};
		struct smtp_client_result res;
		assert_int_equal(smtp_client_send(cases[i].host, &default_opts, &msg, &res),
				 -EINVAL);
		assert_false(res.connected);
		assert_non_null(res.error);
		assert_int_equal(res.nrcpts, cases[i].nrcpts);
		for (size_t k = 0; k < res.nrcpts; k++)
			assert_int_equal(res.rcpts[k].outcome, SMTP_CLIENT_DEFERRED);
		smtp_client_result_free(&res);
	}
}

static void test_parse_hostport(void **state)
{
	(void)state;
	const struct {
		const char *in;
		int rc;
		const char *host;
		unsigned port;
	} cases[] = {
	    {"127.0.0.1:10025", 0, "127.0.0.1", 10025},
	    {"[::1]:2525", 0, "::1", 2525},
	    {"[::1]", 0, "::1", 25},
	    {"mx.example.jp", 0, "mx.example.jp", 25},
	    {"mx.example.jp:587", 0, "mx.example.jp", 587},
	    {"::1", -EINVAL, NULL, 0},
	    {"host:", -EINVAL, NULL, 0},
	    {"host:0", -EINVAL, NULL, 0},
	    {"host:65536", -EINVAL, NULL, 0},
	    {"host:12x", -EINVAL, NULL, 0},
	    {":25", -EINVAL, NULL, 0},
	    {"[::1", -EINVAL, NULL, 0},
	    {"[::1]x", -EINVAL, NULL, 0},
	    {"", -EINVAL, NULL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *host = NULL;
		unsigned port = 0;
		assert_int_equal(smtp_client_parse_hostport(cases[i].in, &host, &port),
				 cases[i].rc);
		if (cases[i].rc == 0) {
			assert_string_equal(host, cases[i].host);
			assert_int_equal(port, cases[i].port);
		} else {
			assert_null(host);
		}
		free(host);
	}
}

/* ---- a real peer: Postfix's smtp-sink ---- */

static bool file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return false;
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

static bool find_dump(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || e->d_name[1] == '.'))
			continue;
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			found = find_dump(path, needle);
		else
			found = file_contains(path, needle);
	}
	closedir(d);
	return found;
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || e->d_name[1] == '.'))
			continue;
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			remove_tree(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static void test_smtp_sink(void **state)
{
	(void)state;
	const char *sink = "/usr/sbin/smtp-sink";
	if (access(sink, X_OK) != 0) {
		print_message("smtp-sink not installed: skipped\n");
		skip();
		return;
	}
	char dir[] = "/tmp/lazaret-sink-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char tmpl[600], listen_at[64];
	snprintf(tmpl, sizeof(tmpl), "%s/%%M.", dir);
	unsigned port = closed_port();
	snprintf(listen_at, sizeof(listen_at), "127.0.0.1:%u", port);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (getuid() == 0)
			execl(sink, "smtp-sink", "-u", "root", "-d", tmpl, listen_at, "10",
			      (char *)NULL);
		else
			execl(sink, "smtp-sink", "-d", tmpl, listen_at, "10", (char *)NULL);
		_exit(127);
	}
	/* Wait until it listens. */
	bool up = false;
	for (int i = 0; i < 100 && !up; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		up = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(fd);
		if (!up)
			usleep(50000);
	}
	if (!up) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		remove_tree(dir);
		fail_msg("smtp-sink did not start on %s", listen_at);
	}
	const char *rcpts[] = {"a@y.test", "b@y.test"};
	const char *body = "Subject: sink test\n\n.dot line\nmarker-7f3a9c\n";
	struct smtp_client_message msg = {.sender = "s@x.test",
					  .rcpts = rcpts,
					  .nrcpts = 2,
					  .header =
					      "X-Lazaret-Released: test; 2026-01-01T00:00:00Z\r\n",
					  .body = (const unsigned char *)body,
					  .body_len = strlen(body)};
	struct smtp_client_result res;
	int rc = smtp_client_send(listen_at, &default_opts, &msg, &res);
	bool found = false;
	for (int i = 0; i < 50 && !found; i++) {
		found = find_dump(dir, "marker-7f3a9c");
		if (!found)
			usleep(50000);
	}
	bool header_found = find_dump(dir, "X-Lazaret-Released: test; 2026-01-01T00:00:00Z");
	/* smtp-sink removes the stuffed dot: the line arrives as it was. */
	bool dot_found = find_dump(dir, "\n.dot line") && !find_dump(dir, "..dot line");
	bool rcpts_found = find_dump(dir, "X-Rcpt-Args: <a@y.test>") &&
			   find_dump(dir, "X-Rcpt-Args: <b@y.test>") &&
			   find_dump(dir, "X-Mail-Args: <s@x.test>");
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	remove_tree(dir);
	assert_int_equal(rc, 0);
	assert_true(res.esmtp);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(res.rcpts[i].outcome, SMTP_CLIENT_DELIVERED);
		assert_int_equal(res.rcpts[i].code, 250);
	}
	assert_true(found);
	assert_true(header_found);
	assert_true(dot_found);
	assert_true(rcpts_found);
	smtp_client_result_free(&res);
}

/*
 * The reply parser on its own: each case is the lines of one reply (the client
 * reads them one by one, without line ends), the return code of the last line fed
 * (feeding stops at the first that is not 1), the code and text of the reply.
 */
static void test_reply_line_table(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		const char *lines[6]; /* NULL-terminated */
		int rc;
		int code;
		const char *text;
	} cases[] = {
	    {"one line", {"250 2.1.0 Ok", NULL}, 0, 250, "250 2.1.0 Ok"},
	    {"code only", {"221", NULL}, 0, 221, "221"},
	    {"multiline",
	     {"450-4.2.0 <u@example.jp>: Greylisted,", "450-4.2.0 see the site",
	      "450 4.2.0 try again later", NULL},
	     0,
	     450,
	     "450-4.2.0 <u@example.jp>: Greylisted, 450-4.2.0 see the site 450 4.2.0 try again "
	     "later"},
	    {"multiline not finished",
	     {"250-first", "250-second", NULL},
	     1,
	     250,
	     "250-first 250-second"},
	    {"codes differ", {"250-first", "251 second", NULL}, -EPROTO, 250, "250-first"},
	    {"letter in code", {"25O oops", NULL}, -EPROTO, 0, ""},
	    {"1xx is not a reply", {"150 x", NULL}, -EPROTO, 0, ""},
	    {"6xx is not a reply", {"600 x", NULL}, -EPROTO, 0, ""},
	    {"bad separator", {"250_x", NULL}, -EPROTO, 0, ""},
	    {"too short", {"25", NULL}, -EPROTO, 0, ""},
	    {"empty", {"", NULL}, -EPROTO, 0, ""},
	    {"non-ASCII text kept as ?",
	     {"550 5.1.1 \xe5\xae\x9b\xe5\x85\x88 \x1b[1m", NULL},
	     0,
	     550,
	     "550 5.1.1 ?????? ?[1m"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code = 0, rc = 1;
		char text[SMTP_CLIENT_REPLY_TEXT_MAX] = "left over";
		for (unsigned k = 0; cases[i].lines[k] != NULL && rc == 1; k++)
			rc = smtp_client_reply_line(cases[i].lines[k], k, &code, text, sizeof(text),
						    NULL);
		if (rc != cases[i].rc || code != cases[i].code ||
		    (rc >= 0 || code != 0 ? strcmp(text, cases[i].text) != 0 : false))
			fail_msg("%s: rc %d code %d text \"%s\"", cases[i].what, rc, code, text);
	}

	/* The text is cut at its capacity, the code stays right. */
	char small[12];
	int code = 0;
	assert_int_equal(smtp_client_reply_line("250-mx.example.jp welcomes", 0, &code, small,
						sizeof(small), NULL),
			 1);
	assert_int_equal(smtp_client_reply_line("250 more", 1, &code, small, sizeof(small), NULL),
			 0);
	assert_int_equal(code, 250);
	assert_string_equal(small, "250-mx.exam");

	/* EHLO: extensions from the lines after the first, names case-insensitive. */
	struct smtp_client_result ehlo = {0};
	char text[SMTP_CLIENT_REPLY_TEXT_MAX];
	static const char *const lines[] = {"250-SMTPUTF8 greeting", "250-8bitmime",
					    "250-SIZE 1000", "250-SMTPUTF8X", "250 PIPELINING"};
	for (unsigned k = 0; k < 5; k++)
		assert_int_equal(
		    smtp_client_reply_line(lines[k], k, &code, text, sizeof(text), &ehlo),
		    k < 4 ? 1 : 0);
	assert_true(ehlo.ext_8bitmime && ehlo.ext_size && ehlo.ext_pipelining);
	assert_false(ehlo.ext_smtputf8);
}

/* ---- one session, many transactions (smtp_client_session_*) ---- */

static void test_session_reuse(void **state)
{
	(void)state;
	struct script_server srv;
	/* one connection: a transaction, RSET, a refused one, RSET, a deferred one, QUIT */
	const struct step script[] = {GREET,
				      EHLO_OK,
				      MAIL_OK,
				      RCPT_OK,
				      DATA_OK,
				      BODY_OK,
				      {"RSET", "250 2.0.0 ok\r\n"},
				      MAIL_OK,
				      RCPT_OK,
				      DATA_OK,
				      {EXPECT_DATA, "554 5.7.0 not this one\r\n"},
				      {"RSET", "250 2.0.0 ok\r\n"},
				      MAIL_OK,
				      {"RCPT TO:", "451 4.3.0 later\r\n"},
				      QUIT_OK,
				      END_STEP};
	assert_int_equal(server_start(&srv, script, AF_INET), 0);
	struct smtp_client_session *sess = NULL;
	int code = -1;
	char *why = NULL;
	assert_int_equal(
	    smtp_client_session_open(server_hostport(&srv), &default_opts, &sess, &code, &why), 0);
	assert_non_null(sess);
	assert_null(why);
	const char *rcpts[] = {"a@y.test"};
	const char *body = "Subject: hi\r\n\r\nhello\r\n";
	struct smtp_client_message msg = {.sender = "s@x.test",
					  .rcpts = rcpts,
					  .nrcpts = 1,
					  .body = (const unsigned char *)body,
					  .body_len = strlen(body)};
	const enum smtp_client_outcome want[] = {SMTP_CLIENT_DELIVERED, SMTP_CLIENT_REJECTED,
						 SMTP_CLIENT_DEFERRED};
	const int want_code[] = {250, 554, 451};
	for (size_t i = 0; i < 3; i++) {
		struct smtp_client_result res;
		assert_int_equal(smtp_client_session_send(sess, &msg, &res), 0);
		assert_int_equal(res.nrcpts, 1);
		assert_int_equal(res.rcpts[0].outcome, want[i]);
		assert_int_equal(res.rcpts[0].code, want_code[i]);
		smtp_client_result_free(&res);
	}
	smtp_client_session_close(sess);
	server_join(&srv);
	if (srv.mismatch[0] != '\0')
		fail_msg("server: %s\ntranscript:\n%s", srv.mismatch, srv.transcript);
	server_free(&srv);

	/* a greeting that refuses: no session, the code and text said */
	const struct step refuse[] = {
	    {EXPECT_NOTHING, "554 5.7.1 not registered\r\n"}, QUIT_OK, END_STEP};
	assert_int_equal(server_start(&srv, refuse, AF_INET), 0);
	assert_int_equal(
	    smtp_client_session_open(server_hostport(&srv), &default_opts, &sess, &code, &why),
	    -ECONNREFUSED);
	assert_null(sess);
	assert_int_equal(code, 554);
	assert_string_equal(why, "554 5.7.1 not registered");
	free(why);
	server_join(&srv);
	server_free(&srv);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_hostport),
	    cmocka_unit_test(test_bad_arguments),
	    cmocka_unit_test(test_reply_line_table),
	    cmocka_unit_test(test_sessions),
	    cmocka_unit_test(test_encoding),
	    cmocka_unit_test(test_large_body),
	    cmocka_unit_test(test_encoding_random),
	    cmocka_unit_test(test_encoding_bare_crs),
	    cmocka_unit_test(test_connection_refused),
	    cmocka_unit_test(test_source_address),
	    cmocka_unit_test(test_source_address_unusable),
	    cmocka_unit_test(test_ipv6),
	    cmocka_unit_test(test_session_cap),
	    cmocka_unit_test(test_smtp_sink),
	    cmocka_unit_test(test_progress),
	    cmocka_unit_test(test_failover_table),
	    cmocka_unit_test(test_session_reuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
