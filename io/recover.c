/*
 * recover: start-up recovery of one shard (see recover.h). Plain blocking reads: it
 * runs before the shard serves anyone, on every shard thread at once.
 */
#include "recover.h"

#include "kv_assert.h"
#include "kv_clock.h"
#include "kv_failpoint.h"
#include "kv_log.h"
#include "route.h"
#include "server.h"
#include "snap.h"
#include "tbl.h"
#include "wal.h"
#include "walfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t */
#include <xxhash.h>

#define REC_SEGS_MAX 65536

/* The time replay runs at: none, so no key counts as expired. A record whose expiry
 * has passed may be followed by one that moved it (PERSIST, EXPIRE, a SET): dropping
 * the key when the first is replayed would lose it. Keys whose final expiry has passed
 * are removed once replay is over (drop_expired). */
#define RECOVER_NO_EXPIRY 0

struct rec {
    struct shard *sh;
    const char *dir;
    int dirfd;
    bool repair;
    int64_t now_ms;     /* RECOVER_NO_EXPIRY: nothing expires while records replay */
    uint64_t *snap_lsn; /* per slot */
    bool *repaired;     /* per slot: its snapshot was damaged and set aside (--repair) */
    uint64_t wal_seq_min;
    uint64_t wal_seq_max; /* the newest snapshot's WAL position: batches go on above it */
    struct recover_result *res;
};

/* ---- helpers ------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int read_all(int fd, char *buf, uint64_t len, uint64_t off)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        done += (uint64_t)n;
    }
    return 0;
}

/* Copies bytes [off, off+len) of `fd` into a new file `name` and syncs it. */
static int keep_aside(struct rec *r, const char *buf, uint64_t len, const char *name)
{
    int fd = openat(r->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -errno;
    }
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            return -e;
        }
        done += (uint64_t)n;
    }
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int slot_of(struct rec *r, uint32_t part, uint32_t *slot)
{
    const struct route_table *rt = r->sh->srv->route;
    if (part >= rt->count || rt->parts[part].thread != r->sh->id) {
        return -1;
    }
    *slot = rt->parts[part].slot;
    return 0;
}

static void layout_error(struct rec *r, const char *file, uint32_t threads, uint32_t partitions)
{
    const struct route_table *rt = r->sh->srv->route;
    kv_log_warning("refusing to start: %s/%s was written with %u threads and %u partitions, this "
                   "start has %u threads and %u partitions. Start kvd with --threads %u "
                   "--partitions-per-thread %u (changing the layout of existing data is not "
                   "supported)",
                   r->dir, file, threads, partitions, rt->threads, rt->count, threads,
                   threads ? partitions / threads : 0);
}

/* Data of a database the `databases` setting does not have: refuse, naming the fix. */
static void db_error(struct rec *r, const char *file, uint32_t db)
{
    kv_log_warning("refusing to start: %s/%s holds keys of database %u, this start has "
                   "databases %u. Start kvd with --databases %u or more",
                   r->dir, file, db, r->sh->ndb, db + 1);
}

/* ---- snapshots ---------------------------------------------------------------------- */

static void put_entry(struct tbl *t, const char *k, size_t klen, const char *v, size_t vlen,
                      int64_t expire_ms, int64_t now_ms)
{
    uint64_t h = tbl_hash(k, klen);
    if (expire_ms != 0 && expire_ms <= now_ms) {
        tbl_del(t, k, klen, h, now_ms, NULL);
        return;
    }
    struct tbl_put_args pa = {.val = v, .val_len = vlen, .expire_ms = expire_ms};
    int rc = tbl_put(t, k, klen, h, &pa, now_ms, NULL);
    KV_ASSERT(rc == 0); /* out of memory at start-up: nothing sensible to do */
}

/* A RANGE record: the value's length set, its bytes [off, off + n) written, the expiry
 * set (an already expired key is removed instead). */
static void range_entry(struct tbl *t, const struct walfmt_view *v, uint64_t h, int64_t now_ms)
{
    if (v->expire_ms != 0 && v->expire_ms <= now_ms) {
        tbl_del(t, v->key, v->klen, h, now_ms, NULL);
        return;
    }
    KV_ASSERT(v->range_off + v->vlen <= v->range_len); /* walfmt_scan_batch checked it */
    struct tbl_mod m;
    int rc = tbl_modify(t, v->key, v->klen, h, now_ms, v->range_len, 0, &m);
    KV_ASSERT(rc == 0); /* out of memory at start-up: nothing sensible to do */
    if (v->vlen > 0) {
        memcpy(m.val + v->range_off, v->val, v->vlen);
    }
    rc = tbl_expire_set(t, v->key, v->klen, h, now_ms, v->expire_ms);
    KV_ASSERT(rc == 0);
}

/* After replay (which expires nothing): the keys whose final expiry has passed go now,
 * one full pass of active expiry over every table. */
static void drop_expired(struct shard *sh)
{
    int64_t now = kv_clock_real_ms();
    for (size_t i = 0; i < (size_t)sh->table_count * sh->ndb; i++) {
        uint64_t cursor = 0;
        while (sh->tables[i] != NULL) {
            tbl_expire_step(sh->tables[i], now, &cursor, SIZE_MAX);
            if (cursor == 0) {
                break;
            }
        }
    }
}

/* True (after logging) if snapshot `name`, whichever shard owns it, was written under
 * another layout: its partition may not even exist in this one. Shard 0 checks the
 * snapshots of every partition, the others only their own. */
static bool layout_differs(struct rec *r, const char *name)
{
    unsigned part;
    unsigned long long lsn;
    uint32_t slot;
    char tail[16];
    bool dump;
    if (snap_name_parse(name, &part, &lsn, tail, &dump) < 2 ||
        (r->sh->id != 0 && slot_of(r, part, &slot) != 0)) {
        return false;
    }
    int fd = openat(r->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    struct walfmt_snap h;
    bool ok = read_all(fd, (char *)&h, sizeof h, 0) == 0 && walfmt_snap_ok(&h);
    close(fd);
    const struct route_table *rt = r->sh->srv->route;
    if (ok && (h.threads != rt->threads || h.partitions != rt->count)) {
        layout_error(r, name, h.threads, h.partitions);
        return true;
    }
    return false;
}

/* Loads one snapshot file into the slot's table. 0, or -1 with *why and *bad_off set. */
static int load_snapshot(struct rec *r, const char *name, uint32_t slot, uint64_t *lsn,
                         uint64_t *wal_seq, const char **why, uint64_t *bad_off)
{
    int fd = openat(r->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        *bad_off = 0;
        return -1;
    }
    struct stat st;
    fstat(fd, &st);
    uint64_t size = (uint64_t)st.st_size;
    struct walfmt_snap h;
    *bad_off = 0;
    if (size < sizeof h || read_all(fd, (char *)&h, sizeof h, 0) != 0 || !walfmt_snap_ok(&h)) {
        *why = "bad snapshot header";
        close(fd);
        return -1;
    }
    const struct route_table *rt = r->sh->srv->route;
    if (h.partitions != rt->count || h.threads != rt->threads || h.part != r->sh->part_id[slot]) {
        layout_error(r, name, h.threads, h.partitions);
        *why = NULL;
        close(fd);
        return -1;
    }
    XXH3_state_t sums;
    XXH3_64bits_reset(&sums);
    uint64_t off = sizeof h;
    char *buf = NULL;
    size_t cap = 0;
    uint64_t keys = 0;
    int rc = -1;
    *why = "snapshot ends without its trailer";
    while (off + sizeof(struct walfmt_chunk) <= size) {
        struct walfmt_chunk c;
        *bad_off = off;
        if (read_all(fd, (char *)&c, sizeof c, off) != 0 || !walfmt_chunk_ok(&c)) {
            *why = "bad chunk header";
            break;
        }
        if (c.flags & WALFMT_CHUNK_LAST) {
            if (c.sum != XXH3_64bits_digest(&sums) || c.count != keys || off + sizeof c != size) {
                *why = "trailer does not match the chunks";
                break;
            }
            rc = 0;
            break;
        }
        if (c.len > size - off - sizeof c) {
            *why = "chunk runs past the end of the file";
            break;
        }
        if (c.len > cap) {
            mi_free(buf);
            cap = c.len;
            buf = mi_malloc(cap);
            KV_ASSERT(buf != NULL);
        }
        if (read_all(fd, buf, c.len, off + sizeof c) != 0 || XXH3_64bits(buf, c.len) != c.sum) {
            *why = "chunk checksum mismatch";
            break;
        }
        XXH3_64bits_update(&sums, &c.crc, sizeof c.crc);
        uint64_t p = 0;
        uint64_t n = 0;
        while (p + sizeof(struct walfmt_entry) <= c.len && n < c.count) {
            struct walfmt_entry e;
            memcpy(&e, buf + p, sizeof e);
            if (e.klen + e.vlen > c.len - p - sizeof e) {
                break;
            }
            if (e.db >= r->sh->ndb) {
                db_error(r, name, e.db);
                *why = NULL;
                break;
            }
            const char *k = buf + p + sizeof e;
            put_entry(shard_part_table(r->sh, slot, e.db), k, e.klen, k + e.klen, e.vlen,
                      e.expire_ms, r->now_ms);
            p += sizeof e + e.klen + e.vlen;
            n++;
        }
        if (*why == NULL) {
            break; /* a database beyond the setting, logged */
        }
        if (n != c.count || p != c.len) {
            *why = "chunk entries do not match its header";
            break;
        }
        keys += n;
        off += sizeof c + c.len;
    }
    mi_free(buf);
    close(fd);
    if (rc == 0) {
        *lsn = h.lsn;
        *wal_seq = h.wal_seq;
        r->res->snap_keys += keys;
        r->res->snapshots++;
    }
    return rc;
}

/* Empties database `db` of the slot's partition (its table is made again at its next
 * use). */
static void clear_db(struct rec *r, uint32_t slot, uint32_t db)
{
    tbl_destroy(shard_part_swap(r->sh, slot, db, NULL));
}

/* Empties every database of the slot's partition. */
static void clear_slot(struct rec *r, uint32_t slot)
{
    for (uint32_t db = 0; db < r->sh->ndb; db++) {
        clear_db(r, slot, db);
    }
}

static int load_snapshots(struct rec *r)
{
    struct shard *sh = r->sh;
    uint64_t *best = calloc(sh->table_count, sizeof *best);
    bool *have = calloc(sh->table_count, sizeof *have);
    bool *best_dump = calloc(sh->table_count, sizeof *best_dump);
    KV_ASSERT(best != NULL && have != NULL && best_dump != NULL);
    DIR *d = opendir(r->dir);
    if (d == NULL) {
        kv_log_warning("cannot read dir=%s err=%s", r->dir, strerror(errno));
        free(best);
        free(have);
        free(best_dump);
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned part;
        unsigned long long lsn;
        char tail[16] = "";
        bool dump;
        int n = snap_name_parse(de->d_name, &part, &lsn, tail, &dump);
        uint32_t slot;
        if (n == 2 && layout_differs(r, de->d_name)) {
            rc = -1; /* logged */
            break;
        }
        if (n < 2 || slot_of(r, part, &slot) != 0) {
            continue;
        }
        if (n == 3 && strcmp(tail, ".tmp") == 0) {
            unlinkat(r->dirfd, de->d_name, 0); /* an interrupted round or dump */
            continue;
        }
        /* (a round's file and a dump's at one LSN hold the same data: the round's wins) */
        if (n == 2 && (!have[slot] || lsn > best[slot] || (lsn == best[slot] && !dump))) {
            have[slot] = true;
            best[slot] = lsn;
            best_dump[slot] = dump;
        }
    }
    closedir(d);
    uint64_t seq_min = UINT64_MAX;
    for (uint32_t slot = 0; slot < sh->table_count && rc == 0; slot++) {
        if (!have[slot]) {
            seq_min = 0;
            continue;
        }
        char name[64];
        if (best_dump[slot]) {
            snap_dump_file_name(name, sizeof name, sh->part_id[slot], best[slot], false);
        } else {
            snap_file_name(name, sizeof name, sh->part_id[slot], best[slot], false);
        }
        const char *why;
        uint64_t bad_off, lsn, wal_seq;
        if (load_snapshot(r, name, slot, &lsn, &wal_seq, &why, &bad_off) == 0) {
            r->snap_lsn[slot] = lsn;
            sh->part_lsn[slot] = lsn;
            seq_min = wal_seq < seq_min ? wal_seq : seq_min;
            r->wal_seq_max = wal_seq > r->wal_seq_max ? wal_seq : r->wal_seq_max;
            continue;
        }
        if (why == NULL) {
            rc = -1; /* layout error, logged */
            break;
        }
        if (!r->repair) {
            kv_log_warning("refusing to start: snapshot %s/%s is damaged at offset %llu (%s). "
                           "Start with --repair to set it aside and recover the partition from "
                           "the WAL alone (what only the snapshot held is then lost)",
                           r->dir, name, (unsigned long long)bad_off, why);
            rc = -1;
            break;
        }
        char aside[96];
        snprintf(aside, sizeof aside, "%s.corrupt", name);
        renameat(r->dirfd, name, r->dirfd, aside);
        kv_log_warning("repair: snapshot %s/%s is damaged at offset %llu (%s): set aside as %s; "
                       "the partition is recovered from the WAL alone",
                       r->dir, name, (unsigned long long)bad_off, why, aside);
        clear_slot(r, slot);
        r->repaired[slot] = true;
        seq_min = 0;
        r->res->need_snapshot = true;
    }
    r->wal_seq_min = seq_min == UINT64_MAX ? 0 : seq_min;
    free(best);
    free(have);
    free(best_dump);
    return rc;
}

/* ---- WAL ------------------------------------------------------------------------------ */

/* A segment file; its bytes are in memory only while it is being read (one at a time,
 * plus a look-ahead when damage is found), so recovery needs one segment of memory. */
struct seg_file {
    uint64_t segno;
    char *buf;
    uint64_t size; /* a whole number of blocks (zero-padded in memory) */
    uint64_t file_size;
    bool counted;     /* its bytes are in res->wal_bytes */
    bool has_batches; /* replay found a valid batch in it */
    bool gone;        /* set aside by --repair */
};

static void unload_segment(struct seg_file *f)
{
    mi_free(f->buf);
    f->buf = NULL;
}

/* Reads bytes [*have, want) of the segment into f->buf (1 MiB at a time, stopping at
 * the end of the file). */
static int read_more(int fd, struct seg_file *f, uint64_t *have, uint64_t want)
{
    const uint64_t chunk = 1u << 20;
    while (*have < want && *have < f->file_size) {
        uint64_t n = f->file_size - *have < chunk ? f->file_size - *have : chunk;
        int rc = read_all(fd, f->buf + *have, n, *have);
        if (rc != 0) {
            return rc;
        }
        *have += n;
    }
    return 0;
}

/* Reads what recovery needs of a segment into f->buf (sized for the whole file, zeroed)
 * and returns its length in *got. A version 4 segment (WALFMT_INFLIGHT_MAX): the chain of
 * batches from block 1 (headers followed by their spans), then, if the chain ends in a
 * zero block, at most WALFMT_INFLIGHT_MAX more (nothing written lies further: the rest is
 * the preallocated zeros); anything else, or a chain ending in a non-zero block
 * (damage, looked at whole), is read whole. */
static int read_segment(int fd, struct seg_file *f, uint64_t *got)
{
    const uint64_t size = f->file_size;
    uint64_t have = 0, end = size;
    int rc = read_more(fd, f, &have, WALFMT_BLOCK);
    struct walfmt_seg hdr;
    if (rc == 0 && have >= WALFMT_BLOCK && walfmt_seg_read(f->buf, &hdr) && hdr.version >= 4) {
        uint64_t pos = WALFMT_BLOCK;
        while ((rc = read_more(fd, f, &have, pos + WALFMT_BLOCK)) == 0 && pos < size &&
               walfmt_batch_header_ok(f->buf + pos, have - pos) &&
               walfmt_batch_span(f->buf + pos) <= size - pos) {
            pos += walfmt_batch_span(f->buf + pos);
        }
        /* (bytes past the file's end read as zeros) */
        if (rc == 0 && pos < size && walfmt_zero_block(f->buf + pos) &&
            size - pos > WALFMT_INFLIGHT_MAX) {
            end = pos + WALFMT_INFLIGHT_MAX;
        }
    }
    if (rc == 0) {
        rc = read_more(fd, f, &have, end);
    }
    *got = have;
    return rc;
}

static int load_segment(struct rec *r, struct seg_file *f)
{
    if (f->buf != NULL) {
        return 0;
    }
    if (f->gone) {
        f->buf = mi_zalloc(1);
        f->size = 0;
        return 0;
    }
    char name[64];
    wal_segment_name(name, sizeof name, r->sh->id, f->segno);
    int fd = openat(r->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        kv_log_warning("cannot open %s/%s err=%s", r->dir, name, strerror(errno));
        return -1;
    }
    struct stat st;
    fstat(fd, &st);
    f->file_size = (uint64_t)st.st_size;
    f->buf = mi_zalloc(f->file_size ? walfmt_round_up(f->file_size) : 1);
    KV_ASSERT(f->buf != NULL);
    uint64_t got = 0;
    int rc = read_segment(fd, f, &got);
    close(fd);
    if (rc != 0) {
        kv_log_warning("cannot read %s/%s err=%s", r->dir, name, strerror(-rc));
        return -1;
    }
    f->size = walfmt_round_up(got); /* (past it: zeros, as far as recovery is concerned) */
    if (!f->counted) {
        f->counted = true;
        r->res->wal_bytes += got;
    }
    return 0;
}

static void apply(struct rec *r, const struct walfmt_view *v, uint32_t slot)
{
    struct shard *sh = r->sh;
    if (v->lsn > sh->part_lsn[slot]) {
        sh->part_lsn[slot] = v->lsn;
    }
    if (v->lsn <= r->snap_lsn[slot]) {
        return; /* the snapshot holds it */
    }
    if (v->type == WALFMT_SWAPDB) {
        struct tbl *a = shard_part_swap(sh, slot, v->db, NULL);
        struct tbl *b = shard_part_swap(sh, slot, v->db2, a);
        shard_part_swap(sh, slot, v->db, b);
        r->res->records++;
        return;
    }
    if (v->type == WALFMT_FLUSH) {
        clear_db(r, slot, v->db);
        r->res->records++;
        return;
    }
    struct tbl *t = shard_part_table(sh, slot, v->db);
    uint64_t h = v->klen > 0 ? tbl_hash(v->key, v->klen) : 0;
    switch (v->type) {
    case WALFMT_PUT:
        put_entry(t, v->key, v->klen, v->val, v->vlen, v->expire_ms, r->now_ms);
        break;
    case WALFMT_DEL:
        tbl_del(t, v->key, v->klen, h, r->now_ms, NULL);
        break;
    case WALFMT_EXPIRE:
        if (v->expire_ms != 0 && v->expire_ms <= r->now_ms) {
            tbl_del(t, v->key, v->klen, h, r->now_ms, NULL);
        } else {
            tbl_expire_set(t, v->key, v->klen, h, r->now_ms, v->expire_ms);
        }
        break;
    case WALFMT_RANGE:
        range_entry(t, v, h, r->now_ms);
        break;
    default:
        KV_ASSERT(0);
    }
    r->res->records++;
}

/* What follows a damaged batch: the valid batches at block boundaries after it. */
struct after {
    bool found;
    uint32_t seg; /* the first one's place */
    uint64_t off;
    uint64_t first_seq;
    uint64_t max_acked; /* the highest `acked` among them */
    uint64_t records;   /* theirs, all together */
};

/* Scans segments i.. from `from` (in segment i) for valid batches. */
static void valid_after(struct rec *r, struct seg_file *segs, uint32_t n, uint32_t i, uint64_t from,
                        struct after *a)
{
    memset(a, 0, sizeof *a);
    for (uint32_t k = i; k < n; k++) {
        if (load_segment(r, &segs[k]) != 0) {
            continue; /* unreadable: it shows no valid batch */
        }
        uint64_t start = k == i ? from : WALFMT_BLOCK;
        for (uint64_t off = start; off + WALFMT_BLOCK <= segs[k].size; off += WALFMT_BLOCK) {
            struct walfmt_batch_info b;
            const char *why;
            if (walfmt_batch_header_ok(segs[k].buf + off, segs[k].size - off) &&
                walfmt_scan_batch(segs[k].buf + off, segs[k].size - off, &b, &why) ==
                    WALFMT_SCAN_BATCH) {
                if (!a->found) {
                    a->found = true;
                    a->seg = k;
                    a->off = off;
                    a->first_seq = b.seq;
                }
                a->max_acked = b.acked > a->max_acked ? b.acked : a->max_acked;
                a->records += b.count;
                off += b.span - WALFMT_BLOCK;
            }
        }
        if (k != i) {
            unload_segment(&segs[k]);
        }
    }
}

/* True if a valid batch starts at a block boundary at or after `from` in f (the end of
 * a segment's data must be followed by zeros only: the next batch after it goes to the
 * next segment). */
static bool valid_later_in_segment(const struct seg_file *f, uint64_t from)
{
    for (uint64_t off = from; off + WALFMT_BLOCK <= f->size; off += WALFMT_BLOCK) {
        struct walfmt_batch_info b;
        const char *why;
        if (walfmt_batch_header_ok(f->buf + off, f->size - off) &&
            walfmt_scan_batch(f->buf + off, f->size - off, &b, &why) == WALFMT_SCAN_BATCH) {
            return true;
        }
    }
    return false;
}

/* Sets segments i+1.. aside as "<name>.<suffix>" (nothing after a cut is replayed). */
static void set_aside_from(struct rec *r, struct seg_file *segs, uint32_t n, uint32_t first,
                           const char *suffix)
{
    for (uint32_t k = first; k < n; k++) {
        char later_name[64], aside[96];
        wal_segment_name(later_name, sizeof later_name, r->sh->id, segs[k].segno);
        snprintf(aside, sizeof aside, "%s.%s", later_name, suffix);
        if (renameat(r->dirfd, later_name, r->dirfd, aside) == 0) {
            segs[k].gone = true;
        }
    }
    fsync(r->dirfd);
}

/* The end of the written bytes of a segment from `off`: past its last non-zero block. */
static uint64_t written_end(const struct seg_file *f, uint64_t off)
{
    uint64_t end = f->size;
    while (end > off && walfmt_zero_block(f->buf + end - WALFMT_BLOCK)) {
        end -= WALFMT_BLOCK;
    }
    return end;
}

/* Cuts segment f at `off`, keeping bytes [off, end) aside under `suffix`-<off>. */
static int cut_segment(struct rec *r, struct seg_file *f, uint64_t off, uint64_t end,
                       const char *suffix)
{
    char name[64], aside[96];
    wal_segment_name(name, sizeof name, r->sh->id, f->segno);
    snprintf(aside, sizeof aside, "%s.%s-%llx", name, suffix, (unsigned long long)off);
    int rc = keep_aside(r, f->buf + off, end - off, aside);
    if (rc != 0) {
        kv_log_warning("cannot keep the cut bytes of %s/%s aside err=%s", r->dir, name,
                       strerror(-rc));
        return -1;
    }
    int fd = openat(r->dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
        kv_log_warning("cannot truncate %s/%s err=%s", r->dir, name, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    close(fd);
    memset(f->buf + off, 0, f->size - off);
    return 0;
}

/*
 * A batch at `off` of segment i failed its checks. Returns 1 if it is a torn tail (cut
 * and logged: replay stops there), 0 if --repair cut it, -1 if kvd must not start.
 *
 * Torn: no valid batch follows, or every one that follows was sealed before the damaged
 * one was known durable (`acked` below it): those were written concurrently with it,
 * and none of their replies could leave before it completed. Corrupt: a later batch says
 * the damaged one had been written and synced.
 */
static int damaged(struct rec *r, struct seg_file *segs, uint32_t n, uint32_t i, uint64_t off,
                   bool have_prev, uint64_t prev_seq, bool gap, const char *why)
{
    struct seg_file *f = &segs[i];
    char name[64];
    wal_segment_name(name, sizeof name, r->sh->id, f->segno);
    struct after a;
    valid_after(r, segs, n, i, off + WALFMT_BLOCK, &a);
    uint64_t bad_seq = have_prev ? prev_seq + 1 : (a.first_seq > 0 ? a.first_seq - 1 : 0);
    if (gap) {
        a.found = true; /* a whole, valid batch out of sequence: never a torn write */
        a.seg = i;
        a.off = off;
    }
    if (!gap && (!a.found || a.max_acked < bad_seq)) {
        uint64_t end = written_end(f, off);
        if (end <= off) {
            end = off + WALFMT_BLOCK;
        }
        if (cut_segment(r, f, off, end, "torn") != 0) {
            return -1;
        }
        if (a.found) {
            set_aside_from(r, segs, n, i + 1, "torn");
        }
        r->res->torn_bytes += end - off;
        r->res->dropped += a.records;
        kv_log_warning("WAL torn tail cut file=%s/%s offset=%llu bytes=%llu (%s); %llu records "
                       "of batches written at the same time (never acknowledged) dropped; the "
                       "bytes are kept aside as %s.torn-%llx",
                       r->dir, name, (unsigned long long)off, (unsigned long long)(end - off), why,
                       (unsigned long long)a.records, name, (unsigned long long)off);
        return 1;
    }
    char at_name[64];
    wal_segment_name(at_name, sizeof at_name, r->sh->id, segs[a.seg].segno);
    if (!r->repair) {
        kv_log_warning("refusing to start: WAL corrupt at %s/%s offset %llu (%s), and valid "
                       "records follow (from %s offset %llu). Start with --repair to cut the "
                       "log there (the rest is kept aside and %llu records after the damage "
                       "are dropped)",
                       r->dir, name, (unsigned long long)off, why, at_name,
                       (unsigned long long)a.off, (unsigned long long)a.records);
        return -1;
    }
    if (cut_segment(r, f, off, f->size, "corrupt") != 0) {
        return -1;
    }
    set_aside_from(r, segs, n, i + 1, "corrupt");
    r->res->dropped += a.records;
    kv_log_warning("repair: WAL cut at %s/%s offset %llu (%s); %llu records in valid batches "
                   "after it dropped; the rest is kept aside (*.corrupt*)",
                   r->dir, name, (unsigned long long)off, why, (unsigned long long)a.records);
    return 0;
}

/* A WAL switched on at run time over a dump at `base` (walfmt_seg): its records apply
 * only if every partition's snapshot is that dump or newer (else the dump was never
 * finished, and the WAL stands on nothing: aof.h). */
static bool based(const struct rec *r, uint64_t base)
{
    for (uint32_t slot = 0; slot < r->sh->table_count; slot++) {
        if (!r->repaired[slot] && r->snap_lsn[slot] < base) {
            return false;
        }
    }
    return true;
}

static int replay_segments(struct rec *r, struct seg_file *segs, uint32_t n)
{
    struct shard *sh = r->sh;
    const struct route_table *rt = sh->srv->route;
    bool have_prev = false;
    uint64_t prev_seq = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct seg_file *f = &segs[i];
        char name[64];
        wal_segment_name(name, sizeof name, sh->id, f->segno);
        if (i > 0) {
            unload_segment(&segs[i - 1]);
        }
        if (load_segment(r, f) != 0) {
            return -1;
        }
        struct walfmt_seg hdr;
        if (f->size < WALFMT_BLOCK || !walfmt_seg_read(f->buf, &hdr)) {
            struct after a;
            valid_after(r, segs, n, i, WALFMT_BLOCK, &a);
            if (!a.found) {
                continue; /* a segment whose preparation was cut short: unused */
            }
            kv_log_warning("refusing to start: %s/%s has a bad segment header and valid "
                           "batches follow. Restore the file, or move it and the segments after "
                           "it away (their records are then lost)",
                           r->dir, name);
            return -1;
        }
        if (hdr.threads != rt->threads || hdr.partitions != rt->count) {
            layout_error(r, name, hdr.threads, hdr.partitions);
            return -1;
        }
        if (hdr.base_lsn != 0 && !based(r, hdr.base_lsn)) {
            set_aside_from(r, segs, n, i, "unbased");
            kv_log_warning("the WAL of shard %u from %s/%s on was switched on at run time over a "
                           "dump at LSN %llu that was never finished: set aside (*.unbased); "
                           "the data is that of the last finished dump",
                           sh->id, r->dir, name, (unsigned long long)hdr.base_lsn);
            return 0;
        }
        r->res->segments++;
        uint64_t off = WALFMT_BLOCK;
        while (off < f->size) {
            struct walfmt_batch_info b = {0};
            const char *why = "";
            enum walfmt_scan s = walfmt_scan_batch(f->buf + off, f->size - off, &b, &why);
            uint64_t seq = b.seq, span = b.span;
            uint32_t count = b.count;
            if (s == WALFMT_SCAN_END && !valid_later_in_segment(f, off + WALFMT_BLOCK)) {
                break;
            }
            if (s == WALFMT_SCAN_END) {
                s = WALFMT_SCAN_BAD; /* zeros where a batch was written: lost or torn */
                why = "zeroed block before valid batches";
            }
            enum walfmt_scan s0 = s;
            if (s == WALFMT_SCAN_BATCH && have_prev && seq != prev_seq + 1) {
                s = WALFMT_SCAN_BAD;
                why = "batch sequence number out of order (a segment is missing?)";
            }
            if (s == WALFMT_SCAN_BAD) {
                bool gap = s0 == WALFMT_SCAN_BATCH;
                int rc = damaged(r, segs, n, i, off, have_prev, prev_seq, gap, why);
                if (rc != 1) {
                    return rc;
                }
                break; /* torn: cut; nothing after it is replayed */
            }
            uint64_t first_needed = r->wal_seq_min > 0 ? r->wal_seq_min : 1;
            if (!have_prev && seq > first_needed) {
                /* batches before this one are needed and no file holds them */
                if (!r->repair) {
                    kv_log_warning("refusing to start: the WAL of shard %u begins at batch %llu "
                                   "(%s/%s offset %llu) but batch %llu is needed: a segment is "
                                   "missing. Restore it, or start with --repair to go on without "
                                   "its records",
                                   sh->id, (unsigned long long)seq, r->dir, name,
                                   (unsigned long long)off, (unsigned long long)first_needed);
                    return -1;
                }
                kv_log_warning("repair: the WAL of shard %u begins at batch %llu but batch %llu "
                               "is needed (a segment is missing): its records are lost; a "
                               "snapshot round follows the start",
                               sh->id, (unsigned long long)seq, (unsigned long long)first_needed);
                r->res->need_snapshot = true;
            }
            have_prev = true;
            prev_seq = seq;
            f->has_batches = true;
            if (seq >= r->wal_seq_min) {
                uint64_t p = sizeof(struct walfmt_batch);
                for (uint32_t k = 0; k < count; k++) {
                    struct walfmt_view v;
                    walfmt_rec_decode(f->buf + off, &p, &v);
                    uint32_t slot;
                    if (slot_of(r, v.part, &slot) != 0) {
                        kv_log_warning("refusing to start: %s/%s offset %llu holds a record of "
                                       "partition %u, which is not this shard's",
                                       r->dir, name, (unsigned long long)off, v.part);
                        return -1;
                    }
                    if (v.lsn > r->snap_lsn[slot] &&
                        (v.db >= sh->ndb || (v.type == WALFMT_SWAPDB && v.db2 >= sh->ndb))) {
                        db_error(r, name, v.db >= sh->ndb ? v.db : v.db2);
                        return -1;
                    }
                    apply(r, &v, slot);
                }
            }
            r->res->next_seq = seq + 1;
            struct recover_result *res = r->res;
            if (res->nsegs == 0 || res->segs[res->nsegs - 1].segno != f->segno) {
                res->segs[res->nsegs++] = (struct recover_seg){.segno = f->segno};
            }
            res->segs[res->nsegs - 1].last_seq = seq;
            off += span;
            KV_FAILPOINT("recovery-mid");
        }
    }
    return 0;
}

static int replay_wal(struct rec *r)
{
    struct shard *sh = r->sh;
    uint64_t *nums = malloc(REC_SEGS_MAX * sizeof *nums);
    KV_ASSERT(nums != NULL);
    uint32_t n = 0;
    DIR *d = opendir(r->dir);
    if (d == NULL) {
        free(nums);
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned shard;
        unsigned long long segno;
        char tail[16] = "";
        int got = sscanf(de->d_name, "wal-%3u-%16llx.log%15s", &shard, &segno, tail);
        if (got < 2 || shard != sh->id) {
            continue;
        }
        if (got == 2 && n < REC_SEGS_MAX) {
            nums[n++] = segno;
        }
        if (segno + 1 > r->res->next_segno) {
            r->res->next_segno = segno + 1; /* never reuse a name, also of files set aside */
        }
    }
    closedir(d);
    qsort(nums, n, sizeof *nums, cmp_u64);
    struct seg_file *segs = calloc(n ? n : 1, sizeof *segs);
    r->res->segs = calloc(n ? n : 1, sizeof *r->res->segs);
    KV_ASSERT(segs != NULL && r->res->segs != NULL);
    for (uint32_t i = 0; i < n; i++) {
        segs[i].segno = nums[i];
    }
    int rc = replay_segments(r, segs, n);
    /* segments without a batch are not needed: a fresh one is made for writing */
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        if (!segs[i].has_batches && !segs[i].gone) {
            char name[64];
            wal_segment_name(name, sizeof name, sh->id, segs[i].segno);
            unlinkat(r->dirfd, name, 0);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        mi_free(segs[i].buf);
    }
    free(segs);
    free(nums);
    return rc;
}

int recover_shard(struct shard *sh, const char *dir, bool repair, struct recover_result *out)
{
    memset(out, 0, sizeof *out);
    out->next_segno = 1;
    out->next_seq = 1;
    uint64_t t0 = kv_clock_mono_ns();
    struct rec r = {
        .sh = sh, .dir = dir, .repair = repair, .now_ms = RECOVER_NO_EXPIRY, .res = out};
    r.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r.dirfd < 0) {
        kv_log_warning("cannot open dir=%s err=%s", dir, strerror(errno));
        return -1;
    }
    r.snap_lsn = calloc(sh->table_count, sizeof *r.snap_lsn);
    r.repaired = calloc(sh->table_count, sizeof *r.repaired);
    KV_ASSERT(r.snap_lsn != NULL && r.repaired != NULL);
    int rc = load_snapshots(&r);
    if (rc == 0) {
        rc = replay_wal(&r);
    }
    if (rc == 0) {
        drop_expired(sh);
    }
    /* A WAL the snapshots trimmed to nothing must not number its batches from 1 again:
     * the next recovery would skip them as covered by the snapshots. */
    if (out->next_seq < r.wal_seq_max) {
        out->next_seq = r.wal_seq_max;
    }
    free(r.snap_lsn);
    free(r.repaired);
    close(r.dirfd);
    out->ms = (int64_t)((kv_clock_mono_ns() - t0) / 1000000);
    return rc;
}
