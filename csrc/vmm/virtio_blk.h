/* virtio-blk (virtio 1.1, 5.2) over a list of file extents: a raw image is one extent, a VMDK
 * with FLAT extents (fsmeta + layers) is several. */
#ifndef MSB_VMM_VIRTIO_BLK_H
#define MSB_VMM_VIRTIO_BLK_H

#include <stdint.h>

#include "vmm/virtqueue.h"

#define MSB_BLK_MAX_EXTENTS 1024u

struct msb_blk_extent {
    int fd;
    uint64_t file_offset;   /* bytes into fd */
    uint64_t length;        /* bytes; a multiple of 512 */
};

struct msb_blk {
    struct msb_blk_extent extents[MSB_BLK_MAX_EXTENTS];
    uint32_t n_extents;
    uint64_t capacity;      /* bytes: the sum of the extents */
    int read_only;
    uint64_t requests, errors;
};

/* Adds an extent at the current end of the disk; -1 when it is not whole sectors or too many. */
int msb_blk_add_extent(struct msb_blk *b, int fd, uint64_t file_offset, uint64_t length);
/* Serves every pending request of q; returns how many, or -1 when the queue is malformed. */
int msb_blk_process(struct msb_blk *b, struct msb_vq *q, const struct msb_guest_mem *mem);
/* The same, with the signature virtio-mmio's notify hook expects (device = struct msb_blk *). */
int msb_blk_notify(void *device, struct msb_vq *q, const struct msb_guest_mem *mem);

#define MSB_VIRTIO_ID_BLOCK 2u
#define MSB_VIRTIO_BLK_F_RO (1ull << 5)
#define MSB_VIRTIO_BLK_F_FLUSH (1ull << 9)

#endif
