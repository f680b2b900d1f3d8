/*
 * Tests for smtp_listener_keys: a daemon-like config struct with one key of its
 * own and the shared listener section joined to it, read through confparse from
 * a table of config texts: values land at the daemon's offsets, the daemon's own
 * defaults win over the shared ones, bounds and types are the shared rows', and
 * the keys live only under the daemon's section; the server settings built from
 * the struct carry the values read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/confparse.h"
#include "smtp/smtp_listener_keys.h"

/* Fields in another order than the rows, and one of the daemon's own. */
struct fake_config {
	char *name;
	int64_t idle_timeout_ms;
	char *tls_key;
	unsigned max_connections_per_client;
	char *smtp_listen;
	uint64_t max_message_size;
	unsigned max_recipients, max_connections;
	int64_t command_timeout_ms, data_timeout_ms;
	char *tls_cert;
};

#define OFF(f) offsetof(struct fake_config, f)

static const struct confparse_key fake_keys[] = {
    {.section = "daemon", .name = "name", .type = CONFPARSE_STRING, .offset = OFF(name)},
};

static const struct smtp_listener_keys fake_listener = {
    .offset = SMTP_LISTENER_OFFSETS(struct fake_config, smtp_listen),
    .defaults =
	{
	    [SMTP_LISTENER_LISTEN] = "127.0.0.1:7025",
	    [SMTP_LISTENER_MAX_CONNECTIONS_PER_CLIENT] = "7",
	},
    .section = "smtp_in",
};

#define NALL (1 + SMTP_LISTENER_NKEYS)

struct keys_case {
	const char *name;
	const char *text;
	int want_rc;
	const char *want_errors; /* exact, or NULL for none */
	const char *listen;
	uint64_t max_message_size;
	unsigned max_recipients, max_connections, per_client;
	int64_t command_ms, data_ms, idle_ms;
	const char *tls_cert; /* suffix of the absolute path, or NULL */
};

static const struct keys_case keys_cases[] = {
    {"defaults: the daemon's where it has them, else the shared ones", "[daemon]\nname = x\n", 0,
     NULL, "127.0.0.1:7025", 50 * 1024 * 1024, 1000, 500, 7, 60000, 600000, 300000, NULL},
    {"every key set",
     "[smtp_in]\nlisten = [::1]:25\nmax_message_size = 1K\nmax_recipients = 3\n"
     "max_connections = 4\nmax_connections_per_client = 2\ncommand_timeout = 2s\n"
     "data_timeout = 3s\nidle_timeout = 4s\ntls_cert = c.pem\ntls_key = k.pem\n",
     0, NULL, "[::1]:25", 1024, 3, 4, 2, 2000, 3000, 4000, "/c.pem"},
    {"largest message size", "[smtp_in]\nmax_message_size = 2G\n", 0, NULL, "127.0.0.1:7025",
     UINT64_C(2) * 1024 * 1024 * 1024, 1000, 500, 7, 60000, 600000, 300000, NULL},
    {"bounds are the shared rows'",
     "[smtp_in]\nmax_recipients = 0\ncommand_timeout = 0\nmax_message_size = 3G\n", -EINVAL,
     "mem.conf:2: [smtp_in] max_recipients: must be at least 1\n"
     "mem.conf:3: [smtp_in] command_timeout: must be at least 1s\n"

     "mem.conf:4: [smtp_in] max_message_size: must be at most 2147483648 bytes\n",
     NULL, 0, 0, 0, 0, 0, 0, 0, NULL},
    {"types are the shared rows'", "[smtp_in]\nlisten = nowhere\n", -EINVAL, NULL, NULL, 0, 0, 0, 0,
     0, 0, 0, NULL},
    {"only under the daemon's section", "[daemon]\nlisten = 127.0.0.1:25\n", -EINVAL,
     "mem.conf:2: [daemon] listen: unknown key\n", NULL, 0, 0, 0, 0, 0, 0, 0, NULL},
};

static void free_fake(struct fake_config *c)
{
	struct confparse_key keys[NALL];
	smtp_listener_keys_join(fake_keys, 1, &fake_listener, keys);
	confparse_free_target(keys, NALL, c);
	/* Freed through the joined table: the listener's strings too. */
	assert_null(c->smtp_listen);
	assert_null(c->tls_cert);
	assert_null(c->tls_key);
}

static void test_join_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(keys_cases) / sizeof(keys_cases[0]); i++) {
		const struct keys_case *c = &keys_cases[i];
		struct confparse_key keys[NALL];
		smtp_listener_keys_join(fake_keys, 1, &fake_listener, keys);
		assert_string_equal(keys[0].name, "name");
		assert_string_equal(keys[1].section, "smtp_in");
		struct fake_config cfg;
		memset(&cfg, 0, sizeof(cfg));
		struct confparse *cp = confparse_new("mem.conf", keys, NALL);
		int rc = confparse_read_buffer(cp, c->text, strlen(c->text), &cfg);
		char *errors = confparse_take_errors(cp);
		if (rc != c->want_rc)
			fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->want_rc,
				 errors ? errors : "");
		if (c->want_errors != NULL &&
		    (errors == NULL || strcmp(errors, c->want_errors) != 0))
			fail_msg("%s: errors\n%s\nwant\n%s", c->name, errors ? errors : "(none)",
				 c->want_errors);
		if (rc == 0) {
			assert_null(errors);
			assert_string_equal(cfg.smtp_listen, c->listen);
			assert_int_equal(cfg.max_message_size, c->max_message_size);
			assert_int_equal(cfg.max_recipients, c->max_recipients);
			assert_int_equal(cfg.max_connections, c->max_connections);
			assert_int_equal(cfg.max_connections_per_client, c->per_client);
			assert_int_equal(cfg.command_timeout_ms, c->command_ms);
			assert_int_equal(cfg.data_timeout_ms, c->data_ms);
			assert_int_equal(cfg.idle_timeout_ms, c->idle_ms);
			if (c->tls_cert == NULL) {
				assert_null(cfg.tls_cert);
				assert_null(cfg.tls_key);
			} else {
				size_t n = strlen(cfg.tls_cert), m = strlen(c->tls_cert);
				assert_true(cfg.tls_cert[0] == '/' && n >= m);
				assert_string_equal(cfg.tls_cert + n - m, c->tls_cert);
				assert_non_null(cfg.tls_key);
			}
			/* The server settings read the same fields back through the offsets. */
			struct smtp_server_config sc;
			smtp_listener_keys_server_config(&fake_listener, &cfg, &sc);
			assert_ptr_equal(sc.listen, cfg.smtp_listen);
			assert_int_equal(sc.proto.limits.max_message_size, c->max_message_size);
			assert_int_equal(sc.proto.limits.max_recipients, c->max_recipients);
			assert_int_equal(sc.max_connections, c->max_connections);
			assert_int_equal(sc.max_connections_per_client, c->per_client);
			assert_int_equal(sc.command_timeout_ms, c->command_ms);
			assert_int_equal(sc.data_timeout_ms, c->data_ms);
			assert_int_equal(sc.idle_timeout_ms, c->idle_ms);
			assert_ptr_equal(sc.tls_cert, cfg.tls_cert);
			assert_ptr_equal(sc.tls_key, cfg.tls_key);
			assert_null(sc.tls_client_ca);
			assert_null(sc.accept_from);
			struct smtp_proto_limits def;
			smtp_proto_limits_default(&def);
			assert_int_equal(sc.proto.limits.max_command_line, def.max_command_line);
		}
		free(errors);
		confparse_free(cp);
		free_fake(&cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_join_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
