/*
 * kv_assert: assertions that stay on in every build.
 *
 * KV_ASSERT(e) is always compiled in: it is cheap, and a storage engine that
 * continues after a broken invariant corrupts data. On failure it prints the
 * expression, file and line to stderr and aborts (a core dump is the report).
 * KV_DASSERT(e) is for checks that cost O(n) or sit in the tightest loops; it is
 * compiled only in debug builds (NDEBUG unset).
 *
 * KV_ALWAYS(e) / KV_NEVER(e), after SQLite: wrap a condition that can't happen but
 * that the code handles anyway. Debug builds assert; release builds evaluate it so
 * that the defensive branch stays correct.
 */
#ifndef KV_ASSERT_H
#define KV_ASSERT_H

#include <stdnoreturn.h>

noreturn void kv__assert_fail(const char *expr, const char *file, int line);

#define KV_LIKELY(x)   __builtin_expect(!!(x), 1)
#define KV_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define KV_ASSERT(e) (KV_LIKELY(e) ? (void)0 : kv__assert_fail(#e, __FILE__, __LINE__))

#ifdef NDEBUG
#define KV_DASSERT(e) ((void)0)
#define KV_ALWAYS(e)  (e)
#define KV_NEVER(e)   (e)
#else
#define KV_DASSERT(e) KV_ASSERT(e)
#define KV_ALWAYS(e)  ((e) ? 1 : (kv__assert_fail(#e, __FILE__, __LINE__), 0))
#define KV_NEVER(e)   ((e) ? (kv__assert_fail("!(" #e ")", __FILE__, __LINE__), 1) : 0)
#endif

#define KV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
