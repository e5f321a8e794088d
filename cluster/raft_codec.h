/*
 * raft_codec: the wire format of Raft messages and the record format of log entries.
 *
 * Little-endian fixed layouts, a version byte, and an XXH3-64 checksum over everything
 * but the checksum itself. The decoders accept only exact, well-formed input: bad magic
 * or version, bad checksum, truncation, trailing bytes, counts or lengths beyond the
 * limits in kv_limits.h, non-zero reserved fields and non-consecutive entry indexes all
 * give an error, never a crash. Decoded messages and entries BORROW the input buffer
 * (entry data and snapshot data point into it).
 *
 * Message:  header (88 bytes) [snapshot section (136 bytes) + data] [entry records...]
 * Entry:    header (40 bytes) + data
 */
#ifndef KV_RAFT_CODEC_H
#define KV_RAFT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"

#define RAFT_CODEC_VERSION        1
#define RAFT_WIRE_MSG_HDR_BYTES   88
#define RAFT_WIRE_SNAP_HDR_BYTES  136
#define RAFT_WIRE_ENTRY_HDR_BYTES 40

/* The largest encoded message: a snapshot message, or a full append. */
#define RAFT_WIRE_MSG_MAX                                                                          \
    (RAFT_WIRE_MSG_HDR_BYTES + RAFT_WIRE_SNAP_HDR_BYTES + KV_RAFT_SNAPSHOT_MAX >                   \
             RAFT_WIRE_MSG_HDR_BYTES +                                                             \
                 KV_RAFT_MSG_ENTRIES_MAX * (RAFT_WIRE_ENTRY_HDR_BYTES + KV_RAFT_ENTRY_DATA_MAX)    \
         ? RAFT_WIRE_MSG_HDR_BYTES + RAFT_WIRE_SNAP_HDR_BYTES + KV_RAFT_SNAPSHOT_MAX               \
         : RAFT_WIRE_MSG_HDR_BYTES +                                                               \
               KV_RAFT_MSG_ENTRIES_MAX * (RAFT_WIRE_ENTRY_HDR_BYTES + KV_RAFT_ENTRY_DATA_MAX))

/* Bytes raft_msg_encode() will write for m. */
size_t raft_msg_encoded_size(const struct raft_msg *m);

/* Encodes m into buf. KV_ELIMIT if cap is too small or m breaks a limit. */
int raft_msg_encode(const struct raft_msg *m, uint8_t *buf, size_t cap, size_t *len_out);

/* Decodes exactly len bytes. Entries go to ents (cap entries); m->entries points there,
 * entry and snapshot data point into buf. KV_EPROTO, KV_ECORRUPT (checksum),
 * KV_EVERSION or KV_ELIMIT on bad input; m is then unspecified. */
int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *m, struct raft_entry *ents,
                    uint32_t cap);

/* One log entry as a record (for the caller's log file, and inside messages). */
size_t raft_entry_encoded_size(const struct raft_entry *e);
int raft_entry_encode(const struct raft_entry *e, uint8_t *buf, size_t cap, size_t *len_out);
/* Decodes one record at the start of buf (len bytes available); *used gets its size.
 * e->data points into buf. */
int raft_entry_decode(const uint8_t *buf, size_t len, struct raft_entry *e, size_t *used);

#endif
