/*
 * kvcli: the command-line client of kvd, compatible with redis-cli.
 *
 * Three modes, chosen as redis-cli chooses them: a command on the command line is sent
 * once (or -r times) and its reply printed ("one-shot"); with no command, lines are read
 * from the terminal with line editing and history (libedit), or, when stdin is not a
 * terminal, from stdin one command per line. Replies print in redis-cli's style: the
 * "tty" form when stdout is a terminal (or with --no-raw), the raw form otherwise (or
 * with --raw); see kvc_fmt.h. Lines split with redis-cli's quoting rules (kvc_args.h).
 *
 * Behaviour copied from redis-cli 7.0 where a script could notice it: the messages and
 * exit status of a refused connection (exit 1 in one-shot mode), AUTH, SELECT (-n) and
 * HELLO 3 (-3) sent on every (re)connection with their failures reported but not fatal,
 * exit 0 after an error reply, "Invalid argument(s)" for a line with bad quotes,
 * "N command" repeating a command N times, the prompt "host:port[db](TX)> " tracking
 * SELECT and MULTI, reconnection after the server closed the connection, and the
 * raw output of INFO, CLIENT LIST and the like. One deliberate difference: when
 * commands come from stdin, kvcli exits 1 if any of them could not be sent because the
 * server was unreachable (redis-cli exits 0).
 *
 * Single-threaded; the state is one struct cli in main's frame.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_error.h"
#include "resp_reply.h"

#include "kvc_args.h"
#include "kvc_buf.h"
#include "kvc_conn.h"
#include "kvc_fmt.h"

#ifndef KVC_VERSION
#define KVC_VERSION "0.0.0"
#endif

/* Defaults of -h and -p: kvd's. */
#define KVC_DEFAULT_HOST "127.0.0.1"
#define KVC_DEFAULT_PORT 7379
/* A host name given to the "connect" command: DNS names have at most 253 bytes. */
#define KVC_HOST_BYTES_MAX 256
/* Prompt text: "host:port[db](TX)> " with the longest host name. */
#define KVC_PROMPT_BYTES_MAX (KVC_HOST_BYTES_MAX + 64)
/* Lines kept in the history (and its file): enough for a session's worth of commands. */
#define KVC_HISTORY_LINES_MAX 1000
/* Printed text of one reply: a largest reply with every byte escaped as \xHH. */
#define KVC_OUT_BYTES_MAX (4LL * KVC_REPLY_BYTES_MAX + 4096)
/* A command taking this long prints its time in interactive mode, as redis-cli does. */
#define KVC_SLOW_MS 500

struct cli {
    /* options */
    const char *host;
    int port;
    const char *password;
    const char *user; /* --user: AUTH user password */
    bool auth_warning;
    int db_input; /* the database asked for: -n, then each successful SELECT */
    bool resp3;
    enum kvc_fmt_style style;
    bool push_output; /* print RESP3 pushes (redis-cli: when stdout is a terminal) */
    long long repeat;
    long long interval_us;
    bool stdin_lastarg; /* -x: the command's last argument is all of stdin */
    bool set_errcode;   /* -e: an error reply makes one-shot mode exit 1 */
    /* state */
    struct kvc_conn conn;
    int db; /* database selected on the open connection */
    bool in_multi;
    int pre_multi_db;
    bool interactive;                  /* reading lines (terminal or stdin), not one-shot */
    bool history;                      /* lines come from a terminal: keep a history */
    char *histfile;                    /* owned; NULL: history in memory only */
    char host_buf[KVC_HOST_BYTES_MAX]; /* host set by "connect" (host points here then) */
    int unreachable; /* commands not sent because the server could not be reached */
    char prompt[KVC_PROMPT_BYTES_MAX];
    struct kvc_args args;
    struct kvc_buf out;
};

static void usage(int status)
{
    FILE *f = status == 0 ? stdout : stderr;
    fprintf(f,
            "kvcli %s\n"
            "\n"
            "Usage: kvcli [OPTIONS] [cmd [arg [arg ...]]]\n"
            "  -h <hostname>      Server hostname (default: " KVC_DEFAULT_HOST ").\n"
            "  -p <port>          Server port (default: %d).\n"
            "  -a <password>      Password to use when connecting to the server.\n"
            "                     You can also use the KVCLI_AUTH environment\n"
            "                     variable to pass this password more safely.\n"
            "  --pass <password>  Alias of -a.\n"
            "  --user <username>  Used to send ACL style 'AUTH username pass'. Needs -a.\n"
            "  --no-auth-warning  Don't show the warning when using -a.\n"
            "  -n <db>            Database number.\n"
            "  -x                 Read last argument from STDIN.\n"
            "  -e                 Return exit error code when command execution fails.\n"
            "  -r <repeat>        Execute specified command N times (negative: forever).\n"
            "  -i <interval>      When -r is used, waits <interval> seconds per command.\n"
            "                     Sub-second times like -i 0.1 are accepted.\n"
            "  -2                 Start session in RESP2 protocol mode.\n"
            "  -3, --resp3        Start session in RESP3 protocol mode (HELLO 3).\n"
            "  --raw              Use raw formatting for replies (default when STDOUT is\n"
            "                     not a tty).\n"
            "  --no-raw           Force formatted output even when STDOUT is not a tty.\n"
            "  -v, --version      Output version and exit.\n"
            "  --help             Output this help and exit.\n"
            "\n"
            "With no command, commands are read from the terminal (line editing, history\n"
            "in ~/.kvcli_history or $KVCLI_HISTFILE) or, if stdin is not a terminal, from\n"
            "stdin, one per line.\n"
            "\n"
            "Examples:\n"
            "  kvcli SET k v\n"
            "  kvcli -p 7400 GET k\n"
            "  kvcli -r 100 INCR counter\n"
            "  printf 'SET k \"a b\"\\nGET k\\n' | kvcli\n",
            KVC_VERSION, KVC_DEFAULT_PORT);
    exit(status);
}

/* ---- options -------------------------------------------------------------------- */

static bool is_tty_or_fake(int fd)
{
    /* FAKETTY: redis-cli's switch for tests that want terminal output in a pipe. */
    return isatty(fd) || getenv("FAKETTY") != NULL;
}

static void bad_option(const char *arg)
{
    fprintf(stderr, "Unrecognized option or bad number of args for: '%s'\n", arg);
    exit(1);
}

static int parse_int(const char *opt, const char *s, long long lo, long long hi)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "Invalid value for %s: '%s'\n", opt, s);
        exit(1);
    }
    return (int)v;
}

/* A flag with a value: returns the value, or exits with redis-cli's message. */
static const char *opt_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        bad_option(argv[*i]);
    }
    return argv[++*i];
}

/* Parses the options in argv; returns the index of the first command word. */
static int parse_options(struct cli *c, int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") && i + 1 >= argc) {
            usage(0);
        } else if (!strcmp(a, "-h")) {
            c->host = opt_value(argc, argv, &i);
        } else if (!strcmp(a, "--help")) {
            usage(0);
        } else if (!strcmp(a, "-p")) {
            c->port = parse_int(a, opt_value(argc, argv, &i), 1, 65535);
        } else if (!strcmp(a, "-a") || !strcmp(a, "--pass")) {
            c->password = opt_value(argc, argv, &i);
        } else if (!strcmp(a, "--user")) {
            c->user = opt_value(argc, argv, &i);
        } else if (!strcmp(a, "--no-auth-warning")) {
            c->auth_warning = false;
        } else if (!strcmp(a, "-n")) {
            c->db_input = parse_int(a, opt_value(argc, argv, &i), 0, 1 << 30);
        } else if (!strcmp(a, "-r")) {
            const char *v = opt_value(argc, argv, &i);
            c->repeat = strtoll(v, NULL, 10);
        } else if (!strcmp(a, "-i")) {
            double s = strtod(opt_value(argc, argv, &i), NULL);
            c->interval_us = s > 0 ? (long long)(s * 1e6) : 0;
        } else if (!strcmp(a, "-x")) {
            c->stdin_lastarg = true;
        } else if (!strcmp(a, "-e")) {
            c->set_errcode = true;
        } else if (!strcmp(a, "--raw")) {
            c->style = KVC_FMT_RAW;
        } else if (!strcmp(a, "--no-raw")) {
            c->style = KVC_FMT_TTY;
        } else if (!strcmp(a, "-2")) {
            c->resp3 = false;
        } else if (!strcmp(a, "-3") || !strcmp(a, "--resp3")) {
            c->resp3 = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--version")) {
            printf("kvcli %s\n", KVC_VERSION);
            exit(0);
        } else if (a[0] == '-') {
            bad_option(a);
        } else {
            break; /* the command */
        }
    }
    return i;
}

/* ---- connection ----------------------------------------------------------------- */

static void refresh_prompt(struct cli *c)
{
    const char *open = strchr(c->host, ':') != NULL ? "[" : "";
    const char *close = *open != '\0' ? "]" : "";
    char db[24] = "";
    if (c->db != 0) {
        snprintf(db, sizeof(db), "[%d]", c->db);
    }
    snprintf(c->prompt, sizeof(c->prompt), "%s%s%s:%d%s%s> ", open, c->host, close, c->port, db,
             c->in_multi ? "(TX)" : "");
}

/* Writes the formatted text in c->out to stdout. */
static void flush_out(struct cli *c)
{
    if (c->out.len > 0) {
        fwrite(c->out.data, 1, c->out.len, stdout);
    }
    fflush(stdout);
    kvc_buf_clear(&c->out);
}

/*
 * Sends a command kvcli issues itself (AUTH, SELECT, HELLO) and reads its reply,
 * printing nothing. Returns 0 with the reply in *t / *root, or an error.
 */
static int call_quiet(struct cli *c, int n, char *const *argv, const struct resp_reply_tree **t,
                      uint32_t *root)
{
    struct kvc_args a;
    kvc_args_init(&a);
    int rc = kvc_args_set(&a, n, argv);
    if (rc == 0) {
        rc = kvc_conn_send(&c->conn, &a, 0);
    }
    kvc_args_deinit(&a);
    for (; rc == 0;) {
        rc = kvc_conn_read(&c->conn, t, root);
        if (rc != 0 || (*t)->nodes[*root].type != RESP_REPLY_PUSH) {
            break;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "\nI/O error\n");
    }
    return rc;
}

/* The text of an error reply, up to its first NUL (as redis-cli prints it with %s). */
static void print_failed(const char *what, const struct resp_reply_node *nd)
{
    fprintf(stderr, "%s failed: %.*s\n", what, (int)strnlen(nd->str, nd->len), nd->str);
}

static bool is_error(const struct resp_reply_node *nd)
{
    return nd->type == RESP_REPLY_ERROR || nd->type == RESP_REPLY_BULK_ERROR;
}

static int cli_auth(struct cli *c)
{
    if (c->password == NULL) {
        return 0;
    }
    char *argv[] = {"AUTH", (char *)(c->user != NULL ? c->user : c->password), (char *)c->password};
    const struct resp_reply_tree *t;
    uint32_t root;
    int rc = call_quiet(c, c->user != NULL ? 3 : 2, argv, &t, &root);
    if (rc == 0 && is_error(&t->nodes[root])) {
        print_failed("AUTH", &t->nodes[root]);
        rc = KV_EINVAL;
    }
    return rc;
}

static int cli_select(struct cli *c)
{
    if (c->db_input == c->db) {
        return 0;
    }
    char num[16];
    snprintf(num, sizeof(num), "%d", c->db_input);
    char *argv[] = {"SELECT", num};
    const struct resp_reply_tree *t;
    uint32_t root;
    int rc = call_quiet(c, 2, argv, &t, &root);
    if (rc == 0 && is_error(&t->nodes[root])) {
        char what[32];
        snprintf(what, sizeof(what), "SELECT %d", c->db_input);
        print_failed(what, &t->nodes[root]);
        rc = KV_EINVAL;
    } else if (rc == 0) {
        c->db = c->db_input;
        refresh_prompt(c);
    }
    return rc;
}

static int cli_hello3(struct cli *c)
{
    if (!c->resp3) {
        return 0;
    }
    char *argv[] = {"HELLO", "3"};
    const struct resp_reply_tree *t;
    uint32_t root;
    int rc = call_quiet(c, 2, argv, &t, &root);
    if (rc == 0 && is_error(&t->nodes[root])) {
        print_failed("HELLO 3", &t->nodes[root]);
        rc = KV_EINVAL;
    }
    return rc;
}

/*
 * (Re)connects, then AUTH, SELECT and HELLO 3 as configured. Returns 0, KV_EINVAL when
 * one of those was refused (the connection stays open, as in redis-cli), or the
 * connection error (reported on stderr).
 */
static int cli_connect(struct cli *c)
{
    if (kvc_conn_is_open(&c->conn)) {
        kvc_conn_close(&c->conn);
    }
    c->db = 0;
    c->in_multi = false;
    refresh_prompt(c);
    int rc = kvc_conn_open(&c->conn, c->host, c->port);
    if (rc != 0) {
        fprintf(stderr, "Could not connect to kvd at %s:%d: %s\n", c->host, c->port,
                kvc_conn_error(&c->conn));
        return rc;
    }
    rc = cli_auth(c);
    if (rc == 0) {
        rc = cli_select(c);
    }
    if (rc == 0) {
        rc = cli_hello3(c);
    }
    return kvc_conn_is_open(&c->conn) ? (rc != 0 ? KV_EINVAL : 0) : rc;
}

/* ---- one command ---------------------------------------------------------------- */

static bool eq(const struct kvc_args *a, int i, const char *s)
{
    return i < a->argc && strcasecmp(a->argv[i], s) == 0;
}

/* Commands whose reply redis-cli prints as raw text in every mode (their text has its
 * own line structure). */
static bool prints_verbatim(const struct kvc_args *a, int f)
{
    int n = a->argc - f;
    return eq(a, f, "info") || eq(a, f, "lolwut") ||
           (n >= 2 && eq(a, f, "debug") &&
            (eq(a, f + 1, "htstats") || eq(a, f + 1, "htstats-key") ||
             eq(a, f + 1, "client-eviction"))) ||
           (n >= 2 && eq(a, f, "memory") &&
            (eq(a, f + 1, "malloc-stats") || eq(a, f + 1, "doctor"))) ||
           (n == 2 && eq(a, f, "cluster") && (eq(a, f + 1, "nodes") || eq(a, f + 1, "info"))) ||
           (n >= 2 && eq(a, f, "client") && (eq(a, f + 1, "list") || eq(a, f + 1, "info"))) ||
           (n == 3 && eq(a, f, "latency") && eq(a, f + 1, "graph")) ||
           (n == 2 && eq(a, f, "latency") && eq(a, f + 1, "doctor"));
}

/* Updates the session state (database, transaction) after a reply, as redis-cli does. */
static void track_state(struct cli *c, const struct kvc_args *a, int f, uint8_t type)
{
    int n = a->argc - f;
    bool err = type == RESP_REPLY_ERROR || type == RESP_REPLY_BULK_ERROR;
    if (eq(a, f, "select") && n == 2 && !err) {
        c->db = c->db_input = atoi(a->argv[f + 1]);
    } else if (eq(a, f, "auth") && (n == 2 || n == 3)) {
        (void)cli_select(c);
    } else if (eq(a, f, "multi") && n == 1 && !err) {
        c->in_multi = true;
        c->pre_multi_db = c->db;
    } else if (eq(a, f, "exec") && n == 1 && c->in_multi) {
        c->in_multi = false;
        if (err || type == RESP_REPLY_NULL) {
            c->db = c->db_input = c->pre_multi_db;
        }
    } else if (eq(a, f, "discard") && n == 1 && !err) {
        c->in_multi = false;
        c->db = c->db_input = c->pre_multi_db;
    } else if (eq(a, f, "reset") && n == 1 && !err) {
        c->in_multi = false;
        c->db = c->db_input = 0;
    }
    refresh_prompt(c);
}

/* Reads replies until one that is not a push, printing pushes when asked to. */
static int read_reply(struct cli *c, const struct resp_reply_tree **t, uint32_t *root)
{
    for (;;) {
        int rc = kvc_conn_read(&c->conn, t, root);
        if (rc != 0 || (*t)->nodes[*root].type != RESP_REPLY_PUSH) {
            return rc;
        }
        if (c->push_output) {
            (void)kvc_fmt_reply(&c->out, *t, *root, c->style, false);
            flush_out(c);
        }
    }
}

/*
 * A read or send failed. One-shot mode ends the program; interactive mode reports it
 * and reconnects at the next command. After SHUTDOWN, a closed connection is success.
 */
static int command_failed(struct cli *c, int rc, bool shutdown)
{
    if (shutdown && rc == -ECONNRESET) {
        kvc_conn_close(&c->conn);
        return 0;
    }
    fprintf(stderr, "Error: %s\n", kvc_conn_error(&c->conn));
    if (rc == KV_ELIMIT && kvc_conn_is_open(&c->conn)) {
        return 0; /* a reply too large to print was skipped; the stream is in sync */
    }
    if (!c->interactive) {
        exit(1);
    }
    kvc_conn_close(&c->conn);
    return rc;
}

/* Sends argv[f..argc) `repeat` times (forever if negative), printing each reply. */
static int cli_send_command(struct cli *c, const struct kvc_args *a, int f, long long repeat)
{
    bool verbatim = prints_verbatim(a, f);
    bool shutdown = eq(a, f, "shutdown");
    while (repeat < 0 || repeat-- > 0) {
        const struct resp_reply_tree *t;
        uint32_t root;
        int rc = kvc_conn_send(&c->conn, a, f);
        if (rc == 0) {
            rc = read_reply(c, &t, &root);
        }
        if (rc != 0) {
            return command_failed(c, rc, shutdown);
        }
        const struct resp_reply_node *nd = &t->nodes[root];
        if (c->set_errcode && !c->interactive && is_error(nd)) {
            /* -e, as redis-cli: the error's text alone, on stderr, and stop. */
            fprintf(stderr, "%.*s\n", (int)strnlen(nd->str, nd->len), nd->str);
            return KV_EINVAL;
        }
        if (kvc_fmt_reply(&c->out, t, root, c->style, verbatim) != 0) {
            fputs("kvcli: reply too large to print whole\n", stderr);
        }
        flush_out(c);
        track_state(c, a, f, t->nodes[root].type);
        if (c->interval_us > 0) {
            struct timespec ts = {.tv_sec = c->interval_us / 1000000,
                                  .tv_nsec = (c->interval_us % 1000000) * 1000};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            }
        }
    }
    return 0;
}

static void print_help(void)
{
    printf("kvcli %s\n"
           "Type a command as for redis-cli: kvd implements the Redis commands of the same\n"
           "name (strings and keyspace). \"N command\" runs a command N times; \"connect host\n"
           "port\" switches servers; \"clear\" clears the screen; \"quit\" or \"exit\" "
           "leaves.\n",
           KVC_VERSION);
}

/* Issues one command, connecting first if needed. Returns 0 or an error. */
static int issue_command(struct cli *c, const struct kvc_args *a, int f, long long repeat)
{
    if (eq(a, f, "help") || eq(a, f, "?")) {
        print_help();
        return 0;
    }
    if (!kvc_conn_is_open(&c->conn)) {
        int rc = cli_connect(c);
        if (!kvc_conn_is_open(&c->conn)) {
            c->unreachable++;
            return rc;
        }
    }
    return cli_send_command(c, a, f, repeat);
}

/* ---- interactive and stdin modes ----------------------------------------------- */

/* Set while readline() waits for a line. A signal handler can reach only globals. */
static volatile sig_atomic_t g_at_prompt;

/*
 * Ctrl-C as in redis-cli: at the prompt it ends the session (exit 0, after a newline);
 * while a command waits for its reply it exits 1. libedit has put the terminal back in
 * cooked mode before this runs (it catches the signal first, then re-raises it).
 */
static void on_sigint(int sig)
{
    (void)sig;
    if (g_at_prompt) {
        ssize_t n = write(STDOUT_FILENO, "\n", 1);
        (void)n;
        _exit(0);
    }
    _exit(1);
}

/* History file: $KVCLI_HISTFILE, else ~/.kvcli_history; NULL for none (or /dev/null). */
static char *history_path(void)
{
    const char *env = getenv("KVCLI_HISTFILE");
    if (env != NULL && *env != '\0') {
        return strcmp(env, "/dev/null") == 0 ? NULL : strdup(env);
    }
    const char *home = getenv("HOME");
    if (home == NULL || *home == '\0') {
        return NULL;
    }
    size_t n = strlen(home) + sizeof("/.kvcli_history");
    char *p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/.kvcli_history", home);
    }
    return p;
}

/* Writes the history file, readable by its owner only (it may hold values). */
static void save_history(const struct cli *c)
{
    if (c->histfile == NULL) {
        return;
    }
    mode_t old = umask(S_IXUSR | S_IRWXG | S_IRWXO);
    (void)write_history(c->histfile);
    umask(old);
    (void)chmod(c->histfile, S_IRUSR | S_IWUSR);
}

/* Commands that carry a password are kept out of the history, as in redis-cli. */
static bool is_sensitive(const struct kvc_args *a, int f)
{
    if (eq(a, f, "auth")) {
        return true;
    }
    if (eq(a, f, "hello") || eq(a, f, "migrate")) {
        for (int i = f + 1; i < a->argc; i++) {
            if (eq(a, i, "auth") || eq(a, i, "auth2")) {
                return true;
            }
        }
        return false;
    }
    if (eq(a, f, "acl") && eq(a, f + 1, "setuser")) {
        return true;
    }
    return eq(a, f, "config") && eq(a, f + 1, "set") &&
           (eq(a, f + 2, "masterauth") || eq(a, f + 2, "masteruser") ||
            eq(a, f + 2, "requirepass") || eq(a, f + 2, "tls-key-file-pass") ||
            eq(a, f + 2, "tls-client-key-file-pass"));
}

/* A leading number repeats the command: "3 INCR k". Returns the count, 1 without one,
 * or 0 for an invalid count (reported). Sets *skip to the words to skip. */
static long long line_repeat(const struct kvc_args *a, int *skip)
{
    *skip = 0;
    char *end = NULL;
    errno = 0;
    long long r = strtol(a->argv[0], &end, 10);
    if (a->argc > 1 && *end == '\0') {
        if (errno == ERANGE || errno == EINVAL || r <= 0) {
            fputs("Invalid redis-cli repeat command option value.\n", stdout);
            return 0;
        }
        *skip = 1;
        return r;
    }
    return 1;
}

/* One line from the terminal or stdin. Returns false when the session should end. */
static bool handle_line(struct cli *c, const char *line)
{
    int rc = kvc_args_split(&c->args, line);
    if (rc == KV_ELIMIT) {
        fputs("kvcli: command too long\n", stderr);
        return true;
    }
    if (rc != 0) {
        printf("Invalid argument(s)\n");
        fflush(stdout);
        if (c->history) {
            add_history(line);
            save_history(c);
        }
        return true;
    }
    if (c->args.argc == 0) {
        return true;
    }
    int skip;
    long long repeat = line_repeat(&c->args, &skip);
    if (repeat == 0) {
        return true;
    }
    if (c->history && !is_sensitive(&c->args, skip)) {
        add_history(line);
        save_history(c);
    }
    if (eq(&c->args, 0, "quit") || eq(&c->args, 0, "exit")) {
        return false;
    }
    if (c->args.argc == 3 && eq(&c->args, 0, "connect")) {
        snprintf(c->host_buf, sizeof(c->host_buf), "%s", c->args.argv[1]);
        c->host = c->host_buf;
        c->port = atoi(c->args.argv[2]);
        refresh_prompt(c);
        (void)cli_connect(c);
    } else if (c->args.argc == 1 && eq(&c->args, 0, "clear")) {
        fputs("\033[H\033[2J", stdout);
        fflush(stdout);
    } else {
        uint64_t start_ns = kv_clock_mono_ns();
        (void)issue_command(c, &c->args, skip, repeat);
        uint64_t elapsed_ms = (kv_clock_mono_ns() - start_ns) / 1000000;
        if (elapsed_ms >= KVC_SLOW_MS && c->style == KVC_FMT_TTY) {
            printf("(%.2fs)\n", (double)elapsed_ms / 1000);
            fflush(stdout);
        }
    }
    return true;
}

/* Reads one line from stdin (not a terminal) into *buf, without its newline. */
static char *read_stdin_line(char **buf, size_t *cap)
{
    ssize_t n = getline(buf, cap, stdin);
    if (n < 0) {
        return NULL;
    }
    if (n > 0 && (*buf)[n - 1] == '\n') {
        (*buf)[n - 1] = '\0';
    }
    return *buf;
}

static int repl(struct cli *c)
{
    bool tty = isatty(STDIN_FILENO);
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    c->interactive = true;
    c->history = tty;
    if (tty) {
        using_history();
        stifle_history(KVC_HISTORY_LINES_MAX);
        c->histfile = history_path();
        if (c->histfile != NULL) {
            (void)read_history(c->histfile);
        }
    }
    (void)cli_connect(c);
    char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        char *line;
        if (tty) {
            g_at_prompt = 1;
            line = readline(kvc_conn_is_open(&c->conn) ? c->prompt : "not connected> ");
            g_at_prompt = 0;
        } else {
            line = read_stdin_line(&buf, &cap);
        }
        if (line == NULL) {
            break;
        }
        bool more = line[0] == '\0' || handle_line(c, line);
        if (tty) {
            free(line);
        }
        if (!more) {
            break;
        }
    }
    free(buf);
    free(c->histfile);
    c->histfile = NULL;
    /* Stdin mode reports commands lost to an unreachable server (see the top). */
    return !tty && c->unreachable > 0 ? 1 : 0;
}

/* ---- main ----------------------------------------------------------------------- */

/* -x: appends all of stdin as the command's last argument. */
static int push_stdin_arg(struct kvc_args *a)
{
    struct kvc_buf in;
    kvc_buf_init(&in, (size_t)KVC_ARGS_BYTES_MAX);
    int rc = 0;
    for (;;) {
        rc = kvc_buf_reserve(&in, 64 * 1024);
        if (rc != 0) {
            break;
        }
        ssize_t n = read(STDIN_FILENO, in.data + in.len, in.cap - in.len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        in.len += (size_t)n;
    }
    if (rc == 0) {
        rc = kvc_args_push(a, in.data, in.len);
    }
    kvc_buf_deinit(&in);
    return rc;
}

static int one_shot(struct cli *c, int argc, char **argv)
{
    if (kvc_args_set(&c->args, argc, argv) != 0 ||
        (c->stdin_lastarg && push_stdin_arg(&c->args) != 0)) {
        fputs("kvcli: command too long\n", stderr);
        return 1;
    }
    if (eq(&c->args, 0, "help") || eq(&c->args, 0, "?")) {
        print_help();
        return 0;
    }
    int rc = cli_connect(c);
    if (!kvc_conn_is_open(&c->conn)) {
        return 1;
    }
    (void)rc; /* a refused AUTH/SELECT/HELLO was reported; the command still runs */
    rc = cli_send_command(c, &c->args, 0, c->repeat);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static struct cli c;
    c.host = KVC_DEFAULT_HOST;
    c.port = KVC_DEFAULT_PORT;
    c.auth_warning = true;
    c.repeat = 1;
    c.style = is_tty_or_fake(STDOUT_FILENO) ? KVC_FMT_TTY : KVC_FMT_RAW;
    c.push_output = is_tty_or_fake(STDOUT_FILENO);
    int first = parse_options(&c, argc, argv);
    if (c.password != NULL && c.auth_warning) {
        fputs("Warning: Using a password with '-a' or '--pass' option on the command line "
              "interface may not be safe.\n",
              stderr);
    } else if (c.password == NULL && getenv("KVCLI_AUTH") != NULL) {
        c.password = getenv("KVCLI_AUTH");
    }
    kvc_conn_init(&c.conn);
    kvc_args_init(&c.args);
    kvc_buf_init(&c.out, (size_t)KVC_OUT_BYTES_MAX);
    refresh_prompt(&c);
    int status = first < argc ? one_shot(&c, argc - first, argv + first) : repl(&c);
    kvc_conn_deinit(&c.conn);
    kvc_args_deinit(&c.args);
    kvc_buf_deinit(&c.out);
    return status;
}
