/*
 * kv_error: the project's error codes.
 *
 * Convention (libuv, liburing): functions that can fail return int, 0 on success,
 * -errno for operating-system and io_uring errors, and one of the negative KV_E*
 * codes below for the project's own conditions. The KV_E* range starts at -10000
 * so that it never collides with -errno. kv_strerror() names either kind.
 *
 * New codes are appended at the end of the enum; existing values never change
 * (they may appear in logs and on the wire).
 */
#ifndef KV_ERROR_H
#define KV_ERROR_H

enum kv_error {
    KV_OK = 0,
    KV_EBASE = -10000,
    KV_ENOTFOUND = KV_EBASE - 1,   /* key or object does not exist */
    KV_EEXIST = KV_EBASE - 2,      /* NX condition failed: key exists */
    KV_ELIMIT = KV_EBASE - 3,      /* a named limit would be exceeded */
    KV_EPROTO = KV_EBASE - 4,      /* malformed protocol input */
    KV_EAGAIN = KV_EBASE - 5,      /* incomplete input or work: call again */
    KV_ECORRUPT = KV_EBASE - 6,    /* checksum or format check failed */
    KV_ENOMEM = KV_EBASE - 7,      /* an allocation failed */
    KV_EINVAL = KV_EBASE - 8,      /* an argument is out of its domain */
    KV_EVERSION = KV_EBASE - 9,    /* unknown format version */
    KV_ENOTLEADER = KV_EBASE - 10, /* not the Raft leader: retry on the leader */
};

/* A static, human-readable description of `err` (a KV_E* code or -errno). */
const char *kv_strerror(int err);

#endif
