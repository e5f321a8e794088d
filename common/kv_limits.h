/*
 * kv_limits: every compile-time limit of the project, with the reason for each
 * (after SQLite's sqliteLimit.h). Limits that an operator may change at run time
 * are settings; their defaults live here as KV_DEFAULT_* and the setting's name is
 * given beside it. A limit is named KV_<WHAT>_MAX; units come last.
 */
#ifndef KV_LIMITS_H
#define KV_LIMITS_H

/* ---- engine/ ----------------------------------------------------------------- */

/* ---- proto/ ------------------------------------------------------------------ */

/* Client-side reply parser (resp_reply). Nesting depth of aggregates: RESP3 replies
 * from real servers nest a few levels; the bound sizes the parser's fixed stack. */
#define KV_RESP_REPLY_DEPTH_MAX 32
/* Longest +simple/-error/:integer/,double/(bignum line: a line is buffered until its
 * CRLF arrives, so this bounds what a broken server can make a client hold (Redis
 * bounds its own inline lines at 64 KiB the same way). */
#define KV_RESP_REPLY_LINE_MAX (64 * 1024)
/* Largest bulk/verbatim/blob-error payload: Redis's proto-max-bulk-len default. */
#define KV_RESP_REPLY_BULK_MAX (512LL * 1024 * 1024)
/* Largest aggregate count: Redis collections hold at most 2^32 - 1 elements. */
#define KV_RESP_REPLY_COUNT_MAX 4294967295LL

/* ---- cluster/ ---------------------------------------------------------------- */

#endif
