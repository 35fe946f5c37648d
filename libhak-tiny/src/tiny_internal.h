/* SPDX-License-Identifier: MIT */
/* tiny_internal.h - types and functions shared by the tiny front's files. */
#ifndef HAK_TINY_INTERNAL_H
#define HAK_TINY_INTERNAL_H

#include "hak_tiny.h"

/* HAKMEM_CHECKS=2: audit a slab's free list when a heap takes it. */
extern bool hak_tiny_audit_lists;

/* slab.c: slabs from superslabs, and the abandoned lists. */
struct hak_tiny_slab *hak_tiny_slab_new(unsigned cls, uint64_t owner);
void hak_tiny_slab_release(struct hak_tiny_slab *s);
void hak_tiny_slab_abandon(struct hak_tiny_slab *s);
struct hak_tiny_slab *hak_tiny_slab_adopt(unsigned cls, uint64_t owner);
/* Releases the abandoned slabs with no block out (thread exit). */
void hak_tiny_abandoned_sweep(void);
char *hak_tiny_slab_start(const struct hak_tiny_slab *s);

static inline uint32_t tiny_slab_carved_blocks(const struct hak_tiny_slab *s) {
  return s->carved / s->block_size;
}
static inline bool tiny_slab_can_carve(const struct hak_tiny_slab *s) {
  return s->carved + s->block_size <= HAK_TINY_SLAB_SIZE;
}

/* heap.c */
/* Moves the slab's remote frees onto its own free list (a slab that is not
 * current); returns how many. */
unsigned hak_tiny_slab_collect(struct hak_tiny_slab *s);

/* Intrusive doubly-linked lists of slabs (heads in the heap or globals). */
static inline void slab_list_push(struct hak_tiny_slab **head,
                                  struct hak_tiny_slab *s) {
  s->prev = NULL;
  s->next = *head;
  if (*head)
    (*head)->prev = s;
  *head = s;
}

static inline void slab_list_remove(struct hak_tiny_slab **head,
                                    struct hak_tiny_slab *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    *head = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

/* The heap's queue of partial slabs of a class (hak_tiny_heap.partial). */
static inline void partial_append(struct hak_tiny_heap *h,
                                  struct hak_tiny_slab *s) {
  struct hak_tiny_slab **tail = &h->partial_tail[s->cls];
  s->next = NULL;
  s->prev = *tail;
  if (*tail)
    (*tail)->next = s;
  else
    h->partial[s->cls] = s;
  *tail = s;
}

static inline void partial_remove(struct hak_tiny_heap *h,
                                  struct hak_tiny_slab *s) {
  if (s == h->partial_tail[s->cls])
    h->partial_tail[s->cls] = s->prev;
  slab_list_remove(&h->partial[s->cls], s);
}

#endif
