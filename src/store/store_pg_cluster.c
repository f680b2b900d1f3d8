/*
 * store_pg_cluster — several lazaretd processes ("nodes") on one PostgreSQL
 * database: who they are, which of them runs the work that must happen once, and
 * the secrets they share. Not for: the delivery leases (store_pg.c names the node
 * in them) or the order of message numbers (store_pg_digest.c).
 *
 * Locks. Every lock here is an advisory lock of a session, so a process that dies
 * (or whose connection the server ends) loses it at once:
 *   - the node lock (STORE_PG_NODE_CLASS, hashtext(name)), held by the writer's
 *     session while the store is open: a second process with the same node name is
 *     refused at start (store.node_in_use). That is what makes it safe for a
 *     starting node to take back the deliveries leased under its own name.
 *   - a job lock (STORE_PG_JOB_CLASS, hashtext(job)), held by a pooled connection
 *     set aside for one run of a cluster-wide job (store_job_try .. store_job_done).
 *
 * A node's row in nodes: inserted (or its started_at renewed) when the store opens,
 * its last_seen refreshed every STORE_NODE_BEAT_MS by a thread of its own. Rows
 * stay after a node stops (operators see when each was last seen).
 *
 * Job states, per job name in this process:
 *   idle --store_pg_job_try (lock granted)--> held (connection set aside)
 *   idle --store_pg_job_try (refused)-------> idle (another node runs it: skip)
 *   held --store_pg_job_done----------------> idle (unlocked, connection back)
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "store/store_pg_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"

/* First key of the two-key advisory locks: "lznd" node names, "lzjb" jobs. */
#define STORE_PG_NODE_CLASS 0x6c7a6e64
#define STORE_PG_JOB_CLASS  0x6c7a6a62

struct store_pg_job {
	char *name;
	struct store_pg_conn *conn; /* holds the job's lock */
	struct store_pg_job *next;
};

struct store_pg_cluster {
	struct store_pg *st;
	char *node;
	pthread_mutex_t lock; /* guards jobs and stopping */
	pthread_cond_t wake;  /* the beat thread: stopping */
	struct store_pg_job *jobs;
	bool stopping;
	pthread_t beat;
	bool beat_started;
};

int store_pg_node_lock(PGconn *c, const char *node, int64_t wait_ms)
{
	bool got = false;
	struct store_pg_params p = {0};
	store_pg_int(&p, STORE_PG_NODE_CLASS);
	store_pg_text(&p, node);
	/* a node restarted right after a crash finds its old session still ending */
	int rc =
	    store_pg_lock_wait(c, "node_lock", "SELECT pg_try_advisory_lock($1::int, hashtext($2))",
			       &p, wait_ms, &got);
	if (rc < 0)
		return rc;
	if (!got) {
		char q[STORE_NODE_NAME_MAX + 8];
		log_error("store.node_in_use",
			  "backend=postgresql database=%s node=%s"
			  " reason=\"another lazaretd with this node name has the database open\"",
			  PQdb(c), log_quote(q, sizeof(q), node));
		return -EBUSY;
	}
	return 0;
}

struct store_pg_node_args {
	const char *node;
	int64_t now;
	bool start;
};

static int store_pg_node_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_node_args *a = arg;
	struct store_pg_params p = {0};
	store_pg_text(&p, a->node);
	store_pg_int(&p, a->now);
	store_pg_text(&p, LAZARET_VERSION);
	int rc;
	if (a->start)
		rc = store_pg_do(c, "node_start",
				 "INSERT INTO nodes (name, started_at, last_seen, version)"
				 " VALUES ($1, $2, $2, $3) ON CONFLICT (name) DO UPDATE SET"
				 " started_at = $2, last_seen = $2, version = $3",
				 &p, NULL);
	else
		rc =
		    store_pg_do(c, "node_beat",
				"UPDATE nodes SET last_seen = greatest(last_seen, $2), version = $3"
				" WHERE name = $1",
				&p, NULL);
	store_pg_params_clear(&p);
	return rc;
}

static void *store_pg_beat_main(void *arg)
{
	struct store_pg_cluster *cl = arg;
	pthread_mutex_lock(&cl->lock);
	while (!cl->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += STORE_NODE_BEAT_MS / 1000;
		pthread_cond_timedwait(&cl->wake, &cl->lock, &ts);
		if (cl->stopping)
			break;
		pthread_mutex_unlock(&cl->lock);
		struct store_pg_node_args a = {.node = cl->node, .now = clock_now_ms()};
		if (store_pg_tx(cl->st, store_pg_node_tx, &a) < 0)
			log_warn("store.node_beat_failed", "backend=postgresql");
		pthread_mutex_lock(&cl->lock);
	}
	pthread_mutex_unlock(&cl->lock);
	return NULL;
}

int store_pg_cluster_open(struct store_pg *st, const char *node, bool exclusive,
			  struct store_pg_cluster **out)
{
	struct store_pg_cluster *cl = xcalloc(1, sizeof(*cl));
	cl->st = st;
	cl->node = xstrdup(node);
	pthread_mutex_init(&cl->lock, NULL);
	pthread_cond_init(&cl->wake, NULL);
	*out = cl;
	/* the migration tool is no node of the cluster */
	if (exclusive)
		return 0;
	struct store_pg_node_args a = {.node = node, .now = clock_now_ms(), .start = true};
	int rc = store_pg_tx(st, store_pg_node_tx, &a);
	if (rc < 0)
		return rc;
	if (pthread_create(&cl->beat, NULL, store_pg_beat_main, cl) != 0)
		return -EAGAIN;
	cl->beat_started = true;
	return 0;
}

void store_pg_cluster_close(struct store_pg_cluster *cl)
{
	if (cl == NULL)
		return;
	pthread_mutex_lock(&cl->lock);
	cl->stopping = true;
	pthread_cond_signal(&cl->wake);
	pthread_mutex_unlock(&cl->lock);
	if (cl->beat_started)
		pthread_join(cl->beat, NULL);
	while (cl->jobs != NULL) {
		struct store_pg_job *j = cl->jobs;
		cl->jobs = j->next;
		log_warn("store.job_left_held", "job=%s", j->name);
		store_pg_conn_put(cl->st, j->conn);
		free(j->name);
		free(j);
	}
	pthread_mutex_destroy(&cl->lock);
	pthread_cond_destroy(&cl->wake);
	free(cl->node);
	free(cl);
}

const char *store_pg_node_name(struct store *s)
{
	return store_pg_cluster_of(store_pg_of(s))->node;
}

int store_pg_nodes(struct store *s, int64_t since, struct store_node **out, size_t *n)
{
	struct store_pg_params p = {0};
	store_pg_int(&p, since);
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(s), "nodes",
				"SELECT name, version, started_at, last_seen FROM nodes"
				" WHERE last_seen >= $1 ORDER BY name COLLATE \"C\"",
				&p, &r);
	if (rc < 0)
		return rc;
	int rows = PQntuples(r);
	*out = xcalloc((size_t)rows + 1, sizeof(**out));
	for (int i = 0; i < rows; i++) {
		(*out)[i].name = store_pg_dup(r, i, 0);
		(*out)[i].version = store_pg_dup(r, i, 1);
		(*out)[i].started_at = store_pg_i64(r, i, 2);
		(*out)[i].last_seen = store_pg_i64(r, i, 3);
	}
	*n = (size_t)rows;
	PQclear(r);
	return 0;
}

/* --- cluster-wide jobs ------------------------------------------------------ */

int store_pg_job_try(struct store *s, const char *name, bool *held)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_cluster *cl = store_pg_cluster_of(st);
	pthread_mutex_lock(&cl->lock);
	bool mine = false;
	for (struct store_pg_job *j = cl->jobs; j != NULL && !mine; j = j->next)
		mine = strcmp(j->name, name) == 0;
	pthread_mutex_unlock(&cl->lock);
	if (mine)
		return -EINVAL;
	struct store_pg_conn *c = NULL;
	int rc = store_pg_conn_get(st, &c);
	if (rc < 0)
		return rc;
	struct store_pg_params p = {0};
	store_pg_int(&p, STORE_PG_JOB_CLASS);
	store_pg_text(&p, name);
	PGresult *r = store_pg_exec(
	    c->pg, "job_lock", "SELECT pg_try_advisory_lock($1::int, hashtext($2))", &p, false);
	store_pg_params_clear(&p);
	if (r == NULL) {
		store_pg_conn_put(st, c);
		return -EIO;
	}
	*held = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!*held) {
		store_pg_conn_put(st, c);
		return 0;
	}
	struct store_pg_job *j = xcalloc(1, sizeof(*j));
	j->name = xstrdup(name);
	j->conn = c;
	pthread_mutex_lock(&cl->lock);
	j->next = cl->jobs;
	cl->jobs = j;
	pthread_mutex_unlock(&cl->lock);
	return 0;
}

void store_pg_job_done(struct store *s, const char *name)
{
	struct store_pg *st = store_pg_of(s);
	struct store_pg_cluster *cl = store_pg_cluster_of(st);
	pthread_mutex_lock(&cl->lock);
	struct store_pg_job **pp = &cl->jobs, *j = NULL;
	while (*pp != NULL && strcmp((*pp)->name, name) != 0)
		pp = &(*pp)->next;
	if (*pp != NULL) {
		j = *pp;
		*pp = j->next;
	}
	pthread_mutex_unlock(&cl->lock);
	if (j == NULL)
		return;
	/* the connection goes back to the pool: it must hold no lock there */
	PGresult *r = PQexec(j->conn->pg, "SELECT pg_advisory_unlock_all()");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		log_warn("store.job_unlock_failed", "job=%s", j->name); /* a broken session:
									   the pool drops it */
	PQclear(r);
	store_pg_conn_put(st, j->conn);
	free(j->name);
	free(j);
}

/* --- secrets ---------------------------------------------------------------- */

static int store_pg_secret_hex(const char *hex, unsigned char *out, size_t len)
{
	if (strlen(hex) != 2 * len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned v = 0;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (unsigned char)v;
	}
	return 0;
}

int store_pg_secret_get(struct store *s, const char *name, unsigned char *out, size_t len)
{
	struct store_pg_params p = {0};
	store_pg_text(&p, name);
	PGresult *r = NULL;
	int rc = store_pg_query(store_pg_of(s), "secret_get",
				"SELECT encode(value, 'hex') FROM secrets WHERE name = $1", &p, &r);
	if (rc < 0)
		return rc;
	rc = PQntuples(r) == 0 ? -ENOENT : store_pg_secret_hex(PQgetvalue(r, 0, 0), out, len);
	PQclear(r);
	return rc;
}

struct store_pg_secret_args {
	const char *name;
	const unsigned char *value;
	size_t len;
	unsigned char *out;
};

static int store_pg_secret_add_tx(struct store_pg *st, PGconn *c, void *arg)
{
	(void)st;
	struct store_pg_secret_args *a = arg;
	char *hex = xcalloc(2 * a->len + 1, 1);
	for (size_t i = 0; i < a->len; i++)
		snprintf(hex + 2 * i, 3, "%02x", a->value[i]);
	struct store_pg_params p = {0};
	store_pg_text(&p, a->name);
	store_pg_owned(&p, hex);
	store_pg_int(&p, clock_now_ms());
	/* two nodes adding at once: the second one's insert waits for the first's
	 * commit, does nothing, and both read the first one's value */
	int rc = store_pg_do(c, "secret_add",
			     "INSERT INTO secrets (name, value, created_at)"
			     " VALUES ($1, decode($2, 'hex'), $3) ON CONFLICT (name) DO NOTHING",
			     &p, NULL);
	store_pg_params_clear(&p);
	if (rc < 0)
		return rc;
	store_pg_text(&p, a->name);
	PGresult *r =
	    store_pg_exec(c, "secret_read",
			  "SELECT encode(value, 'hex') FROM secrets WHERE name = $1", &p, false);
	store_pg_params_clear(&p);
	if (r == NULL)
		return -EIO;
	rc = PQntuples(r) == 1 ? store_pg_secret_hex(PQgetvalue(r, 0, 0), a->out, a->len) : -EIO;
	PQclear(r);
	return rc;
}

int store_pg_secret_add(struct store *s, const char *name, const unsigned char *value, size_t len,
			unsigned char *out)
{
	struct store_pg_secret_args a = {.name = name, .value = value, .len = len, .out = out};
	return store_pg_tx(store_pg_of(s), store_pg_secret_add_tx, &a);
}
