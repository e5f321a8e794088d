/*
 * devcache: what the block device under a directory does with written data, read from
 * sysfs: INFO persistence's wal_device_cache, for the choice of wal-sync-method.
 *
 * A device with a volatile write cache ("write back") and no FUA needs a cache flush
 * after every synced write. With RWF_DSYNC the kernel issues that flush from the
 * completion of the write, in a kernel worker of the CPU that took the disk's interrupt,
 * which waits behind whatever runs there (docs/PERFORMANCE.md: 0.38 against 0.24 ms per
 * batch on this machine's virtio disk with a busy client on that CPU); an fdatasync
 * linked after a plain O_DIRECT write runs in the ring's own worker instead. A device
 * without a volatile cache, or with FUA, makes a RWF_DSYNC write durable by itself.
 *
 * Any thread; reads a few sysfs files (at start, never per request).
 */
#ifndef KVD_DEVCACHE_H
#define KVD_DEVCACHE_H

enum devcache_kind {
    DEVCACHE_UNKNOWN = 0,   /* no block device found (tmpfs, overlay, no sysfs) */
    DEVCACHE_WRITE_THROUGH, /* no volatile write cache: a write is durable when done */
    DEVCACHE_FUA,           /* a volatile cache and Force Unit Access writes */
    DEVCACHE_WRITE_BACK,    /* a volatile cache without FUA: a synced write needs a flush */
};

/* The kind of the device with numbers major:minor, from `sysfs` (normally "/sys"):
 * its queue's write_cache and fua files, or its parent's for a partition. */
enum devcache_kind devcache_of_dev(const char *sysfs, unsigned major, unsigned minor);

/* The kind of the device holding directory `dir` (its st_dev), from /sys. */
enum devcache_kind devcache_of_dir(const char *dir);

/* "unknown", "write-through", "fua" or "write-back". */
const char *devcache_name(enum devcache_kind k);

#endif
