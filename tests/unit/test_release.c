/*
 * Tests for the release engine: a real store in a temporary folder, the engine's
 * workers, and fake mail servers on loopback that answer by policy and count
 * what they accept (messages, recipients, concurrent sessions, peer address).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/xalloc.h"
#include "quarantine/metrics.h"
#include "quarantine/release.h"
#include "store/store.h"

#define WAIT_LIMIT_MS	 15000
#define MTA_MAX_SESSIONS 256
#define MTA_MAX_RCPTS	 256

/* ---- a fake mail server ---- */

struct mta_rule {
	const char *rcpt; /* substring of the RCPT argument */
	const char *reply;
};

struct fake_mta {
	int lfd;
	unsigned port;
	pthread_t acceptor;
	atomic_bool stop;
	pthread_mutex_t lock;
	/* Policy: set before start. */
	const char *mail_reply;	  /* default "250 2.1.0 ok" */
	unsigned fail_sessions;	  /* the first this many sessions get 451 at MAIL */
	struct mta_rule rules[4]; /* RCPT replies; default 250 */
	const char *final_reply;  /* default "250 2.0.0 queued" */
	int hold_ms;		  /* wait before the final reply */
	/* What happened (under lock). */
	unsigned sessions, active, max_active, messages;
	char *delivered[MTA_MAX_RCPTS]; /* recipients of accepted messages */
	unsigned ndelivered;
	char *last_data;
	char peer[INET6_ADDRSTRLEN];
	pthread_t threads[MTA_MAX_SESSIONS];
	unsigned nthreads;
};

struct mta_session {
	struct fake_mta *m;
	int fd;
	unsigned index;
	char buf[8192];
	size_t len;
};

static bool mta_read_line(struct mta_session *s, char *line, size_t cap)
{
	for (;;) {
		char *nl = memchr(s->buf, '\n', s->len);
		if (nl != NULL) {
			size_t n = (size_t)(nl - s->buf) + 1, k = n - 1;
			if (k > 0 && s->buf[k - 1] == '\r')
				k--;
			if (k >= cap)
				k = cap - 1;
			memcpy(line, s->buf, k);
			line[k] = '\0';
			memmove(s->buf, s->buf + n, s->len - n);
			s->len -= n;
			return true;
		}
		if (s->len == sizeof(s->buf))
			return false;
		struct pollfd p = {.fd = s->fd, .events = POLLIN};
		if (poll(&p, 1, 10000) <= 0)
			return false;
		ssize_t r = recv(s->fd, s->buf + s->len, sizeof(s->buf) - s->len, 0);
		if (r <= 0)
			return false;
		s->len += (size_t)r;
	}
}

static void mta_say(struct mta_session *s, const char *text)
{
	char out[1024];
	int n = snprintf(out, sizeof(out), "%s\r\n", text);
	(void)send(s->fd, out, (size_t)n, MSG_NOSIGNAL);
}

static void *mta_session_main(void *arg)
{
	struct mta_session *s = arg;
	struct fake_mta *m = s->m;
	char line[2048];
	char *rcpts[MTA_MAX_RCPTS];
	unsigned nrcpts = 0;
	char *data = NULL;
	size_t dlen = 0;

	mta_say(s, "220 fake.test ESMTP");
	while (mta_read_line(s, line, sizeof(line))) {
		if (strncasecmp(line, "EHLO", 4) == 0) {
			mta_say(s, "250-fake.test\r\n250-8BITMIME\r\n250 SMTPUTF8");
		} else if (strncasecmp(line, "HELO", 4) == 0) {
			mta_say(s, "250 fake.test");
		} else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
			if (s->index < m->fail_sessions)
				mta_say(s, "451 4.3.0 busy, try later");
			else
				mta_say(s, m->mail_reply ? m->mail_reply : "250 2.1.0 ok");
		} else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
			const char *reply = "250 2.1.5 ok";
			for (size_t i = 0; i < 4 && m->rules[i].rcpt; i++)
				if (strstr(line, m->rules[i].rcpt) != NULL)
					reply = m->rules[i].reply;
			if (reply[0] == '2' && nrcpts < MTA_MAX_RCPTS) {
				char *a = strchr(line, '<'), *b = strrchr(line, '>');
				rcpts[nrcpts++] = a && b && b > a
						      ? strndup(a + 1, (size_t)(b - a - 1))
						      : strdup(line);
			}
			mta_say(s, reply);
		} else if (strcasecmp(line, "DATA") == 0) {
			mta_say(s, "354 go ahead");
			free(data);
			data = NULL;
			dlen = 0;
			bool end = false;
			while (!end && mta_read_line(s, line, sizeof(line))) {
				end = strcmp(line, ".") == 0;
				if (end)
					break;
				/* RFC 5321 4.5.2: a leading dot was doubled by the client. */
				const char *text = line[0] == '.' ? line + 1 : line;
				size_t n = strlen(text);
				data = realloc(data, dlen + n + 3);
				if (data == NULL)
					abort();
				memcpy(data + dlen, text, n);
				memcpy(data + dlen + n, "\r\n", 3);
				dlen += n + 2;
			}
			if (!end)
				break;
			if (m->hold_ms)
				usleep((useconds_t)m->hold_ms * 1000);
			const char *fin = m->final_reply ? m->final_reply : "250 2.0.0 queued";
			pthread_mutex_lock(&m->lock);
			if (fin[0] == '2') {
				m->messages++;
				for (unsigned i = 0; i < nrcpts; i++)
					if (m->ndelivered < MTA_MAX_RCPTS)
						m->delivered[m->ndelivered++] = strdup(rcpts[i]);
				free(m->last_data);
				m->last_data = data ? strdup(data) : strdup("");
			}
			pthread_mutex_unlock(&m->lock);
			mta_say(s, fin);
		} else if (strcasecmp(line, "RSET") == 0) {
			mta_say(s, "250 ok");
		} else if (strcasecmp(line, "QUIT") == 0) {
			mta_say(s, "221 bye");
			break;
		} else {
			mta_say(s, "500 5.5.2 what?");
		}
	}
	for (unsigned i = 0; i < nrcpts; i++)
		free(rcpts[i]);
	free(data);
	close(s->fd);
	pthread_mutex_lock(&m->lock);
	m->active--;
	pthread_mutex_unlock(&m->lock);
	free(s);
	return NULL;
}

static void *mta_acceptor(void *arg)
{
	struct fake_mta *m = arg;
	while (!atomic_load(&m->stop)) {
		struct pollfd p = {.fd = m->lfd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		int fd = accept(m->lfd, (struct sockaddr *)&sa, &sl);
		if (fd < 0)
			continue;
		struct mta_session *s = xcalloc(1, sizeof(*s));
		s->m = m;
		s->fd = fd;
		pthread_mutex_lock(&m->lock);
		inet_ntop(AF_INET, &sa.sin_addr, m->peer, sizeof(m->peer));
		s->index = m->sessions++;
		m->active++;
		if (m->active > m->max_active)
			m->max_active = m->active;
		/* Not cmocka asserts: they cannot jump out of another thread. */
		if (m->nthreads >= MTA_MAX_SESSIONS ||
		    pthread_create(&m->threads[m->nthreads++], NULL, mta_session_main, s) != 0)
			abort();
		pthread_mutex_unlock(&m->lock);
	}
	return NULL;
}

static void mta_start(struct fake_mta *m)
{
	m->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	assert_int_equal(bind(m->lfd, (struct sockaddr *)&a, sl), 0);
	assert_int_equal(listen(m->lfd, 64), 0);
	getsockname(m->lfd, (struct sockaddr *)&a, &sl);
	m->port = ntohs(a.sin_port);
	pthread_mutex_init(&m->lock, NULL);
	atomic_store(&m->stop, false);
	assert_int_equal(pthread_create(&m->acceptor, NULL, mta_acceptor, m), 0);
}

static void mta_stop(struct fake_mta *m)
{
	atomic_store(&m->stop, true);
	pthread_join(m->acceptor, NULL);
	close(m->lfd);
	for (unsigned i = 0; i < m->nthreads; i++)
		pthread_join(m->threads[i], NULL);
	for (unsigned i = 0; i < m->ndelivered; i++)
		free(m->delivered[i]);
	free(m->last_data);
	pthread_mutex_destroy(&m->lock);
}

static char *mta_hostport(const struct fake_mta *m)
{
	return xasprintf("127.0.0.1:%u", m->port);
}

static unsigned mta_count(struct fake_mta *m, unsigned *field)
{
	pthread_mutex_lock(&m->lock);
	unsigned v = *field;
	pthread_mutex_unlock(&m->lock);
	return v;
}

static bool mta_delivered_to(struct fake_mta *m, const char *rcpt)
{
	bool found = false;
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->ndelivered; i++)
		found |= strcmp(m->delivered[i], rcpt) == 0;
	pthread_mutex_unlock(&m->lock);
	return found;
}

/* A port nothing listens on. */
static char *closed_hostport(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sl), 0);
	getsockname(fd, (struct sockaddr *)&a, &sl);
	close(fd);
	return xasprintf("127.0.0.1:%u", ntohs(a.sin_port));
}

/* ---- store fixture ---- */

struct fixture {
	char dir[64];
	struct store *st;
};

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			remove_tree(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/lazaret-release-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	struct store_options opt = {.dir = f->dir};
	if (store_open(&opt, &f->st) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->st);
	remove_tree(f->dir);
	free(f);
	return 0;
}

struct submit_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
};

static void submit_done(void *arg, int rc)
{
	struct submit_wait *w = arg;
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->rc = rc;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static const char test_body[] = "From: a@sender.test\r\n"
				"Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\n"
				"\r\n"
				"body line one\r\n"
				".leading dot\r\n";

/* Stores a quarantined message for rcpts; writes its id into id. */
static void submit(struct store *st, const char *const *rcpts, size_t n, char id[37])
{
	struct store_new_message *m = xcalloc(1, sizeof(*m));
	ids_uuidv7(clock_now_ms(), m->id);
	memcpy(id, m->id, 37);
	m->quarantine = xstrdup("spam");
	m->received_at = clock_now_ms();
	m->sender = xstrdup("orig-sender@sender.test");
	m->recipients = xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		m->recipients[i] = xstrdup(rcpts[i]);
	m->nrecipients = n;
	m->gateway = xstrdup("gw1");
	m->verdict = xstrdup("spam");
	m->subject = xstrdup("test");
	m->raw_len = sizeof(test_body) - 1;
	m->raw = xmalloc(m->raw_len);
	memcpy(m->raw, test_body, m->raw_len);
	struct submit_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER,
				.cond = PTHREAD_COND_INITIALIZER};
	assert_int_equal(store_submit_message(st, m, submit_done, &w), 0);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	assert_int_equal(w.rc, 0);
}

/* A PVO message from the gateway at 127.0.0.1, held in quarantine q. */
static void submit_pvo(struct store *st, const char *q, const char *rcpt, char id[37])
{
	struct store_new_message *m = xcalloc(1, sizeof(*m));
	ids_uuidv7(clock_now_ms(), m->id);
	memcpy(id, m->id, 37);
	m->quarantine = xstrdup(STORE_PVO_MARKER);
	m->received_at = clock_now_ms();
	m->sender = xstrdup("orig-sender@sender.test");
	m->recipients = xcalloc(1, sizeof(char *));
	m->recipients[0] = xstrdup(rcpt);
	m->nrecipients = 1;
	m->gateway = xstrdup("127.0.0.1");
	m->raw_len = sizeof(test_body) - 1;
	m->raw = xmalloc(m->raw_len);
	memcpy(m->raw, test_body, m->raw_len);
	m->memberships = xcalloc(1, sizeof(*m->memberships));
	m->memberships[0].quarantine = xstrdup(q);
	m->nmemberships = 1;
	m->origin_gateway = xstrdup("127.0.0.1");
	struct submit_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER,
				.cond = PTHREAD_COND_INITIALIZER};
	assert_int_equal(store_submit_message(st, m, submit_done, &w), 0);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	assert_int_equal(w.rc, 0);
}

static void register_gateway(struct store *st, const char *name, unsigned port)
{
	struct store_gateway g = {.name = xstrdup(name),
				  .address = xstrdup("127.0.0.1"),
				  .release_port = port,
				  .token_hash = xstrdup("hash"),
				  .created_at = clock_now_ms()};
	assert_int_equal(store_gateway_add(st, &g), 0);
	free(g.name);
	free(g.address);
	free(g.token_hash);
}

static enum store_rcpt_state rcpt_state(struct store *st, const char *id, const char *rcpt,
					char **reply)
{
	struct store_message *m = NULL;
	assert_int_equal(store_get(st, id, &m), 0);
	enum store_rcpt_state s = STORE_RCPT_QUARANTINED;
	bool found = false;
	for (size_t i = 0; i < m->nrecipients; i++) {
		if (strcmp(m->recipients[i].address, rcpt) == 0) {
			s = m->recipients[i].state;
			found = true;
			if (reply != NULL)
				*reply =
				    m->recipients[i].reply ? xstrdup(m->recipients[i].reply) : NULL;
		}
	}
	store_message_free(m);
	assert_true(found);
	return s;
}

/* Waits until rcpt of id leaves "releasing"; returns its state. */
static enum store_rcpt_state wait_settled(struct store *st, const char *id, const char *rcpt,
					  char **reply)
{
	int64_t end = clock_mono_ms() + WAIT_LIMIT_MS;
	for (;;) {
		if (reply != NULL)
			*reply = NULL;
		enum store_rcpt_state s = rcpt_state(st, id, rcpt, reply);
		if (s != STORE_RCPT_RELEASING || clock_mono_ms() > end)
			return s;
		if (reply != NULL)
			free(*reply);
		usleep(10000);
	}
}

static void release_one(struct store *st, struct release *r, const char *id, int want_changed)
{
	int changed = -1;
	assert_int_equal(store_release(st, id, NULL, 0, clock_now_ms(), &changed), 0);
	assert_int_equal(changed, want_changed);
	release_kick(r);
}

static struct release_config base_config(const char *primary, const char *secondary)
{
	struct release_config c = {
	    .manager_name = "mgr1",
	    .primary_host = primary,
	    .secondary_host = secondary,
	    .source_address = "127.0.0.1",
	    .helo_name = "mgr1.test",
	    .max_connections = 2,
	    .timeout_ms = 3000,
	    .retry_min_ms = 50,
	    .retry_max_ms = 200,
	    .give_up_after_ms = 0,
	};
	return c;
}

/* Starts pri as the only relay host: the config over it, its address in *primary (free it). */
static struct release_config start_primary(struct fake_mta *pri, char **primary)
{
	mta_start(pri);
	*primary = mta_hostport(pri);
	return base_config(*primary, NULL);
}

/* A started release engine on cfg (release_stop it). */
static struct release *start_release(struct store *st, const struct release_config *cfg)
{
	struct release *r = NULL;
	assert_int_equal(release_start(st, cfg, &r), 0);
	return r;
}

/* A new spam message to rcpts[0..n) (its id into id), released to all of them. */
static void submit_released(struct store *st, struct release *r, const char *const *rcpts, size_t n,
			    char id[37])
{
	submit(st, rcpts, n, id);
	release_one(st, r, id, (int)n);
}

/* ---- tests ---- */

static void test_delivered_to_primary(void **state)
{
	struct fixture *f = *state;
	struct fake_mta mta = {0};
	mta_start(&mta);
	char *primary = mta_hostport(&mta);
	struct release_config cfg = base_config(primary, NULL);
	cfg.source_address = "127.0.0.2"; /* the primary sees the manager's address */
	struct release *r = NULL;
	uint64_t released0 = metrics_get(METRICS_RELEASED);
	assert_int_equal(release_start(f->st, &cfg, &r), 0);

	const char *rcpts[] = {"u1@example.jp", "u2@example.jp"};
	char id[37];
	submit(f->st, rcpts, 2, id);
	int64_t t0 = clock_now_ms();
	release_one(f->st, r, id, 2);
	char *reply = NULL;
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", &reply), STORE_RCPT_RELEASED);
	assert_string_equal(reply, "250 2.0.0 queued");
	free(reply);
	assert_int_equal(wait_settled(f->st, id, "u2@example.jp", NULL), STORE_RCPT_RELEASED);
	release_stop(r);

	assert_int_equal(mta_count(&mta, &mta.messages), 1);
	assert_true(mta_delivered_to(&mta, "u1@example.jp"));
	assert_true(mta_delivered_to(&mta, "u2@example.jp"));
	assert_string_equal(mta.peer, "127.0.0.2");
	assert_int_equal(metrics_get(METRICS_RELEASED) - released0, 2);
	/* The original bytes with one trace header first (the dot line unstuffed). */
	const char *prefix = "X-Lazaret-Released: mgr1; ";
	assert_non_null(mta.last_data);
	assert_memory_equal(mta.last_data, prefix, strlen(prefix));
	const char *eol = strstr(mta.last_data, "\r\n");
	assert_non_null(eol);
	char when[64];
	size_t wl = (size_t)(eol - mta.last_data) - strlen(prefix);
	assert_true(wl < sizeof(when));
	memcpy(when, mta.last_data + strlen(prefix), wl);
	when[wl] = '\0';
	int64_t ms = 0;
	assert_int_equal(clock_parse_rfc3339(when, &ms), 0);
	assert_true(when[wl - 1] == 'Z');
	assert_true(ms >= t0 - 1000 && ms <= clock_now_ms() + 1000);
	assert_string_equal(eol + 2, test_body);
	mta_stop(&mta);
	free(primary);
}

static void test_primary_refused_goes_to_secondary(void **state)
{
	struct fixture *f = *state;
	struct fake_mta sec = {0};
	mta_start(&sec);
	char *primary = closed_hostport(), *secondary = mta_hostport(&sec);
	struct release_config cfg = base_config(primary, secondary);
	struct release *r = start_release(f->st, &cfg);
	const char *rcpts[] = {"u1@example.jp"};
	char id[37];
	submit_released(f->st, r, rcpts, 1, id);
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", NULL), STORE_RCPT_RELEASED);
	release_stop(r);
	assert_int_equal(mta_count(&sec, &sec.messages), 1);
	assert_true(mta_delivered_to(&sec, "u1@example.jp"));
	mta_stop(&sec);
	free(primary);
	free(secondary);
}

static void test_4xx_at_primary_goes_to_secondary(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0}, sec = {0};
	pri.rules[0] = (struct mta_rule){"busy@", "450 4.2.1 mailbox busy"};
	mta_start(&pri);
	mta_start(&sec);
	char *primary = mta_hostport(&pri), *secondary = mta_hostport(&sec);
	struct release_config cfg = base_config(primary, secondary);
	struct release *r = start_release(f->st, &cfg);

	/* A recipient-level 4xx: only that recipient goes to the secondary. */
	const char *rcpts[] = {"ok@example.jp", "busy@example.jp"};
	char id[37];
	submit_released(f->st, r, rcpts, 2, id);
	assert_int_equal(wait_settled(f->st, id, "ok@example.jp", NULL), STORE_RCPT_RELEASED);
	assert_int_equal(wait_settled(f->st, id, "busy@example.jp", NULL), STORE_RCPT_RELEASED);
	release_stop(r);
	assert_true(mta_delivered_to(&pri, "ok@example.jp"));
	assert_false(mta_delivered_to(&pri, "busy@example.jp"));
	assert_true(mta_delivered_to(&sec, "busy@example.jp"));
	assert_false(mta_delivered_to(&sec, "ok@example.jp"));
	mta_stop(&pri);
	mta_stop(&sec);
	free(primary);
	free(secondary);
}

static void test_session_4xx_goes_to_secondary(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0}, sec = {0};
	pri.fail_sessions = 1000; /* 451 at MAIL, always */
	mta_start(&pri);
	mta_start(&sec);
	char *primary = mta_hostport(&pri), *secondary = mta_hostport(&sec);
	struct release_config cfg = base_config(primary, secondary);
	struct release *r = start_release(f->st, &cfg);
	const char *rcpts[] = {"u1@example.jp", "u2@example.jp"};
	char id[37];
	submit_released(f->st, r, rcpts, 2, id);
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", NULL), STORE_RCPT_RELEASED);
	assert_int_equal(wait_settled(f->st, id, "u2@example.jp", NULL), STORE_RCPT_RELEASED);
	release_stop(r);
	assert_int_equal(mta_count(&pri, &pri.messages), 0);
	assert_int_equal(mta_count(&pri, &pri.sessions), 1);
	assert_int_equal(mta_count(&sec, &sec.messages), 1);
	mta_stop(&pri);
	mta_stop(&sec);
	free(primary);
	free(secondary);
}

static void test_5xx_fails_with_reply(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0}, sec = {0};
	pri.rules[0] = (struct mta_rule){"nobody@", "550 5.1.1 <nobody@example.jp>: no such user"};
	mta_start(&pri);
	mta_start(&sec);
	char *primary = mta_hostport(&pri), *secondary = mta_hostport(&sec);
	struct release_config cfg = base_config(primary, secondary);
	struct release *r = NULL;
	uint64_t failed0 = metrics_get(METRICS_RELEASE_FAILED);
	assert_int_equal(release_start(f->st, &cfg, &r), 0);
	const char *rcpts[] = {"nobody@example.jp", "u1@example.jp"};
	char id[37];
	submit_released(f->st, r, rcpts, 2, id);
	char *reply = NULL;
	assert_int_equal(wait_settled(f->st, id, "nobody@example.jp", &reply), STORE_RCPT_FAILED);
	assert_string_equal(reply, "550 5.1.1 <nobody@example.jp>: no such user");
	free(reply);
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", NULL), STORE_RCPT_RELEASED);
	release_stop(r);
	/* A 5xx is final: the secondary is not asked. */
	assert_int_equal(mta_count(&sec, &sec.sessions), 0);
	assert_int_equal(metrics_get(METRICS_RELEASE_FAILED) - failed0, 1);
	mta_stop(&pri);
	mta_stop(&sec);
	free(primary);
	free(secondary);
}

static void test_retry_with_backoff(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0};
	pri.fail_sessions = 2;
	char *primary = NULL;
	struct release_config cfg = start_primary(&pri, &primary);
	cfg.retry_min_ms = 100;
	cfg.retry_max_ms = 150;
	struct release *r = NULL;
	uint64_t retried0 = metrics_get(METRICS_RELEASE_RETRIED);
	assert_int_equal(release_start(f->st, &cfg, &r), 0);
	const char *rcpts[] = {"u1@example.jp"};
	char id[37];
	submit(f->st, rcpts, 1, id);
	int64_t t0 = clock_mono_ms();
	release_one(f->st, r, id, 1);
	char *reply = NULL;
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", &reply), STORE_RCPT_RELEASED);
	int64_t elapsed = clock_mono_ms() - t0;
	free(reply);
	release_stop(r);
	assert_int_equal(mta_count(&pri, &pri.sessions), 3);
	assert_int_equal(mta_count(&pri, &pri.messages), 1);
	assert_int_equal(metrics_get(METRICS_RELEASE_RETRIED) - retried0, 2);
	/* Two waits: 100 ms then 150 ms (capped), each less at most 10 % jitter. */
	assert_true(elapsed >= 90 + 135);
	mta_stop(&pri);
	free(primary);
}

static void test_give_up(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0};
	pri.fail_sessions = 1000;
	char *primary = NULL;
	struct release_config cfg = start_primary(&pri, &primary);
	cfg.retry_min_ms = 20;
	cfg.retry_max_ms = 40;
	/* attempts about 0, 20, 60 ms after the first; one more would come too late */
	cfg.give_up_after_ms = 100;
	struct release *r = start_release(f->st, &cfg);
	const char *rcpts[] = {"u1@example.jp"};
	char id[37];
	submit_released(f->st, r, rcpts, 1, id);
	char *reply = NULL;
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", &reply), STORE_RCPT_FAILED);
	release_stop(r);
	/* Scheduling delays decide whether the third or the fourth attempt is the last. */
	unsigned attempts = 0;
	assert_int_equal(sscanf(reply, "giving up after %u attempts:", &attempts), 1);
	assert_true(attempts == 3 || attempts == 4);
	assert_non_null(strstr(reply, ": 451 4.3.0 busy, try later"));
	free(reply);
	assert_int_equal(mta_count(&pri, &pri.sessions), attempts);
	mta_stop(&pri);
	free(primary);
}

static void test_released_twice_delivered_once(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0};
	pri.hold_ms = 100; /* the second release comes while the first is being sent */
	char *primary = NULL;
	struct release_config cfg = start_primary(&pri, &primary);
	struct release *r = start_release(f->st, &cfg);
	const char *rcpts[] = {"u1@example.jp"};
	char id[37];
	submit_released(f->st, r, rcpts, 1, id);
	release_one(f->st, r, id, 0);
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", NULL), STORE_RCPT_RELEASED);
	release_one(f->st, r, id, 0);
	usleep(300000);
	release_stop(r);
	assert_int_equal(mta_count(&pri, &pri.messages), 1);
	assert_int_equal(mta_count(&pri, &pri.sessions), 1);
	mta_stop(&pri);
	free(primary);
}

static void test_max_connections_bounds_concurrency(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0};
	pri.hold_ms = 100;
	char *primary = NULL;
	struct release_config cfg = start_primary(&pri, &primary);
	cfg.max_connections = 2;
	enum { N = 10 };
	char ids[N][37];
	char addr[N][32];
	for (int i = 0; i < N; i++) {
		snprintf(addr[i], sizeof(addr[i]), "user%d@example.jp", i);
		const char *rcpts[] = {addr[i]};
		submit(f->st, rcpts, 1, ids[i]);
		int changed = 0;
		assert_int_equal(store_release(f->st, ids[i], NULL, 0, clock_now_ms(), &changed),
				 0);
		assert_int_equal(changed, 1);
	}
	struct release *r = start_release(f->st, &cfg);
	for (int i = 0; i < N; i++)
		assert_int_equal(wait_settled(f->st, ids[i], addr[i], NULL), STORE_RCPT_RELEASED);
	release_stop(r);
	assert_int_equal(mta_count(&pri, &pri.messages), N);
	/* Never more than two at once, and the two workers did run side by side. */
	assert_int_equal(mta_count(&pri, &pri.max_active), 2);
	mta_stop(&pri);
	free(primary);
}

static void test_leased_work_resent_after_crash(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0};
	mta_start(&pri);
	char *primary = mta_hostport(&pri);
	const char *rcpts[] = {"u1@example.jp"};
	char id[37];
	submit(f->st, rcpts, 1, id);
	int changed = 0;
	assert_int_equal(store_release(f->st, id, NULL, 0, clock_now_ms(), &changed), 0);
	/* A process claims it for an hour and dies. */
	struct store_delivery *d = NULL;
	assert_int_equal(store_delivery_claim(f->st, clock_now_ms(), 3600000, &d), 0);
	store_delivery_free(d);
	struct release_config cfg = base_config(primary, NULL);
	struct release *r = start_release(f->st, &cfg);
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", NULL), STORE_RCPT_RELEASED);
	release_stop(r);
	assert_int_equal(mta_count(&pri, &pri.messages), 1);
	mta_stop(&pri);
	free(primary);
}

static void test_reconfigure_to_working_host(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0};
	mta_start(&pri);
	char *dead = closed_hostport(), *good = mta_hostport(&pri);
	struct release_config cfg = base_config(dead, NULL);
	cfg.retry_min_ms = 100;
	struct release *r = start_release(f->st, &cfg);
	const char *rcpts[] = {"u1@example.jp"};
	char id[37];
	submit_released(f->st, r, rcpts, 1, id);
	/* Wait for the first failed attempt: its reply names the dead host. */
	char *reply = NULL;
	int64_t end = clock_mono_ms() + WAIT_LIMIT_MS;
	while (reply == NULL && clock_mono_ms() < end) {
		rcpt_state(f->st, id, "u1@example.jp", &reply);
		if (reply == NULL)
			usleep(10000);
	}
	assert_non_null(reply);
	assert_non_null(strstr(reply, "Connection refused"));
	free(reply);
	struct release_config cfg2 = base_config(good, NULL);
	release_reconfigure(r, &cfg2);
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", NULL), STORE_RCPT_RELEASED);
	release_stop(r);
	assert_int_equal(mta_count(&pri, &pri.messages), 1);
	mta_stop(&pri);
	free(dead);
	free(good);
}

/*
 * A PVO release goes to the gateway that quarantined it, an outbreak one with
 * rescan=yes; the gateway's 4xx sends it to the alternate release gateway; a
 * copy goes to the primary host and changes no recipient.
 */
static void test_pvo_routes(void **state)
{
	struct fixture *f = *state;
	struct fake_mta gw = {0}, alt = {0}, pri = {0};
	gw.rules[0] = (struct mta_rule){"busy@", "451 4.3.0 try later"};
	mta_start(&gw);
	mta_start(&alt);
	mta_start(&pri);
	char *alternate = mta_hostport(&alt), *primary = mta_hostport(&pri);
	register_gateway(f->st, "gw-a", gw.port);
	struct release_config cfg = base_config(primary, NULL);
	cfg.alternate_release_gateway = alternate;
	struct release *r = start_release(f->st, &cfg);

	char id[37], busy[37];
	submit_pvo(f->st, "outbreak", "u1@example.jp", id);
	submit_pvo(f->st, "Adult", "busy@example.jp", busy);
	const char *to[] = {"auditor@example.jp"};
	assert_int_equal(store_pvo_copy(f->st, busy, to, 1, clock_now_ms()), 0);
	struct store_pvo_request rq = {.action = STORE_PVO_RELEASE, .quarantine = "outbreak"};
	assert_int_equal(store_pvo_act(f->st, id, &rq, clock_now_ms(), NULL), 0);
	rq.quarantine = "Adult";
	assert_int_equal(store_pvo_act(f->st, busy, &rq, clock_now_ms(), NULL), 0);
	release_kick(r);
	assert_int_equal(wait_settled(f->st, id, "u1@example.jp", NULL), STORE_RCPT_RELEASED);
	assert_int_equal(wait_settled(f->st, busy, "busy@example.jp", NULL), STORE_RCPT_RELEASED);
	int64_t end = clock_mono_ms() + WAIT_LIMIT_MS;
	while (mta_count(&pri, &pri.messages) < 1 && clock_mono_ms() < end)
		usleep(10000);
	release_stop(r);

	assert_true(mta_delivered_to(&gw, "u1@example.jp"));
	assert_false(mta_delivered_to(&gw, "busy@example.jp"));
	assert_true(mta_delivered_to(&alt, "busy@example.jp"));
	assert_false(mta_delivered_to(&alt, "u1@example.jp"));
	assert_int_equal(mta_count(&pri, &pri.messages), 1);
	assert_true(mta_delivered_to(&pri, "auditor@example.jp"));
	assert_string_equal(gw.peer, "127.0.0.1");
	/* it names the message, whose verdict the gateway's reply may say */
	char *named = xasprintf("; rescan=yes; id=%s\r\n", id);
	assert_non_null(strstr(gw.last_data, named));
	free(named);
	assert_null(strstr(alt.last_data, "rescan"));
	/* the copy changed nothing of the message it copied */
	assert_int_equal(rcpt_state(f->st, busy, "busy@example.jp", NULL), STORE_RCPT_RELEASED);
	mta_stop(&gw);
	mta_stop(&alt);
	mta_stop(&pri);
	free(alternate);
	free(primary);
}

/* No registered gateway and no alternate: the recipients stay queued, and say why. */
static void test_pvo_no_route(void **state)
{
	struct fixture *f = *state;
	struct fake_mta pri = {0};
	char *primary = NULL;
	struct release_config cfg = start_primary(&pri, &primary);
	struct release *r = start_release(f->st, &cfg);
	char id[37];
	submit_pvo(f->st, "virus", "u1@example.jp", id);
	struct store_pvo_request rq = {.action = STORE_PVO_RELEASE, .quarantine = "virus"};
	assert_int_equal(store_pvo_act(f->st, id, &rq, clock_now_ms(), NULL), 0);
	release_kick(r);
	char *reply = NULL;
	int64_t end = clock_mono_ms() + WAIT_LIMIT_MS;
	while (reply == NULL && clock_mono_ms() < end) {
		assert_int_equal(rcpt_state(f->st, id, "u1@example.jp", &reply),
				 STORE_RCPT_RELEASING);
		if (reply == NULL)
			usleep(10000);
	}
	release_stop(r);
	assert_non_null(reply);
	assert_string_equal(reply, "no release route: the gateway that quarantined it is not "
				   "registered and no alternate_release_gateway is set");
	free(reply);
	assert_int_equal(mta_count(&pri, &pri.sessions), 0); /* never to the spam host */
	mta_stop(&pri);
	free(primary);
}

static void test_bad_config(void **state)
{
	struct fixture *f = *state;
	struct release *r = (struct release *)1;
	struct release_config cfg = base_config(NULL, NULL);
	assert_int_equal(release_start(f->st, &cfg, &r), -EINVAL);
	assert_null(r);
	cfg = base_config("127.0.0.1:25", NULL);
	cfg.max_connections = 0;
	assert_int_equal(release_start(f->st, &cfg, &r), -EINVAL);
	release_stop(NULL);
	release_kick(NULL);
}

/* The outbreak membership of message id (a copy: free with store_message_free). */
static struct store_message *outbreak_of(struct store *st, const char *id,
					 const struct store_membership **x)
{
	struct store_message *m = NULL;
	assert_int_equal(store_get(st, id, &m), 0);
	assert_int_equal(m->nmemberships, 1);
	*x = &m->memberships[0];
	assert_string_equal((*x)->quarantine, "outbreak");
	return m;
}

/* Releases id from the outbreak quarantine; the gateway answers final. */
static void release_outbreak(struct store *st, struct release *r, struct fake_mta *gw,
			     const char *final, const char *id)
{
	gw->final_reply = final;
	struct store_pvo_request rq = {.action = STORE_PVO_RELEASE, .quarantine = "outbreak"};
	assert_int_equal(store_pvo_act(st, id, &rq, clock_now_ms(), NULL), 0);
	release_kick(r);
}

/*
 * The gateway's rescan verdict in its reply to the data: kept holds the message
 * again (recipient quarantined, membership held, expiry unchanged, the rule
 * kept); clean releases it; a verdict naming another message is no verdict.
 */
static void test_rescan_verdicts(void **state)
{
	struct fixture *f = *state;
	struct fake_mta gw = {0}, pri = {0};
	char final[256];
	mta_start(&gw);
	char *primary = NULL;
	struct release_config cfg = start_primary(&pri, &primary);
	register_gateway(f->st, "gw-a", gw.port);
	struct release *r = start_release(f->st, &cfg);
	char kept[37], other[37], clean[37];
	submit_pvo(f->st, "outbreak", "k@example.jp", kept);
	submit_pvo(f->st, "outbreak", "o@example.jp", other);
	submit_pvo(f->st, "outbreak", "c@example.jp", clean);
	const struct store_membership *x = NULL;
	struct store_message *m = outbreak_of(f->st, kept, &x);
	int64_t expires = x->expires_at;
	store_message_free(m);

	snprintf(final, sizeof(final), "250 2.0.0 Ok: j1 rescan=kept id=%s rule=wave_1", kept);
	release_outbreak(f->st, r, &gw, final, kept);
	int64_t end = clock_mono_ms() + WAIT_LIMIT_MS;
	for (;;) {
		m = outbreak_of(f->st, kept, &x);
		if (x->rescan == STORE_RESCAN_KEPT || clock_mono_ms() > end)
			break;
		store_message_free(m);
		usleep(10000);
	}
	assert_int_equal(x->rescan, STORE_RESCAN_KEPT);
	assert_int_equal(x->state, STORE_MEMBER_HELD);
	assert_int_equal(x->expires_at, expires);
	assert_string_equal(x->rescan_rule, "wave_1");
	assert_true(x->rescanned_at > 0);
	store_message_free(m);
	assert_int_equal(rcpt_state(f->st, kept, "k@example.jp", NULL), STORE_RCPT_QUARANTINED);
	uint64_t pending = 1;
	assert_int_equal(store_delivery_pending(f->st, &pending), 0);
	assert_int_equal(pending, 0);

	/* a verdict for another message than the one released: an ordinary delivery */
	snprintf(final, sizeof(final), "250 2.0.0 Ok: j2 rescan=kept id=%s rule=wave_1", kept);
	release_outbreak(f->st, r, &gw, final, other);
	assert_int_equal(wait_settled(f->st, other, "o@example.jp", NULL), STORE_RCPT_RELEASED);
	m = outbreak_of(f->st, other, &x);
	assert_int_equal(x->state, STORE_MEMBER_RELEASED);
	assert_int_equal(x->rescan, STORE_RESCAN_NONE);
	assert_null(x->rescan_rule);
	store_message_free(m);

	snprintf(final, sizeof(final), "250 2.0.0 Ok: j3 rescan=clean id=%s", clean);
	release_outbreak(f->st, r, &gw, final, clean);
	assert_int_equal(wait_settled(f->st, clean, "c@example.jp", NULL), STORE_RCPT_RELEASED);
	m = outbreak_of(f->st, clean, &x);
	assert_int_equal(x->state, STORE_MEMBER_RELEASED);
	assert_int_equal(x->rescan, STORE_RESCAN_CLEAN);
	assert_null(x->rescan_rule);
	store_message_free(m);
	release_stop(r);
	/* the kept one stayed as it was; the gateway got each once */
	assert_int_equal(rcpt_state(f->st, kept, "k@example.jp", NULL), STORE_RCPT_QUARANTINED);
	assert_int_equal(mta_count(&gw, &gw.messages), 3);
	assert_int_equal(mta_count(&pri, &pri.messages), 0);
	mta_stop(&gw);
	mta_stop(&pri);
	free(primary);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_delivered_to_primary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_primary_refused_goes_to_secondary, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_4xx_at_primary_goes_to_secondary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_session_4xx_goes_to_secondary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_5xx_fails_with_reply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retry_with_backoff, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_give_up, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_released_twice_delivered_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_connections_bounds_concurrency, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_leased_work_resent_after_crash, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reconfigure_to_working_host, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_routes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rescan_verdicts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pvo_no_route, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
