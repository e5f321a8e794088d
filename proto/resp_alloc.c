/*
 * resp_alloc: the two allocators proto/ offers its callers: the C library's (tools,
 * tests) and a mimalloc heap's (a shard thread's per-thread heap). Both are thin
 * adapters; any thread may use resp_alloc_libc, a mimalloc heap only its owner thread.
 */
#include "resp_alloc.h"

#include <mimalloc.h>
#include <stdlib.h>

#include "kv_assert.h"

static void *libc_alloc(void *ctx, size_t size)
{
    (void)ctx;
    return malloc(size);
}

static void *libc_resize(void *ctx, void *p, size_t old_size, size_t new_size)
{
    (void)ctx;
    (void)old_size;
    KV_ASSERT(p != NULL);
    return realloc(p, new_size);
}

static void libc_free(void *ctx, void *p, size_t size)
{
    (void)ctx;
    (void)size;
    free(p);
}

const struct resp_alloc resp_alloc_libc = {
    .alloc = libc_alloc,
    .resize = libc_resize,
    .free = libc_free,
    .ctx = NULL,
};

static void *heap_alloc(void *ctx, size_t size)
{
    return mi_heap_malloc((mi_heap_t *)ctx, size);
}

static void *heap_resize(void *ctx, void *p, size_t old_size, size_t new_size)
{
    (void)old_size;
    KV_ASSERT(p != NULL);
    return mi_heap_realloc((mi_heap_t *)ctx, p, new_size);
}

static void heap_free(void *ctx, void *p, size_t size)
{
    (void)ctx;
    (void)size;
    mi_free(p);
}

void resp_alloc_mi_heap(struct resp_alloc *a, struct mi_heap_s *heap)
{
    KV_ASSERT(a != NULL);
    KV_ASSERT(heap != NULL);
    a->alloc = heap_alloc;
    a->resize = heap_resize;
    a->free = heap_free;
    a->ctx = heap;
}
