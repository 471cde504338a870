/* Public C API of the microsandbox KVM monitor (bound to Python with cffi, API mode). */
#ifndef MSB_VMM_API_H
#define MSB_VMM_API_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/kvm.h"
#include "vmm/memory.h"
#include "vmm/uart.h"
#include "vmm/virtio_blk.h"
#include "vmm/virtio_console.h"
#include "vmm/virtio_mmio.h"
#include "vmm/virtqueue.h"

/* Bumped whenever a declaration in cdef.h changes meaning, so Python can refuse a stale build. */
#define MSB_VMM_ABI_VERSION 8

/* msb_vm_run results (negative: an error, described in err) */
#define MSB_VM_STOPPED 0   /* the guest wrote MSB_STOP_PORT */
#define MSB_VM_HALTED 1    /* HLT without an in-kernel irqchip */
#define MSB_VM_WATCHED 2   /* the console output ended with the watched text */

#define MSB_VIRTIO_IRQ_BASE 5u  /* device i of the VM interrupts on IRQ 5 + i */

int msb_vmm_abi_version(void);

/* The bounds-checked guest accessor as a function, for tests (devices use msb_gpa inline). */
uint8_t *msb_gpa_check(const struct msb_guest_mem *mem, uint64_t gpa, uint64_t len);

/* irqchip: add the in-kernel PIC/IOAPIC/LAPIC and PIT (needed to boot Linux; test guests that
 * end with HLT run without, so HLT exits). */
struct msb_vm *msb_vm_create(uint64_t ram_bytes, int irqchip, char *err, size_t errlen);
int msb_vm_add_irqchip(struct msb_vm *vm);
/* 32-bit flat protected mode at `entry` with ebx = start_info, as the PVH boot ABI wants. */
int msb_vm_enter_pvh(struct msb_vm *vm, uint32_t entry, uint32_t start_info);
int msb_vm_watch(struct msb_vm *vm, const char *text, size_t len);
int msb_pvm_fixup(struct msb_vm *vm);
void msb_vm_destroy(struct msb_vm *vm);
int msb_vm_load(struct msb_vm *vm, uint64_t gpa, const uint8_t *data, size_t len);
/* Maps the whole pages of [offset, offset+len) of fd privately (copy-on-write) at gpa, both
 * page-aligned and inside RAM; returns the bytes mapped (the caller copies the partial tail). */
int64_t msb_vm_map_file(struct msb_vm *vm, uint64_t gpa, int fd, uint64_t offset, uint64_t len);
int msb_vm_enter_real_mode(struct msb_vm *vm, uint16_t cs, uint16_t ip);
int msb_vm_enter_long_mode(struct msb_vm *vm, uint64_t rip, uint64_t rsp);
int msb_vm_run(struct msb_vm *vm, uint64_t max_exits, char *err, size_t errlen);
size_t msb_vm_console(struct msb_vm *vm, const uint8_t **bytes);
/* A virtio-blk device whose register window starts at `base` (outside RAM, 0x200 aligned);
 * returns its index. Extents are appended in disk order. */
int msb_vm_add_blk(struct msb_vm *vm, uint64_t base, int read_only);
int msb_vm_blk_add_extent(struct msb_vm *vm, uint32_t device, int fd, uint64_t file_offset, uint64_t length);
/* A virtio-console whose port is the connected stream socket `fd` (the caller keeps it open);
 * a device thread moves its bytes. Returns its index. */
int msb_vm_add_console(struct msb_vm *vm, uint64_t base, int fd);
int msb_vm_console_bytes(struct msb_vm *vm, uint32_t device, uint64_t *to_guest, uint64_t *to_host);

#endif
