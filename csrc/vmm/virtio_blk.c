/* Requests are header (type, reserved, sector) + data buffers + one status byte written by the
 * device. Reads and writes walk the extent list with 64-bit offsets, so an extent past 2 or 4 GiB
 * of the disk, or of its file, is addressed exactly. */
#include "vmm/virtio_blk.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8 };
enum { S_OK = 0, S_IOERR = 1, S_UNSUPP = 2 };

int msb_blk_add_extent(struct msb_blk *b, int fd, uint64_t file_offset, uint64_t length) {
    if (b->n_extents == MSB_BLK_MAX_EXTENTS || length == 0 || length % 512) return -1;
    b->extents[b->n_extents++] = (struct msb_blk_extent){fd, file_offset, length};
    b->capacity += length;
    return 0;
}

/* Reads or writes [pos, pos+len) of the disk through the extents. */
static int disk_io(struct msb_blk *b, uint64_t pos, uint8_t *buf, uint64_t len, int write) {
    if (pos > b->capacity || len > b->capacity - pos) return -1;
    uint64_t start = 0;
    for (uint32_t i = 0; i < b->n_extents && len; i++) {
        const struct msb_blk_extent *e = &b->extents[i];
        if (pos >= start + e->length) {
            start += e->length;
            continue;
        }
        uint64_t within = pos - start, take = e->length - within < len ? e->length - within : len;
        uint64_t done = 0;
        while (done < take) {
            ssize_t r = write ? pwrite(e->fd, buf + done, take - done, (off_t)(e->file_offset + within + done))
                              : pread(e->fd, buf + done, take - done, (off_t)(e->file_offset + within + done));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return -1;
            if (r == 0) { /* past the end of a sparse or short file: zeros, as a hole would read */
                if (write) return -1;
                memset(buf + done, 0, take - done);
                break;
            }
            done += (uint64_t)r;
        }
        buf += take;
        pos += take;
        len -= take;
        start += e->length;
    }
    return len ? -1 : 0;
}

static uint8_t serve(struct msb_blk *b, struct msb_vq_chain *c, uint32_t *written) {
    *written = 0;
    if (c->count < 2 || c->bufs[0].len < 16 || c->bufs[0].device_writes) return S_IOERR;
    struct msb_vq_buf *status = &c->bufs[c->count - 1];
    if (status->len < 1 || !status->device_writes) return S_IOERR;
    uint32_t type;
    uint64_t sector;
    memcpy(&type, c->bufs[0].host, 4);
    memcpy(&sector, c->bufs[0].host + 8, 8);
    if (sector > UINT64_MAX / 512) return S_IOERR;
    uint64_t pos = sector * 512;
    switch (type) {
    case T_IN:
    case T_OUT:
        if (type == T_OUT && b->read_only) return S_IOERR;
        for (uint32_t i = 1; i + 1 < c->count; i++) {
            struct msb_vq_buf *d = &c->bufs[i];
            if (d->device_writes != (type == T_IN)) return S_IOERR;
            if (disk_io(b, pos, d->host, d->len, type == T_OUT)) return S_IOERR;
            pos += d->len;
            if (type == T_IN) *written += d->len;
        }
        return S_OK;
    case T_FLUSH:
        for (uint32_t i = 0; i < b->n_extents; i++)
            if (!b->read_only && fsync(b->extents[i].fd) && errno != EINVAL) return S_IOERR;
        return S_OK;
    case T_GET_ID:
        if (c->count < 3 || !c->bufs[1].device_writes) return S_IOERR;
        memset(c->bufs[1].host, 0, c->bufs[1].len);
        memcpy(c->bufs[1].host, "msb-disk", c->bufs[1].len < 8 ? c->bufs[1].len : 8);
        *written = c->bufs[1].len;
        return S_OK;
    default:
        return S_UNSUPP;
    }
}

int msb_blk_process(struct msb_blk *b, struct msb_vq *q, const struct msb_guest_mem *mem) {
    static __thread struct msb_vq_chain chain;
    int served = 0, rc;
    while ((rc = msb_vq_pop(q, mem, &chain)) == 1) {
        uint32_t written;
        uint8_t st = serve(b, &chain, &written);
        struct msb_vq_buf *status = &chain.bufs[chain.count - 1];
        if (status->device_writes && status->len >= 1) {
            status->host[0] = st;
            written += 1;
        }
        b->requests++;
        b->errors += st != S_OK;
        if (msb_vq_push(q, mem, chain.head, written)) return -1;
        served++;
    }
    return rc < 0 ? -1 : served;
}

int msb_blk_notify(void *device, struct msb_vq *q, const struct msb_guest_mem *mem) {
    return msb_blk_process(device, q, mem);
}
