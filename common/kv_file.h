/*
 * kv_file: replacing a small file durably (ACL SAVE's aclfile, CONFIG REWRITE's config
 * file, the functions file): the new bytes go to a temporary file beside it, which is
 * synced and renamed over the old one, then the directory is synced, so that a crash
 * leaves the old file or the new one, never a part of either.
 */
#ifndef KV_FILE_H
#define KV_FILE_H

#include <stddef.h>

/*
 * Writes n bytes as the new contents of `path` (its mode kept if it exists, 0644 if
 * not). Returns 0, or an errno with nothing changed. A failed sync of the directory
 * after the rename is not an error (the file is replaced; a power cut may bring the old
 * one back): it is logged.
 */
int kv_file_replace(const char *path, const void *data, size_t n);

#endif
