/*
 * gw_hello — the gateway's hello to the manager (gw_hello.h): the body, one
 * POST (gw_api.c), and a strict reading of the answer, which comes from the network
 * and is checked like any other input (gw_hello_parse_answer, table-tested).
 *
 * Not for: scheduling (lazaret_gw.c) or the safelist sync (slbl_cache.c), which
 * shares the manager's URL, token and CA but not this code's answer.
 */
#include "gateway/gw_hello.h"

#include "gateway/gw_api.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h" /* panic */
#include "common/strbuf.h"
#include "common/xalloc.h"

void gw_hello_answer_clear(struct gw_hello_answer *a)
{
	free(a->state);
	free(a->group);
	free(a->cluster);
	free(a->message);
	memset(a, 0, sizeof(*a));
}

char *gw_hello_body(const char *name, const char *version, const char *group, const char *cluster,
		    int central, const char *outbreak_version)
{
	json_t *o = json_object();
	if (o == NULL || json_object_set_new(o, "name", json_string(name)) != 0)
		panic("gw_hello: cannot build the body");
	if (version != NULL)
		json_object_set_new(o, "version", json_string(version));
	if (group != NULL)
		json_object_set_new(o, "group", json_string(group));
	if (cluster != NULL)
		json_object_set_new(o, "cluster", json_string(cluster));
	if (central >= 0)
		json_object_set_new(o, "centralized",
				    json_pack("{s:b,s:b,s:b}", "pvo", (central & 1) != 0,
					      "reporting", (central & 2) != 0, "tracking",
					      (central & 4) != 0));
	if (outbreak_version != NULL)
		json_object_set_new(o, "outbreak_rules_version", json_string(outbreak_version));
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (text == NULL)
		panic("gw_hello: cannot build the body");
	return text;
}

/* A copy of the string member key of o; NULL when absent or null; -EPROTO otherwise. */
static int gw_hello_string(const json_t *o, const char *key, char **out)
{
	const json_t *v = json_object_get(o, key);
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -EPROTO;
	*out = xstrdup(json_string_value(v));
	return 0;
}

int gw_hello_parse_answer(long status, const char *body, size_t len, struct gw_hello_answer *out)
{
	memset(out, 0, sizeof(*out));
	out->status = status;
	json_error_t jerr;
	json_t *doc = body != NULL && len > 0 ? json_loadb(body, len, 0, &jerr) : NULL;
	int rc = -EPROTO;
	if (status != 200) {
		/* {"error": {"code", "message"}}: keep the message for the log */
		const json_t *e = json_object_get(doc, "error");
		const json_t *m = json_object_get(e, "message");
		if (json_is_string(m))
			out->message = xstrdup(json_string_value(m));
		rc = status == 401 || status == 403 ? -EACCES : -EPROTO;
		goto done;
	}
	const json_t *g = json_object_get(doc, "gateway");
	if (!json_is_object(g) || !json_is_string(json_object_get(g, "name")))
		goto done;
	if (gw_hello_string(g, "state", &out->state) < 0 || out->state == NULL ||
	    gw_hello_string(g, "group", &out->group) < 0 ||
	    gw_hello_string(g, "cluster", &out->cluster) < 0)
		goto done;
	rc = 0;
done:
	if (rc == -EPROTO && status == 200) {
		free(out->state);
		free(out->group);
		free(out->cluster);
		out->state = out->group = out->cluster = NULL;
	}
	json_decref(doc);
	return rc;
}

int gw_hello_send(const char *api_url, const char *token, const char *ca_file, const char *body,
		  int64_t timeout_ms, struct gw_hello_answer *out)
{
	memset(out, 0, sizeof(*out));
	struct gw_api_call call = {.api_url = api_url,
				   .path = "/api/v1/gateway/hello",
				   .token = token,
				   .ca = ca_file,
				   .body = body,
				   .timeout_ms = timeout_ms,
				   .max_answer = GW_HELLO_MAX_ANSWER};
	struct gw_api_answer a;
	int rc = gw_api_post(&call, &a);
	if (rc == -ETIMEDOUT || rc == -EIO)
		out->message = xstrdup(a.error);
	else if (rc == 0)
		rc = gw_hello_parse_answer(a.status, strbuf_str(&a.body), a.body.len, out);
	strbuf_free(&a.body);
	return rc;
}
