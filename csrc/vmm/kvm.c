/* VM and vCPU setup (spec vmm.md 1.1-1.4) and the run loop. Device exits are handled here in C;
 * Python only configures, starts and reads the results. */
#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/api.h"
#include "vmm/layout.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void msb_vm_destroy(struct msb_vm *vm) {
    if (!vm) return;
    uint64_t one = 1;
    if (vm->stop_fd >= 0 && write(vm->stop_fd, &one, sizeof one) != sizeof one) {} /* wakes them all */
    for (uint32_t i = 0; i < vm->n_devices; i++) {
        struct msb_vm_device *d = &vm->devices[i];
        msb_device_thread_stop(d);
        if (d->kick_fd >= 0) close(d->kick_fd);
        pthread_mutex_destroy(&d->lock);
    }
    if (vm->stop_fd >= 0) close(vm->stop_fd);
    if (vm->run && vm->run != MAP_FAILED) munmap(vm->run, vm->run_size);
    if (vm->mem.host && vm->mem.host != MAP_FAILED) munmap(vm->mem.host, vm->mem.size);
    if (vm->vcpu >= 0) close(vm->vcpu);
    if (vm->vm >= 0) close(vm->vm);
    if (vm->kvm >= 0) close(vm->kvm);
    free(vm);
}

struct msb_vm *msb_vm_create(uint64_t ram_bytes, int irqchip, char *err, size_t errlen) {
    struct msb_vm *vm = calloc(1, sizeof *vm);
    if (!vm) return fail(err, errlen, "out of memory"), NULL;
    vm->kvm = vm->vm = vm->vcpu = -1;
    if ((vm->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
        fail(err, errlen, "cannot create an eventfd: %s", strerror(errno));
        goto out;
    }
    msb_uart_init(&vm->uart, vm->console, sizeof vm->console);
    if (ram_bytes == 0 || ram_bytes > MSB_MAX_RAM || ram_bytes % 4096) {
        fail(err, errlen, "guest RAM must be a positive multiple of 4 KiB up to 64 GiB");
        goto out;
    }
    if ((vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) {
        fail(err, errlen, "cannot open /dev/kvm: %s", strerror(errno));
        goto out;
    }
    if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        fail(err, errlen, "unexpected KVM API version");
        goto out;
    }
    if ((vm->vm = ioctl(vm->kvm, KVM_CREATE_VM, 0)) < 0 ||
        ioctl(vm->vm, KVM_SET_TSS_ADDR, MSB_TSS_ADDR) < 0) {
        fail(err, errlen, "cannot create the VM: %s", strerror(errno));
        goto out;
    }
    vm->mem.size = ram_bytes;
    vm->mem.host = mmap(NULL, ram_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (vm->mem.host == MAP_FAILED) {
        vm->mem.host = NULL;
        fail(err, errlen, "cannot map %llu bytes of guest RAM", (unsigned long long)ram_bytes);
        goto out;
    }
    madvise(vm->mem.host, ram_bytes, MADV_HUGEPAGE);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = ram_bytes, .userspace_addr = (uintptr_t)vm->mem.host};
    if (irqchip && msb_vm_add_irqchip(vm) < 0) { /* before the vCPU, as KVM requires */
        fail(err, errlen, "cannot create the in-kernel irqchip and PIT: %s", strerror(errno));
        goto out;
    }
    if (ioctl(vm->vm, KVM_SET_USER_MEMORY_REGION, &region) < 0 ||
        (vm->vcpu = ioctl(vm->vm, KVM_CREATE_VCPU, 0)) < 0) {
        fail(err, errlen, "cannot set up guest memory or the vCPU: %s", strerror(errno));
        goto out;
    }
    int size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size < (int)sizeof(struct kvm_run)) {
        fail(err, errlen, "bad kvm_run size");
        goto out;
    }
    vm->run_size = (size_t)size;
    vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
    if (vm->run == MAP_FAILED) {
        vm->run = NULL;
        fail(err, errlen, "cannot map kvm_run: %s", strerror(errno));
        goto out;
    }
    return vm;
out:
    msb_vm_destroy(vm);
    return NULL;
}

int msb_vm_load(struct msb_vm *vm, uint64_t gpa, const uint8_t *data, size_t len) {
    uint8_t *dst = msb_gpa(&vm->mem, gpa, len);
    if (!dst) return -1;
    memcpy(dst, data, len);
    return 0;
}

int64_t msb_vm_map_file(struct msb_vm *vm, uint64_t gpa, int fd, uint64_t offset, uint64_t len) {
    uint64_t pages = len & ~0xFFFull;
    if (gpa % 4096 || offset % 4096 || !msb_gpa(&vm->mem, gpa, len)) return -1;
    if (pages && mmap(vm->mem.host + gpa, pages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                      (off_t)offset) == MAP_FAILED)
        return -1;
    return (int64_t)pages;
}

int msb_vm_enter_real_mode(struct msb_vm *vm, uint16_t cs, uint16_t ip) {
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    if (ioctl(vm->vcpu, KVM_GET_SREGS, &sregs) < 0) return -1;
    sregs.cs.selector = cs;
    sregs.cs.base = (uint64_t)cs << 4;
    memset(&regs, 0, sizeof regs);
    regs.rip = ip;
    regs.rflags = 0x2;
    if (ioctl(vm->vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vm->vcpu, KVM_SET_REGS, &regs) < 0) return -1;
    return 0;
}

/* A free device slot whose window at `base` lies outside RAM and overlaps no other; NULL if none. */
static struct msb_vm_device *new_device(struct msb_vm *vm, uint64_t base) {
    if (vm->n_devices == MSB_VM_MAX_DEVICES || base % 0x200 || msb_gpa(&vm->mem, base, 1)) return NULL;
    for (uint32_t i = 0; i < vm->n_devices; i++)
        if (base < vm->devices[i].base + MSB_MMIO_SIZE && vm->devices[i].base < base + MSB_MMIO_SIZE) return NULL;
    struct msb_vm_device *d = &vm->devices[vm->n_devices];
    memset(d, 0, sizeof *d);
    d->base = base;
    d->vm = vm;
    d->index = vm->n_devices++;
    d->kick_fd = -1;
    pthread_mutex_init(&d->lock, NULL);
    return d;
}

/* Queue kicks wake the device's thread directly through an ioeventfd on QueueNotify, so the
 * vCPU never exits for them and never waits on device I/O. Without ioeventfd the kicks exit to
 * the vCPU thread, which serves them itself (and a disk needs no thread at all). */
static int attach_kick(struct msb_vm *vm, struct msb_vm_device *d) {
    d->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct kvm_ioeventfd kick = {.addr = d->base + MSB_MMIO_QUEUE_NOTIFY, .len = 4, .fd = d->kick_fd};
    if (d->kick_fd >= 0 && ioctl(vm->vm, KVM_IOEVENTFD, &kick) < 0) {
        close(d->kick_fd);
        d->kick_fd = -1;
    }
    return d->kick_fd >= 0;
}

int msb_vm_add_blk(struct msb_vm *vm, uint64_t base, int read_only) {
    struct msb_vm_device *d = new_device(vm, base);
    if (!d) return -1;
    d->blk.read_only = read_only;
    uint64_t features = MSB_VIRTIO_BLK_F_FLUSH | (read_only ? MSB_VIRTIO_BLK_F_RO : 0);
    msb_mmio_init(&d->mmio, MSB_VIRTIO_ID_BLOCK, features, 1, d->config, 8, &d->blk, msb_blk_notify, &vm->mem);
    if (attach_kick(vm, d) && msb_device_thread_start(d)) return -1;
    return (int)d->index;
}

int msb_vm_add_console(struct msb_vm *vm, uint64_t base, int fd) {
    struct msb_vm_device *d = new_device(vm, base);
    if (!d) return -1;
    d->console.fd = fd;
    d->console.queues = d->mmio.queues;
    msb_mmio_init(&d->mmio, MSB_VIRTIO_ID_CONSOLE, 0, 2, d->config, 12, &d->console, msb_console_notify, &vm->mem);
    attach_kick(vm, d);
    return msb_device_thread_start(d) ? -1 : (int)d->index;   /* the console's input needs its thread */
}

int msb_vm_console_bytes(struct msb_vm *vm, uint32_t device, uint64_t *to_guest, uint64_t *to_host) {
    if (device >= vm->n_devices || vm->devices[device].mmio.device_id != MSB_VIRTIO_ID_CONSOLE) return -1;
    struct msb_vm_device *d = &vm->devices[device];
    pthread_mutex_lock(&d->lock);
    *to_guest = d->console.to_guest;
    *to_host = d->console.to_host;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

void msb_vm_device_irq(struct msb_vm_device *d, uint32_t before) {
    struct msb_vm *vm = d->vm;
    if (!vm->irqchip || (before != 0) == (d->mmio.interrupt_status != 0)) return;
    struct kvm_irq_level line = {.irq = MSB_VIRTIO_IRQ_BASE + d->index, .level = d->mmio.interrupt_status != 0};
    ioctl(vm->vm, KVM_IRQ_LINE, &line); /* level-triggered until the driver acks */
}

int msb_vm_blk_add_extent(struct msb_vm *vm, uint32_t device, int fd, uint64_t file_offset, uint64_t length) {
    if (device >= vm->n_devices) return -1;
    struct msb_vm_device *d = &vm->devices[device];
    if (msb_blk_add_extent(&d->blk, fd, file_offset, length)) return -1;
    uint64_t sectors = d->blk.capacity / 512;
    memcpy(d->config, &sectors, sizeof sectors);
    return 0;
}

/* An MMIO exit inside a device window goes to its register file; elsewhere it is an error. */
static int mmio(struct msb_vm *vm) {
    struct kvm_run *r = vm->run;
    uint64_t addr = r->mmio.phys_addr;
    for (uint32_t i = 0; i < vm->n_devices; i++) {
        struct msb_vm_device *d = &vm->devices[i];
        if (addr < d->base || addr - d->base >= MSB_MMIO_SIZE || r->mmio.len > 4) continue;
        uint32_t offset = (uint32_t)(addr - d->base), value = 0;
        pthread_mutex_lock(&d->lock);
        if (r->mmio.is_write) {
            memcpy(&value, r->mmio.data, r->mmio.len);
            uint32_t before = d->mmio.interrupt_status;
            msb_mmio_write(&d->mmio, offset, value, r->mmio.len);
            msb_vm_device_irq(d, before);
        } else {
            value = msb_mmio_read(&d->mmio, offset, r->mmio.len);
            memcpy(r->mmio.data, &value, r->mmio.len);
        }
        pthread_mutex_unlock(&d->lock);
        return 0;
    }
    return -1;
}

static void port_io(struct msb_vm *vm) {
    struct kvm_run *r = vm->run;
    uint8_t *data = (uint8_t *)r + r->io.data_offset;
    uint32_t bytes = (uint32_t)r->io.size * r->io.count;
    if (r->io.data_offset + bytes > vm->run_size) return; /* never trust offsets blindly */
    uint16_t port = r->io.port;
    for (uint32_t i = 0; i < bytes; i++) {
        if (port >= MSB_UART_BASE && port < MSB_UART_BASE + MSB_UART_PORTS) {
            if (r->io.direction == KVM_EXIT_IO_OUT) {
                msb_uart_write(&vm->uart, port - MSB_UART_BASE, data[i]);
                size_t n = vm->uart.out_len;
                if (vm->watch_len && n >= vm->watch_len &&
                    memcmp(vm->console + n - vm->watch_len, vm->watch, vm->watch_len) == 0)
                    vm->watched = 1;
            }
            else data[i] = msb_uart_read(&vm->uart, port - MSB_UART_BASE);
        } else if (r->io.direction == KVM_EXIT_IO_IN) {
            data[i] = 0xFF; /* nothing there */
        }
    }
}

int msb_vm_run(struct msb_vm *vm, uint64_t max_exits, char *err, size_t errlen) {
    for (uint64_t n = 0; n < max_exits; n++) {
        if (ioctl(vm->vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return fail(err, errlen, "KVM_RUN failed: %s", strerror(errno));
        }
        struct kvm_run *r = vm->run;
        switch (r->exit_reason) {
        case KVM_EXIT_IO:
            vm->io_exits++;
            if (r->io.port == MSB_STOP_PORT && r->io.direction == KVM_EXIT_IO_OUT) {
                vm->stop_value = ((uint8_t *)r + r->io.data_offset)[0];
                return MSB_VM_STOPPED;
            }
            port_io(vm);
            if (vm->watched) return MSB_VM_WATCHED;
            break;
        case KVM_EXIT_HLT:
            return MSB_VM_HALTED;
        case KVM_EXIT_MMIO:
            vm->mmio_exits++;
            if (mmio(vm))
                return fail(err, errlen, "guest touched unmapped MMIO at 0x%llx", (unsigned long long)r->mmio.phys_addr);
            break;
        case KVM_EXIT_SHUTDOWN:
            return fail(err, errlen, "the guest triple-faulted (shutdown exit)");
        case KVM_EXIT_INTERNAL_ERROR:
            if (msb_pvm_fixup(vm) == 0) {
                vm->fixups++;
                break;
            }
            return fail(err, errlen, "KVM internal error, suberror %u (instruction %02x %02x %02x)",
                        r->internal.suberror, r->emulation_failure.insn_bytes[0],
                        r->emulation_failure.insn_bytes[1], r->emulation_failure.insn_bytes[2]);
        case KVM_EXIT_FAIL_ENTRY:
            return fail(err, errlen, "VM entry failed, reason 0x%llx",
                        (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
        default:
            return fail(err, errlen, "unhandled exit reason %u", r->exit_reason);
        }
    }
    return fail(err, errlen, "the guest did not stop within %llu exits", (unsigned long long)max_exits);
}

int msb_vm_watch(struct msb_vm *vm, const char *text, size_t len) {
    if (len >= sizeof vm->watch) return -1;
    memcpy(vm->watch, text, len);
    vm->watch_len = len;
    vm->watched = 0;
    return 0;
}

size_t msb_vm_console(struct msb_vm *vm, const uint8_t **bytes) {
    *bytes = vm->console;
    return vm->uart.out_len;
}
