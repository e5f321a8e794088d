/*
 * kv_assert: the failure path of KV_ASSERT. Kept out of line so that the check
 * at every call site is one compare and a cold call.
 */
#include "kv_assert.h"

#include <stdio.h>
#include <stdlib.h>

noreturn void kv__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}
