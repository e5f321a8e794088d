/*
 * idmap: see idmap.h. Slots hold (id, pointer); id 0 marks an empty slot. The load stays
 * at most 1/2 so that probes are short; the map doubles when it would pass that (a
 * connection's accept is not a request: the rehash is no stall anyone waits on).
 */
#include "idmap.h"

#include "kv_assert.h"

#include <stdlib.h>

#define IDMAP_CAP_MIN 16

struct idmap_slot {
    uint64_t id;
    void *v;
};

static size_t slot_of(uint64_t id, size_t mask)
{
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & mask;
}

void idmap_init(struct idmap *m)
{
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

void idmap_deinit(struct idmap *m)
{
    free(m->slots);
    idmap_init(m);
}

static bool grow(struct idmap *m)
{
    size_t cap = m->slots == NULL ? IDMAP_CAP_MIN : (m->mask + 1) * 2;
    struct idmap_slot *s = calloc(cap, sizeof *s);
    if (s == NULL) {
        return false;
    }
    for (size_t i = 0; m->slots != NULL && i <= m->mask; i++) {
        if (m->slots[i].id != 0) {
            size_t j = slot_of(m->slots[i].id, cap - 1);
            while (s[j].id != 0) {
                j = (j + 1) & (cap - 1);
            }
            s[j] = m->slots[i];
        }
    }
    free(m->slots);
    m->slots = s;
    m->mask = cap - 1;
    return true;
}

bool idmap_put(struct idmap *m, uint64_t id, void *v)
{
    KV_ASSERT(id != 0);
    if ((m->count + 1) * 2 > m->mask + 1 && !grow(m)) {
        return false;
    }
    size_t i = slot_of(id, m->mask);
    while (m->slots[i].id != 0 && m->slots[i].id != id) {
        i = (i + 1) & m->mask;
    }
    if (m->slots[i].id == 0) {
        m->count++;
    }
    m->slots[i].id = id;
    m->slots[i].v = v;
    return true;
}

void *idmap_get(const struct idmap *m, uint64_t id)
{
    if (m->slots == NULL || id == 0) {
        return NULL;
    }
    for (size_t i = slot_of(id, m->mask);; i = (i + 1) & m->mask) {
        if (m->slots[i].id == id) {
            return m->slots[i].v;
        }
        if (m->slots[i].id == 0) {
            return NULL;
        }
    }
}

bool idmap_del(struct idmap *m, uint64_t id)
{
    if (m->slots == NULL || id == 0) {
        return false;
    }
    size_t i = slot_of(id, m->mask);
    while (m->slots[i].id != id) {
        if (m->slots[i].id == 0) {
            return false;
        }
        i = (i + 1) & m->mask;
    }
    /* Backward shift: move later members of the probe run into the hole when their
     * home slot is not between the hole and them. */
    for (size_t j = (i + 1) & m->mask; m->slots[j].id != 0; j = (j + 1) & m->mask) {
        size_t home = slot_of(m->slots[j].id, m->mask);
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].id = 0;
    m->slots[i].v = NULL;
    KV_ASSERT(m->count > 0);
    m->count--;
    return true;
}
