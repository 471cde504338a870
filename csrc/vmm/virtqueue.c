/* Every address and index read from guest memory is checked before use: ring areas through
 * msb_gpa, descriptor indexes against the queue size, chains against a length limit (which also
 * ends loops). Indirect descriptors are not offered, so one is a malformed chain. */
#include "vmm/virtqueue.h"

#include <string.h>

enum { F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4 };

static int load16(const struct msb_guest_mem *mem, uint64_t gpa, uint16_t *v) {
    uint8_t *p = msb_gpa(mem, gpa, 2);
    if (!p) return -1;
    memcpy(v, p, 2);
    return 0;
}

int msb_vq_pop(struct msb_vq *q, const struct msb_guest_mem *mem, struct msb_vq_chain *chain) {
    uint16_t avail_idx, head;
    if (q->size == 0 || q->size > MSB_VQ_MAX_SIZE || (q->size & (q->size - 1))) return -1;
    if (load16(mem, q->avail + 2, &avail_idx)) return -1;
    if (avail_idx == q->last_avail) return 0;
    if ((uint16_t)(avail_idx - q->last_avail) > q->size) return -1; /* the driver skipped ahead */
    if (load16(mem, q->avail + 4 + 2ull * (q->last_avail % q->size), &head)) return -1;
    if (head >= q->size) return -1;
    chain->head = head;
    chain->count = 0;
    uint16_t i = head;
    for (;;) {
        if (chain->count == MSB_VQ_MAX_CHAIN || chain->count == q->size) return -1; /* too long, or a loop */
        uint8_t *d = msb_gpa(mem, q->desc + 16ull * i, 16);
        if (!d) return -1;
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
        memcpy(&addr, d, 8);
        memcpy(&len, d + 8, 4);
        memcpy(&flags, d + 12, 2);
        memcpy(&next, d + 14, 2);
        if (flags & F_INDIRECT) return -1;
        uint8_t *host = msb_gpa(mem, addr, len);
        if (!host) return -1;
        chain->bufs[chain->count++] = (struct msb_vq_buf){host, len, !!(flags & F_WRITE)};
        if (!(flags & F_NEXT)) break;
        if (next >= q->size) return -1;
        i = next;
    }
    q->last_avail++;
    return 1;
}

int msb_vq_push(struct msb_vq *q, const struct msb_guest_mem *mem, uint16_t head, uint32_t written) {
    uint8_t *elem = msb_gpa(mem, q->used + 4 + 8ull * (q->used_idx % q->size), 8);
    uint8_t *idx = msb_gpa(mem, q->used + 2, 2);
    if (!elem || !idx) return -1;
    uint32_t id = head;
    memcpy(elem, &id, 4);
    memcpy(elem + 4, &written, 4);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* the element before the index the guest polls */
    q->used_idx++;
    memcpy(idx, &q->used_idx, 2);
    return 0;
}
