/*
 * Unit tests of io/devcache: a device's write cache kind read from a sysfs tree built
 * here (queue/write_cache and queue/fua, a partition through its disk's directory, the
 * cases where kvd cannot tell), and the machine's own /sys for a directory.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devcache.h"

static char root[64];

static void mkdirs(const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s: %d", path, errno);
}

static void put(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* A disk `name` (M:0) under devices/, its queue files, and dev/block/M:0 linking to it
 * as the kernel's does (a relative link). */
static void disk(unsigned major, const char *name, const char *cache, const char *fua)
{
    char rel[128], link[128], target[128];
    snprintf(rel, sizeof rel, "devices/%s/queue", name);
    mkdirs(rel);
    snprintf(rel, sizeof rel, "devices/%s/queue/write_cache", name);
    put(rel, cache);
    if (fua != NULL) {
        snprintf(rel, sizeof rel, "devices/%s/queue/fua", name);
        put(rel, fua);
    }
    mkdirs("dev/block");
    snprintf(link, sizeof link, "%s/dev/block/%u:0", root, major);
    snprintf(target, sizeof target, "../../devices/%s", name);
    cr_assert_eq(symlink(target, link), 0, "symlink: %d", errno);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/kv-devcache-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(devcache, .init = setup, .fini = teardown);

Test(devcache, kinds_of_disks)
{
    disk(8, "wt", "write through\n", "0\n");
    disk(9, "fua", "write back\n", "1\n");
    disk(10, "wb", "write back\n", "0\n");
    cr_assert_eq(devcache_of_dev(root, 8, 0), DEVCACHE_WRITE_THROUGH);
    cr_assert_eq(devcache_of_dev(root, 9, 0), DEVCACHE_FUA);
    cr_assert_eq(devcache_of_dev(root, 10, 0), DEVCACHE_WRITE_BACK);
    cr_assert_str_eq(devcache_name(DEVCACHE_WRITE_BACK), "write-back");
    cr_assert_str_eq(devcache_name(DEVCACHE_FUA), "fua");
    cr_assert_str_eq(devcache_name(DEVCACHE_WRITE_THROUGH), "write-through");
}

Test(devcache, a_partition_reads_its_disks_queue)
{
    disk(11, "sda", "write back\n", "0\n");
    mkdirs("devices/sda/sda1"); /* a partition: no queue/ of its own */
    char link[128];
    snprintf(link, sizeof link, "%s/dev/block/11:1", root);
    cr_assert_eq(symlink("../../devices/sda/sda1", link), 0);
    cr_assert_eq(devcache_of_dev(root, 11, 1), DEVCACHE_WRITE_BACK);
}

Test(devcache, unknown_when_it_cannot_tell)
{
    disk(12, "nofua", "write back\n", NULL); /* no fua file */
    disk(13, "odd", "write around\n", "0\n");
    cr_assert_eq(devcache_of_dev(root, 12, 0), DEVCACHE_UNKNOWN);
    cr_assert_eq(devcache_of_dev(root, 13, 0), DEVCACHE_UNKNOWN);
    cr_assert_eq(devcache_of_dev(root, 99, 0), DEVCACHE_UNKNOWN); /* no such device */
    cr_assert_str_eq(devcache_name(DEVCACHE_UNKNOWN), "unknown");
}

Test(devcache, a_directory_on_this_machine)
{
    /* whatever the machine has, one of the four answers, never a crash; a directory
     * that does not exist is unknown */
    enum devcache_kind k = devcache_of_dir("/tmp");
    cr_assert(k >= DEVCACHE_UNKNOWN && k <= DEVCACHE_WRITE_BACK, "%d", (int)k);
    cr_assert_eq(devcache_of_dir("/nonexistent/kv-devcache"), DEVCACHE_UNKNOWN);
    cr_assert_eq(devcache_of_dir("/proc"), DEVCACHE_UNKNOWN); /* (an anonymous device) */
}
