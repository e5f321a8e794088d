/*
 * kv_failpoint: named crash points for fault-injection tests.
 *
 * KV_FAILPOINT("name") does nothing unless the program was built with KV_FAILPOINTS
 * defined (the kvd-fp test binary; never the kvd users run) and the environment
 * variable KVD_FAILPOINTS names it: "name" kills the process with SIGKILL the first
 * time the point is reached, "name=N" the N-th time. Several points are separated by
 * commas. The kill is logged first, so that a test can tell which point fired.
 *
 * KV_FAILPOINT_ERROR("name") is an error instead of a kill: true from the N-th time
 * the point is reached on (false without KV_FAILPOINTS), for the caller to act as if
 * the operation had failed (e.g. a write returning EIO).
 */
#ifndef KV_FAILPOINT_H
#define KV_FAILPOINT_H

#include <stdbool.h>

void kv_failpoint_hit(const char *name);
bool kv_failpoint_error(const char *name);

#ifdef KV_FAILPOINTS
#define KV_FAILPOINT(name)       kv_failpoint_hit(name)
#define KV_FAILPOINT_ERROR(name) kv_failpoint_error(name)
#else
#define KV_FAILPOINT(name)       ((void)0)
#define KV_FAILPOINT_ERROR(name) false
#endif

#endif
