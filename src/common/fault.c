/*
 * fault — test-only crash points (see fault.h). The armed name is read from the
 * environment once; fault_point is then a string compare, cheap on any path.
 */
#include "common/fault.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static const char *fault_name;

static void fault_read_env(void)
{
	const char *v = getenv(FAULT_ENV);
	fault_name = v != NULL && *v != '\0' ? v : NULL;
}

const char *fault_armed(void)
{
	pthread_once(&fault_once, fault_read_env);
	return fault_name;
}

bool fault_is_armed(const char *name)
{
	const char *armed = fault_armed();
	return armed != NULL && strcmp(armed, name) == 0;
}

void fault_point(const char *name)
{
	const char *armed = fault_armed();
	if (armed == NULL || strcmp(armed, name) != 0)
		return;
	/* One line on stderr so the test log shows where it stopped; then no cleanup. */
	log_error("fault.crash", "point=%s status=%d", name, FAULT_EXIT_STATUS);
	_exit(FAULT_EXIT_STATUS);
}
