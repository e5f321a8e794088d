/* The command table's lookup by name: every visible row is found in any case, and a
 * name that is no command (a prefix, a longer word, other bytes) is not, against a
 * reference scan of the table. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd.h"

static const struct cmd_desc *reference(const char *name, size_t len)
{
    size_t n;
    const struct cmd_desc *t = cmd_table(&n);
    for (size_t i = 0; i < n; i++) {
        if (!(t[i].flags & CMD_HIDDEN) && strlen(t[i].name) == len &&
            strncasecmp(t[i].name, name, len) == 0 && memchr(name, '\0', len) == NULL) {
            return &t[i];
        }
    }
    return NULL;
}

Test(cmd, lookup_finds_every_row_in_any_case)
{
    cmd_init();
    size_t n;
    const struct cmd_desc *t = cmd_table(&n);
    srand(7);
    for (size_t i = 0; i < n; i++) {
        if (t[i].flags & CMD_HIDDEN) {
            continue;
        }
        char name[64];
        size_t len = strlen(t[i].name);
        for (int round = 0; round < 8; round++) {
            for (size_t k = 0; k < len; k++) {
                char c = t[i].name[k];
                name[k] = (rand() & 1) && c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
            }
            cr_assert_eq(cmd_lookup(name, len), &t[i], "%.*s", (int)len, name);
        }
        /* not a command: one byte less, one more, a byte changed */
        cr_assert_eq(cmd_lookup(name, len - 1), reference(name, len - 1));
        name[len] = 'x';
        cr_assert_eq(cmd_lookup(name, len + 1), reference(name, len + 1));
        name[len - 1] ^= 0x40;
        cr_assert_eq(cmd_lookup(name, len), reference(name, len));
    }
}

Test(cmd, lookup_of_random_names_agrees_with_a_scan)
{
    cmd_init();
    static const char alphabet[] = "getsGETSxXaAzZ@[`{\x80\xc1\x00 |";
    srand(11);
    for (int i = 0; i < 200000; i++) {
        char name[12];
        size_t len = 1 + (size_t)rand() % sizeof name;
        for (size_t k = 0; k < len; k++) {
            name[k] = alphabet[rand() % (int)(sizeof alphabet - 1)];
        }
        cr_assert_eq(cmd_lookup(name, len), reference(name, len), "%.*s", (int)len, name);
    }
    cr_assert_null(cmd_lookup("", 0));
    cr_assert_not_null(cmd_lookup("GeT", 3));
    cr_assert_null(cmd_lookup("GeT\0", 4));
}
