/*
 * Tests for the gateway's scanning engines: the builtin rules engine (parsing with
 * FILE:LINE errors, scoring, GTUBE, Japanese subjects in every header encoding)
 * and the spamd, rspamd and clamd clients against scripted fake daemons that run
 * in a thread on loopback (TCP, and a unix socket for spamd).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/log.h"
#include "gateway/antispam.h"
#include "gateway/antispam_int.h"
#include "mime/msgmeta.h"
#include "gateway/antivirus.h"

#define GTUBE "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

/* ---- helpers ------------------------------------------------------------------------- */

static char tmpdir[] = "/tmp/lz-gw-engines-XXXXXX";

static int setup_tmpdir(void **state)
{
	(void)state;
	log_init("test_gw_engines", LOG_LEVEL_ERROR);
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown_tmpdir(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* Writes text to a new file in tmpdir; returns its path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static struct antispam_rules *load_rules_text(const char *text)
{
	struct antispam_rules *r = NULL;
	char *err = NULL;
	int rc = antispam_rules_load(write_file("rules", text), &r, &err);
	if (rc != 0)
		fail_msg("rules did not load: %s", err ? err : "?");
	return r;
}

/*
 * Scores msg, and checks that a caller handing in headers it already parsed
 * (antispam_builtin_scan_meta), also with GMime's parse kept for the text parts
 * (msgmeta_parse_kept, as the gateway pipeline does), gets the same result.
 */
static void scan_text(const struct antispam_rules *r, const char *msg, struct antispam_result *res)
{
	const unsigned char *data = (const unsigned char *)msg;
	assert_int_equal(antispam_builtin_scan(r, data, strlen(msg), res), 0);
	for (int kept = 0; kept < 2; kept++) {
		struct msgmeta *meta = NULL;
		assert_int_equal(kept ? msgmeta_parse_kept(data, strlen(msg), &meta)
				      : msgmeta_parse(data, strlen(msg), &meta),
				 0);
		if (!kept)
			assert_null(msgmeta_mime(meta));
		struct antispam_result again = {0};
		assert_int_equal(antispam_builtin_scan_meta(r, data, strlen(msg), meta, &again), 0);
		assert_true(again.score == res->score);
		assert_string_equal(again.detail != NULL ? again.detail : "",
				    res->detail != NULL ? res->detail : "");
		antispam_result_clear(&again);
		msgmeta_free(meta);
	}
}

/* ---- rules parsing --------------------------------------------------------------------- */

static void test_rules_good(void **state)
{
	(void)state;
	struct antispam_rules *r =
	    load_rules_text("# a comment\n"
			    "\n"
			    "   # an indented comment\n"
			    "header Subject =~ /viagra/i score 3.5 name SUBJ_VIAGRA\n"
			    "body =~ /click here/ score 1.0 name BODY_CLICK   # trailing comment\n"
			    "uri =~ /^https?:\\/\\/[0-9.]+\\// score 1.5\r\n"
			    "header X-Mailer =~ /(?i)bulk/ name BULK score -0.5\n"
			    "\theader ALL =~ /^Received: / score 0.1 name ANY_RECEIVED");
	assert_int_equal(antispam_rules_count(r), 5);
	antispam_rules_free(r);

	/* NULL path: no rules, GTUBE only. */
	char *err = NULL;
	assert_int_equal(antispam_rules_load(NULL, &r, &err), 0);
	assert_null(err);
	assert_int_equal(antispam_rules_count(r), 0);
	antispam_rules_free(r);
	antispam_rules_free(NULL);
}

struct bad_rules_case {
	const char *text;
	const char *want; /* after "FILE" */
};

static void test_rules_errors(void **state)
{
	(void)state;
	static const struct bad_rules_case cases[] = {
	    {"# c\n\nbogus =~ /x/ score 1\n", ":3: unknown rule type \"bogus\""},
	    {"header =~ /x/ score 1\n", ":1: expected a header field name"},
	    {"body ~ /x/ score 1\n", ":1: expected =~"},
	    {"body =~ x score 1\n", ":1: expected /REGEX/"},
	    {"body =~ /abc score 1\n", ":1: unterminated regular expression"},
	    {"body =~ /abc/x score 1\n", ":1: unknown regular expression flag 'x'"},
	    {"body =~ /a(b/ score 1\n", ":1: bad regular expression"},
	    {"body =~ // score 1\n", ":1: empty regular expression"},
	    {"body =~ /abc/\n", ":1: missing 'score N'"},
	    {"body =~ /abc/ score lots\n", ":1: bad score \"lots\""},
	    {"body =~ /abc/ score nan\n", ":1: bad score"},
	    {"body =~ /abc/ score 5000\n", ":1: score 5000 out of range"},
	    {"body =~ /abc/ score 1 name bad-name\n", ":1: bad rule name"},
	    {"body =~ /abc/ score 1 score 2\n", ":1: 'score' given twice"},
	    {"body =~ /abc/ score 1 extra\n", ":1: unexpected \"extra\""},
	    {"body =~ /a/ score 1 name A\nbody =~ /b/ score 1\nbody =~ /c/ score 1 name A\n",
	     ":3: duplicate rule name A"},
	    {"body =~ /a/ score 1\nbody =~ /b/ score 1 name RULE_1\n",
	     ":2: duplicate rule name RULE_1"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = write_file("bad.rules", cases[i].text);
		struct antispam_rules *r = (struct antispam_rules *)1;
		char *err = NULL;
		int rc = antispam_rules_load(path, &r, &err);
		if (rc != -EINVAL || err == NULL)
			fail_msg("case %zu: rc %d, want -EINVAL with a message", i, rc);
		assert_null(r);
		char want[512];
		snprintf(want, sizeof(want), "%s%s", path, cases[i].want);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s...\"", i, err, want);
		free(err);
	}
}

static void test_rules_limits(void **state)
{
	(void)state;
	struct antispam_rules *r = NULL;
	char *err = NULL;

	/* A missing file names the file and the reason. */
	char missing[256];
	snprintf(missing, sizeof(missing), "%s/none.rules", tmpdir);
	assert_int_equal(antispam_rules_load(missing, &r, &err), -ENOENT);
	assert_non_null(err);
	assert_non_null(strstr(err, "none.rules: No such file"));
	free(err);

	/* An overlong line. */
	size_t n = 5000;
	char *text = malloc(n + 32);
	strcpy(text, "body =~ /");
	memset(text + 9, 'a', n);
	strcpy(text + 9 + n, "/ score 1\n");
	const char *path = write_file("long.rules", text);
	free(text);
	assert_int_equal(antispam_rules_load(path, &r, &err), -EINVAL);
	assert_non_null(strstr(err, ":1: line longer than 4096 bytes"));
	free(err);

	/* An overlong pattern within a line of allowed length. */
	text = malloc(2000);
	strcpy(text, "body =~ /");
	memset(text + 9, 'b', 1500);
	strcpy(text + 9 + 1500, "/ score 1\n");
	path = write_file("longre.rules", text);
	free(text);
	assert_int_equal(antispam_rules_load(path, &r, &err), -EINVAL);
	assert_non_null(strstr(err, ":1: regular expression longer than 1024 bytes"));
	free(err);

	/* Too many rules: the 2001st is refused on its own line. */
	size_t cap = 2001 * 40;
	text = malloc(cap);
	size_t off = 0;
	for (int i = 1; i <= 2001; i++)
		off += (size_t)snprintf(text + off, cap - off, "body =~ /w%d/ score 0.1\n", i);
	path = write_file("many.rules", text);
	free(text);
	assert_int_equal(antispam_rules_load(path, &r, &err), -EINVAL);
	assert_non_null(strstr(err, ":2001: more than 2000 rules"));
	free(err);
}

/* ---- scoring ---------------------------------------------------------------------------- */

static const char scoring_rules[] =
    "header Subject =~ /viagra/i score 3.5 name SUBJ_VIAGRA\n"
    "header Subject =~ /URGENT/ score 1.0 name SUBJ_URGENT_CASE\n"
    "body =~ /click here/i score 1.0 name BODY_CLICK\n"
    "body =~ /unsubscribe/ score -0.5 name BODY_UNSUB\n"
    "uri =~ /^https?:\\/\\/[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+\\// score 1.5 name URI_IP\n"
    "header ALL =~ /X-Mailer: Bulk/ score 2.0 name ALL_BULK\n"
    "header From =~ /(?i)@spam\\.example/ score 0.7 name FROM_SPAM\n"
    "body =~ /本日限定/ score 2.0 name JP_BODY_TODAY\n";

struct score_case {
	const char *what;
	const char *msg;
	double score;
	const char *detail; /* NULL: no rule hit */
};

static void test_scoring(void **state)
{
	(void)state;
	static const struct score_case cases[] = {
	    {"nothing matches", "Subject: hello\r\nFrom: a@example.org\r\n\r\nHi there.\r\n", 0,
	     NULL},
	    {"subject with the i flag", "Subject: Cheap VIAGRA\r\n\r\nbody\r\n", 3.5,
	     "SUBJ_VIAGRA"},
	    {"no i flag: case matters", "Subject: urgent\r\n\r\nbody\r\n", 0, NULL},
	    {"a header rule does not look at the body", "Subject: hi\r\n\r\nviagra\r\n", 0, NULL},
	    {"rules add up, negative included",
	     "Subject: viagra URGENT\r\n\r\nClick HERE now\r\nunsubscribe\r\n", 5.0,
	     "SUBJ_VIAGRA,SUBJ_URGENT_CASE,BODY_CLICK,BODY_UNSUB"},
	    {"a rule counts once however often it matches",
	     "Subject: x\r\n\r\nclick here\nclick here\nclick here\n", 1.0, "BODY_CLICK"},
	    {"uri rule", "Subject: x\n\nsee http://192.0.2.7/login now\n", 1.5, "URI_IP"},
	    {"uri rule needs the numeric host", "Subject: x\n\nsee http://example.com/192.0.2.7/\n",
	     0, NULL},
	    {"header ALL", "Subject: x\r\nX-Mailer: Bulk Sender 2\r\n\r\nb\r\n", 2.0, "ALL_BULK"},
	    {"(?i) prefix", "From: Promo <deals@SPAM.example>\r\n\r\nb\r\n", 0.7, "FROM_SPAM"},
	    {"folded subject is unfolded", "Subject: cheap\r\n viagra\r\n\r\nb\r\n", 3.5,
	     "SUBJ_VIAGRA"},
	    {"base64 text part is decoded",
	     "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
	     "Content-Transfer-Encoding: base64\r\n\r\nQ2xpY2sgaGVyZSB0byB3aW4=\r\n",
	     1.0, "BODY_CLICK"},
	    {"quoted-printable text part is decoded",
	     "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
	     "Content-Transfer-Encoding: quoted-printable\r\n\r\nclick =\r\nhere=3D\r\n",
	     1.0, "BODY_CLICK"},
	    {"ISO-2022-JP body in a multipart is converted to UTF-8",
	     "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"
	     "\r\n--b\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
	     "Content-Transfer-Encoding: base64\r\n\r\n"
	     "GyRCS1xGfDhCRGokTkZDSkwyQTNKJEckOSEjGyhC\r\n--b--\r\n",
	     2.0, "JP_BODY_TODAY"},
	    {"an attachment that is not text is not body text",
	     "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"
	     "\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
	     "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	     "Q2xpY2sgaGVyZSB0byB3aW4=\r\n--b--\r\n",
	     0, NULL},
	    {"no header block at all", "click here", 0, NULL},
	    {"empty message", "", 0, NULL},
	};
	struct antispam_rules *r = load_rules_text(scoring_rules);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct antispam_result res = {0};
		scan_text(r, cases[i].msg, &res);
		if (res.score < cases[i].score - 1e-9 || res.score > cases[i].score + 1e-9)
			fail_msg("%s: score %g, want %g (%s)", cases[i].what, res.score,
				 cases[i].score, res.detail ? res.detail : "-");
		if (cases[i].detail == NULL
			? res.detail != NULL
			: res.detail == NULL || strcmp(res.detail, cases[i].detail))
			fail_msg("%s: detail %s, want %s", cases[i].what,
				 res.detail ? res.detail : "NULL",
				 cases[i].detail ? cases[i].detail : "NULL");
		antispam_result_clear(&res);
		assert_null(res.detail);
	}
	antispam_rules_free(r);
}

static void test_hostile_message(void **state)
{
	(void)state;
	struct antispam_rules *r = load_rules_text(scoring_rules);
	/* A huge body with NUL bytes and the phrase only past the input limit. */
	size_t n = 2 * 1024 * 1024;
	char *msg = malloc(n + 64);
	strcpy(msg, "Subject: x\r\n\r\n");
	size_t off = strlen(msg);
	for (size_t i = off; i < n; i++)
		msg[i] = (i % 97 == 0) ? '\0' : 'a';
	memcpy(msg + n, "click here", 10);
	int64_t t0 = clock_mono_ms();
	struct antispam_result res = {0};
	assert_int_equal(antispam_builtin_scan(r, (const unsigned char *)msg, n + 10, &res), 0);
	assert_true(res.score == 0); /* beyond ANTISPAM's 256 KiB window */
	assert_true(clock_mono_ms() - t0 < 10000);
	antispam_result_clear(&res);
	/* NULL data is an empty message, not a crash. */
	assert_int_equal(antispam_builtin_scan(r, NULL, 0, &res), 0);
	assert_true(res.score == 0);
	free(msg);
	antispam_rules_free(r);
}

/* ---- GTUBE ------------------------------------------------------------------------------ */

static void test_gtube(void **state)
{
	(void)state;
	struct antispam_rules *none = NULL, *negative;
	char *err = NULL;
	assert_int_equal(antispam_rules_load(NULL, &none, &err), 0);
	/* Rules that would pull the score far down do not matter for GTUBE. */
	negative = load_rules_text("body =~ /GTUBE/ score -1000 name WHITELISTISH\n"
				   "header Subject =~ /./ score -50 name ANY_SUBJECT\n");
	const char *msgs[] = {
	    "Subject: test\r\n\r\n" GTUBE "\r\n",
	    "Subject: test\n\n" GTUBE,
	    /* base64-encoded body: found in the decoded text */
	    "Subject: test\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n"
	    "Content-Type: text/plain\r\n\r\n"
	    "WEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJELUFOVEktVUJFLVRFU1QtRU1BSUwq"
	    "Qy4zNFgK\r\n",
	};
	const struct antispam_rules *sets[] = {NULL, none, negative};
	for (size_t s = 0; s < 3; s++) {
		for (size_t m = 0; m < sizeof(msgs) / sizeof(msgs[0]); m++) {
			struct antispam_result res = {0};
			scan_text(sets[s], msgs[m], &res);
			if (res.score != ANTISPAM_GTUBE_SCORE)
				fail_msg("rules %zu message %zu: score %g", s, m, res.score);
			assert_string_equal(res.detail, "GTUBE");
			antispam_result_clear(&res);
		}
	}
	/* One character off is not GTUBE. */
	struct antispam_result res = {0};
	scan_text(none,
		  "Subject: t\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-"
		  "EMAIL*C.34Y\r\n",
		  &res);
	assert_true(res.score == 0);
	antispam_rules_free(none);
	antispam_rules_free(negative);
}

/* ---- Japanese subjects with the shipped rules file ----------------------------------- */

static void test_japanese_subject_shipped_rules(void **state)
{
	(void)state;
	const char *data = getenv("LAZARET_TEST_DATA");
	assert_non_null(data);
	char path[1024];
	snprintf(path, sizeof(path), "%s/../../../etc/lazaret-gw.rules", data);
	struct antispam_rules *r = NULL;
	char *err = NULL;
	if (antispam_rules_load(path, &r, &err) != 0)
		fail_msg("shipped rules: %s", err ? err : "?");
	assert_true(antispam_rules_count(r) >= 5);

	/* 未承諾広告※セール開催中 in every encoding Japanese mail uses. */
	static const char *const subjects[] = {
	    "=?iso-2022-jp?b?GyRCTCQ+NUJ6OS05cCIoJTshPCVrMys6RUNmGyhC?=",
	    "=?ISO-2022-JP?B?GyRCTCQ+NUJ6OS05cCIoJTshPCVrMys6RUNmGyhC?=",
	    "=?Shift_JIS?B?lqKPs5H4jUyNkIGmg1qBW4OLikqNw5KG?=",
	    "=?EUC-JP?B?zKS+tcL6ua258KKopbuhvKXrs6u6xcPm?=",
	    "=?UTF-8?B?5pyq5om/6Ku+5bqD5ZGK4oC744K744O844Or6ZaL5YKs5Lit?=",
	    "\xe6\x9c\xaa\xe6\x89\xbf\xe8\xab\xbe\xe5\xba\x83\xe5\x91\x8a\xe2\x80\xbb sale",
	};
	for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
		char msg[1024];
		snprintf(
		    msg, sizeof(msg),
		    "From: shop@example.com\r\nTo: user@example.jp\r\nSubject: %s\r\n"
		    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
		    "hello\r\n",
		    subjects[i]);
		struct antispam_result res = {0};
		scan_text(r, msg, &res);
		if (res.detail == NULL || strstr(res.detail, "JP_UNSOLICITED_AD_MARK") == NULL ||
		    res.score < 5.0)
			fail_msg("subject %zu: score %g detail %s", i, res.score,
				 res.detail ? res.detail : "NULL");
		antispam_result_clear(&res);
	}
	/* An ordinary Japanese subject (会議の件 = about the meeting) scores nothing. */
	struct antispam_result res = {0};
	scan_text(r, "Subject: =?ISO-2022-JP?B?GyRCMnE1RCRON28bKEI=?=\r\n\r\nhi\r\n", &res);
	assert_true(res.score == 0);
	assert_null(res.detail);
	antispam_rules_free(r);
}

/* ---- scripted fake daemons ------------------------------------------------------------ */

enum fake_read {
	FAKE_READ_EOF,	  /* spamd: until the client half-closes */
	FAKE_READ_CLAMD,  /* INSTREAM framing up to the zero-length chunk */
	FAKE_READ_HTTP,	  /* headers, then Content-Length bytes */
	FAKE_READ_NOTHING /* answer (or close) at once */
};

#define REPLY_CLOSE "<close>" /* close without answering */
#define REPLY_HANG  "<hang>"  /* answer nothing until the client has given up */

struct fake {
	int lfd;
	char addr[128];
	enum fake_read read;
	const char *reply;
	size_t reply_len; /* 0: strlen(reply) */
	pthread_t thread;
	/* what the server saw */
	char *request;
	size_t request_len;
	char *payload; /* clamd: the reassembled stream */
	size_t payload_len;
	size_t chunks, max_chunk;
	bool framing_ok;
};

static bool read_exact(int fd, void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n > 0) {
		ssize_t k = read(fd, p, n);
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

static void fake_append(char **buf, size_t *len, const void *data, size_t n)
{
	*buf = realloc(*buf, *len + n + 1);
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
}

static void fake_read_clamd(struct fake *f, int fd)
{
	char cmd[10];
	f->framing_ok = false;
	if (!read_exact(fd, cmd, sizeof(cmd)))
		return;
	fake_append(&f->request, &f->request_len, cmd, sizeof(cmd));
	if (memcmp(cmd, "zINSTREAM\0", 10) != 0)
		return;
	for (;;) {
		unsigned char hdr[4];
		if (!read_exact(fd, hdr, 4))
			return;
		size_t n =
		    (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
		if (n == 0)
			break;
		if (n > 16 * 1024 * 1024)
			return;
		char *chunk = malloc(n);
		if (!read_exact(fd, chunk, n)) {
			free(chunk);
			return;
		}
		fake_append(&f->payload, &f->payload_len, chunk, n);
		free(chunk);
		f->chunks++;
		if (n > f->max_chunk)
			f->max_chunk = n;
	}
	f->framing_ok = true;
}

static void fake_read_http(struct fake *f, int fd)
{
	char c;
	while (f->request_len < 4 || strcmp(f->request + f->request_len - 4, "\r\n\r\n") != 0) {
		if (read(fd, &c, 1) != 1)
			return;
		fake_append(&f->request, &f->request_len, &c, 1);
	}
	const char *cl = strcasestr(f->request, "\r\nContent-Length:");
	size_t n = cl ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
	char *body = malloc(n + 1);
	if (read_exact(fd, body, n))
		fake_append(&f->payload, &f->payload_len, body, n);
	free(body);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	char buf[4096];
	ssize_t n;
	switch (f->read) {
	case FAKE_READ_EOF:
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			fake_append(&f->request, &f->request_len, buf, (size_t)n);
		break;
	case FAKE_READ_CLAMD:
		fake_read_clamd(f, fd);
		break;
	case FAKE_READ_HTTP:
		fake_read_http(f, fd);
		break;
	case FAKE_READ_NOTHING:
		break;
	}
	if (strcmp(f->reply, REPLY_HANG) == 0) {
		/* Say nothing for a second: longer than the clients' test timeouts. */
		usleep(1000 * 1000);
	} else if (strcmp(f->reply, REPLY_CLOSE) != 0) {
		size_t len = f->reply_len ? f->reply_len : strlen(f->reply);
		assert_int_equal(write(fd, f->reply, len), (ssize_t)len);
	}
	close(fd);
	return NULL;
}

/* Starts a fake daemon on 127.0.0.1 (or a unix socket when unix_path). */
static void fake_start(struct fake *f, enum fake_read mode, const char *reply,
		       const char *unix_path)
{
	memset(f, 0, sizeof(*f));
	f->read = mode;
	f->reply = reply;
	if (unix_path != NULL) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", unix_path);
		unlink(unix_path);
		f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_int_equal(bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		snprintf(f->addr, sizeof(f->addr), "%s", unix_path);
	} else {
		struct sockaddr_in sin = {.sin_family = AF_INET};
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof(sin);
		f->lfd = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(bind(f->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sin, &len), 0);
		snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	}
	assert_int_equal(listen(f->lfd, 4), 0);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

/* Waits for the fake to finish its one connection; what it saw stays readable. */
static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

static void fake_free(struct fake *f)
{
	free(f->request);
	free(f->payload);
	f->request = f->payload = NULL;
}

/* A TCP address nobody listens on. */
static void dead_addr(char *buf, size_t size)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(buf, size, "127.0.0.1:%u", ntohs(sin.sin_port));
	close(fd);
}

static const char sample_msg[] = "Subject: hello\r\nFrom: a@example.org\r\n\r\nbody\r\n";

/* ---- spamd ---------------------------------------------------------------------------- */

struct spamd_case {
	const char *what;
	const char *reply;
	int rc;
	double score;
	const char *detail;
};

static void test_spamd_replies(void **state)
{
	(void)state;
	static const struct spamd_case cases[] = {
	    {"GTUBE with symbols",
	     "SPAMD/1.1 0 EX_OK\r\nContent-length: 30\r\nSpam: True ; 1003.3 / 5.0\r\n\r\n"
	     "GTUBE,MISSING_DATE,NO_RELAYS\r\n",
	     0, 1003.3, "GTUBE,MISSING_DATE,NO_RELAYS"},
	    {"negative score", "SPAMD/1.1 0 EX_OK\r\nSpam: False ; -2.5 / 5.0\r\n\r\nALL_TRUSTED",
	     0, -2.5, "ALL_TRUSTED"},
	    {"no symbols", "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n\r\n", 0, 0.0, NULL},
	    {"LF line ends and odd spacing", "SPAMD/1.5 0 EX_OK\nspam: yes ;4.2/5.0\n\n A , B ", 0,
	     4.2, "A,B"},
	    {"hostile rule names are cleaned",
	     "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 6 / 5\r\n\r\n"
	     "GOOD_ONE,\x1b[31mRED,,\"quoted\"",
	     0, 6, "GOOD_ONE,31mRED,quoted"},
	    {"error status", "SPAMD/1.0 76 Bad header line: foo\r\n\r\n", -EPROTO, 0, NULL},
	    {"not spamd", "HTTP/1.1 200 OK\r\n\r\n", -EPROTO, 0, NULL},
	    {"no Spam header", "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", -EPROTO, 0, NULL},
	    {"unreadable score", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; lots / 5.0\r\n\r\n", -EPROTO, 0,
	     NULL},
	    {"infinite score", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; inf / 5.0\r\n\r\n", -EPROTO, 0,
	     NULL},
	    {"no threshold part", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 5.0\r\n\r\n", -EPROTO, 0,
	     NULL},
	    {"garbage", "\x01\x02\x03", -EPROTO, 0, NULL},
	    {"closed without a reply", REPLY_CLOSE, -EPROTO, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f;
		fake_start(&f, FAKE_READ_EOF, cases[i].reply, NULL);
		struct antispam_result res = {0};
		int rc = antispam_spamd_scan(f.addr, 5000, (const unsigned char *)sample_msg,
					     strlen(sample_msg), &res);
		fake_stop(&f);
		fake_free(&f);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
		if (rc == 0) {
			if (res.score < cases[i].score - 1e-9 || res.score > cases[i].score + 1e-9)
				fail_msg("%s: score %g, want %g", cases[i].what, res.score,
					 cases[i].score);
			if (cases[i].detail == NULL
				? res.detail != NULL
				: res.detail == NULL || strcmp(res.detail, cases[i].detail))
				fail_msg("%s: detail %s", cases[i].what,
					 res.detail ? res.detail : "NULL");
		} else {
			assert_null(res.detail);
		}
		antispam_result_clear(&res);
	}
}

static void test_spamd_request_and_transports(void **state)
{
	(void)state;
	static const char ok[] = "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.5 / 5.0\r\n\r\nX";
	/* TCP: the request is SYMBOLS with an exact Content-length and the message. */
	struct fake f;
	fake_start(&f, FAKE_READ_EOF, ok, NULL);
	struct antispam_result res = {0};
	assert_int_equal(antispam_spamd_scan(f.addr, 5000, (const unsigned char *)sample_msg,
					     strlen(sample_msg), &res),
			 0);
	fake_stop(&f);
	char want[256];
	snprintf(want, sizeof(want), "SYMBOLS SPAMC/1.5\r\nContent-length: %zu\r\n\r\n%s",
		 strlen(sample_msg), sample_msg);
	assert_non_null(f.request);
	assert_string_equal(f.request, want);
	fake_free(&f);
	assert_true(res.score == 1.5);
	antispam_result_clear(&res);

	/* Unix socket. */
	char path[256];
	snprintf(path, sizeof(path), "%s/spamd.sock", tmpdir);
	fake_start(&f, FAKE_READ_EOF, ok, path);
	assert_int_equal(antispam_spamd_scan(path, 5000, (const unsigned char *)sample_msg,
					     strlen(sample_msg), &res),
			 0);
	fake_stop(&f);
	fake_free(&f);
	assert_true(res.score == 1.5);
	antispam_result_clear(&res);

	/* Nobody listening; a malformed address. */
	char dead[64];
	dead_addr(dead, sizeof(dead));
	assert_int_equal(antispam_spamd_scan(dead, 2000, (const unsigned char *)"x", 1, &res),
			 -ECONNREFUSED);
	assert_int_equal(antispam_spamd_scan("no-port", 2000, (const unsigned char *)"x", 1, &res),
			 -EINVAL);
	assert_int_equal(
	    antispam_spamd_scan("127.0.0.1:99999", 2000, (const unsigned char *)"x", 1, &res),
	    -EINVAL);

	/* A spamd that never answers costs the timeout, not more. */
	fake_start(&f, FAKE_READ_EOF, REPLY_HANG, NULL);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(antispam_spamd_scan(f.addr, 300, (const unsigned char *)sample_msg,
					     strlen(sample_msg), &res),
			 -ETIMEDOUT);
	int64_t took = clock_mono_ms() - t0;
	fake_stop(&f);
	fake_free(&f);
	assert_true(took >= 250 && took < 3000);
}

/* ---- rspamd --------------------------------------------------------------------------- */

#define HTTP_OK(json)                                                                              \
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" json

struct rspamd_case {
	const char *what;
	const char *reply;
	int rc;
	double score;
	const char *detail;
};

static void test_rspamd_replies(void **state)
{
	(void)state;
	static const struct rspamd_case cases[] = {
	    {"score and symbols",
	     HTTP_OK(
		 "{\"is_skipped\":false,\"score\":7.9,\"required_score\":15.0,"
		 "\"action\":\"add header\",\"symbols\":{\"MISSING_TO\":{\"name\":\"MISSING_TO\","
		 "\"score\":2.0},\"MIME_GOOD\":{\"name\":\"MIME_GOOD\",\"score\":-0.1}}}"),
	     0, 7.9, "MISSING_TO,MIME_GOOD"},
	    {"GTUBE pre-result",
	     HTTP_OK("{\"is_skipped\":true,\"score\":15.0,\"required_score\":15.0,\"action\":"
		     "\"reject\",\"symbols\":{\"GTUBE\":{\"name\":\"GTUBE\",\"score\":0.0}},"
		     "\"messages\":{\"smtp_message\":\"Gtube pattern\"}}"),
	     0, ANTISPAM_GTUBE_SCORE, "GTUBE"},
	    {"negative integer score", HTTP_OK("{\"score\":-3,\"symbols\":{}}"), 0, -3, NULL},
	    {"Content-Length honoured",
	     "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"score\":1.0}trailing junk", 0, 1.0,
	     NULL},
	    {"chunked reply",
	     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	     "6\r\n{\"scor\r\n8\r\ne\":2.25}\r\n0\r\n\r\n",
	     0, 2.25, NULL},
	    {"HTTP error", "HTTP/1.1 500 Internal Server Error\r\n\r\n{\"error\":\"x\"}", -EPROTO,
	     0, NULL},
	    {"not JSON", HTTP_OK("<html>hello</html>"), -EPROTO, 0, NULL},
	    {"no score", HTTP_OK("{\"symbols\":{}}"), -EPROTO, 0, NULL},
	    {"score is a string", HTTP_OK("{\"score\":\"7\"}"), -EPROTO, 0, NULL},
	    {"cut short", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"score\":1}", -EPROTO, 0,
	     NULL},
	    {"not HTTP", "SPAMD/1.1 0 EX_OK\r\n\r\n", -EPROTO, 0, NULL},
	    {"closed without a reply", REPLY_CLOSE, -EPROTO, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f;
		fake_start(&f, FAKE_READ_HTTP, cases[i].reply, NULL);
		struct antispam_result res = {0};
		int rc = antispam_rspamd_scan(f.addr, 5000, NULL, (const unsigned char *)sample_msg,
					      strlen(sample_msg), &res);
		fake_stop(&f);
		fake_free(&f);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
		if (rc == 0) {
			if (res.score < cases[i].score - 1e-9 || res.score > cases[i].score + 1e-9)
				fail_msg("%s: score %g, want %g", cases[i].what, res.score,
					 cases[i].score);
			if (cases[i].detail == NULL
				? res.detail != NULL
				: res.detail == NULL || strcmp(res.detail, cases[i].detail))
				fail_msg("%s: detail %s", cases[i].what,
					 res.detail ? res.detail : "NULL");
		}
		antispam_result_clear(&res);
	}
}

static void test_rspamd_request(void **state)
{
	(void)state;
	const char *rcpts[] = {"u1@example.jp", "u2@example.jp",
			       "evil@example.jp\r\nX-Injected: 1"};
	struct antispam_envelope env = {.client_ip = "192.0.2.1",
					.helo = "mail.example.com",
					.mail_from = "sender@example.com",
					.rcpts = rcpts,
					.nrcpts = 3};
	struct fake f;
	fake_start(&f, FAKE_READ_HTTP, HTTP_OK("{\"score\":0.5}"), NULL);
	struct antispam_result res = {0};
	assert_int_equal(antispam_rspamd_scan(f.addr, 5000, &env, (const unsigned char *)sample_msg,
					      strlen(sample_msg), &res),
			 0);
	fake_stop(&f);
	assert_true(res.score == 0.5);
	assert_non_null(f.request);
	assert_true(strncmp(f.request, "POST /checkv2 HTTP/1.", 21) == 0);
	assert_non_null(strstr(f.request, "\r\nIP: 192.0.2.1\r\n"));
	assert_non_null(strstr(f.request, "\r\nHelo: mail.example.com\r\n"));
	assert_non_null(strstr(f.request, "\r\nFrom: sender@example.com\r\n"));
	assert_non_null(strstr(f.request, "\r\nRcpt: u1@example.jp\r\n"));
	assert_non_null(strstr(f.request, "\r\nRcpt: u2@example.jp\r\n"));
	/* A value with CR LF is left out rather than allowed to add a header. */
	assert_null(strstr(f.request, "evil"));
	assert_null(strstr(f.request, "X-Injected"));
	assert_int_equal(f.payload_len, strlen(sample_msg));
	assert_memory_equal(f.payload, sample_msg, strlen(sample_msg));
	fake_free(&f);
	antispam_result_clear(&res);

	char dead[64];
	dead_addr(dead, sizeof(dead));
	assert_int_equal(
	    antispam_rspamd_scan(dead, 2000, NULL, (const unsigned char *)"x", 1, &res),
	    -ECONNREFUSED);
}

/* ---- clamd ---------------------------------------------------------------------------- */

struct clamd_case {
	const char *what;
	const char *reply;
	size_t reply_len; /* replies carry their NUL */
	int rc;
	bool infected;
	const char *virus;
};

#define Z(s) s, sizeof(s)

static void test_clamd_replies(void **state)
{
	(void)state;
	static const struct clamd_case cases[] = {
	    {"clean", Z("stream: OK"), 0, false, NULL},
	    {"found", Z("stream: Eicar-Signature FOUND"), 0, true, "Eicar-Signature"},
	    {"found, unofficial signature", Z("stream: Lazaret-Test.UNOFFICIAL FOUND"), 0, true,
	     "Lazaret-Test.UNOFFICIAL"},
	    {"newline instead of NUL", "stream: OK\n", 11, 0, false, NULL},
	    {"size limit", Z("INSTREAM size limit exceeded. ERROR"), -EFBIG, false, NULL},
	    {"scan error", Z("stream: Can't allocate memory ERROR"), -EPROTO, false, NULL},
	    {"unknown answer", Z("PONG"), -EPROTO, false, NULL},
	    {"FOUND without a name", Z("stream:  FOUND"), -EPROTO, false, NULL},
	    {"closed without a reply", REPLY_CLOSE, 0, -ECONNRESET, false, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f;
		fake_start(&f, FAKE_READ_CLAMD, cases[i].reply, NULL);
		f.reply_len = cases[i].reply_len;
		bool infected = !cases[i].infected;
		char *virus = NULL;
		int rc = antivirus_clamd_scan(f.addr, 5000, (const unsigned char *)sample_msg,
					      strlen(sample_msg), &infected, &virus);
		fake_stop(&f);
		fake_free(&f);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
		if (rc == 0) {
			assert_int_equal(infected, cases[i].infected);
			if (cases[i].virus)
				assert_string_equal(virus, cases[i].virus);
			else
				assert_null(virus);
		} else {
			assert_null(virus);
		}
		free(virus);
	}
}

static void test_clamd_framing(void **state)
{
	(void)state;
	/* 200,000 bytes go out as chunks of at most 64 KiB, reassembled exactly. */
	size_t n = 200000;
	unsigned char *msg = malloc(n);
	for (size_t i = 0; i < n; i++)
		msg[i] = (unsigned char)(i * 7 + 3);
	struct fake f;
	fake_start(&f, FAKE_READ_CLAMD, "stream: OK", NULL);
	f.reply_len = sizeof("stream: OK");
	bool infected = true;
	char *virus = NULL;
	assert_int_equal(antivirus_clamd_scan(f.addr, 5000, msg, n, &infected, &virus), 0);
	assert_false(infected);
	fake_stop(&f);
	assert_true(f.framing_ok);
	assert_int_equal(f.payload_len, n);
	assert_memory_equal(f.payload, msg, n);
	assert_int_equal(f.chunks, 4);
	assert_int_equal(f.max_chunk, 65536);
	fake_free(&f);
	free(msg);

	/* An empty message is the command and the terminator only. */
	fake_start(&f, FAKE_READ_CLAMD, "stream: OK", NULL);
	f.reply_len = sizeof("stream: OK");
	assert_int_equal(antivirus_clamd_scan(f.addr, 5000, NULL, 0, &infected, &virus), 0);
	fake_stop(&f);
	assert_true(f.framing_ok);
	assert_int_equal(f.chunks, 0);
	fake_free(&f);
}

static void test_clamd_failures(void **state)
{
	(void)state;
	bool infected;
	char *virus = NULL;

	/* A clamd that reads everything and never answers: the timeout holds. */
	struct fake f;
	fake_start(&f, FAKE_READ_CLAMD, REPLY_HANG, NULL);
	int64_t t0 = clock_mono_ms();
	assert_int_equal(antivirus_clamd_scan(f.addr, 300, (const unsigned char *)sample_msg,
					      strlen(sample_msg), &infected, &virus),
			 -ETIMEDOUT);
	int64_t took = clock_mono_ms() - t0;
	fake_stop(&f);
	fake_free(&f);
	assert_true(took >= 250 && took < 3000);
	assert_null(virus);

	/* A clamd that hangs up at once, before reading. */
	fake_start(&f, FAKE_READ_NOTHING, REPLY_CLOSE, NULL);
	int rc = antivirus_clamd_scan(f.addr, 2000, (const unsigned char *)sample_msg,
				      strlen(sample_msg), &infected, &virus);
	fake_stop(&f);
	fake_free(&f);
	assert_true(rc < 0);
	assert_null(virus);

	/* Answers the size limit before the stream is over (as clamd does). */
	fake_start(&f, FAKE_READ_NOTHING, "INSTREAM size limit exceeded. ERROR", NULL);
	f.reply_len = sizeof("INSTREAM size limit exceeded. ERROR");
	size_t n = 8 * 1024 * 1024;
	unsigned char *big = calloc(1, n);
	rc = antivirus_clamd_scan(f.addr, 5000, big, n, &infected, &virus);
	fake_stop(&f);
	fake_free(&f);
	free(big);
	assert_true(rc == -EFBIG || rc == -EPIPE || rc == -ECONNRESET);
	assert_null(virus);

	char dead[64];
	dead_addr(dead, sizeof(dead));
	assert_int_equal(
	    antivirus_clamd_scan(dead, 2000, (const unsigned char *)"x", 1, &infected, &virus),
	    -ECONNREFUSED);
	char path[256];
	snprintf(path, sizeof(path), "%s/no-such.sock", tmpdir);
	assert_int_equal(
	    antivirus_clamd_scan(path, 2000, (const unsigned char *)"x", 1, &infected, &virus),
	    -ENOENT);
	assert_int_equal(
	    antivirus_clamd_scan(NULL, 2000, (const unsigned char *)"x", 1, &infected, &virus),
	    -EINVAL);
}

/* ---- the reply parsers on their own ----------------------------------------------------- */

/* spamd's parser on a buffer of exactly the reply's size (no NUL after it). */
static void test_spamd_parse_reply(void **state)
{
	(void)state;
	static const struct spamd_case cases[] = {
	    {"whole reply", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.5 / 5.0\r\n\r\nA,B", 0, 7.5,
	     "A,B"},
	    {"score at the end of the buffer", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 2 /", 0, 2, NULL},
	    {"status line only", "SPAMD/1.1 0 EX_OK", -EPROTO, 0, NULL},
	    {"status without a code", "SPAMD/1.1", -EPROTO, 0, NULL},
	    {"empty", "", -EPROTO, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].reply);
		char *buf = malloc(n ? n : 1);
		assert_non_null(buf);
		memcpy(buf, cases[i].reply, n);
		struct antispam_result res = {.score = -99, .detail = NULL};
		int rc = antispam_spamd_parse_reply(buf, n, &res);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
		assert_true(res.score == (rc == 0 ? cases[i].score : -99));
		if (cases[i].detail != NULL)
			assert_string_equal(res.detail, cases[i].detail);
		else
			assert_null(res.detail);
		antispam_result_clear(&res);
		free(buf);
	}
}

/* rspamd's parser; the status line must be exactly "HTTP/1.x NNN". */
static void test_rspamd_parse_reply(void **state)
{
	(void)state;
	static const struct rspamd_case cases[] = {
	    {"HTTP/1.0, LF only", "HTTP/1.0 200 OK\n\n{\"score\":-2.5}", 0, -2.5, NULL},
	    {"status without reason", "HTTP/1.1 200\r\n\r\n{\"score\":1}", 0, 1, NULL},
	    /* Found by fuzz_rspamd: atoi took these for 200. */
	    {"letter after the code", "HTTP/1.0 200o \nX: y\n\n{\"score\":-2.5}", -EPROTO, 0, NULL},
	    {"code with four digits", "HTTP/1.1 2000 OK\r\n\r\n{\"score\":1}", -EPROTO, 0, NULL},
	    {"two spaces", "HTTP/1.1  200 OK\r\n\r\n{\"score\":1}", -EPROTO, 0, NULL},
	    {"signed code", "HTTP/1.1 +200 OK\r\n\r\n{\"score\":1}", -EPROTO, 0, NULL},
	    {"no status line", "HTTP/1.\r\n\r\n200\r\n\r\n{\"score\":1}", -EPROTO, 0, NULL},
	    {"chunk size too large",
	     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	     "fffffffffffffffff\r\n{}\r\n0\r\n\r\n",
	     -EPROTO, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *buf = strdup(cases[i].reply);
		assert_non_null(buf);
		struct antispam_result res = {.score = -99, .detail = NULL};
		int rc = antispam_rspamd_parse_reply(buf, strlen(buf), &res);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
		assert_true(res.score == (rc == 0 ? cases[i].score : -99));
		assert_null(res.detail);
		free(buf);
	}
}

/* clamd's parser; a signature name is never blank. */
static void test_clamd_parse_reply(void **state)
{
	(void)state;
	static const struct {
		const char *what, *reply;
		int rc;
		const char *virus; /* NULL: clean (when rc is 0) */
	} cases[] = {
	    {"clean", "stream: OK", 0, NULL},
	    {"clean with a line end", "stream: OK \r\n", 0, NULL},
	    {"found", "stream: Win.Test.EICAR_HDB-1 FOUND", 0, "Win.Test.EICAR_HDB-1"},
	    {"control bytes become ?", "stream: Bad\x1b[0m FOUND", 0, "Bad?[0m"},
	    /* Found by fuzz_clamd: the blanks around the name were kept, and only blanks
	     * made a verdict without a name. */
	    {"blank name", "stream:   FOUND", -EPROTO, NULL},
	    {"blanks around the name", "stream:   Eicar-Signature  FOUND", 0, "Eicar-Signature"},
	    {"size limit", "INSTREAM size limit exceeded. ERROR", -EFBIG, NULL},
	    {"error", "stream: lstat() failed ERROR", -EPROTO, NULL},
	    {"empty", "", -EPROTO, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *buf = strdup(cases[i].reply);
		assert_non_null(buf);
		bool infected = true;
		char *virus = NULL;
		int rc = antivirus_clamd_parse_reply(buf, &infected, &virus);
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d", cases[i].what, rc, cases[i].rc);
		if (rc == 0) {
			assert_int_equal(infected, cases[i].virus != NULL);
			if (cases[i].virus != NULL)
				assert_string_equal(virus, cases[i].virus);
		}
		if (rc != 0 || cases[i].virus == NULL)
			assert_null(virus);
		free(virus);
		free(buf);
	}
	/* A long name is cut at 256 bytes, and not on a blank. */
	char reply[600];
	memset(reply, 0, sizeof(reply));
	strcpy(reply, "stream: ");
	memset(reply + 8, 'A', 255);
	strcat(reply, "  BBB FOUND");
	bool infected = false;
	char *virus = NULL;
	assert_int_equal(antivirus_clamd_parse_reply(reply, &infected, &virus), 0);
	assert_true(infected);
	assert_int_equal(strlen(virus), 255);
	free(virus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rules_good),
	    cmocka_unit_test(test_rules_errors),
	    cmocka_unit_test(test_rules_limits),
	    cmocka_unit_test(test_scoring),
	    cmocka_unit_test(test_hostile_message),
	    cmocka_unit_test(test_gtube),
	    cmocka_unit_test(test_japanese_subject_shipped_rules),
	    cmocka_unit_test(test_spamd_replies),
	    cmocka_unit_test(test_spamd_request_and_transports),
	    cmocka_unit_test(test_rspamd_replies),
	    cmocka_unit_test(test_rspamd_request),
	    cmocka_unit_test(test_clamd_replies),
	    cmocka_unit_test(test_spamd_parse_reply),
	    cmocka_unit_test(test_rspamd_parse_reply),
	    cmocka_unit_test(test_clamd_parse_reply),
	    cmocka_unit_test(test_clamd_framing),
	    cmocka_unit_test(test_clamd_failures),
	};
	return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
