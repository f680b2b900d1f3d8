/*
 * smtp_session — libevent glue between sockets and smtp_proto (see smtp_session.h).
 *
 * A session's states and the functions that move it:
 *
 *   accepted --server_accept (ACL/limit refused)------------> closing
 *   accepted --server_accept--> reading
 *   reading  --session_handle(MESSAGE)--> awaiting  (reading off; owner stores the message)
 *   awaiting --smtp_session_message_done--> reading (pipelined input resumes via resume event)
 *   awaiting --peer gone (session_event)--> orphaned (kept until message_done, then freed)
 *   reading  --session_handle(STARTTLS)--> reading over TLS (filter bufferevent)
 *   reading  --session_handle(CLOSE) / timeout / shutdown--> closing
 *   reading  --command or data deadline (session_deadline_fired)--> closing
 *   closing  --output flushed (session_try_finish)--> freed
 *
 * Deadlines: the bufferevent's read timeout is the idle timeout, which every octet
 * restarts. So that a client trickling one octet at a time cannot hold a session
 * for ever, session_deadline_update() (after every read) also runs one timer per
 * session: command_timeout from the first octet of a command line until it is
 * complete, data_timeout from the 354 until the end of the data.
 *
 * Not for: message policy or storage; the owner's on_message handler decides.
 */
#include "smtp/smtp_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/acl.h"
#include "common/fdlimit.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/xalloc.h"

/* How long a closing session may take to flush its last reply. */
#define SMTP_SESSION_FLUSH_MAX_MS 10000
/* Poll interval while waiting for TLS output to drain before closing. */
#define SMTP_SESSION_FLUSH_POLL_MS 20
/* Bytes taken from the socket buffer per feed call. */
#define SMTP_SESSION_READ_CHUNK 16384

struct smtp_server {
	struct event_base *base;
	struct evconnlistener *listener;
	struct fdlimit_guard *accept_guard;
	struct smtp_server_config cfg;
	char *listen;
	char *hostname;
	char *tls_cert;
	char *tls_key;
	SSL_CTX *ssl_ctx;
	unsigned nsessions; /* counted sessions (not the ones refused at connect) */
	bool shutting_down;
	struct smtp_session *sessions;
};

struct smtp_session {
	struct smtp_server *srv;
	struct bufferevent *bev;
	struct smtp_proto *proto;
	struct event *resume;
	struct event *flush_timer;
	struct event *deadline;		   /* command or data deadline */
	enum smtp_proto_wait deadline_for; /* what it runs for; SMTP_WAIT_NOTHING: off */
	uint64_t deadline_line;		   /* smtp_proto_lines_done() when it was armed */
	int64_t flush_started_ms;
	char id[13];
	char peer[INET6_ADDRSTRLEN];
	struct sockaddr_storage peer_addr;
	void *data;
	bool counted;
	bool awaiting;
	bool closing;
	bool orphaned;
	bool tls;
	unsigned messages;
	struct smtp_session *prev, *next;
};

static void session_read(struct bufferevent *bev, void *arg);
static void session_write(struct bufferevent *bev, void *arg);
static void session_event(struct bufferevent *bev, short what, void *arg);
static void session_free(struct smtp_session *s);

static int64_t session_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void session_on_reject(void *ctx, const char *reason, const char *reply)
{
	struct smtp_session *s = ctx;
	char q[512];
	log_info("smtp.reject", "session=%s client=%s reason=%s reply=%s", s->id, s->peer, reason,
		 log_quote(q, sizeof(q), reply));
	if (s->srv->cfg.on_refused != NULL)
		s->srv->cfg.on_refused(s->srv->cfg.ctx, reason, s->peer);
}

static int session_check_mail(void *ctx, const char *sender, char *reply, size_t replylen)
{
	struct smtp_session *s = ctx;
	return s->srv->cfg.proto.check_mail(s, sender, reply, replylen);
}

static int session_check_rcpt(void *ctx, const char *rcpt, char *reply, size_t replylen)
{
	struct smtp_session *s = ctx;
	return s->srv->cfg.proto.check_rcpt(s, rcpt, reply, replylen);
}

/* Moves whatever replies the state machine produced into the socket's output. */
static void session_flush_proto(struct smtp_session *s)
{
	size_t len;
	const char *out = smtp_proto_output(s->proto, &len);
	if (len > 0 && s->bev != NULL) {
		bufferevent_write(s->bev, out, len);
		smtp_proto_output_consumed(s->proto, len);
	} else if (len > 0) {
		smtp_proto_output_consumed(s->proto, len);
	}
}

static size_t session_pending_output(struct smtp_session *s)
{
	if (s->bev == NULL)
		return 0;
	size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

static void session_flush_poll(evutil_socket_t fd, short what, void *arg);

/* Frees the session once its last reply has left, or after SMTP_SESSION_FLUSH_MAX_MS. */
static void session_try_finish(struct smtp_session *s)
{
	if (session_pending_output(s) == 0 ||
	    session_now_ms() - s->flush_started_ms > SMTP_SESSION_FLUSH_MAX_MS) {
		session_free(s);
		return;
	}
	if (s->flush_timer == NULL)
		s->flush_timer = evtimer_new(s->srv->base, session_flush_poll, s);
	struct timeval tv = {0, SMTP_SESSION_FLUSH_POLL_MS * 1000};
	evtimer_add(s->flush_timer, &tv);
}

static void session_flush_poll(evutil_socket_t fd, short what, void *arg)
{
	session_try_finish(arg);
}

static void session_begin_close(struct smtp_session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	evtimer_del(s->deadline);
	s->deadline_for = SMTP_WAIT_NOTHING;
	s->flush_started_ms = session_now_ms();
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ);
	/* Never free here: callers still hold s. The timer frees it on the next turn. */
	if (s->flush_timer == NULL)
		s->flush_timer = evtimer_new(s->srv->base, session_flush_poll, s);
	struct timeval tv = {0, 0};
	evtimer_add(s->flush_timer, &tv);
}

static int session_start_tls(struct smtp_session *s)
{
	SSL *ssl = SSL_new(s->srv->ssl_ctx);
	if (ssl == NULL)
		return -ENOMEM;
	struct bufferevent *tls = bufferevent_openssl_filter_new(
	    s->srv->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		return -ENOMEM;
	}
	s->bev = tls;
	s->tls = true;
	bufferevent_setcb(tls, session_read, session_write, session_event, s);
	struct timeval tv = {(time_t)(s->srv->cfg.idle_timeout_ms / 1000),
			     (suseconds_t)(s->srv->cfg.idle_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(tls, &tv, &tv);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	smtp_proto_tls_started(s->proto);
	log_info("smtp.starttls", "session=%s client=%s", s->id, s->peer);
	return 0;
}

/* Acts on one event of the state machine. s stays valid (closing frees it later). */
static bool session_handle(struct smtp_session *s, enum smtp_proto_event ev)
{
	session_flush_proto(s);
	switch (ev) {
	case SMTP_EVENT_NONE:
		if (s->srv->shutting_down && !s->awaiting && !smtp_proto_in_transaction(s->proto)) {
			smtp_proto_shutdown(s->proto);
			session_flush_proto(s);
			session_begin_close(s);
		}
		return true;
	case SMTP_EVENT_MESSAGE: {
		struct smtp_message *m = smtp_proto_message(s->proto);
		if (m == NULL)
			panic("smtp_proto reported a message but has none");
		s->awaiting = true;
		s->messages++;
		bufferevent_disable(s->bev, EV_READ);
		m->env.tls = s->tls;
		s->srv->cfg.on_message(s->srv->cfg.ctx, s, m);
		return true;
	}
	case SMTP_EVENT_STARTTLS:
		if (s->srv->ssl_ctx == NULL || session_start_tls(s) < 0) {
			log_warn("smtp.starttls_failed", "session=%s client=%s", s->id, s->peer);
			session_begin_close(s);
		}
		return true;
	case SMTP_EVENT_CLOSE:
		session_begin_close(s);
		return true;
	}
	return true;
}

/*
 * Arms, keeps or stops the session's deadline after input was processed: a command
 * line begun (SMTP_WAIT_COMMAND_REST) gets command_timeout from now, data
 * (SMTP_WAIT_DATA) gets data_timeout from now; the same line or the same data
 * keeps the deadline it has; anything else stops it.
 */
static void session_deadline_update(struct smtp_session *s)
{
	enum smtp_proto_wait w =
	    s->closing || s->awaiting ? SMTP_WAIT_NOTHING : smtp_proto_waiting_for(s->proto);
	uint64_t line = smtp_proto_lines_done(s->proto);
	int64_t ms = 0;
	if (w == SMTP_WAIT_COMMAND_REST)
		ms = s->srv->cfg.command_timeout_ms;
	else if (w == SMTP_WAIT_DATA)
		ms = s->srv->cfg.data_timeout_ms;
	if (ms <= 0) {
		if (s->deadline_for != SMTP_WAIT_NOTHING)
			evtimer_del(s->deadline);
		s->deadline_for = SMTP_WAIT_NOTHING;
		return;
	}
	if (w == s->deadline_for && line == s->deadline_line)
		return;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(s->deadline, &tv);
	s->deadline_for = w;
	s->deadline_line = line;
}

static void session_deadline_fired(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (s->closing || s->awaiting)
		return;
	smtp_proto_timeout(s->proto);
	session_flush_proto(s);
	log_info("smtp.timeout", "session=%s client=%s deadline=%s", s->id, s->peer,
		 s->deadline_for == SMTP_WAIT_DATA ? "data" : "command");
	if (s->srv->cfg.on_refused != NULL)
		s->srv->cfg.on_refused(s->srv->cfg.ctx, "timeout", s->peer);
	session_begin_close(s);
}

/* Feeds buffered socket input to the state machine until it must wait. */
static void session_pump(struct smtp_session *s)
{
	char buf[SMTP_SESSION_READ_CHUNK];
	struct evbuffer *in = bufferevent_get_input(s->bev);
	while (!s->closing && !s->awaiting && evbuffer_get_length(in) > 0) {
		int n = evbuffer_remove(in, buf, sizeof(buf));
		if (n <= 0)
			break;
		enum smtp_proto_event ev = smtp_proto_feed(s->proto, buf, (size_t)n);
		bool was_tls = s->tls;
		session_handle(s, ev);
		if (s->closing)
			return;
		if (s->tls != was_tls) {
			/* STARTTLS: the new bufferevent has its own input; what followed the
			 * command in the plain buffer was discarded by the state machine. */
			in = bufferevent_get_input(s->bev);
		}
	}
	session_deadline_update(s);
}

static void session_read(struct bufferevent *bev, void *arg)
{
	session_pump(arg);
}

static void session_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (s->closing)
		session_try_finish(s);
}

/* The handshake after STARTTLS is done: what was agreed, and who the client says it is. */
static void session_log_tls(struct smtp_session *s, struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (ssl == NULL)
		return;
	char subject[256] = "-";
	X509 *cert = SSL_get_peer_certificate(ssl);
	if (cert != NULL) {
		X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
		X509_free(cert);
	}
	char q[300];
	log_info("smtp.tls_established", "session=%s client=%s version=%s cipher=%s client_cert=%s",
		 s->id, s->peer, SSL_get_version(ssl), SSL_get_cipher_name(ssl),
		 log_quote(q, sizeof(q), subject));
}

static void session_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->tls)
			session_log_tls(s, bev);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && !s->closing) {
		if (what & BEV_EVENT_READING) {
			smtp_proto_timeout(s->proto);
			session_flush_proto(s);
			log_info("smtp.timeout", "session=%s client=%s", s->id, s->peer);
			if (s->srv->cfg.on_refused != NULL)
				s->srv->cfg.on_refused(s->srv->cfg.ctx, "timeout", s->peer);
			session_begin_close(s);
			/* Reading stays off; give the write side its own chance to flush. */
			return;
		}
	}
	if (what & BEV_EVENT_ERROR) {
		unsigned long e = bufferevent_get_openssl_error(bev);
		if (e != 0) {
			char buf[256];
			ERR_error_string_n(e, buf, sizeof(buf));
			char q[300];
			log_info("smtp.tls_error", "session=%s client=%s error=%s", s->id, s->peer,
				 log_quote(q, sizeof(q), buf));
		}
	}
	/* EOF, error, or a timeout while closing: the peer is gone or stuck. */
	if (s->awaiting) {
		/* The owner still holds the message; keep s until it reports back. */
		s->orphaned = true;
		bufferevent_free(s->bev);
		s->bev = NULL;
		return;
	}
	session_free(s);
}

static void session_resume(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (s->closing)
		return;
	enum smtp_proto_event ev = smtp_proto_feed(s->proto, NULL, 0);
	session_handle(s, ev);
	session_deadline_update(s);
	if (s->closing || s->awaiting)
		return;
	bufferevent_enable(s->bev, EV_READ);
	session_pump(s);
}

void smtp_session_message_done(struct smtp_session *s, const char *reply)
{
	if (!s->awaiting)
		panic("message_done on session %s without a message", s->id);
	s->awaiting = false;
	smtp_proto_message_done(s->proto, reply);
	if (s->orphaned) {
		session_free(s);
		return;
	}
	session_flush_proto(s);
	/* Continue on a fresh stack: pipelined input may hold the next message. */
	event_active(s->resume, 0, 1);
}

const char *smtp_session_id(const struct smtp_session *s)
{
	return s->id;
}

const char *smtp_session_peer(const struct smtp_session *s)
{
	return s->peer;
}

bool smtp_session_tls(const struct smtp_session *s)
{
	return s->tls;
}

const char *smtp_session_helo(const struct smtp_session *s)
{
	return smtp_proto_helo(s->proto);
}

void smtp_session_tls_info(const struct smtp_session *s, const char **version, const char **cipher)
{
	*version = NULL;
	*cipher = NULL;
	SSL *ssl = s->tls ? bufferevent_openssl_get_ssl(s->bev) : NULL;
	if (ssl == NULL)
		return;
	*version = SSL_get_version(ssl);
	*cipher = SSL_get_cipher_name(ssl);
}

const struct sockaddr *smtp_session_peer_addr(const struct smtp_session *s)
{
	return (const struct sockaddr *)&s->peer_addr;
}

void *smtp_session_server_ctx(const struct smtp_session *s)
{
	return s->srv->cfg.ctx;
}

void smtp_session_set_data(struct smtp_session *s, void *data)
{
	s->data = data;
}

void *smtp_session_data(const struct smtp_session *s)
{
	return s->data;
}

static void session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;
	if (srv->cfg.on_close != NULL)
		srv->cfg.on_close(srv->cfg.ctx, s);
	if (s->counted) {
		srv->nsessions--;
		log_info("smtp.disconnect", "session=%s client=%s messages=%u", s->id, s->peer,
			 s->messages);
	}
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->resume != NULL)
		event_free(s->resume);
	if (s->flush_timer != NULL)
		event_free(s->flush_timer);
	if (s->deadline != NULL)
		event_free(s->deadline);
	smtp_proto_free(s->proto);
	free(s);
}

static void peer_text(const struct sockaddr *sa, char *buf, size_t len)
{
	buf[0] = '\0';
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
			  (socklen_t)len);
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)len);
		else
			inet_ntop(AF_INET6, a, buf, (socklen_t)len);
	}
}

/* Refuses a connection with one reply line, then closes once it is sent. */
static void server_refuse(struct smtp_session *s, const char *reason, const char *reply)
{
	log_info("smtp.refused", "session=%s client=%s reason=%s", s->id, s->peer, reason);
	if (s->srv->cfg.on_refused != NULL)
		s->srv->cfg.on_refused(s->srv->cfg.ctx, reason, s->peer);
	bufferevent_write(s->bev, reply, strlen(reply));
	bufferevent_write(s->bev, "\r\n", 2);
	session_begin_close(s);
}

/* Counted sessions (greeted, not refused at connect) from the client address peer. */
static unsigned server_client_sessions(const struct smtp_server *srv, const char *peer)
{
	unsigned n = 0;
	for (const struct smtp_session *s = srv->sessions; s != NULL; s = s->next)
		n += s->counted && strcmp(s->peer, peer) == 0;
	return n;
}

static void server_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			  int salen, void *arg)
{
	struct smtp_server *srv = arg;
	if (srv->shutting_down) {
		evutil_closesocket(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	ids_session(s->id);
	peer_text(sa, s->peer, sizeof(s->peer));
	if ((size_t)salen <= sizeof(s->peer_addr))
		memcpy(&s->peer_addr, sa, (size_t)salen);
	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL)
		panic("cannot allocate a bufferevent");
	struct smtp_proto_config pc = srv->cfg.proto;
	pc.hostname = srv->hostname;
	pc.starttls_available = srv->ssl_ctx != NULL;
	pc.on_reject = session_on_reject;
	pc.check_mail = srv->cfg.proto.check_mail != NULL ? session_check_mail : NULL;
	pc.check_rcpt = srv->cfg.proto.check_rcpt != NULL ? session_check_rcpt : NULL;
	pc.hook_ctx = s;
	s->proto = smtp_proto_new(&pc);
	s->resume = event_new(srv->base, -1, 0, session_resume, s);
	s->deadline = evtimer_new(srv->base, session_deadline_fired, s);
	if (s->resume == NULL || s->deadline == NULL)
		panic("cannot allocate session events");
	s->next = srv->sessions;
	if (srv->sessions != NULL)
		srv->sessions->prev = s;
	srv->sessions = s;
	bufferevent_setcb(s->bev, session_read, session_write, session_event, s);
	struct timeval tv = {(time_t)(srv->cfg.idle_timeout_ms / 1000),
			     (suseconds_t)(srv->cfg.idle_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(s->bev, &tv, &tv);

	if (srv->cfg.accept_from != NULL &&
	    !acl_match(srv->cfg.accept_from, (const struct sockaddr *)sa)) {
		char reply[300];
		snprintf(reply, sizeof(reply), "554 5.7.1 %s: Access denied", srv->hostname);
		server_refuse(s, "acl", reply);
		return;
	}
	if (srv->nsessions >= srv->cfg.max_connections) {
		char reply[300];
		snprintf(reply, sizeof(reply), "421 4.7.0 %s Error: too many connections",
			 srv->hostname);
		server_refuse(s, "connection_limit", reply);
		return;
	}
	if (srv->cfg.max_connections_per_client > 0 &&
	    server_client_sessions(srv, s->peer) >= srv->cfg.max_connections_per_client) {
		char reply[400];
		snprintf(reply, sizeof(reply), "421 4.7.0 %s Error: too many connections from %s",
			 srv->hostname, s->peer);
		server_refuse(s, "client_connection_limit", reply);
		return;
	}
	s->counted = true;
	srv->nsessions++;
	log_info("smtp.connect", "session=%s client=%s", s->id, s->peer);
	if (srv->cfg.check_connect != NULL) {
		char reply[512] = "";
		if (srv->cfg.check_connect(srv->cfg.ctx, s, reply, sizeof(reply)) < 0) {
			if (reply[0] == '\0')
				snprintf(reply, sizeof(reply), "554 5.7.1 %s: Access denied",
					 srv->hostname);
			server_refuse(s, "policy", reply);
			return;
		}
	}
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	smtp_proto_greeting(s->proto);
	session_flush_proto(s);
}

int smtp_server_start(struct event_base *base, const struct smtp_server_config *cfg,
		      struct smtp_server **out, char **err)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	*err = NULL;
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(cfg->listen, (struct sockaddr *)&ss, &sslen) < 0) {
		*err = xasprintf("bad listen address %s", cfg->listen);
		return -EINVAL;
	}
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	srv->base = base;
	srv->cfg = *cfg;
	srv->listen = xstrdup(cfg->listen);
	srv->hostname = xstrdup(cfg->proto.hostname != NULL ? cfg->proto.hostname : "localhost");
	srv->cfg.listen = srv->listen;
	srv->cfg.proto.hostname = srv->hostname;
	if (cfg->tls_cert != NULL && cfg->tls_key != NULL) {
		srv->ssl_ctx =
		    tls_server_context(cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err);
		if (srv->ssl_ctx == NULL) {
			smtp_server_free(srv);
			return -EINVAL;
		}
	}
	srv->cfg.tls_cert = srv->cfg.tls_key = srv->cfg.tls_client_ca = NULL;
	srv->listener = evconnlistener_new_bind(base, server_accept, srv,
						LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 512,
						(struct sockaddr *)&ss, sslen);
	if (srv->listener == NULL) {
		int e = errno;
		*err = xasprintf("cannot listen on %s: %s", cfg->listen, strerror(e));
		smtp_server_free(srv);
		return e ? -e : -EADDRINUSE;
	}
	srv->accept_guard = fdlimit_guard_listener(base, srv->listener, "smtp");
	*out = srv;
	return 0;
}

void smtp_server_set_acl(struct smtp_server *srv, const struct acl *accept_from)
{
	srv->cfg.accept_from = accept_from;
}

void smtp_server_shutdown(struct smtp_server *srv)
{
	srv->shutting_down = true;
	if (srv->listener != NULL)
		evconnlistener_disable(srv->listener);
	fdlimit_guard_stop(srv->accept_guard);
	struct smtp_session *s = srv->sessions;
	while (s != NULL) {
		struct smtp_session *next = s->next;
		if (!s->closing && !s->awaiting && !s->orphaned &&
		    !smtp_proto_in_transaction(s->proto)) {
			smtp_proto_shutdown(s->proto);
			session_flush_proto(s);
			session_begin_close(s);
		}
		s = next;
	}
}

void smtp_server_close_all(struct smtp_server *srv)
{
	struct smtp_session *s = srv->sessions;
	while (s != NULL) {
		struct smtp_session *next = s->next;
		if (s->awaiting) {
			/* Its message is still with the owner: detach from the socket only. */
			s->orphaned = true;
			if (s->bev != NULL) {
				bufferevent_free(s->bev);
				s->bev = NULL;
			}
		} else {
			session_free(s);
		}
		s = next;
	}
}

unsigned smtp_server_sessions(const struct smtp_server *srv)
{
	unsigned n = 0;
	for (const struct smtp_session *s = srv->sessions; s != NULL; s = s->next)
		n++;
	return n;
}

void smtp_server_free(struct smtp_server *srv)
{
	if (srv == NULL)
		return;
	while (srv->sessions != NULL)
		session_free(srv->sessions);
	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	fdlimit_guard_free(srv->accept_guard);
	if (srv->ssl_ctx != NULL)
		SSL_CTX_free(srv->ssl_ctx);
	free(srv->listen);
	free(srv->hostname);
	free(srv);
}
