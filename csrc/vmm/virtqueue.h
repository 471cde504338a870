/* Split virtqueues (virtio 1.1, 2.6): walking descriptor chains in guest memory, safely. */
#ifndef MSB_VMM_VIRTQUEUE_H
#define MSB_VMM_VIRTQUEUE_H

#include <stdint.h>

#include "vmm/memory.h"

#define MSB_VQ_MAX_SIZE 1024u
#define MSB_VQ_MAX_CHAIN 256u   /* longest descriptor chain a request may use */

struct msb_vq {
    uint16_t size;               /* entries; a power of two, 1..MSB_VQ_MAX_SIZE */
    uint64_t desc, avail, used;  /* guest physical addresses of the three areas */
    uint16_t last_avail;         /* next avail index the device will take */
    uint16_t used_idx;
};

/* One guest buffer of a chain, already bounds-checked into host memory. */
struct msb_vq_buf {
    uint8_t *host;
    uint32_t len;
    int device_writes;           /* VIRTQ_DESC_F_WRITE */
};

struct msb_vq_chain {
    uint16_t head;
    uint32_t count;
    struct msb_vq_buf bufs[MSB_VQ_MAX_CHAIN];
};

/* 1: a chain was taken; 0: nothing pending; -1: the queue or chain is malformed (loop, index or
 * address out of range, too long, indirect): the device must stop using this queue. */
int msb_vq_pop(struct msb_vq *q, const struct msb_guest_mem *mem, struct msb_vq_chain *chain);
/* Return a chain to the guest with `written` bytes; -1 if the used ring lies outside RAM. */
int msb_vq_push(struct msb_vq *q, const struct msb_guest_mem *mem, uint16_t head, uint32_t written);

#endif
