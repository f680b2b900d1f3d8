/*
 * daemon_args — the command line every Lazaret daemon takes:
 *   PROG -c FILE [--check-config] | --version | --help
 * and, for lazaretd only, -c FILE --restore ARCHIVE.
 * Not for: the CLI tools (lazaretctl, lazaret-scan), which have subcommands.
 */
#ifndef LAZARET_DAEMON_ARGS_H
#define LAZARET_DAEMON_ARGS_H

#include <stdbool.h>
#include <stdio.h>

struct daemon_args {
	const char *config;  /* the -c FILE argument */
	bool check_only;     /* --check-config */
	const char *restore; /* --restore ARCHIVE, or NULL */
};

/*
 * Parses argv. Returns -1 when the daemon should run (out is filled); otherwise the
 * exit status to return at once: 0 after printing the version or the help (usage to
 * stdout), 2 after a usage error (usage to stderr).
 */
/* A daemon without restores refuses --restore with a usage error (2). */
int daemon_args_parse(int argc, char **argv, const char *progname, void (*usage)(FILE *f),
		      struct daemon_args *out);
/* As daemon_args_parse, and --restore is accepted. */
int daemon_args_parse_restore(int argc, char **argv, const char *progname, void (*usage)(FILE *f),
			      struct daemon_args *out);

#endif
