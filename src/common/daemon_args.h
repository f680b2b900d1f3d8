/*
 * daemon_args — the command line every Lazaret daemon takes:
 *   PROG -c FILE [--check-config] | --version | --help
 * Not for: the CLI tools (lazaretctl, lazaret-scan), which have subcommands.
 */
#ifndef LAZARET_DAEMON_ARGS_H
#define LAZARET_DAEMON_ARGS_H

#include <stdbool.h>
#include <stdio.h>

struct daemon_args {
	const char *config; /* the -c FILE argument */
	bool check_only;    /* --check-config */
};

/*
 * Parses argv. Returns -1 when the daemon should run (out is filled); otherwise the
 * exit status to return at once: 0 after printing the version or the help (usage to
 * stdout), 2 after a usage error (usage to stderr).
 */
int daemon_args_parse(int argc, char **argv, const char *progname, void (*usage)(FILE *f),
		      struct daemon_args *out);

#endif
