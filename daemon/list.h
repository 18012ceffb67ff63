/* SPDX-License-Identifier: MIT */
/*
 * Intrusive doubly linked lists with a head and a tail, in the shape of
 * systemd's list.h: an item carries its own links (LIST_FIELDS), an item
 * may sit in several lists under different names, and appending, removing
 * and taking the first are O(1). Pure macros; no allocation.
 */
#pragma once

#include <stddef.h>

/* Inside an item's struct: the links of list NAME. */
#define LIST_FIELDS(type, name) type *name##_prev, *name##_next

/* A list of items of TYPE: its ends and its length. */
#define LIST_HEAD(type)                                                                                     \
        struct {                                                                                            \
                type *head, *tail;                                                                          \
                size_t n;                                                                                   \
        }

/* Appends ITEM (in no list NAME yet) to list L. */
#define LIST_APPEND(name, l, item)                                                                          \
        do {                                                                                                \
                typeof(*(item)) *_item = (item);                                                            \
                _item->name##_prev = (l)->tail;                                                             \
                _item->name##_next = NULL;                                                                  \
                if ((l)->tail)                                                                              \
                        (l)->tail->name##_next = _item;                                                     \
                else                                                                                        \
                        (l)->head = _item;                                                                  \
                (l)->tail = _item;                                                                          \
                (l)->n++;                                                                                   \
        } while (0)

/* Takes ITEM, which is in list L, out of it. */
#define LIST_REMOVE(name, l, item)                                                                          \
        do {                                                                                                \
                typeof(*(item)) *_item = (item);                                                            \
                if (_item->name##_prev)                                                                     \
                        _item->name##_prev->name##_next = _item->name##_next;                               \
                else                                                                                        \
                        (l)->head = _item->name##_next;                                                     \
                if (_item->name##_next)                                                                     \
                        _item->name##_next->name##_prev = _item->name##_prev;                               \
                else                                                                                        \
                        (l)->tail = _item->name##_prev;                                                     \
                _item->name##_prev = _item->name##_next = NULL;                                             \
                (l)->n--;                                                                                   \
        } while (0)
