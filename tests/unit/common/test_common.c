/*
 * Unit tests of common/: error names and assertion behaviour.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "kv_assert.h"
#include "kv_error.h"

Test(kv_error, names_project_codes)
{
    cr_assert_str_eq(kv_strerror(KV_OK), "ok");
    cr_assert_str_eq(kv_strerror(KV_ENOTFOUND), "not found");
    cr_assert_str_eq(kv_strerror(KV_EPROTO), "protocol error");
    cr_assert_str_eq(kv_strerror(KV_ECORRUPT), "corrupt data");
}

Test(kv_error, passes_errno_to_strerror)
{
    cr_assert_str_eq(kv_strerror(-ENOENT), strerror(ENOENT));
    cr_assert_str_eq(kv_strerror(-EIO), strerror(EIO));
}

Test(kv_error, unknown_code)
{
    cr_assert_str_eq(kv_strerror(KV_EBASE - 999), "unknown error");
    cr_assert_str_eq(kv_strerror(5), "unknown error");
}

Test(kv_assert, holds_quietly)
{
    int x = 1;
    KV_ASSERT(x == 1);
    cr_assert_eq(x, 1);
}

Test(kv_assert, aborts_on_failure, .signal = SIGABRT)
{
    volatile int x = 2;
    KV_ASSERT(x == 1);
}
