/*
 * Unit tests of io/rdbstr: the CRC-64's check value, DUMP payloads byte-identical to
 * the ones Redis 7.0.15 wrote for the same values (captured from redis-server), RESTORE
 * of those (including an LZF-compressed one), round trips, and damaged payloads.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "rdbstr.h"

struct sample {
    const char *value;
    const char *payload; /* as Redis 7.0.15's DUMP replied it */
    size_t len;
};

#define S(v, p)                                                                                    \
    {                                                                                              \
        v, p, sizeof(p) - 1                                                                        \
    }

static const struct sample redis_dumps[] = {
    S("1", "\x00\xc0\x01\n\x00&x\xe7\xb6\xd1\x01\x11\xfc"),
    S("123", "\x00\xc0{\n\x00H\xe2S\xe1\x00zg\xb9"),
    S("-5", "\x00\xc0\xfb\n\x00I\xc4\xc6\xf4\xd7&?h"),
    S("300", "\x00\xc1,\x01\n\x00\x95"
             "Ba\xf2"
             "e\x82\\\x10"),
    S("70000", "\x00\xc2p\x11\x01\x00\n\x00\x01\xa4\b\xfe\x95"
               "0\x95\xa5"),
    S("5000000000", "\x00\n5000000000\n\x00i\xa9\x0f\xd5~\x0f\xf4%"),
    S("abc", "\x00\x03"
             "abc\n\x00\xd9\xac"
             "0=Ar\xa2\xe2"),
    S("hello world this is long text",
      "\x00\x1dhello world this is long text\n\x00\x1d\x05\xc4\xce\xf3\xce\x82K"),
};

Test(rdbstr, crc64_check_value)
{
    cr_assert_eq(rdbstr_crc64(0, "123456789", 9), UINT64_C(0xe9c6d914c4b8d9ca));
}

Test(rdbstr, dump_is_byte_identical_to_redis)
{
    for (size_t i = 0; i < sizeof redis_dumps / sizeof redis_dumps[0]; i++) {
        const struct sample *s = &redis_dumps[i];
        uint8_t out[RDBSTR_DUMP_MAX(64)];
        size_t n = rdbstr_dump(s->value, strlen(s->value), out);
        cr_assert_eq(n, s->len, "%s: length %zu, Redis %zu", s->value, n, s->len);
        cr_assert(memcmp(out, s->payload, n) == 0, "%s: bytes differ", s->value);
    }
}

static void restore_ok(const uint8_t *p, size_t n, const char *want, size_t want_len)
{
    const uint8_t *val = NULL;
    size_t len = 0, need = 0;
    cr_assert_eq(rdbstr_restore(p, n, 1 << 20, NULL, 0, &val, &len, &need), RDBSTR_OK);
    uint8_t buf[4096];
    cr_assert_leq(need, sizeof buf);
    if (need > 0) {
        cr_assert_eq(rdbstr_restore(p, n, 1 << 20, buf, need, &val, &len, &need), RDBSTR_OK);
    }
    cr_assert_eq(len, want_len);
    cr_assert(memcmp(val, want, len) == 0);
}

Test(rdbstr, restores_redis_payloads)
{
    for (size_t i = 0; i < sizeof redis_dumps / sizeof redis_dumps[0]; i++) {
        const struct sample *s = &redis_dumps[i];
        restore_ok((const uint8_t *)s->payload, s->len, s->value, strlen(s->value));
    }
    /* 42 times "a", which Redis stored LZF-compressed */
    static const char lzf[] = "\x00\xc3\t*\x01"
                              "aa\xe0\x1d\x00\x01"
                              "aa\n\x00\xf2`\x95\xdcM\\\xa9X";
    char want[42];
    memset(want, 'a', sizeof want);
    restore_ok((const uint8_t *)lzf, sizeof lzf - 1, want, sizeof want);
}

Test(rdbstr, round_trips)
{
    static uint8_t v[70000], out[RDBSTR_DUMP_MAX(70000)];
    size_t lens[] = {0, 1, 11, 12, 63, 64, 16383, 16384, 70000};
    for (size_t i = 0; i < sizeof v; i++) {
        v[i] = (uint8_t)(i * 7 + 3);
    }
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        size_t n = rdbstr_dump(v, lens[k], out);
        restore_ok(out, n, (const char *)v, lens[k]);
    }
    const char *ints[] = {"0",          "-1",     "127",   "-128",       "128",
                          "32767",      "-32768", "32768", "2147483647", "-2147483648",
                          "2147483648", "007",    "+5",    "-0"};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        size_t n = rdbstr_dump(ints[k], strlen(ints[k]), out);
        restore_ok(out, n, ints[k], strlen(ints[k]));
    }
}

static size_t with_footer(uint8_t *p, size_t n)
{
    p[n++] = RDBSTR_VERSION;
    p[n++] = 0;
    uint64_t crc = rdbstr_crc64(0, p, n);
    for (int k = 0; k < 8; k++) {
        p[n++] = (uint8_t)(crc >> (8 * k));
    }
    return n;
}

Test(rdbstr, empty_lzf_strings_restore_as_redis_restores_them)
{
    uint8_t a[32] = {0, 0xC3, 0x00, 0x00}, b[32] = {0, 0xC3, 0x01, 0x00, 0xAA};
    restore_ok(a, with_footer(a, 4), "", 0);
    restore_ok(b, with_footer(b, 5), "", 0);
}

Test(rdbstr, damaged_payloads_are_refused)
{
    uint8_t out[64];
    size_t n = rdbstr_dump("hello", 5, out);
    const uint8_t *val;
    size_t len, need;
    for (size_t i = 0; i < n; i++) { /* every flipped bit is found */
        for (int b = 0; b < 8; b++) {
            out[i] ^= (uint8_t)(1u << b);
            enum rdbstr_result r = rdbstr_restore(out, n, 1 << 20, NULL, 0, &val, &len, &need);
            cr_assert_neq(r, RDBSTR_OK, "byte %zu bit %d", i, b);
            out[i] ^= (uint8_t)(1u << b);
        }
    }
    cr_assert_eq(rdbstr_restore(out, 9, 1 << 20, NULL, 0, &val, &len, &need), RDBSTR_BAD_FOOTER);
    cr_assert_eq(rdbstr_restore(out, n, 4, NULL, 0, &val, &len, &need), RDBSTR_BAD_DATA,
                 "over the length limit");
    /* a newer RDB version is refused even with a right checksum */
    out[n - 10] = RDBSTR_VERSION + 1;
    uint64_t crc = rdbstr_crc64(0, out, n - 8);
    for (int k = 0; k < 8; k++) {
        out[n - 8 + k] = (uint8_t)(crc >> (8 * k));
    }
    cr_assert_eq(rdbstr_restore(out, n, 1 << 20, NULL, 0, &val, &len, &need), RDBSTR_BAD_FOOTER);
    /* a list (type 18, quicklist 2) with a valid footer is another type */
    uint8_t list[16] = {18, 0};
    list[2] = RDBSTR_VERSION;
    list[3] = 0;
    crc = rdbstr_crc64(0, list, 4);
    for (int k = 0; k < 8; k++) {
        list[4 + k] = (uint8_t)(crc >> (8 * k));
    }
    cr_assert_eq(rdbstr_restore(list, 12, 1 << 20, NULL, 0, &val, &len, &need), RDBSTR_NOT_STRING);
}

/* A FUNCTION DUMP-shaped payload: opcode + string, twice (one plain with a 2-byte length,
 * one LZF-compressed as Redis writes long code), then the footer; every string read in
 * turn, and a truncated one refused. */
Test(rdbstr, reads_a_sequence_of_strings)
{
    static uint8_t p[1024];
    char code[300];
    memset(code, 'x', sizeof code);
    size_t n = 0;
    p[n++] = 245;
    n += rdbstr_put_len(p + n, sizeof code);
    memcpy(p + n, code, sizeof code);
    n += sizeof code;
    /* "aaaaaaaaaaaaaaaaaaaaaaaa" (24 bytes) as LZF: literal 'a', then a back reference of
     * length 23 at distance 1 */
    static const uint8_t lzf[] = {245, 0xC3, 5, 24, 0x00, 'a', 0xE0, 23 - 2 - 7, 0x00};
    memcpy(p + n, lzf, sizeof lzf);
    n += sizeof lzf;
    n = with_footer(p, n);
    cr_assert(rdbstr_footer_ok(p, n));
    size_t end = n - RDBSTR_TAIL, at = 1, len, need, next;
    const uint8_t *val;
    cr_assert_eq(rdbstr_read_string(p, end, at, 1 << 20, NULL, 0, &val, &len, &need, &next),
                 RDBSTR_OK);
    cr_assert(need == 0 && len == sizeof code && memcmp(val, code, len) == 0);
    cr_assert_eq(p[next], 245);
    at = next + 1;
    cr_assert_eq(rdbstr_read_string(p, end, at, 1 << 20, NULL, 0, &val, &len, &need, &next),
                 RDBSTR_OK);
    cr_assert_eq(need, 24);
    uint8_t buf[24];
    cr_assert_eq(rdbstr_read_string(p, end, at, 1 << 20, buf, sizeof buf, &val, &len, &need, &next),
                 RDBSTR_OK);
    cr_assert(len == 24 && memcmp(val, "aaaaaaaaaaaaaaaaaaaaaaaa", 24) == 0);
    cr_assert_eq(next, end);
    cr_assert_eq(rdbstr_read_string(p, end - 1, at, 1 << 20, NULL, 0, &val, &len, &need, &next),
                 RDBSTR_BAD_DATA, "cut short");
    /* an uncompressed length LZF cannot reach from 5 bytes is refused before any buffer:
     * 5 * 88 = 440 is the most (Redis's 1 MB of 'a' compresses 87.8 times) */
    uint8_t q[32] = {245, 0xC3, 5, 0x41, 0xB8, 0x00, 'a', 0xE0, 0xFF, 0x00};
    cr_assert_eq(rdbstr_read_string(q, 10, 1, 1 << 20, NULL, 0, &val, &len, &need, &next),
                 RDBSTR_OK, "440 bytes claimed");
    q[4] = 0xB9;
    cr_assert_eq(rdbstr_read_string(q, 10, 1, 1 << 20, NULL, 0, &val, &len, &need, &next),
                 RDBSTR_BAD_DATA, "441 bytes claimed");
    p[5] ^= 1;
    cr_assert(!rdbstr_footer_ok(p, n));
}
