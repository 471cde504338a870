/* Device threads: a device that must act without a guest exit (input arriving from the host, or a
 * queue kicked through its ioeventfd) runs here, in C, beside the vCPU thread. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#include "vmm/api.h"

/* Serves every queue of the device whenever its ioeventfd fires (the guest wrote QueueNotify, with
 * no exit to the vCPU thread) and, for the console, whenever its host socket has input. */
static void *device_thread(void *arg) {
    struct msb_vm_device *d = arg;
    struct msb_console *c = d->mmio.device_id == MSB_VIRTIO_ID_CONSOLE ? &d->console : NULL;
    for (;;) {
        pthread_mutex_lock(&d->lock);
        int want_input = c && !c->host_closed && !c->in_len; /* else wait for the driver's next kick */
        pthread_mutex_unlock(&d->lock);
        struct pollfd p[3] = {{d->vm->stop_fd, POLLIN, 0}, {d->kick_fd, POLLIN, 0},
                              {want_input ? c->fd : -1, POLLIN, 0}};
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[0].revents) break;
        if (p[1].revents & POLLIN) {
            uint64_t kicks;
            if (read(d->kick_fd, &kicks, sizeof kicks) < 0 && errno != EAGAIN) break;
        }
        pthread_mutex_lock(&d->lock);
        uint32_t before = d->mmio.interrupt_status;
        if (c && p[2].revents) msb_console_pull(c);
        for (uint32_t q = 0; q < d->mmio.num_queues; q++) msb_mmio_notify(&d->mmio, q);
        msb_vm_device_irq(d, before);
        pthread_mutex_unlock(&d->lock);
    }
    return NULL;
}

int msb_device_thread_start(struct msb_vm_device *d) {
    if (pthread_create(&d->thread, NULL, device_thread, d)) return -1;
    d->has_thread = 1;
    return 0;
}

void msb_device_thread_stop(struct msb_vm_device *d) {
    if (!d->has_thread) return;
    pthread_join(d->thread, NULL);
    d->has_thread = 0;
}
