/*
 * spsc: see spsc.h. Indices are free-running 32-bit counters; `tail - head` is the
 * fill level (wrap-around is harmless since capacity <= 2^31). The producer's release
 * store of tail orders its element write before the consumer's acquire load; the
 * consumer's release store of head orders its element read before the producer may
 * overwrite the slot.
 */
#include "spsc.h"

#include "kv_assert.h"

#include <string.h>

size_t spsc_size(uint32_t capacity, uint32_t elem_size)
{
    KV_ASSERT(capacity > 0 && (capacity & (capacity - 1)) == 0);
    KV_ASSERT(elem_size > 0);
    return sizeof(struct spsc) + (size_t)capacity * elem_size;
}

void spsc_init(struct spsc *q, uint32_t capacity, uint32_t elem_size)
{
    KV_ASSERT(((uintptr_t)q & (SPSC_CACHE_LINE - 1)) == 0);
    KV_ASSERT(capacity > 0 && capacity <= (1u << 31) && (capacity & (capacity - 1)) == 0);
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    q->tail_cached = 0;
    q->head_cached = 0;
    q->mask = capacity - 1;
    q->elem_size = elem_size;
}

bool spsc_push(struct spsc *q, const void *elem)
{
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (tail - q->head_cached > q->mask) {
        q->head_cached = atomic_load_explicit(&q->head, memory_order_acquire);
        if (tail - q->head_cached > q->mask) {
            return false;
        }
    }
    memcpy(q->slots + (size_t)(tail & q->mask) * q->elem_size, elem, q->elem_size);
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return true;
}

/* Consumer: copies the oldest element out (and its index into *head), leaving it in;
 * false when the queue is empty. */
static inline bool copy_front(struct spsc *q, void *elem, uint32_t *head)
{
    *head = atomic_load_explicit(&q->head, memory_order_relaxed);
    if (*head == q->tail_cached) {
        q->tail_cached = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (*head == q->tail_cached) {
            return false;
        }
    }
    KV_DASSERT(q->tail_cached - *head <= q->mask + 1);
    memcpy(elem, q->slots + (size_t)(*head & q->mask) * q->elem_size, q->elem_size);
    return true;
}

bool spsc_pop(struct spsc *q, void *elem)
{
    uint32_t head;
    if (!copy_front(q, elem, &head)) {
        return false;
    }
    atomic_store_explicit(&q->head, head + 1, memory_order_release);
    return true;
}

bool spsc_peek(struct spsc *q, void *elem)
{
    uint32_t head;
    return copy_front(q, elem, &head);
}

bool spsc_empty(struct spsc *q)
{
    return atomic_load_explicit(&q->head, memory_order_acquire) ==
           atomic_load_explicit(&q->tail, memory_order_acquire);
}

uint32_t spsc_free(struct spsc *q)
{
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    q->head_cached = atomic_load_explicit(&q->head, memory_order_acquire);
    return q->mask + 1 - (tail - q->head_cached);
}
