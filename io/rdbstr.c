/*
 * rdbstr: see rdbstr.h. The encodings are those of Redis's rdb.c (rdbSaveLen,
 * rdbEncodeInteger, rdbLoadLzfStringObject) and lzf_d.c; the checksum is Redis's
 * crc64 (Jones coefficients, reflected in and out, no final xor), bit by bit over a
 * 256-entry table.
 */
#include "rdbstr.h"

#include "kv_assert.h"
#include "kv_num.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CRC64_POLY_REFLECTED UINT64_C(0x95ac9329ac4bc9b5) /* 0xad93d23594c935a9 reflected */

#define ENC_INT8  0
#define ENC_INT16 1
#define ENC_INT32 2
#define ENC_LZF   3

static uint64_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC64_POLY_REFLECTED : c >> 1;
        }
        crc_table[i] = c;
    }
}

uint64_t rdbstr_crc64(uint64_t crc, const void *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        crc = crc_table[(uint8_t)(crc ^ b[i])] ^ (crc >> 8);
    }
    return crc;
}

static size_t put_len(uint8_t *o, uint64_t len)
{
    if (len < 64) {
        o[0] = (uint8_t)len;
        return 1;
    }
    if (len < 16384) {
        o[0] = (uint8_t)(0x40 | (len >> 8));
        o[1] = (uint8_t)len;
        return 2;
    }
    int bytes = len <= UINT32_MAX ? 4 : 8;
    o[0] = bytes == 4 ? 0x80 : 0x81;
    for (int i = 0; i < bytes; i++) {
        o[1 + i] = (uint8_t)(len >> (8 * (bytes - 1 - i))); /* big-endian */
    }
    return 1 + (size_t)bytes;
}

/* Redis writes a short canonical integer in 32 bits or less as an integer. */
static bool as_int(const void *v, size_t n, int64_t *out)
{
    char buf[24];
    if (n == 0 || n > 11 || !kv_parse_i64(v, n, out)) {
        return false;
    }
    int k = snprintf(buf, sizeof buf, "%lld", (long long)*out);
    return (size_t)k == n && memcmp(buf, v, n) == 0 && *out >= INT32_MIN && *out <= INT32_MAX;
}

size_t rdbstr_dump_head(const void *v, size_t n, uint8_t head[RDBSTR_HEAD_MAX], bool *body)
{
    size_t o = 0;
    head[o++] = RDBSTR_TYPE_STR;
    int64_t i;
    *body = !as_int(v, n, &i);
    if (*body) {
        return o + put_len(head + o, n);
    }
    int bytes = i >= INT8_MIN && i <= INT8_MAX ? 1 : i >= INT16_MIN && i <= INT16_MAX ? 2 : 4;
    head[o++] = (uint8_t)(0xC0 | (bytes == 1 ? ENC_INT8 : bytes == 2 ? ENC_INT16 : ENC_INT32));
    for (int k = 0; k < bytes; k++) {
        head[o++] = (uint8_t)((uint64_t)i >> (8 * k)); /* little-endian */
    }
    return o;
}

void rdbstr_dump_tail(uint64_t crc, uint8_t tail[RDBSTR_TAIL])
{
    tail[0] = (uint8_t)RDBSTR_VERSION;
    tail[1] = (uint8_t)(RDBSTR_VERSION >> 8);
    crc = rdbstr_crc64(crc, tail, 2);
    for (int k = 0; k < 8; k++) {
        tail[2 + k] = (uint8_t)(crc >> (8 * k));
    }
}

size_t rdbstr_dump(const void *v, size_t n, uint8_t *out)
{
    bool body;
    size_t o = rdbstr_dump_head(v, n, out, &body);
    if (body && n > 0) {
        memcpy(out + o, v, n);
        o += n;
    }
    rdbstr_dump_tail(rdbstr_crc64(0, out, o), out + o);
    return o + RDBSTR_TAIL;
}

/* Reads a length or an encoding code at *at (below end). */
static bool get_len(const uint8_t *p, size_t end, size_t *at, uint64_t *len, bool *enc)
{
    if (*at >= end) {
        return false;
    }
    uint8_t b = p[(*at)++];
    *enc = false;
    switch (b >> 6) {
    case 0:
        *len = b & 0x3F;
        return true;
    case 1:
        if (*at >= end) {
            return false;
        }
        *len = ((uint64_t)(b & 0x3F) << 8) | p[(*at)++];
        return true;
    case 2: {
        int bytes = b == 0x80 ? 4 : b == 0x81 ? 8 : 0;
        if (bytes == 0 || end - *at < (size_t)bytes) {
            return false;
        }
        uint64_t v = 0;
        for (int i = 0; i < bytes; i++) {
            v = (v << 8) | p[(*at)++];
        }
        *len = v;
        return true;
    }
    default:
        *enc = true;
        *len = b & 0x3F;
        return true;
    }
}

/* LZF: literal runs and back references, every bound checked. */
static bool lzf_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    size_t ip = 0, op = 0;
    while (ip < in_len) {
        unsigned ctrl = in[ip++];
        if (ctrl < 32) { /* a literal run of ctrl + 1 bytes */
            size_t run = (size_t)ctrl + 1;
            if (in_len - ip < run || out_len - op < run) {
                return false;
            }
            memcpy(out + op, in + ip, run);
            ip += run;
            op += run;
            continue;
        }
        size_t len = ctrl >> 5;
        size_t back = (size_t)(ctrl & 0x1F) << 8;
        if (len == 7) {
            if (ip >= in_len) {
                return false;
            }
            len += in[ip++];
        }
        if (ip >= in_len) {
            return false;
        }
        back += in[ip++];
        len += 2;
        if (back + 1 > op || out_len - op < len) {
            return false;
        }
        for (size_t k = 0; k < len; k++, op++) { /* may overlap: byte by byte */
            out[op] = out[op - back - 1];
        }
    }
    return op == out_len;
}

bool rdbstr_footer_ok(const uint8_t *p, size_t n)
{
    if (n < RDBSTR_TAIL) {
        return false;
    }
    unsigned version = (unsigned)p[n - 10] | ((unsigned)p[n - 9] << 8);
    uint64_t crc = 0;
    for (int k = 0; k < 8; k++) {
        crc |= (uint64_t)p[n - 8 + k] << (8 * k);
    }
    return version <= RDBSTR_VERSION && rdbstr_crc64(0, p, n - 8) == crc;
}

size_t rdbstr_put_len(uint8_t out[RDBSTR_HEAD_MAX], uint64_t len)
{
    return put_len(out, len);
}

enum rdbstr_result rdbstr_read_string(const uint8_t *p, size_t end, size_t at, size_t max_len,
                                      uint8_t *buf, size_t cap, const uint8_t **val, size_t *len,
                                      size_t *need, size_t *next)
{
    uint64_t l;
    bool enc;
    if (!get_len(p, end, &at, &l, &enc)) {
        return RDBSTR_BAD_DATA;
    }
    *need = 0;
    if (!enc) {
        if (l > max_len || end - at < l) {
            return RDBSTR_BAD_DATA;
        }
        *val = p + at;
        *len = (size_t)l;
        *next = at + (size_t)l;
        return RDBSTR_OK;
    }
    if (l == ENC_LZF) {
        uint64_t clen, ulen;
        bool e1, e2;
        if (!get_len(p, end, &at, &clen, &e1) || !get_len(p, end, &at, &ulen, &e2) || e1 || e2 ||
            end - at < clen || ulen > max_len || ulen > clen * RDBSTR_LZF_RATIO_MAX) {
            return RDBSTR_BAD_DATA; /* (a length LZF cannot reach: no allocation for it) */
        }
        *next = at + (size_t)clen;
        if (ulen == 0) { /* as Redis, whatever the compressed bytes: an empty string */
            *val = p + at;
            *len = 0;
            return RDBSTR_OK;
        }
        *need = (size_t)ulen;
        if (buf == NULL) {
            return RDBSTR_OK;
        }
        KV_ASSERT(cap >= ulen);
        if (!lzf_decode(p + at, (size_t)clen, buf, (size_t)ulen)) {
            return RDBSTR_BAD_DATA;
        }
        *val = buf;
        *len = (size_t)ulen;
        return RDBSTR_OK;
    }
    if (l > ENC_INT32) {
        return RDBSTR_BAD_DATA;
    }
    size_t bytes = (size_t)1 << l;
    if (end - at < bytes) {
        return RDBSTR_BAD_DATA;
    }
    uint64_t u = 0;
    for (size_t k = 0; k < bytes; k++) {
        u |= (uint64_t)p[at + k] << (8 * k);
    }
    *next = at + bytes;
    int64_t v = bytes == 1 ? (int8_t)u : bytes == 2 ? (int16_t)u : (int32_t)u;
    *need = 24;
    if (buf == NULL) {
        return RDBSTR_OK;
    }
    KV_ASSERT(cap >= 24);
    int k = snprintf((char *)buf, cap, "%lld", (long long)v);
    *val = buf;
    *len = (size_t)k;
    return RDBSTR_OK;
}

enum rdbstr_result rdbstr_restore(const uint8_t *p, size_t n, size_t max_len, uint8_t *buf,
                                  size_t cap, const uint8_t **val, size_t *len, size_t *need)
{
    if (!rdbstr_footer_ok(p, n)) {
        return RDBSTR_BAD_FOOTER;
    }
    size_t end = n - RDBSTR_TAIL;
    if (end == 0) {
        return RDBSTR_BAD_DATA;
    }
    if (p[0] != RDBSTR_TYPE_STR) {
        return RDBSTR_NOT_STRING;
    }
    size_t next;
    return rdbstr_read_string(p, end, 1, max_len, buf, cap, val, len, need, &next);
}
