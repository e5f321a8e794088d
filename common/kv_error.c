/*
 * kv_error: names for the project's error codes; -errno is passed to strerror().
 */
#include "kv_error.h"

#include <string.h>

const char *kv_strerror(int err)
{
    switch (err) {
    case KV_OK:
        return "ok";
    case KV_ENOTFOUND:
        return "not found";
    case KV_EEXIST:
        return "already exists";
    case KV_ELIMIT:
        return "limit exceeded";
    case KV_EPROTO:
        return "protocol error";
    case KV_EAGAIN:
        return "incomplete, try again";
    case KV_ECORRUPT:
        return "corrupt data";
    case KV_ENOMEM:
        return "out of memory";
    case KV_EINVAL:
        return "invalid argument";
    case KV_EVERSION:
        return "unknown format version";
    case KV_ENOTLEADER:
        return "not the raft leader";
    default:
        break;
    }
    if (err < 0 && err > KV_EBASE) {
        return strerror(-err);
    }
    return "unknown error";
}
