/*
 * Unit tests of common/: error names and assertion behaviour.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "kv_assert.h"
#include "kv_bytes.h"
#include "kv_error.h"
#include "kv_sha1.h"
#include "kv_sha256.h"
#include "kv_tsc.h"

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

/* ---- kv_glob ------------------------------------------------------------------ */

#include "kv_glob.h"

static bool g(const char *p, const char *s)
{
    return kv_glob_match(p, strlen(p), s, strlen(s), false);
}

Test(kv_glob, literals_and_wildcards)
{
    cr_assert(g("", ""));
    cr_assert(!g("", "a"));
    cr_assert(g("*", ""));
    cr_assert(g("*", "anything"));
    cr_assert(g("h?llo", "hello"));
    cr_assert(g("h?llo", "hallo"));
    cr_assert(!g("h?llo", "hllo"));
    cr_assert(g("h*llo", "hllo"));
    cr_assert(g("h*llo", "heeeello"));
    cr_assert(g("*o*o*", "foo bar boo"));
    cr_assert(!g("*x*", "foo"));
    cr_assert(g("user:*:name", "user:42:name"));
    cr_assert(!g("user:*:name", "user:42:names"));
}

Test(kv_glob, classes_and_escapes)
{
    cr_assert(g("h[ae]llo", "hello"));
    cr_assert(g("h[ae]llo", "hallo"));
    cr_assert(!g("h[ae]llo", "hillo"));
    cr_assert(g("h[^e]llo", "hallo"));
    cr_assert(!g("h[^e]llo", "hello"));
    cr_assert(g("h[a-b]llo", "hbllo"));
    cr_assert(!g("h[a-b]llo", "hcllo"));
    cr_assert(g("h[b-a]llo", "hallo")); /* reversed range, as Redis */
    cr_assert(g("\\*", "*"));
    cr_assert(!g("\\*", "a"));
    cr_assert(g("[\\]]", "]"));
    cr_assert(kv_glob_match("HeLLo", 5, "hello", 5, true));
    cr_assert(!kv_glob_match("HeLLo", 5, "hello", 5, false));
}

Test(kv_glob, binary_and_pathological)
{
    cr_assert(kv_glob_match("a?c", 3, "a\0c", 3, false));
    /* Many stars against a long non-matching string must finish quickly. */
    char s[4096];
    memset(s, 'a', sizeof s);
    const char *p = "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
    cr_assert(!kv_glob_match(p, strlen(p), s, sizeof s, false));
    /* Redis's matcher gives up past 1000 nested stars: 1000 "*a" match 1200 a's, 1001
     * do not (with a trailing star too); escaped stars, stars in a class and runs of
     * stars do not count */
    static char pat[8192];
    for (int n = 999; n <= 1002; n++) {
        size_t k = 0;
        for (int i = 0; i < n; i++) {
            pat[k++] = '*';
            pat[k++] = 'a';
        }
        cr_assert_eq(kv_glob_match(pat, k, s, 1200, false), n <= 1000, "%d", n);
        pat[k] = '*';
        cr_assert_eq(kv_glob_match(pat, k + 1, s, 1200, false), n <= 1000, "%d", n);
    }
    size_t k = 0;
    for (int i = 0; i < 1500; i++) {
        memcpy(pat + k, i % 2 ? "[*]" : "\\*", i % 2 ? 3 : 2);
        k += i % 2 ? 3 : 2;
    }
    memset(s, '*', 1500);
    cr_assert(kv_glob_match(pat, k, s, 1500, false));
    memset(pat, '*', 3000);
    pat[3000] = 'a';
    cr_assert(kv_glob_match(pat, 3001, "a", 1, false)); /* one run: one star */
}

/* ---- kv_config ---------------------------------------------------------------- */

#include "kv_config.h"
#include "kv_splitargs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static _Atomic int64_t c_port, c_mem, c_flag, c_mode;
static char c_name[16];
static const char *const c_modes[] = {"always", "everysec", "no", NULL};
static const struct kv_conf_item c_items[] = {
    {.name = "port",
     .type = KV_CONF_INT,
     .def = "7379",
     .min = 0,
     .max = 65535,
     .help = "TCP port",
     .num = &c_port},
    {.name = "maxmemory",
     .type = KV_CONF_BYTES,
     .flags = KV_CONF_RUNTIME,
     .def = "1mb",
     .min = 0,
     .max = INT64_MAX,
     .help = "memory",
     .num = &c_mem},
    {.name = "flag",
     .type = KV_CONF_BOOL,
     .flags = KV_CONF_RUNTIME,
     .def = "no",
     .help = "flag",
     .num = &c_flag},
    {.name = "appendfsync",
     .type = KV_CONF_ENUM,
     .flags = KV_CONF_RUNTIME,
     .def = "always",
     .choices = c_modes,
     .help = "fsync",
     .num = &c_mode},
    {.name = "name",
     .type = KV_CONF_STRING,
     .def = "kv",
     .help = "name",
     .str = c_name,
     .str_cap = sizeof c_name},
};
#define N_ITEMS KV_ARRAY_LEN(c_items)

static void conf_reset(void)
{
    char err[256];
    cr_assert_eq(kv_conf_defaults(c_items, N_ITEMS, err, sizeof err), 0, "%s", err);
}

Test(kv_config, defaults_and_format)
{
    conf_reset();
    cr_assert_eq(KV_CONF_GET(c_port), 7379);
    cr_assert_eq(KV_CONF_GET(c_mem), 1024 * 1024);
    cr_assert_eq(KV_CONF_GET(c_flag), 0);
    cr_assert_str_eq(c_name, "kv");
    char buf[64];
    kv_conf_format(kv_conf_find(c_items, N_ITEMS, "APPENDFSYNC"), buf, sizeof buf);
    cr_assert_str_eq(buf, "always");
    kv_conf_format(kv_conf_find(c_items, N_ITEMS, "maxmemory"), buf, sizeof buf);
    cr_assert_str_eq(buf, "1048576");
}

Test(kv_config, bytes_units)
{
    int64_t v;
    cr_assert_eq(kv_conf_parse_bytes("10", &v), 0);
    cr_assert_eq(v, 10);
    cr_assert_eq(kv_conf_parse_bytes("1k", &v), 0);
    cr_assert_eq(v, 1000);
    cr_assert_eq(kv_conf_parse_bytes("1KB", &v), 0);
    cr_assert_eq(v, 1024);
    cr_assert_eq(kv_conf_parse_bytes("3gb", &v), 0);
    cr_assert_eq(v, 3LL << 30);
    cr_assert_neq(kv_conf_parse_bytes("1tb", &v), 0);
    cr_assert_neq(kv_conf_parse_bytes("", &v), 0);
    cr_assert_neq(kv_conf_parse_bytes("mb", &v), 0);
    cr_assert_neq(kv_conf_parse_bytes("99999999999999999999", &v), 0);
}

Test(kv_config, set_validates_with_redis_reasons)
{
    conf_reset();
    char err[256];
    const struct kv_conf_item *port = kv_conf_find(c_items, N_ITEMS, "port");
    cr_assert_eq(kv_conf_set(port, "abc", false, err, sizeof err), KV_EINVAL);
    cr_assert_str_eq(err, "argument couldn't be parsed into an integer");
    cr_assert_eq(kv_conf_set(port, "70000", false, err, sizeof err), KV_EINVAL);
    cr_assert_str_eq(err, "argument must be between 0 and 65535 inclusive");
    cr_assert_eq(kv_conf_set(port, "8000", true, err, sizeof err), KV_EINVAL);
    cr_assert_str_eq(err, "can't set immutable config");
    cr_assert_eq(KV_CONF_GET(c_port), 7379);
    const struct kv_conf_item *mode = kv_conf_find(c_items, N_ITEMS, "appendfsync");
    cr_assert_eq(kv_conf_set(mode, "sometimes", true, err, sizeof err), KV_EINVAL);
    cr_assert_str_eq(err, "argument(s) must be one of the following: always, everysec, no");
    cr_assert_eq(kv_conf_set(mode, "EVERYSEC", true, err, sizeof err), 0);
    cr_assert_eq(KV_CONF_GET(c_mode), 1);
    const struct kv_conf_item *flag = kv_conf_find(c_items, N_ITEMS, "flag");
    cr_assert_eq(kv_conf_set(flag, "maybe", true, err, sizeof err), KV_EINVAL);
    cr_assert_str_eq(err, "argument must be 'yes' or 'no'");
    const struct kv_conf_item *name = kv_conf_find(c_items, N_ITEMS, "name");
    cr_assert_eq(kv_conf_set(name, "a-name-that-is-too-long", false, err, sizeof err), KV_EINVAL);
    cr_assert_str_eq(c_name, "kv");
}

/* Writes text into a new temporary file whose name goes to path (a mkstemp template). */
static void temp_file(char *path, const char *text)
{
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

Test(kv_config, file_then_flags_override)
{
    conf_reset();
    char path[] = "/tmp/kvconf-XXXXXX";
    temp_file(path, "# comment\n\nport 7000\nmaxmemory 2mb\nname \"a \\\"b\\\"\"\n");
    char err[256];
    cr_assert_eq(kv_conf_load_file(c_items, N_ITEMS, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(KV_CONF_GET(c_port), 7000);
    cr_assert_eq(KV_CONF_GET(c_mem), 2 * 1024 * 1024);
    cr_assert_str_eq(c_name, "a \"b\"");
    unlink(path);
    memcpy(path + sizeof path - 7, "XXXXXX", 6);
    char path2[] = "/tmp/kvconf-XXXXXX"; /* 'single' quotes, as redis.conf's logfile '' */
    temp_file(path2, "name 'it\\'s'\nport ''\n");
    cr_assert_eq(kv_conf_load_file(c_items, N_ITEMS, path2, err, sizeof err), KV_EINVAL);
    cr_assert(strstr(err, ":2: 'port'") != NULL, "%s", err); /* "" is no number */
    cr_assert_str_eq(c_name, "it's");
    unlink(path2);
    char path3[] = "/tmp/kvconf-XXXXXX";
    temp_file(path3, "name ''\n");
    cr_assert_eq(kv_conf_load_file(c_items, N_ITEMS, path3, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c_name, "");
    unlink(path3);
    temp_file(path, "port 7000\n"); /* (path is the template again) */
    char *argv[] = {"kvd", "--config", path, "--port", "7001", "--flag=yes"};
    const char *const skip[] = {"config", NULL};
    cr_assert_eq(kv_conf_parse_args(c_items, N_ITEMS, 6, argv, 1, skip, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(KV_CONF_GET(c_port), 7001);
    cr_assert_eq(KV_CONF_GET(c_flag), 1);
    unlink(path);
}

static int other_lines(void *arg, const char *line, int lineno, char *err, size_t errlen)
{
    int *seen = arg;
    if (strncmp(line, "user ", 5) != 0) {
        snprintf(err, errlen, "not a user line");
        return KV_EINVAL;
    }
    cr_assert_str_eq(line, lineno == 2 ? "user a on >x" : "user b  off");
    (*seen)++;
    return 0;
}

static int other_lines_ok(void *arg, const char *line, int lineno, char *err, size_t errlen)
{
    (void)arg, (void)lineno, (void)err, (void)errlen;
    cr_assert(strncmp(line, "user ", 5) == 0 || strncmp(line, "bogus ", 6) == 0, "%s", line);
    return 0;
}

Test(kv_config, other_directives_go_to_the_handler)
{
    conf_reset();
    char path[] = "/tmp/kvconf-XXXXXX";
    temp_file(path, "port 7000\nuser a on >x\r\nuser b  off\n");
    char err[256];
    int seen = 0;
    cr_assert_eq(kv_conf_load_file_ex(c_items, N_ITEMS, path, other_lines, &seen, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(seen, 2);
    cr_assert_eq(KV_CONF_GET(c_port), 7000);
    /* without a handler they are errors; a handler's refusal names the line */
    cr_assert_eq(kv_conf_load_file(c_items, N_ITEMS, path, err, sizeof err), KV_EINVAL);
    cr_assert(strstr(err, ":2: bad directive") != NULL, "%s", err);
    int fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_eq(write(fd, "bogus 1\n", 8), 8);
    close(fd);
    cr_assert_eq(kv_conf_load_file_ex(c_items, N_ITEMS, path, other_lines, &seen, err, sizeof err),
                 KV_EINVAL);
    cr_assert(strstr(err, ":1: not a user line") != NULL, "%s", err);
    unlink(path);
}

Test(kv_config, include_reads_files_and_patterns_in_place)
{
    conf_reset();
    char dir[] = "/tmp/kvconf-inc-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], sub[256], d1[256], d2[256], loop[256];
    snprintf(sub, sizeof sub, "%s/sub.conf", dir);
    snprintf(d1, sizeof d1, "%s/b-1.part", dir);
    snprintf(d2, sizeof d2, "%s/b-2.part", dir);
    snprintf(path, sizeof path, "%s/main.conf", dir);
    snprintf(loop, sizeof loop, "%s/loop.conf", dir);
    FILE *f = fopen(sub, "w");
    fprintf(f, "port 7100\nmaxmemory 1mb\n");
    fclose(f);
    f = fopen(d1, "w");
    fprintf(f, "port 7101\n");
    fclose(f);
    f = fopen(d2, "w");
    fprintf(f, "port 7102\nflag yes\n");
    fclose(f);
    f = fopen(path, "w"); /* in place: a later line overrides an included one */
    fprintf(f, "port 7000\ninclude %s\nmaxmemory 2mb\nINCLUDE %s/b-*.part\ninclude %s/none-*\n",
            sub, dir, dir);
    fclose(f);
    char err[256];
    cr_assert_eq(kv_conf_load_file(c_items, N_ITEMS, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(KV_CONF_GET(c_port), 7102); /* b-1 then b-2: glob order */
    cr_assert_eq(KV_CONF_GET(c_mem), 2 * 1024 * 1024);
    cr_assert_eq(KV_CONF_GET(c_flag), 1);
    /* a missing file is an error naming it; so is a bad line of an included file */
    f = fopen(path, "w");
    fprintf(f, "include %s/missing.conf\n", dir);
    fclose(f);
    cr_assert_lt(kv_conf_load_file(c_items, N_ITEMS, path, err, sizeof err), 0);
    cr_assert(strstr(err, "missing.conf") != NULL, "%s", err);
    f = fopen(sub, "w");
    fprintf(f, "port 7100\nbogus 1\n");
    fclose(f);
    f = fopen(path, "w");
    fprintf(f, "include %s\n", sub);
    fclose(f);
    cr_assert_eq(kv_conf_load_file(c_items, N_ITEMS, path, err, sizeof err), KV_EINVAL);
    cr_assert(strstr(err, "sub.conf:2: bad directive") != NULL, "%s", err);
    /* a file including itself stops at the depth limit */
    f = fopen(loop, "w");
    fprintf(f, "include %s\n", loop);
    fclose(f);
    cr_assert_eq(kv_conf_load_file(c_items, N_ITEMS, loop, err, sizeof err), KV_EINVAL);
    cr_assert(strstr(err, "nested deeper") != NULL, "%s", err);
    unlink(sub), unlink(d1), unlink(d2), unlink(path), unlink(loop);
    rmdir(dir);
}

static int other_args(void *arg, const char *line, int lineno, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    cr_assert_eq(lineno, 0);
    char *out = arg;
    strcat(out, line);
    strcat(out, "|");
    return 0;
}

Test(kv_config, flags_take_words_up_to_the_next_flag)
{
    conf_reset();
    char err[256];
    char lines[512] = "";
    /* a setting's words joined by one space; a directive's line quoted for kv_splitargs */
    char *argv[] = {"kvd", "--name", "a",         "b",      "--rename",
                    "GET", "",       "x y\"\\\n", "--port", "--7002"};
    cr_assert_eq(kv_conf_parse_args_ex(c_items, N_ITEMS, 10, argv, 1, NULL, other_args, lines, err,
                                       sizeof err),
                 KV_EINVAL); /* "--7002" is port's value (the first word always is): not a number */
    cr_assert_str_eq(c_name, "a b");
    cr_assert_str_eq(lines, "rename GET \"\" \"x y\\\"\\\\\\n\"|"); /* (sdscatrepr's) */
    /* which kv_splitargs reads back as the arguments given */
    const char *want[] = {"rename", "GET", "", "x y\"\\\n"};
    size_t at = 0, llen = strlen(lines) - 1, olen;
    char word[64];
    for (size_t w = 0; w < 4; w++) {
        cr_assert_eq(kv_splitargs_next(lines, llen, &at, word, &olen), 1);
        cr_assert_eq(olen, strlen(want[w]));
        cr_assert(memcmp(word, want[w], olen) == 0, "argument %zu", w);
    }
    cr_assert_eq(kv_splitargs_next(lines, llen, &at, word, &olen), 0);
    cr_assert(strstr(err, "--port") != NULL, "%s", err);
    char *argv2[] = {"kvd", "--port", "7003", "--name=c d"};
    cr_assert_eq(kv_conf_parse_args(c_items, N_ITEMS, 4, argv2, 1, NULL, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(KV_CONF_GET(c_port), 7003);
    cr_assert_str_eq(c_name, "c d");
}

Test(kv_config, bad_file_and_args)
{
    conf_reset();
    char path[] = "/tmp/kvconf-XXXXXX";
    temp_file(path, "port 7000\nbogus 1\n");
    char err[256];
    cr_assert_eq(kv_conf_load_file(c_items, N_ITEMS, path, err, sizeof err), KV_EINVAL);
    cr_assert(strstr(err, ":2: bad directive") != NULL, "%s", err);
    unlink(path);
    cr_assert_lt(kv_conf_load_file(c_items, N_ITEMS, "/nonexistent/x", err, sizeof err), 0);
    char *argv1[] = {"kvd", "--nope", "1"};
    cr_assert_eq(kv_conf_parse_args(c_items, N_ITEMS, 3, argv1, 1, NULL, err, sizeof err),
                 KV_EINVAL);
    cr_assert(strstr(err, "unknown setting '--nope'") != NULL, "%s", err);
    char *argv2[] = {"kvd", "--port"};
    cr_assert_eq(kv_conf_parse_args(c_items, N_ITEMS, 2, argv2, 1, NULL, err, sizeof err),
                 KV_EINVAL);
    char *argv3[] = {"kvd", "port", "1"};
    cr_assert_eq(kv_conf_parse_args(c_items, N_ITEMS, 3, argv3, 1, NULL, err, sizeof err),
                 KV_EINVAL);
}

/* ---- kv_num ------------------------------------------------------------------- */

#include "kv_num.h"

static bool i64(const char *s, int64_t *v)
{
    return kv_parse_i64(s, strlen(s), v);
}

Test(kv_num, string2ll_rules)
{
    int64_t v;
    cr_assert(i64("0", &v) && v == 0);
    cr_assert(i64("-42", &v) && v == -42);
    cr_assert(i64("9223372036854775807", &v) && v == INT64_MAX);
    cr_assert(i64("-9223372036854775808", &v) && v == INT64_MIN);
    cr_assert(!i64("9223372036854775808", &v));
    cr_assert(!i64("", &v));
    cr_assert(!i64("-", &v));
    cr_assert(!i64("-0", &v));
    cr_assert(!i64("01", &v));
    cr_assert(!i64("+1", &v));
    cr_assert(!i64(" 1", &v));
    cr_assert(!i64("1 ", &v));
    cr_assert(!kv_parse_i64("1\0002", 3, &v));
    uint64_t u;
    cr_assert(kv_parse_u64("18446744073709551615", 20, &u) && u == UINT64_MAX);
    cr_assert(!kv_parse_u64("18446744073709551616", 20, &u));
    cr_assert(!kv_parse_u64("", 0, &u));
}

/* FIPS 180 examples, the edges of the padding (55, 56, 64 bytes), and a password as
 * Redis's ACL LIST shows it. */
Test(kv_sha256, known_digests)
{
    static const struct {
        const char *in;
        size_t n;
        const char *hex;
    } cases[] = {
        {"", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"secret", 6, "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"},
    };
    char hex[KV_SHA256_HEX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kv_sha256_hex(cases[i].in, cases[i].n, hex);
        cr_assert_str_eq(hex, cases[i].hex, "case %zu", i);
    }
    char a[64];
    memset(a, 'a', sizeof a);
    kv_sha256_hex(a, 55, hex);
    cr_assert_str_eq(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    kv_sha256_hex(a, 56, hex);
    cr_assert_str_eq(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    kv_sha256_hex(a, 64, hex);
    cr_assert_str_eq(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

/* FIPS 180 examples and the edges of the padding (55, 56, 63, 64 bytes). */
Test(kv_sha1, known_digests)
{
    char hex[KV_SHA1_HEX];
    kv_sha1_hex("", 0, hex);
    cr_assert_str_eq(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    kv_sha1_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    kv_sha1_hex(m, strlen(m), hex);
    cr_assert_str_eq(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    kv_sha1_hex("return 1", 8, hex); /* a script's name, as redis-server gives it */
    cr_assert_str_eq(hex, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    char a[1000];
    memset(a, 'a', sizeof a);
    static const char *const want[] = {
        "c1c8bbdc22796e28c0e15163d20899b65621d65a", /* 55 */
        "c2db330f6083854c99d4b5bfb6e8f29f201be699", /* 56 */
        "03f09f5b158a7a8cdad920bddc29b81c18a551f5", /* 63 */
        "0098ba824b5c16427bd7a1122a5a442a25ec644d", /* 64 */
        "291e9a6c66994949b57ba5e650361e98fc36b1ba", /* 1000 */
    };
    static const size_t lens[] = {55, 56, 63, 64, 1000};
    for (size_t i = 0; i < 5; i++) {
        kv_sha1_hex(a, lens[i], hex);
        cr_assert_str_eq(hex, want[i], "%zu bytes of 'a'", lens[i]);
    }
}

#include "kv_splitargs.h"

/* Splits a line; returns the arguments joined by '|' into out, or "INVALID". */
static const char *split_all(const char *line, char *out, size_t cap)
{
    size_t n = strlen(line), i = 0, olen, o = 0;
    char arg[256];
    int r;
    out[0] = '\0';
    while ((r = kv_splitargs_next(line, n, &i, arg, &olen)) == 1) {
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? "|" : "", (int)olen, arg);
    }
    return r < 0 ? "INVALID" : out;
}

/* The cases as redis-cli (sdssplitargs) splits them. */
Test(kv_splitargs, redis_rules)
{
    static const char *const cases[][2] = {
        {"#!lua name=x", "#!lua|name=x"},
        {"  a \t b\r\n", "a|b"},
        {"", ""},
        {"   ", ""},
        {"\"a b\" c", "a b|c"},
        {"a\"b c\"", "ab c"},
        {"\"\\x41\\n\\q\"", "A\n"
                            "q"},
        {"'it\\'s' x", "it's|x"},
        {"'a\\nb'", "a\\nb"},
        {"\"unterminated", "INVALID"},
        {"'unterminated", "INVALID"},
        {"\"a\"b", "INVALID"},
        {"'a'b", "INVALID"},
        {"name=q\"", "INVALID"},
        {"\"\"", ""},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char out[256];
        cr_assert_str_eq(split_all(cases[k][0], out, sizeof out), cases[k][1], "case %zu: %s", k,
                         cases[k][0]);
    }
}

/* kv_fmt_i64 / kv_fmt_u64 write what printf's %lld / %llu write, at every digit count and
 * at the limits. */
Test(kv_num, format_like_printf)
{
    int64_t vals[] = {0,
                      1,
                      -1,
                      9,
                      10,
                      -10,
                      99,
                      100,
                      12345,
                      -98765,
                      INT64_MAX,
                      INT64_MIN,
                      INT64_MIN + 1,
                      1000000000000000000LL,
                      999999999999999999LL};
    char a[32], b[32];
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        size_t n = kv_fmt_i64(a, vals[i]);
        int m = snprintf(b, sizeof b, "%lld", (long long)vals[i]);
        cr_assert(n == (size_t)m && memcmp(a, b, n) == 0, "%s", b);
    }
    uint64_t p = 1;
    for (int d = 0; d < 20; d++, p *= 10) {
        uint64_t us[] = {p, p - 1, p + 7, UINT64_MAX};
        for (size_t i = 0; i < 4; i++) {
            size_t n = kv_fmt_u64(a, us[i]);
            int m = snprintf(b, sizeof b, "%llu", (unsigned long long)us[i]);
            cr_assert(n == (size_t)m && memcmp(a, b, n) == 0, "%s", b);
        }
    }
}

/* ---- CONFIG REWRITE's text ------------------------------------------------------ */

#include "kv_buf.h"
#include "kv_file.h"

static char *rewrite(const char *old, const char *users)
{
    struct kv_buf out = {0};
    char err[128];
    cr_assert_eq(kv_conf_rewrite_text(c_items, N_ITEMS, kv_conf_format, old, "user", users, &out,
                                      err, sizeof err),
                 0, "%s", err);
    kv_buf_put(&out, "", 1);
    return out.p;
}

Test(kv_config, rewrite_replaces_in_place_and_appends_what_differs)
{
    conf_reset();
    char err[128];
    cr_assert_eq(kv_conf_set(&c_items[0], "7001", false, err, sizeof err), 0);    /* port */
    cr_assert_eq(kv_conf_set(&c_items[1], "3mb", false, err, sizeof err), 0);     /* maxmemory */
    cr_assert_eq(kv_conf_set(&c_items[4], "a \"b\"", false, err, sizeof err), 0); /* name */
    /* maxmemory twice (the second dropped), a user line replaced by the current users
     * at its place (the later one dropped), comments, blank and unknown lines kept, a
     * last line without its newline */
    char *t = rewrite("# top\n\nmaxmemory 1mb\nuser old on\n  # indented\nbogus x y\n"
                      "MAXMEMORY 9\nflag no\r\nuser older off\nport 1",
                      "user a on nopass\nuser b off\n");
    cr_assert_str_eq(t, "# top\n\nmaxmemory 3145728\nuser a on nopass\nuser b off\n  # indented\n"
                        "bogus x y\nflag no\nport 7001\n"
                        "# Generated by CONFIG REWRITE\nname \"a \\\"b\\\"\"\n");
    /* the result loads back to the same values, and a second rewrite changes nothing */
    char *again = rewrite(t, "user a on nopass\nuser b off\n");
    cr_assert_str_eq(again, t);
    char path[] = "/tmp/kvconf-XXXXXX";
    temp_file(path, "");
    cr_assert_eq(kv_file_replace(path, t, strlen(t)), 0);
    conf_reset();
    cr_assert_eq(
        kv_conf_load_file_ex(c_items, N_ITEMS, path, other_lines_ok, NULL, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(KV_CONF_GET(c_port), 7001);
    cr_assert_eq(KV_CONF_GET(c_mem), 3 * 1024 * 1024);
    cr_assert_str_eq(c_name, "a \"b\"");
    unlink(path);
    free(again);
    free(t);
}

Test(kv_config, rewrite_of_an_empty_file_writes_only_what_differs)
{
    conf_reset();
    char *t = rewrite("", NULL);
    cr_assert_str_eq(t, ""); /* everything at its default, no users given */
    free(t);
    char err[128];
    cr_assert_eq(kv_conf_set(&c_items[3], "no", false, err, sizeof err), 0);      /* appendfsync */
    cr_assert_eq(kv_conf_set(&c_items[1], "1048576", false, err, sizeof err), 0); /* = 1mb */
    t = rewrite("", "user default on nopass\n");
    cr_assert_str_eq(t, "# Generated by CONFIG REWRITE\nappendfsync no\nuser default on nopass\n");
    free(t);
    /* a user line without users to put (an aclfile holds them) stays as it is */
    t = rewrite("user x on\n", NULL);
    cr_assert_str_eq(t, "user x on\n# Generated by CONFIG REWRITE\nappendfsync no\n");
    free(t);
}

static size_t broken_value(const struct kv_conf_item *item, char *buf, size_t cap)
{
    return strcmp(item->name, "name") == 0 ? (size_t)snprintf(buf, cap, "a\nb")
                                           : kv_conf_format(item, buf, cap);
}

Test(kv_config, rewrite_refuses_a_value_with_a_line_break)
{
    conf_reset();
    struct kv_buf out = {0};
    char err[128];
    cr_assert_eq(kv_conf_rewrite_text(c_items, N_ITEMS, broken_value, "name x\n", NULL, NULL, &out,
                                      err, sizeof err),
                 KV_EINVAL);
    cr_assert_str_eq(err, "the value of 'name' holds a line break");
    kv_buf_free(&out);
}

Test(kv_file, replace_keeps_the_mode_and_leaves_no_temporary)
{
    char path[] = "/tmp/kvfile-XXXXXX";
    temp_file(path, "old");
    cr_assert_eq(chmod(path, 0600), 0);
    cr_assert_eq(kv_file_replace(path, "new text", 8), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(st.st_size, 8);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    cr_assert_neq(access(tmp, F_OK), 0);
    cr_assert_eq(kv_file_replace("/nonexistent-dir/x", "a", 1), ENOENT);
    unlink(path);
}

static int count_lines(void *arg, const char *line, int lineno, char *err, size_t errlen)
{
    (void)lineno, (void)err, (void)errlen;
    cr_assert(strncmp(line, "user long on nopass ~pattern:", 29) == 0 && strlen(line) > 9990);
    (*(int *)arg)++;
    return 0;
}

Test(kv_config, long_lines_load_and_rewrite)
{
    /* a user line of 10,000 bytes (many key patterns): written by CONFIG REWRITE, read
     * back by the loader whole, and rewritten again unchanged (no duplicate) */
    conf_reset();
    static char users[12000];
    size_t k = (size_t)snprintf(users, sizeof users, "user long on nopass");
    while (k < 10000) {
        k += (size_t)snprintf(users + k, sizeof users - k, " ~pattern:%05zu:*", k);
    }
    users[k++] = '\n';
    users[k] = '\0';
    char err[256];
    cr_assert_eq(kv_conf_set(&c_items[0], "7001", false, err, sizeof err), 0); /* port */
    char *t = rewrite("port 1\n", users);
    char path[] = "/tmp/kvconf-XXXXXX";
    temp_file(path, t);
    conf_reset();
    int seen = 0;
    cr_assert_eq(kv_conf_load_file_ex(c_items, N_ITEMS, path, count_lines, &seen, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(seen, 1);
    cr_assert_eq(KV_CONF_GET(c_port), 7001);
    char *again = rewrite(t, users);
    cr_assert_str_eq(again, t);
    unlink(path);
    free(again);
    free(t);
}

Test(kv_file, replace_never_writes_through_a_planted_temporary_name)
{
    char path[] = "/tmp/kvfile-XXXXXX", victim[] = "/tmp/kvvictim-XXXXXX";
    temp_file(path, "old");
    temp_file(victim, "precious");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    cr_assert_eq(symlink(victim, tmp), 0); /* where the temporary file would go */
    cr_assert_eq(kv_file_replace(path, "new", 3), 0);
    char buf[16] = {0};
    FILE *f = fopen(victim, "r");
    cr_assert_not_null(f);
    cr_assert_eq(fread(buf, 1, sizeof buf - 1, f), 8);
    fclose(f);
    cr_assert_str_eq(buf, "precious");
    memset(buf, 0, sizeof buf);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_eq(fread(buf, 1, sizeof buf - 1, f), 3);
    fclose(f);
    cr_assert_str_eq(buf, "new");
    cr_assert_eq(access(tmp, F_OK), -1); /* renamed away */
    unlink(path);
    unlink(victim);
}

static char l_save[32];
static const struct kv_conf_item l_items[] = {
    {.name = "save",
     .type = KV_CONF_STRING,
     .flags = KV_CONF_LIST,
     .def = "3600 1",
     .help = "save points",
     .str = l_save,
     .str_cap = sizeof l_save},
};

static void load_list(const char *text, int want_rc)
{
    char path[] = "/tmp/kvlist-XXXXXX", err[256];
    temp_file(path, text);
    cr_assert_eq(kv_conf_defaults(l_items, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kv_conf_load_file(l_items, 1, path, err, sizeof err), want_rc, "%s", err);
    unlink(path);
}

Test(kv_config, list_lines_add_up_as_redis_save_lines)
{
    load_list("save 900 1\nsave 300 10\n", 0);
    cr_assert_str_eq(l_save, "900 1 300 10"); /* the default replaced, then added to */
    load_list("save 900 1\nsave \"\"\nsave 60 5\n", 0);
    cr_assert_str_eq(l_save, "60 5"); /* an empty one clears what came before */
    load_list("# none\n", 0);
    cr_assert_str_eq(l_save, "3600 1");
    load_list("save 1 1\nsave 2 2\nsave 3 3\nsave 4 4\nsave 5 5\nsave 6 6\nsave 7777777 7\n",
              KV_EINVAL); /* past the setting's room */
}

/* kv_tsc: CLOCK_MONOTONIC until calibrated, then within 1% of it over 100 ms spans, never
 * backwards (also across calibrations), and CLOCK_MONOTONIC for good when not allowed. */
static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}

/* kv_tsc's time and CLOCK_MONOTONIC's read together (bracketed within 50 us, so that
 * being descheduled between the two reads does not count). */
static void tsc_pair(const struct kv_tsc *c, uint64_t *mono, uint64_t *tsc)
{
    for (int i = 0; i < 1000; i++) {
        uint64_t a = kv_clock_mono_ns();
        *tsc = kv_tsc_ns(c);
        uint64_t b = kv_clock_mono_ns();
        *mono = a + (b - a) / 2;
        if (b - a < 50000) {
            return;
        }
    }
    cr_assert_fail("no two clock reads within 50 us");
}

Test(kv_tsc, follows_the_monotonic_clock_and_never_goes_back)
{
    struct kv_tsc c;
    kv_tsc_init(&c, true);
    cr_assert(!c.on, "no scale before the first calibration");
    kv_tsc_calibrate(&c); /* too early: nothing measured yet */
    cr_assert(!c.on);
    sleep_ns(KV_TSC_WINDOW_NS + 10000000);
    kv_tsc_calibrate(&c);
    cr_assert_eq(c.on, kv_tsc_usable(), "on exactly where the kernel runs on the TSC");
    uint64_t last = 0;
    for (int round = 0; round < 3; round++) {
        uint64_t m0, t0;
        tsc_pair(&c, &m0, &t0);
        cr_assert_geq(t0, last);
        for (int i = 0; i < 100000; i++) {
            uint64_t t = kv_tsc_ns(&c);
            cr_assert_geq(t, last);
            last = t;
        }
        sleep_ns(100000000);
        uint64_t m1, t1;
        tsc_pair(&c, &m1, &t1);
        double ratio = (double)(t1 - t0) / (double)(m1 - m0);
        cr_assert(ratio > 0.99 && ratio < 1.01, "round %d: tsc/mono %.4f", round, ratio);
        cr_assert_lt(t1 > m1 ? t1 - m1 : m1 - t1, 1000000, "within 1 ms of the monotonic time");
        kv_tsc_calibrate(&c);
        cr_assert_geq(kv_tsc_ns(&c), last, "a calibration never moves it back");
    }
}

Test(kv_tsc, not_allowed_is_the_monotonic_clock)
{
    struct kv_tsc c;
    kv_tsc_init(&c, false);
    sleep_ns(KV_TSC_WINDOW_NS + 10000000);
    kv_tsc_calibrate(&c);
    cr_assert(!c.on);
    uint64_t a = kv_clock_mono_ns(), t = kv_tsc_ns(&c), b = kv_clock_mono_ns();
    cr_assert(a <= t && t <= b);
}

/* kv_buf as a C string: empty gives "", the NUL is not counted, puts go on after it. */
Test(kv_buf, cstr_and_put_str)
{
    struct kv_buf b = {0};
    cr_assert_str_eq(kv_buf_cstr(&b), "");
    cr_assert_eq(b.len, 0);
    kv_buf_put_str(&b, "user ");
    kv_buf_put(&b, "alice", 5);
    cr_assert_str_eq(kv_buf_cstr(&b), "user alice");
    cr_assert_eq(b.len, 10);
    for (int i = 0; i < 100; i++) { /* across growth */
        kv_buf_put_str(&b, " +get");
    }
    char *s = kv_buf_cstr(&b);
    cr_assert_eq(strlen(s), 10 + 500);
    cr_assert_eq(b.len, 510);
    cr_assert(strncmp(s + 505, " +get", 5) == 0);
    free(s); /* (the caller may keep the string instead of kv_buf_free) */
}

/* Every length from 0 to 40 (the word path is 8 to 16), equal, then one byte different at
 * each position, the two strings at every alignment within a buffer. */
Test(kv_bytes, equal_exactly_when_every_byte_is)
{
    unsigned char a[64], b[64];
    for (size_t n = 0; n <= 40; n++) {
        for (size_t oa = 0; oa < 8; oa += 3) {
            for (size_t i = 0; i < n; i++) {
                a[oa + i] = (unsigned char)(i * 37 + n);
                b[i + 1] = a[oa + i];
            }
            cr_assert(kv_bytes_eq(a + oa, b + 1, n), "n=%zu", n);
            for (size_t d = 0; d < n; d++) {
                b[d + 1] ^= 0x80;
                cr_assert(!kv_bytes_eq(a + oa, b + 1, n), "n=%zu differs at %zu", n, d);
                b[d + 1] ^= 0x80;
            }
        }
    }
}
