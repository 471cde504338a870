/* virtio-console (virtio 1.1, 5.3) with one port and no features: the guest's /dev/hvc0 as a byte
 * stream to a host socket. It carries the agent channel (docs/protocol.md), not the kernel log. */
#ifndef MSB_VMM_VIRTIO_CONSOLE_H
#define MSB_VMM_VIRTIO_CONSOLE_H

#include <stdint.h>

#include "vmm/virtqueue.h"

#define MSB_VIRTIO_ID_CONSOLE 3u
#define MSB_CONSOLE_RX 0u          /* receiveq: host -> guest */
#define MSB_CONSOLE_TX 1u          /* transmitq: guest -> host */

struct msb_console {
    int fd;                        /* a connected stream socket; the host end of the channel */
    struct msb_vq *queues;         /* the transport's queues (index MSB_CONSOLE_RX, MSB_CONSOLE_TX) */
    uint8_t in[1 << 16];           /* bytes read from fd, waiting for receive buffers */
    uint32_t in_off, in_len;
    int host_closed;               /* fd reached EOF or failed: transmitted bytes are dropped */
    uint64_t to_guest, to_host;    /* byte counters */
};

/* Reads what fd has ready (never blocks) into the input buffer; 1 if bytes were added. */
int msb_console_pull(struct msb_console *c);
/* Serves q: moves buffered input into receive buffers, or sends transmit buffers to fd (blocking,
 * so a slow host holds the guest back instead of losing bytes). Returns chains completed or -1. */
int msb_console_notify(void *device, struct msb_vq *q, const struct msb_guest_mem *mem);

#endif
