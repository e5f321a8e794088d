/*
 * Unit tests of io/obuf: client-output-buffer-limit's text (Redis's groups of class,
 * hard, soft, seconds), its errors, partial updates, and CONFIG SET's stricter spacing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "obuf.h"

static void reset(void)
{
    char why[128];
    cr_assert_eq(obuf_set(OBUF_DEFAULT, why, sizeof why), 0, "%s", why);
}

static const char *text(void)
{
    static char buf[OBUF_TEXT_MAX];
    obuf_text(buf, sizeof buf);
    return buf;
}

Test(obuf, default_text_and_values)
{
    reset();
    cr_assert_str_eq(text(),
                     "normal 268435456 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60");
    struct obuf_limit l = obuf_get(OBUF_PUBSUB);
    cr_assert_eq(l.hard_bytes, 32u << 20);
    cr_assert_eq(l.soft_bytes, 8u << 20);
    cr_assert_eq(l.soft_s, 60);
}

Test(obuf, groups_change_only_their_class)
{
    reset();
    char why[128];
    cr_assert_eq(obuf_set("pubsub 1mb 512kb 30", why, sizeof why), 0);
    cr_assert_str_eq(text(),
                     "normal 268435456 0 0 slave 268435456 67108864 60 pubsub 1048576 524288 30");
    cr_assert_eq(obuf_set("REPLICA 1k 2 3 normal 0 0 0 normal 4 5 6", why, sizeof why), 0);
    cr_assert_str_eq(text(), "normal 4 5 6 slave 1000 2 3 pubsub 1048576 524288 30");
    cr_assert_eq(obuf_set("", why, sizeof why), 0); /* nothing named: nothing changes */
    cr_assert_str_eq(text(), "normal 4 5 6 slave 1000 2 3 pubsub 1048576 524288 30");
}

Test(obuf, errors_change_nothing)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"normal 1 2", "Wrong number of arguments in buffer limit configuration."},
        {"normal 1 2 3 pubsub", "Wrong number of arguments in buffer limit configuration."},
        {"master 1 2 3", "Invalid client class specified in buffer limit configuration."},
        {"normal 1 2 3 nosuch 1 2 3",
         "Invalid client class specified in buffer limit configuration."},
        {"normal x 0 0",
         "Error in hard, soft or soft_seconds setting in buffer limit configuration."},
        {"normal 1 -2 0",
         "Error in hard, soft or soft_seconds setting in buffer limit configuration."},
        {"normal 1 2 -3",
         "Error in hard, soft or soft_seconds setting in buffer limit configuration."},
        {"normal 1 2 3x",
         "Error in hard, soft or soft_seconds setting in buffer limit configuration."},
    };
    reset();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[128] = "";
        cr_assert_eq(obuf_check(bad[i].text, why, sizeof why), -1, "%s", bad[i].text);
        cr_assert_str_eq(why, bad[i].why, "%s", bad[i].text);
        cr_assert_eq(obuf_set(bad[i].text, why, sizeof why), -1, "%s", bad[i].text);
        cr_assert_str_eq(text(), "normal 268435456 0 0 slave 268435456 67108864 60 pubsub 33554432 "
                                 "8388608 60");
    }
}

Test(obuf, config_set_spacing_is_strict)
{
    char why[128];
    /* CONFIG SET splits at single spaces, as Redis: two spaces make an empty argument */
    cr_assert_eq(obuf_check("normal 1 2 3", why, sizeof why), 0);
    cr_assert_eq(obuf_check("normal  1 2 3", why, sizeof why), -1);
    cr_assert_eq(obuf_check("normal 1 2 3 ", why, sizeof why), -1);
    cr_assert_eq(obuf_check(" normal 1 2 3", why, sizeof why), -1);
    cr_assert_eq(obuf_check("", why, sizeof why), 0);
    /* a config file's line or a flag: any white space */
    reset();
    cr_assert_eq(obuf_set("  normal\t1   2 3  ", why, sizeof why), 0);
    cr_assert_eq(obuf_get(OBUF_NORMAL).hard_bytes, 1);
    cr_assert_eq(obuf_get(OBUF_NORMAL).soft_s, 3);
}

Test(obuf, long_tokens_are_refused_not_cut_into_valid_ones)
{
    char why[128], big[300];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char t[400];
    snprintf(t, sizeof t, "normal %s 0 0", big);
    cr_assert_eq(obuf_check(t, why, sizeof why), -1);
}
