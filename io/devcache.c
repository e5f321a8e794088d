/*
 * devcache: see devcache.h. /sys/dev/block/MAJ:MIN is a link to the device's directory;
 * a partition's directory has no queue/ of its own, its disk's (the parent) has.
 */
#include "devcache.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "kv_assert.h"

/* The first line of a small sysfs file, without its newline; false if unreadable. */
static bool read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return false;
    }
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (ok) {
        buf[strcspn(buf, "\n")] = '\0';
    }
    return ok;
}

enum devcache_kind devcache_of_dev(const char *sysfs, unsigned major, unsigned minor)
{
    KV_ASSERT(sysfs != NULL);
    static const char *const queues[] = {"queue", "../queue"};
    for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++) {
        char path[512];
        char cache[32];
        char fua[8];
        snprintf(path, sizeof path, "%s/dev/block/%u:%u/%s/write_cache", sysfs, major, minor,
                 queues[i]);
        if (!read_line(path, cache, sizeof cache)) {
            continue;
        }
        if (strcmp(cache, "write through") == 0) {
            return DEVCACHE_WRITE_THROUGH;
        }
        snprintf(path, sizeof path, "%s/dev/block/%u:%u/%s/fua", sysfs, major, minor, queues[i]);
        if (strcmp(cache, "write back") != 0 || !read_line(path, fua, sizeof fua)) {
            return DEVCACHE_UNKNOWN;
        }
        return strcmp(fua, "1") == 0 ? DEVCACHE_FUA : DEVCACHE_WRITE_BACK;
    }
    return DEVCACHE_UNKNOWN;
}

enum devcache_kind devcache_of_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || major(st.st_dev) == 0) { /* (0: an anonymous device) */
        return DEVCACHE_UNKNOWN;
    }
    return devcache_of_dev("/sys", major(st.st_dev), minor(st.st_dev));
}

const char *devcache_name(enum devcache_kind k)
{
    switch (k) {
    case DEVCACHE_WRITE_THROUGH:
        return "write-through";
    case DEVCACHE_FUA:
        return "fua";
    case DEVCACHE_WRITE_BACK:
        return "write-back";
    case DEVCACHE_UNKNOWN:
        break;
    }
    return "unknown";
}
