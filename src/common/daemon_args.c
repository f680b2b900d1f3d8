/*
 * daemon_args — getopt_long over the options the daemons share (see daemon_args.h).
 */
#include "common/daemon_args.h"

#include <getopt.h>

static int daemon_args_parse_any(int argc, char **argv, const char *progname,
				 void (*usage)(FILE *f), struct daemon_args *out, bool restores)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},  {"check-config", no_argument, NULL, 'C'},
	    {"version", no_argument, NULL, 'V'},       {"help", no_argument, NULL, 'h'},
	    {"restore", required_argument, NULL, 'R'}, {NULL, 0, NULL, 0},
	};
	out->config = NULL;
	out->check_only = false;
	out->restore = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			out->config = optarg;
			break;
		case 'C':
			out->check_only = true;
			break;
		case 'R':
			if (!restores) {
				usage(stderr);
				return 2;
			}
			out->restore = optarg;
			break;
		case 'V':
			printf("%s %s\n", progname, LAZARET_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (out->config == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	return -1;
}

int daemon_args_parse(int argc, char **argv, const char *progname, void (*usage)(FILE *f),
		      struct daemon_args *out)
{
	return daemon_args_parse_any(argc, argv, progname, usage, out, false);
}

int daemon_args_parse_restore(int argc, char **argv, const char *progname, void (*usage)(FILE *f),
			      struct daemon_args *out)
{
	return daemon_args_parse_any(argc, argv, progname, usage, out, true);
}
