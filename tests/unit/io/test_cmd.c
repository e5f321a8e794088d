/* The command table's lookup by name: every visible row is found in any case, and a
 * name that is no command (a prefix, a longer word, other bytes) is not, against a
 * reference scan of the table; cmd_find by own names; rename-command. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd.h"
#include "kv_error.h"

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

Test(cmd, find_by_own_name_agrees_with_a_scan)
{
    cmd_init();
    size_t n;
    const struct cmd_desc *t = cmd_table(&n);
    for (size_t i = 0; i < n; i++) {
        const char *name = t[i].name;
        cr_assert_eq(cmd_find(name, strlen(name)), reference(name, strlen(name)), "%s", name);
        char upper[64];
        size_t len = strlen(name);
        for (size_t k = 0; k <= len; k++) {
            upper[k] = (char)toupper((unsigned char)name[k]);
        }
        cr_assert_eq(cmd_find(upper, len), reference(name, len), "%s", upper);
        cr_assert_eq(cmd_find(name, len - 1), reference(name, len - 1), "%s", name);
    }
    cr_assert_null(cmd_find("zzzz", 4));
    cr_assert_null(cmd_find("a", 1));
}

Test(cmd, rename_command_as_redis)
{
    cmd_init();
    char err[128];
    const struct cmd_desc *get = cmd_find("get", 3), *set = cmd_find("set", 3);
    cr_assert_not_null(get);
    cr_assert(!cmd_renamed());
    cr_assert_eq(cmd_rename_command("GET", "Fetch", err, sizeof err), 0, "%s", err);
    cr_assert(cmd_renamed());
    cr_assert_eq(cmd_lookup("fetch", 5), get);
    cr_assert_eq(cmd_lookup("FETCH", 5), get);
    cr_assert_null(cmd_lookup("get", 3));
    cr_assert_eq(cmd_find("get", 3), get); /* its own name for ACL rules */
    cr_assert(cmd_listed(get));
    /* found by its name now: renamed again from it; not by its own any more */
    cr_assert_eq(cmd_rename_command("get", "x", err, sizeof err), KV_EINVAL);
    cr_assert_str_eq(err, "No such command in rename-command");
    cr_assert_eq(cmd_rename_command("fetch", "mget", err, sizeof err), KV_EINVAL);
    cr_assert_str_eq(err, "Target command name already exists");
    /* a long name (longer than any command's own) is found by its whole length */
    char longname[CMD_RENAME_MAX + 2];
    memset(longname, 'q', sizeof longname);
    longname[CMD_RENAME_MAX] = '\0';
    cr_assert_eq(cmd_rename_command("fetch", longname, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cmd_lookup(longname, CMD_RENAME_MAX), get);
    cr_assert_null(cmd_lookup(longname, CMD_RENAME_MAX - 1));
    cr_assert_null(cmd_lookup("fetch", 5));
    longname[CMD_RENAME_MAX] = 'q';
    longname[CMD_RENAME_MAX + 1] = '\0';
    cr_assert_eq(cmd_rename_command("set", longname, err, sizeof err), KV_EINVAL);
    /* "" disables: not found, not listed */
    cr_assert_eq(cmd_rename_command("SET", "", err, sizeof err), 0, "%s", err);
    cr_assert_null(cmd_lookup("set", 3));
    cr_assert(!cmd_listed(set));
    cr_assert_eq(cmd_find("set", 3), set);
    cr_assert_eq(cmd_rename_command("set", "y", err, sizeof err), KV_EINVAL);
    cr_assert_eq(cmd_rename_command("client|list", "y", err, sizeof err), KV_EINVAL);
    /* every other command is still found by its own name */
    size_t n;
    const struct cmd_desc *t = cmd_table(&n);
    for (size_t i = 0; i < n; i++) {
        if (cmd_listed(&t[i]) && &t[i] != get) {
            cr_assert_eq(cmd_lookup(t[i].name, strlen(t[i].name)), &t[i], "%s", t[i].name);
        }
    }
}
