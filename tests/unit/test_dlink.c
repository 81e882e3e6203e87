/*
 * Unit tests for daemon/dlink.c: the frames between mailrelayd and its
 * delivery process.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <event2/buffer.h>

#include "dlink.h"

static void
test_round_trip(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct dl_out f;
	struct dl_in m;
	(void)state;

	dl_begin(&f, b, LK_RECORD);
	dl_u32(&f, 7);
	dl_u32(&f, 0xfffffffeu);
	dl_str(&f, "250 2.0.0 Ok");
	dl_str(&f, NULL);
	dl_str(&f, "");
	dl_bytes(&f, "envelope\ntext", 13);
	dl_end(&f);
	dl_begin(&f, b, LK_END);
	dl_u32(&f, 7);
	dl_end(&f);

	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 1);
	assert_int_equal(m.type, LK_RECORD);
	assert_int_equal(dl_get_u32(&m), 7);
	assert_int_equal(dl_get_u32(&m), 0xfffffffeu);
	assert_string_equal(dl_get_str(&m), "250 2.0.0 Ok");
	assert_null(dl_get_str(&m));
	assert_string_equal(dl_get_str(&m), "");
	assert_string_equal(dl_get_str(&m), "envelope\ntext");
	assert_int_equal(dl_last_len(&m), 13);
	assert_true(dl_done(&m));
	dl_in_free(&m);

	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 1);
	assert_int_equal(m.type, LK_END);
	assert_int_equal(dl_get_u32(&m), 7);
	assert_true(dl_done(&m));
	dl_in_free(&m);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 0);
	evbuffer_free(b);
}

/* A frame arrives a piece at a time: nothing until it is whole. */
static void
test_partial(void **state)
{
	struct evbuffer *whole = evbuffer_new(), *b = evbuffer_new();
	struct dl_out f;
	struct dl_in m;
	unsigned char *p;
	size_t n, i;
	(void)state;

	dl_begin(&f, whole, LK_LOG);
	dl_u32(&f, 6);
	dl_str(&f, "6B1424B8EA48C003");
	dl_str(&f, NULL);
	dl_str(&f, "connected");
	dl_end(&f);
	n = evbuffer_get_length(whole);
	p = evbuffer_pullup(whole, -1);
	for (i = 0; i + 1 < n; i++) {
		evbuffer_add(b, p + i, 1);
		assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 0);
	}
	evbuffer_add(b, p + n - 1, 1);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 1);
	assert_int_equal(dl_get_u32(&m), 6);
	assert_string_equal(dl_get_str(&m), "6B1424B8EA48C003");
	dl_in_free(&m);
	evbuffer_free(whole);
	evbuffer_free(b);
}

static void
feed(struct evbuffer *b, const void *p, size_t n)
{
	evbuffer_drain(b, evbuffer_get_length(b));
	evbuffer_add(b, p, n);
}

/* An empty frame or one over the bound breaks the link; malformed fields are bad. */
static void
test_broken(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct dl_in m;
	static const unsigned char empty[] = { 0, 0, 0, 0 };
	static const unsigned char huge[] = { 0xff, 0xff, 0xff, 0xff, 1 };
	/* a string whose NUL is missing, one with a NUL inside, a length past the end, a short u32 */
	static const unsigned char no_nul[] = { 0, 0, 0, 6, LK_DAMAGED, 0, 0, 0, 1, 'x' };
	static const unsigned char inner[] = { 0, 0, 0, 9, LK_DAMAGED, 0, 0, 0, 3, 'a', 0, 'b', 0 };
	static const unsigned char past[] = { 0, 0, 0, 7, LK_DAMAGED, 0, 0, 0, 9, 'a', 0 };
	static const unsigned char short_u32[] = { 0, 0, 0, 3, LK_END, 0, 1 };
	static const unsigned char extra[] = { 0, 0, 0, 6, LK_END, 0, 0, 0, 1, 9 };
	(void)state;

	feed(b, empty, sizeof empty);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), -1);
	feed(b, huge, sizeof huge);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), -1);

	feed(b, no_nul, sizeof no_nul);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 1);
	assert_null(dl_get_str(&m));
	assert_true(m.bad);
	assert_false(dl_done(&m));
	dl_in_free(&m);

	feed(b, inner, sizeof inner);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 1);
	assert_null(dl_get_str(&m));
	assert_false(dl_done(&m));
	dl_in_free(&m);

	feed(b, past, sizeof past);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 1);
	assert_null(dl_get_str(&m));
	assert_false(dl_done(&m));
	dl_in_free(&m);

	feed(b, short_u32, sizeof short_u32);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 1);
	assert_int_equal(dl_get_u32(&m), 0);
	assert_false(dl_done(&m));
	dl_in_free(&m);

	/* a field more than the reader takes: not done */
	feed(b, extra, sizeof extra);
	assert_int_equal(dl_next(b, LK_FRAME_MAX, &m), 1);
	assert_int_equal(dl_get_u32(&m), 1);
	assert_false(dl_done(&m));
	dl_in_free(&m);
	evbuffer_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_broken),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
