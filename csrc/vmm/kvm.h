/* A minimal KVM virtual machine: guest RAM, one vCPU, the UART, and a run loop in C. */
#ifndef MSB_VMM_KVM_H
#define MSB_VMM_KVM_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/uart.h"
#include "vmm/virtio_blk.h"
#include "vmm/virtio_mmio.h"

#define MSB_VM_MAX_DEVICES 8u

/* One virtio-mmio device window in guest physical space. */
struct msb_vm_device {
    uint64_t base;
    struct msb_mmio mmio;
    struct msb_blk blk;
    uint8_t config[8];   /* virtio-blk: capacity in sectors */
};

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
};

#endif
