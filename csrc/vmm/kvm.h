/* A minimal KVM virtual machine: guest RAM, one vCPU, the UART, and a run loop in C. */
#ifndef MSB_VMM_KVM_H
#define MSB_VMM_KVM_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/uart.h"

struct msb_vm {
    int kvm, vm, vcpu;
    struct kvm_run *run;
    size_t run_size;
    struct msb_guest_mem mem;
    struct msb_uart uart;
    uint8_t console[1 << 16];
    uint64_t io_exits, stop_value;
};

#endif
