/*
 * ids — UUIDv7 message ids and short session ids (see ids.h).
 * Randomness comes from getrandom(2); a failure there is a broken environment.
 */
#include "common/ids.h"

#include <errno.h>
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

void ids_uuidv7(int64_t now_ms, char out[IDS_UUID_LEN + 1])
{
	unsigned char b[16];
	uint64_t t = (uint64_t)now_ms;
	ids_random(b + 6, 10);
	for (int i = 0; i < 6; i++)
		b[i] = (unsigned char)(t >> (40 - 8 * i));
	b[6] = (unsigned char)(0x70 | (b[6] & 0x0f)); /* version 7 */
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
