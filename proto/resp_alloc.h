/*
 * resp_alloc: the allocator the RESP codec takes its memory from.
 *
 * proto/ never calls malloc by itself: the request parser's arena and argv array and
 * the output block pool are taken from a caller-provided allocator, so that a shard
 * thread can hand its own mimalloc heap (resp_alloc_mi_heap()) and tests can count or
 * fail allocations. Sizes are passed back on free and resize so that a fixed-size or
 * counting allocator needs no headers of its own.
 */
#ifndef RESP_ALLOC_H
#define RESP_ALLOC_H

#include <stddef.h>

struct resp_alloc {
    /* Returns `size` bytes aligned for any object, or NULL. */
    void *(*alloc)(void *ctx, size_t size);
    /* Grows or shrinks `p` (of `old_size` bytes, never NULL) to `new_size`; on failure
     * returns NULL and leaves `p` unchanged. */
    void *(*resize)(void *ctx, void *p, size_t old_size, size_t new_size);
    /* Releases `p` (of `size` bytes); p may be NULL. */
    void (*free)(void *ctx, void *p, size_t size);
    void *ctx;
};

/* The C library's malloc/realloc/free (for tools and tests). */
extern const struct resp_alloc resp_alloc_libc;

struct mi_heap_s;

/* Fills *a with an allocator drawing from mimalloc heap `heap` (not owned; the heap must
 * outlive every user of *a, and be used only on the thread that created it). */
void resp_alloc_mi_heap(struct resp_alloc *a, struct mi_heap_s *heap);

#endif
