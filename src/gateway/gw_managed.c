/*
 * gw_managed — a managed gateway's settings (gw_managed.h): the answer read as
 * strictly as any input from the network, the cache written as the safelist
 * cache is (temporary file, fsync, rename, fsync of the folder).
 */
#include "gateway/gw_managed.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/readfile.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "gateway/filter.h"
#include "gateway/gw_api.h"
#include "gateway/gw_config.h"
#include "gateway/pipeline.h"

/* Nothing set (m's old contents are not looked at). */
static void gw_managed_init(struct gw_managed *m)
{
	memset(m, 0, sizeof(*m));
	m->pvo = m->reporting = m->tracking = -1;
}

void gw_managed_clear(struct gw_managed *m)
{
	free(m->filters);
	gw_managed_init(m);
}

static bool gw_managed_str_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int gw_managed_equal(const struct gw_managed *a, const struct gw_managed *b)
{
	return a->pvo == b->pvo && a->reporting == b->reporting && a->tracking == b->tracking &&
	       gw_managed_str_same(a->filters, b->filters);
}

static int gw_managed_flag(const json_t *o, const char *key, int *out)
{
	const json_t *v = json_object_get(o, key);
	if (v == NULL || json_is_null(v)) {
		*out = -1;
		return 0;
	}
	if (!json_is_boolean(v))
		return -EPROTO;
	*out = json_is_true(v) ? 1 : 0;
	return 0;
}

int gw_managed_parse(const char *text, size_t len, struct gw_managed *out)
{
	gw_managed_init(out);
	json_error_t jerr;
	json_t *doc = text != NULL && len > 0 ? json_loadb(text, len, 0, &jerr) : NULL;
	const json_t *s = json_object_get(doc, "settings");
	int rc = -EPROTO;
	if (!json_is_object(s))
		goto done;
	if (gw_managed_flag(s, "pvo", &out->pvo) < 0 ||
	    gw_managed_flag(s, "reporting", &out->reporting) < 0 ||
	    gw_managed_flag(s, "tracking", &out->tracking) < 0)
		goto done;
	const json_t *f = json_object_get(s, "filters");
	if (f != NULL && !json_is_null(f)) {
		if (!json_is_string(f) || strlen(json_string_value(f)) != json_string_length(f))
			goto done;
		out->filters = xstrdup(json_string_value(f));
	}
	rc = 0;
done:
	json_decref(doc);
	if (rc < 0)
		gw_managed_clear(out);
	return rc;
}

static json_t *gw_managed_json_flag(int v)
{
	return v < 0 ? json_null() : json_boolean(v);
}

char *gw_managed_text(const struct gw_managed *m)
{
	json_t *o = json_pack(
	    "{s:{s:o,s:o,s:o,s:o}}", "settings", "pvo", gw_managed_json_flag(m->pvo), "reporting",
	    gw_managed_json_flag(m->reporting), "tracking", gw_managed_json_flag(m->tracking),
	    "filters", m->filters != NULL ? json_string(m->filters) : json_null());
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL)
		panic("gw_managed: cannot build the settings");
	return text;
}

int gw_managed_fetch(const struct gw_config *cfg, int64_t timeout_ms, struct gw_managed *out,
		     char **why)
{
	*why = NULL;
	gw_managed_init(out);
	struct gw_api_call call = {.api_url = cfg->api_url,
				   .path = "/api/v1/gateway/config",
				   .token = cfg->api_token,
				   .ca = cfg->api_ca,
				   .get = true,
				   .timeout_ms = timeout_ms,
				   .max_answer = GW_MANAGED_MAX_ANSWER};
	struct gw_api_answer a;
	int rc = gw_api_post(&call, &a);
	if (rc == -ETIMEDOUT || rc == -EIO) {
		*why = xstrdup(a.error != NULL ? a.error : strerror(-rc));
	} else if (rc == 0 && a.status != 200) {
		rc = a.status == 401 || a.status == 403 ? -EACCES : -EPROTO;
		*why = xasprintf("the manager answered %ld", a.status);
	} else if (rc == 0) {
		rc = gw_managed_parse(strbuf_str(&a.body), a.body.len, out);
		if (rc < 0)
			*why = xstrdup("the manager's answer is not the settings");
	}
	strbuf_free(&a.body);
	return rc;
}

static char *gw_managed_path(const char *data_dir, const char *file)
{
	return xasprintf("%s/%s", data_dir, file);
}

int gw_managed_load(const char *data_dir, struct gw_managed *out)
{
	gw_managed_init(out);
	char *path = gw_managed_path(data_dir, GW_MANAGED_FILE);
	char *text = NULL;
	size_t len = 0;
	int rc = read_file(path, GW_MANAGED_MAX_ANSWER, &text, &len);
	free(path);
	if (rc < 0)
		return rc;
	rc = gw_managed_parse(text, len, out);
	free(text);
	return rc;
}

/* Writes text to data_dir/file atomically and durably (write_file_atomic). */
static int gw_managed_write(const char *data_dir, const char *file, const char *text)
{
	char *path = gw_managed_path(data_dir, file);
	int rc = write_file_atomic(path, text, strlen(text));
	free(path);
	return rc;
}

int gw_managed_save(const char *data_dir, const struct gw_managed *m, char **err)
{
	*err = NULL;
	if (m->filters != NULL && m->filters[0] != '\0') {
		struct filter_set *fs = NULL;
		int rc =
		    filter_parse("the manager's filters", m->filters, strlen(m->filters), &fs, err);
		if (rc < 0)
			return -EINVAL;
		filter_set_free(fs);
		rc = gw_managed_write(data_dir, GW_MANAGED_FILTERS_FILE, m->filters);
		if (rc < 0) {
			*err = xasprintf("cannot write %s/%s: %s", data_dir,
					 GW_MANAGED_FILTERS_FILE, strerror(-rc));
			return rc;
		}
	}
	char *text = gw_managed_text(m);
	int rc = gw_managed_write(data_dir, GW_MANAGED_FILE, text);
	free(text);
	if (rc < 0)
		*err =
		    xasprintf("cannot write %s/%s: %s", data_dir, GW_MANAGED_FILE, strerror(-rc));
	return rc;
}

int gw_managed_check(const char *conf_path, const struct gw_managed *m, char **err)
{
	struct gw_config c;
	*err = NULL;
	int rc = gw_config_load(conf_path, &c, err, NULL);
	if (rc < 0)
		return 0; /* the file itself does not load: the reload says so, not this */
	gw_managed_apply(&c, m);
	char *check = NULL;
	if (m->filters != NULL && m->filters[0] != '\0') {
		check = gw_managed_path(c.data_dir, GW_MANAGED_FILTERS_FILE ".check");
		rc = gw_managed_write(c.data_dir, GW_MANAGED_FILTERS_FILE ".check", m->filters);
		if (rc < 0) {
			*err = xasprintf("cannot write %s: %s", check, strerror(-rc));
			free(check);
			gw_config_free(&c);
			return rc;
		}
		free(c.filters_file);
		c.filters_file = xstrdup(check);
	}
	struct pipeline_rules *r = NULL;
	rc = pipeline_rules_build(&c, &r, err); /* takes c over */
	if (rc == 0)
		pipeline_rules_unref(r);
	if (check != NULL) {
		unlink(check);
		free(check);
	}
	return rc < 0 ? -EINVAL : 0;
}

void gw_managed_apply(struct gw_config *cfg, const struct gw_managed *m)
{
	if (m->pvo >= 0)
		cfg->central_pvo_enabled = m->pvo == 1;
	if (m->tracking == 1 || (m->tracking == 0 && cfg->tracking_mode != NULL &&
				 strcmp(cfg->tracking_mode, "central") == 0)) {
		free(cfg->tracking_mode);
		cfg->tracking_mode = xstrdup(m->tracking == 1 ? "central" : "local");
	}
	if (m->filters != NULL) {
		free(cfg->filters_file);
		cfg->filters_file = m->filters[0] != '\0'
					? gw_managed_path(cfg->data_dir, GW_MANAGED_FILTERS_FILE)
					: NULL;
	}
	/* like tracking: a level's "reporting" sets the mode (on the next start) */
	if (m->reporting == 1 || (m->reporting == 0 && cfg->reporting_mode != NULL &&
				  strcmp(cfg->reporting_mode, "central") == 0)) {
		free(cfg->reporting_mode);
		cfg->reporting_mode = xstrdup(m->reporting == 1 ? "central" : "local");
	}
	cfg->managed_reporting = m->reporting;
}
