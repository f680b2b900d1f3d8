/*
 * store_pg — the PostgreSQL backend (libpq). Not there yet: store_open refuses
 * it, and store_backend_missing("postgresql") names every function.
 */
#include "store/store_backend.h"

#include <errno.h>

const struct store_ops store_pg_ops = {0};

int store_pg_open(const struct store_options *opt, struct store **out)
{
	return -ENOSYS;
}
