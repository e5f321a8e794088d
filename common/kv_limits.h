/*
 * kv_limits: every compile-time limit of the project, with the reason for each
 * (after SQLite's sqliteLimit.h). Limits that an operator may change at run time
 * are settings; their defaults live here as KV_DEFAULT_* and the setting's name is
 * given beside it. A limit is named KV_<WHAT>_MAX; units come last.
 */
#ifndef KV_LIMITS_H
#define KV_LIMITS_H

/* ---- engine/ ----------------------------------------------------------------- */

/* ---- proto/ ------------------------------------------------------------------ */

/* ---- cluster/ ---------------------------------------------------------------- */

#endif
