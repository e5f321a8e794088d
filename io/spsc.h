/*
 * spsc: a bounded, lock-free, single-producer single-consumer queue of fixed-size
 * elements, the only way shard threads talk to each other.
 *
 * One spsc per ordered pair of threads. Exactly one thread may push (the producer)
 * and exactly one may pop (the consumer) for the queue's whole life; neither ever
 * blocks. Push fails when the queue is full: the caller applies backpressure (stops
 * reading the connection that wanted to send) instead of dropping or waiting.
 *
 * Memory: the caller allocates the queue with spsc_size(capacity, elem_size) bytes,
 * 64-byte aligned, and calls spsc_init(); nothing here allocates.
 *
 *   producer writes slot[tail & mask], then publishes tail (release)
 *   consumer reads  slot[head & mask] after seeing tail (acquire), then publishes head
 *
 * Head and tail live on separate cache lines, and each side caches the other's index
 * so that it touches the shared line only when its cached view runs out.
 */
#ifndef SPSC_H
#define SPSC_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPSC_CACHE_LINE 64

struct spsc {
    /* consumer's line */
    alignas(SPSC_CACHE_LINE) _Atomic uint32_t head;
    uint32_t tail_cached; /* consumer's last view of tail */
    /* producer's line */
    alignas(SPSC_CACHE_LINE) _Atomic uint32_t tail;
    uint32_t head_cached; /* producer's last view of head */
    /* read-only after init */
    alignas(SPSC_CACHE_LINE) uint32_t mask;
    uint32_t elem_size;
    alignas(SPSC_CACHE_LINE) unsigned char slots[];
};

/* Bytes needed for a queue of `capacity` (a power of two) elements of `elem_size`. */
size_t spsc_size(uint32_t capacity, uint32_t elem_size);

/* Initializes a queue in caller-owned, 64-byte-aligned memory of spsc_size() bytes. */
void spsc_init(struct spsc *q, uint32_t capacity, uint32_t elem_size);

/* Producer only. Copies one element in; false if the queue is full. */
bool spsc_push(struct spsc *q, const void *elem);

/* Consumer only. Copies the oldest element out; false if the queue is empty. */
bool spsc_pop(struct spsc *q, void *elem);

/* Consumer only. Copies the oldest element out, leaving it in; false if empty. */
bool spsc_peek(struct spsc *q, void *elem);

/* Either side. True if the queue looked empty at the moment of the call. */
bool spsc_empty(struct spsc *q);

/* Producer only. Free slots as seen now (at least this many pushes will succeed). */
uint32_t spsc_free(struct spsc *q);

#endif
