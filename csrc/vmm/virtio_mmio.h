/* The virtio-mmio transport (virtio 1.1, 4.2.2): the register file a guest driver programs,
 * independent of the device behind it. */
#ifndef MSB_VMM_VIRTIO_MMIO_H
#define MSB_VMM_VIRTIO_MMIO_H

#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/virtqueue.h"

#define MSB_MMIO_SIZE 0x200u       /* registers + device config, per device */
#define MSB_MMIO_QUEUE_NOTIFY 0x050u
#define MSB_MMIO_MAX_QUEUES 2u
#define MSB_VIRTIO_F_VERSION_1 (1ull << 32)
#define MSB_VIRTIO_STATUS_FEATURES_OK 8u
#define MSB_VIRTIO_STATUS_DRIVER_OK 4u
#define MSB_VIRTIO_STATUS_NEEDS_RESET 0x40u

/* Serves a notified queue; returns requests served or -1 when the queue is malformed. */
typedef int (*msb_notify_fn)(void *device, struct msb_vq *q, const struct msb_guest_mem *mem);

struct msb_mmio {
    uint32_t device_id, num_queues, queue_num_max;
    uint64_t device_features, driver_features;
    uint32_t device_features_sel, driver_features_sel, queue_sel;
    uint32_t status, interrupt_status, config_generation;
    struct msb_vq queues[MSB_MMIO_MAX_QUEUES];
    uint32_t queue_ready[MSB_MMIO_MAX_QUEUES];
    uint8_t *config;
    uint32_t config_len;
    void *device;
    msb_notify_fn notify;
    const struct msb_guest_mem *mem;
};

void msb_mmio_init(struct msb_mmio *m, uint32_t device_id, uint64_t features, uint32_t num_queues,
                   uint8_t *config, uint32_t config_len, void *device, msb_notify_fn notify,
                   const struct msb_guest_mem *mem);
uint32_t msb_mmio_read(struct msb_mmio *m, uint32_t offset, uint32_t size);
void msb_mmio_write(struct msb_mmio *m, uint32_t offset, uint32_t value, uint32_t size);
/* Serves queue `index` if the driver made it live, and raises the interrupt status it earned. The
 * QueueNotify register calls it; so does a device thread woken by the same write via ioeventfd. */
void msb_mmio_notify(struct msb_mmio *m, uint32_t index);

#endif
