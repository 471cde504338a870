/* The receive side only completes a buffer when it has bytes for it; buffers the driver posts
 * ahead wait in the queue until the host sends something. */
#include "vmm/virtio_console.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

int msb_console_pull(struct msb_console *c) {
    if (c->host_closed || c->in_len) return 0;
    ssize_t r;
    do r = recv(c->fd, c->in, sizeof c->in, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r == 0 || (r < 0 && errno != EAGAIN)) c->host_closed = 1;
    if (r <= 0) return 0;
    c->in_off = 0;
    c->in_len = (uint32_t)r;
    return 1;
}

static int receive(struct msb_console *c, struct msb_vq *q, const struct msb_guest_mem *mem) {
    static __thread struct msb_vq_chain chain;
    int served = 0;
    while (c->in_len) {
        int rc = msb_vq_pop(q, mem, &chain);
        if (rc <= 0) return rc < 0 ? -1 : served;
        uint32_t written = 0;
        for (uint32_t i = 0; i < chain.count && c->in_len; i++) {
            struct msb_vq_buf *b = &chain.bufs[i];
            if (!b->device_writes) return -1; /* receive buffers are all device-writable */
            uint32_t n = b->len < c->in_len ? b->len : c->in_len;
            memcpy(b->host, c->in + c->in_off, n);
            c->in_off += n;
            c->in_len -= n;
            written += n;
        }
        c->to_guest += written;
        if (msb_vq_push(q, mem, chain.head, written)) return -1;
        served++;
    }
    return served;
}

/* Blocks until the host takes every byte, or marks the host closed and drops the rest. */
static void send_all(struct msb_console *c, const uint8_t *p, uint32_t n) {
    while (n && !c->host_closed) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            c->host_closed = 1;
            break;
        }
        p += w;
        n -= (uint32_t)w;
        c->to_host += (uint64_t)w;
    }
}

static int transmit(struct msb_console *c, struct msb_vq *q, const struct msb_guest_mem *mem) {
    static __thread struct msb_vq_chain chain;
    int served = 0, rc;
    while ((rc = msb_vq_pop(q, mem, &chain)) == 1) {
        for (uint32_t i = 0; i < chain.count; i++) {
            if (chain.bufs[i].device_writes) return -1; /* transmit buffers are all device-readable */
            send_all(c, chain.bufs[i].host, chain.bufs[i].len);
        }
        if (msb_vq_push(q, mem, chain.head, 0)) return -1;
        served++;
    }
    return rc < 0 ? -1 : served;
}

int msb_console_notify(void *device, struct msb_vq *q, const struct msb_guest_mem *mem) {
    struct msb_console *c = device;
    if (q == &c->queues[MSB_CONSOLE_RX]) return receive(c, q, mem);
    return transmit(c, q, mem);
}
