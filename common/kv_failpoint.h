/*
 * kv_failpoint: named crash points for fault-injection tests.
 *
 * KV_FAILPOINT("name") does nothing unless the program was built with KV_FAILPOINTS
 * defined (the kvd-fp test binary; never the kvd users run) and the environment
 * variable KVD_FAILPOINTS names it: "name" kills the process with SIGKILL the first
 * time the point is reached, "name=N" the N-th time. Several points are separated by
 * commas. The kill is logged first, so that a test can tell which point fired.
 */
#ifndef KV_FAILPOINT_H
#define KV_FAILPOINT_H

void kv_failpoint_hit(const char *name);

#ifdef KV_FAILPOINTS
#define KV_FAILPOINT(name) kv_failpoint_hit(name)
#else
#define KV_FAILPOINT(name) ((void)0)
#endif

#endif
