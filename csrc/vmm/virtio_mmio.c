/* Register semantics follow the spec's driver sequence: reset, ACKNOWLEDGE, DRIVER, features,
 * FEATURES_OK (refused unless the driver's features are a subset of the device's), queue setup,
 * DRIVER_OK, then notifications. A queue that turns out malformed sets DEVICE_NEEDS_RESET and
 * is not touched again until the driver resets the device. */
#include "vmm/virtio_mmio.h"

#include <string.h>

enum {
    MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR_ID = 0x00c, DEVICE_FEATURES = 0x010,
    DEVICE_FEATURES_SEL = 0x014, DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024,
    QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044,
    QUEUE_NOTIFY = MSB_MMIO_QUEUE_NOTIFY, INTERRUPT_STATUS = 0x060, INTERRUPT_ACK = 0x064, STATUS = 0x070,
    QUEUE_DESC_LOW = 0x080, QUEUE_DESC_HIGH = 0x084, QUEUE_DRIVER_LOW = 0x090, QUEUE_DRIVER_HIGH = 0x094,
    QUEUE_DEVICE_LOW = 0x0a0, QUEUE_DEVICE_HIGH = 0x0a4, CONFIG_GENERATION = 0x0fc, CONFIG = 0x100,
};

#define MMIO_MAGIC 0x74726976u   /* "virt" */
#define VENDOR 0x30425353u       /* "MSB0" read little-endian */

static void reset(struct msb_mmio *m) {
    m->driver_features = 0;
    m->device_features_sel = m->driver_features_sel = m->queue_sel = 0;
    m->status = m->interrupt_status = 0;
    memset(m->queues, 0, sizeof m->queues);
    memset(m->queue_ready, 0, sizeof m->queue_ready);
}

void msb_mmio_init(struct msb_mmio *m, uint32_t device_id, uint64_t features, uint32_t num_queues,
                   uint8_t *config, uint32_t config_len, void *device, msb_notify_fn notify,
                   const struct msb_guest_mem *mem) {
    memset(m, 0, sizeof *m);
    m->device_id = device_id;
    m->device_features = features | MSB_VIRTIO_F_VERSION_1;
    m->num_queues = num_queues > MSB_MMIO_MAX_QUEUES ? MSB_MMIO_MAX_QUEUES : num_queues;
    m->queue_num_max = 256;
    m->config = config;
    m->config_len = config_len;
    m->device = device;
    m->notify = notify;
    m->mem = mem;
}

static struct msb_vq *selected(struct msb_mmio *m) {
    return m->queue_sel < m->num_queues ? &m->queues[m->queue_sel] : NULL;
}

static void set_half(uint64_t *field, int high, uint32_t value) {
    *field = high ? (*field & 0xFFFFFFFFull) | ((uint64_t)value << 32) : (*field & ~0xFFFFFFFFull) | value;
}

uint32_t msb_mmio_read(struct msb_mmio *m, uint32_t offset, uint32_t size) {
    if (offset >= CONFIG) {
        uint32_t at = offset - CONFIG, v = 0;
        if (size > 4 || at > m->config_len || size > m->config_len - at) return 0;
        memcpy(&v, m->config + at, size);
        return v;
    }
    if (size != 4) return 0; /* registers are 32-bit only */
    struct msb_vq *q = selected(m);
    switch (offset) {
    case MAGIC: return MMIO_MAGIC;
    case VERSION: return 2;
    case DEVICE_ID: return m->device_id;
    case VENDOR_ID: return VENDOR;
    case DEVICE_FEATURES: return m->device_features_sel < 2 ? (uint32_t)(m->device_features >> (32 * m->device_features_sel)) : 0;
    case QUEUE_NUM_MAX: return q ? m->queue_num_max : 0;
    case QUEUE_READY: return q ? m->queue_ready[m->queue_sel] : 0;
    case INTERRUPT_STATUS: return m->interrupt_status;
    case STATUS: return m->status;
    case CONFIG_GENERATION: return m->config_generation;
    default: return 0;
    }
}

void msb_mmio_notify(struct msb_mmio *m, uint32_t index) {
    if (index >= m->num_queues || !m->queue_ready[index] || !(m->status & MSB_VIRTIO_STATUS_DRIVER_OK) ||
        (m->status & MSB_VIRTIO_STATUS_NEEDS_RESET))
        return;
    int served = m->notify(m->device, &m->queues[index], m->mem);
    if (served < 0) {
        m->status |= MSB_VIRTIO_STATUS_NEEDS_RESET;
        m->interrupt_status |= 2; /* configuration change: tells the driver to look at status */
    } else if (served > 0) {
        m->interrupt_status |= 1; /* used buffer */
    }
}

void msb_mmio_write(struct msb_mmio *m, uint32_t offset, uint32_t value, uint32_t size) {
    if (size != 4 || offset >= CONFIG) return; /* device config is read-only here */
    struct msb_vq *q = selected(m);
    int queue_live = q && m->queue_ready[m->queue_sel];
    switch (offset) {
    case DEVICE_FEATURES_SEL: m->device_features_sel = value; break;
    case DRIVER_FEATURES_SEL: m->driver_features_sel = value; break;
    case DRIVER_FEATURES:
        if (m->driver_features_sel < 2 && !(m->status & MSB_VIRTIO_STATUS_FEATURES_OK))
            set_half(&m->driver_features, m->driver_features_sel == 1, value);
        break;
    case QUEUE_SEL: m->queue_sel = value; break;
    case QUEUE_NUM:
        if (q && !queue_live) q->size = value <= m->queue_num_max ? (uint16_t)value : 0;
        break;
    case QUEUE_READY:
        if (q) m->queue_ready[m->queue_sel] = value == 1 && q->size && !(q->size & (q->size - 1));
        break;
    case QUEUE_NOTIFY: msb_mmio_notify(m, value); break;
    case INTERRUPT_ACK: m->interrupt_status &= ~value; break;
    case STATUS:
        if (value == 0) {
            reset(m);
        } else {
            if ((value & MSB_VIRTIO_STATUS_FEATURES_OK) && (m->driver_features & ~m->device_features))
                value &= ~MSB_VIRTIO_STATUS_FEATURES_OK; /* asked for something not offered */
            m->status = value | (m->status & MSB_VIRTIO_STATUS_NEEDS_RESET);
        }
        break;
    case QUEUE_DESC_LOW: case QUEUE_DESC_HIGH:
        if (q && !queue_live) set_half(&q->desc, offset == QUEUE_DESC_HIGH, value);
        break;
    case QUEUE_DRIVER_LOW: case QUEUE_DRIVER_HIGH:
        if (q && !queue_live) set_half(&q->avail, offset == QUEUE_DRIVER_HIGH, value);
        break;
    case QUEUE_DEVICE_LOW: case QUEUE_DEVICE_HIGH:
        if (q && !queue_live) set_half(&q->used, offset == QUEUE_DEVICE_HIGH, value);
        break;
    default: break;
    }
}
