/*
 * lazaret-scan — runs one of the gateway's scanning engines on one message file
 * and prints what it said: the administrator's tool for checking an engine setup
 * (is spamd reachable, does clamd find the test virus, what does a rules file
 * score) without sending mail through the gateway.
 *
 *   lazaret-scan [options] ENGINE FILE      (FILE "-" reads standard input)
 *   ENGINE: builtin | spamd | rspamd | clamd
 *
 * It prints one line of key=value fields, e.g.
 *   engine=spamd addr=127.0.0.1:783 score=1003.30 spam=yes rules=GTUBE,MISSING_DATE
 *   engine=clamd addr=/run/clamav/clamd.ctl infected=yes virus=Eicar-Signature
 * Exit status: 0 clean (score below the threshold, no virus), 1 spam or infected,
 * 2 the engine could not be asked or answered an error, 64 bad command line,
 * 66 the message could not be read.
 *
 * Not for: scanning as part of mail flow (lazaret-gw does that), learning, changing
 * anything in the engines.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/readfile.h"
#include "gateway/antispam.h"
#include "gateway/antivirus.h"

#define SCAN_EXIT_CLEAN	  0
#define SCAN_EXIT_HIT	  1
#define SCAN_EXIT_ENGINE  2
#define SCAN_EXIT_USAGE	  64
#define SCAN_EXIT_NOINPUT 66

/* Defaults: the engine addresses of lazaret-gw.conf (docs/GATEWAY.md). */
#define SCAN_DEFAULT_SPAMD	"127.0.0.1:783"
#define SCAN_DEFAULT_RSPAMD	"127.0.0.1:11333"
#define SCAN_DEFAULT_CLAMD	"127.0.0.1:3310"
#define SCAN_DEFAULT_TIMEOUT_MS 30000
#define SCAN_DEFAULT_THRESHOLD	5.0
/* Larger than any message the gateway accepts by default (50M). */
#define SCAN_MESSAGE_MAX (256UL * 1024 * 1024)
/* Envelope recipients passed to rspamd. */
#define SCAN_RCPT_MAX 1000

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: lazaret-scan [options] ENGINE FILE\n"
	    "  ENGINE        builtin | spamd | rspamd | clamd\n"
	    "  FILE          the message (RFC 5322), or - for standard input\n"
	    "options:\n"
	    "  -a ADDR       engine address: host:port or a unix socket path\n"
	    "                (defaults: spamd " SCAN_DEFAULT_SPAMD ", rspamd " SCAN_DEFAULT_RSPAMD
	    ", clamd " SCAN_DEFAULT_CLAMD ")\n"
	    "  -r FILE       rules file for builtin (default: GTUBE only)\n"
	    "  -t MS         timeout in milliseconds (default %d)\n"
	    "  -s SCORE      spam threshold for the exit status (default %.1f)\n"
	    "  -i IP, -H HELO, -f FROM, -R RCPT (repeatable): envelope sent to rspamd\n"
	    "  -v            log the engines' events at debug level\n"
	    "  -h            this help\n"
	    "exit: 0 clean, 1 spam or infected, 2 engine error, 64 usage, 66 unreadable input\n",
	    SCAN_DEFAULT_TIMEOUT_MS, SCAN_DEFAULT_THRESHOLD);
}

/* Prints the value without control characters or blanks (one field of the line). */
static void print_field(const char *key, const char *v)
{
	printf(" %s=", key);
	for (; v != NULL && *v != '\0'; v++)
		putchar((unsigned char)*v <= 0x20 || *v == 0x7f ? '_' : *v);
}

int main(int argc, char **argv)
{
	const char *addr = NULL, *rules_path = NULL;
	const char *rcpts[SCAN_RCPT_MAX];
	struct antispam_envelope env = {.rcpts = rcpts};
	long timeout_ms = SCAN_DEFAULT_TIMEOUT_MS;
	double threshold = SCAN_DEFAULT_THRESHOLD;
	enum log_level level = LOG_LEVEL_WARN;
	unsigned char *msg = NULL;
	size_t len = 0;
	int c, rc, status;
	char *end;

	while ((c = getopt(argc, argv, "a:r:t:s:i:H:f:R:vh")) != -1) {
		switch (c) {
		case 'a':
			addr = optarg;
			break;
		case 'r':
			rules_path = optarg;
			break;
		case 't':
			timeout_ms = strtol(optarg, &end, 10);
			if (*end != '\0' || timeout_ms <= 0) {
				fprintf(stderr, "lazaret-scan: bad timeout \"%s\"\n", optarg);
				return SCAN_EXIT_USAGE;
			}
			break;
		case 's':
			threshold = strtod(optarg, &end);
			if (*end != '\0') {
				fprintf(stderr, "lazaret-scan: bad threshold \"%s\"\n", optarg);
				return SCAN_EXIT_USAGE;
			}
			break;
		case 'i':
			env.client_ip = optarg;
			break;
		case 'H':
			env.helo = optarg;
			break;
		case 'f':
			env.mail_from = optarg;
			break;
		case 'R':
			if (env.nrcpts < SCAN_RCPT_MAX)
				rcpts[env.nrcpts++] = optarg;
			break;
		case 'v':
			level = LOG_LEVEL_DEBUG;
			break;
		case 'h':
			usage(stdout);
			return SCAN_EXIT_CLEAN;
		default:
			usage(stderr);
			return SCAN_EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return SCAN_EXIT_USAGE;
	}
	const char *engine = argv[optind], *path = argv[optind + 1];
	if (strcmp(engine, "builtin") != 0 && strcmp(engine, "spamd") != 0 &&
	    strcmp(engine, "rspamd") != 0 && strcmp(engine, "clamd") != 0) {
		fprintf(stderr, "lazaret-scan: unknown engine \"%s\"\n", engine);
		usage(stderr);
		return SCAN_EXIT_USAGE;
	}
	log_init("lazaret-scan", level);
	char *text = NULL;
	rc = read_file(path, SCAN_MESSAGE_MAX, &text, &len);
	if (rc == -EISDIR)
		rc = -EIO; /* the message this tool has always given for an unreadable file */
	msg = (unsigned char *)text;
	if (rc < 0) {
		fprintf(stderr, "lazaret-scan: %s: %s\n", path, strerror(-rc));
		return SCAN_EXIT_NOINPUT;
	}

	if (strcmp(engine, "clamd") == 0) {
		bool infected = false;
		char *virus = NULL;
		addr = addr ? addr : SCAN_DEFAULT_CLAMD;
		rc = antivirus_clamd_scan(addr, timeout_ms, msg, len, &infected, &virus);
		if (rc < 0) {
			fprintf(stderr, "lazaret-scan: clamd at %s: %s\n", addr, strerror(-rc));
			status = SCAN_EXIT_ENGINE;
		} else {
			printf("engine=clamd");
			print_field("addr", addr);
			printf(" infected=%s", infected ? "yes" : "no");
			if (infected)
				print_field("virus", virus);
			printf("\n");
			status = infected ? SCAN_EXIT_HIT : SCAN_EXIT_CLEAN;
		}
		free(virus);
		free(msg);
		return status;
	}

	struct antispam_result res = {0};
	if (strcmp(engine, "builtin") == 0) {
		struct antispam_rules *rules = NULL;
		char *err = NULL;
		rc = antispam_rules_load(rules_path, &rules, &err);
		if (rc < 0) {
			fprintf(stderr, "lazaret-scan: %s\n", err ? err : strerror(-rc));
			free(err);
			free(msg);
			return SCAN_EXIT_USAGE;
		}
		rc = antispam_builtin_scan(rules, msg, len, &res);
		addr = rules_path ? rules_path : "(gtube only)";
		antispam_rules_free(rules);
	} else if (strcmp(engine, "spamd") == 0) {
		addr = addr ? addr : SCAN_DEFAULT_SPAMD;
		rc = antispam_spamd_scan(addr, timeout_ms, msg, len, &res);
	} else {
		addr = addr ? addr : SCAN_DEFAULT_RSPAMD;
		rc = antispam_rspamd_scan(addr, timeout_ms, &env, msg, len, &res);
	}
	if (rc < 0) {
		fprintf(stderr, "lazaret-scan: %s at %s: %s\n", engine, addr, strerror(-rc));
		status = SCAN_EXIT_ENGINE;
	} else {
		printf("engine=%s", engine);
		print_field(strcmp(engine, "builtin") == 0 ? "rules_file" : "addr", addr);
		printf(" score=%.2f spam=%s", res.score, res.score >= threshold ? "yes" : "no");
		print_field("rules", res.detail);
		printf("\n");
		status = res.score >= threshold ? SCAN_EXIT_HIT : SCAN_EXIT_CLEAN;
	}
	antispam_result_clear(&res);
	free(msg);
	return status;
}
