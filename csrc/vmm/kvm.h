/* A minimal KVM virtual machine: guest RAM, one vCPU, the UART, and a run loop in C. */
#ifndef MSB_VMM_KVM_H
#define MSB_VMM_KVM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/uart.h"
#include "vmm/virtio_blk.h"
#include "vmm/virtio_console.h"
#include "vmm/virtio_mmio.h"

#define MSB_VM_MAX_DEVICES 8u

struct msb_vm;

/* One virtio-mmio device window in guest physical space. A device with its own thread (the
 * console) is woken by an ioeventfd on its QueueNotify register and by its host socket; `lock`
 * orders that thread against the vCPU's register accesses. */
struct msb_vm_device {
    uint64_t base;
    struct msb_vm *vm;
    uint32_t index;
    struct msb_mmio mmio;
    struct msb_blk blk;
    struct msb_console console;
    uint8_t config[12];  /* virtio-blk: capacity in sectors; virtio-console: cols, rows, ports, emerg */
    pthread_mutex_t lock;
    int kick_fd;         /* ioeventfd (-1: none, QueueNotify exits to the vCPU thread) */
    int has_thread;
    pthread_t thread;
};

/* After a device's register file changed under its lock: drive its interrupt line to match. */
void msb_vm_device_irq(struct msb_vm_device *d, uint32_t before);
int msb_device_thread_start(struct msb_vm_device *d);
void msb_device_thread_stop(struct msb_vm_device *d);

struct msb_vm {
    int kvm, vm, vcpu;
    struct kvm_run *run;
    size_t run_size;
    struct msb_guest_mem mem;
    struct msb_uart uart;
    uint8_t console[1 << 16];
    uint64_t io_exits, mmio_exits, stop_value, fixups;
    int irqchip;
    char watch[64];          /* stop when the console output ends with this (empty: never) */
    size_t watch_len;
    int watched;
    struct msb_vm_device devices[MSB_VM_MAX_DEVICES];
    uint32_t n_devices;
    int stop_fd;             /* eventfd that ends every device thread */
};

#endif
