/*
 * ids — UUIDv7 message ids and short session ids (see ids.h).
 * Randomness comes from getrandom(2); a failure there is a broken environment.
 */
#include "common/ids.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"

static void ids_random(void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			panic("getrandom failed: %s", strerror(errno));
		}
		p += r;
		n -= (size_t)r;
	}
}

/*
 * The last (millisecond << 12 | 12-bit counter) this process gave out: ids made in
 * the same millisecond count up in rand_a (RFC 9562 6.2, method 1), so they sort
 * in the order they were made; a new millisecond starts the counter at a random
 * point of its lower half. An id for an earlier time (a caller's own clock, a
 * test) is random in rand_a and leaves this alone.
 */
static _Atomic uint64_t ids_last;

static unsigned ids_rand_a(uint64_t t, unsigned start)
{
	uint64_t want = t << 12 | start;
	uint64_t last = atomic_load(&ids_last);
	for (;;) {
		uint64_t next;
		if (last >> 12 == t && (last & 0xfff) != 0xfff)
			next = last + 1;
		else if (last >> 12 < t)
			next = want;
		else
			return start; /* an earlier time, or 4096 ids in this millisecond */
		if (atomic_compare_exchange_weak(&ids_last, &last, next))
			return (unsigned)(next & 0xfff);
	}
}

void ids_uuidv7(int64_t now_ms, char out[IDS_UUID_LEN + 1])
{
	unsigned char b[16];
	uint64_t t = (uint64_t)now_ms & 0xffffffffffffULL;
	ids_random(b + 6, 10);
	unsigned a = ids_rand_a(t, (unsigned)(b[6] << 8 | b[7]) & 0x7ff);
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(t >> (40 - 8 * i));
	b[6] = (unsigned char)(0x70 | (a >> 8)); /* version 7, then rand_a */
	b[7] = (unsigned char)(a & 0xff);
	b[8] = (unsigned char)(0x80 | (b[8] & 0x3f)); /* variant 10 */
	snprintf(out, IDS_UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
}

bool ids_valid(const char *s)
{
	if (s == NULL || strlen(s) != IDS_UUID_LEN)
		return false;
	for (int i = 0; i < IDS_UUID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return true;
}

int64_t ids_uuidv7_time_ms(const char *id)
{
	uint64_t t = 0;
	int digits = 0;
	for (const char *p = id; *p != '\0' && digits < 12; p++) {
		if (*p == '-')
			continue;
		int v = (*p >= 'a') ? *p - 'a' + 10 : *p - '0';
		t = (t << 4) | (uint64_t)v;
		digits++;
	}
	return (int64_t)t;
}

void ids_session(char out[13])
{
	unsigned char b[6];
	ids_random(b, sizeof(b));
	snprintf(out, 13, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}
