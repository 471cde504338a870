/* Booting a Linux vmlinux through its PVH entry (spec vmm.md 1.2, 2.3, 2.5, 3.1): the in-kernel
 * irqchip and PIT, CPUID passed through with the hypervisor bit, boot MSRs, LAPIC LINT0/LINT1 in
 * virtual-wire mode, and the 32-bit flat protected-mode state PVH starts in. The kernel image,
 * start_info, memory map and command line are placed in guest RAM by the caller. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/api.h"

#define GDT_GPA 0x500u

static int set_cpuid(struct msb_vm *vm) {
    size_t size = sizeof(struct kvm_cpuid2) + 256 * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *cpuid = calloc(1, size);
    if (!cpuid) return -1;
    cpuid->nent = 256;
    int rc = ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, cpuid);
    for (uint32_t i = 0; rc == 0 && i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        if (e->function == 1) {
            e->ebx &= 0x0000FFFF;          /* APIC id 0, one logical CPU */
            e->ebx |= 1u << 16;
            e->ecx |= 1u << 31;            /* running under a hypervisor */
            e->ecx &= ~(1u << 13);         /* no CX16: kvm-pvm cannot emulate cmpxchg16b */
        }
    }
    if (rc == 0) rc = ioctl(vm->vcpu, KVM_SET_CPUID2, cpuid);
    free(cpuid);
    return rc;
}

static int set_msrs(struct msb_vm *vm) {
    struct {
        struct kvm_msrs head;
        struct kvm_msr_entry entries[2];
    } msrs = {.head = {.nmsrs = 2},
              .entries = {{.index = 0x1A0, .data = 1}, {.index = 0x2FF, .data = (1u << 11) | 6}}};
    return ioctl(vm->vcpu, KVM_SET_MSRS, &msrs) == 2 ? 0 : -1;
}

static int set_lapic(struct msb_vm *vm) {
    struct kvm_lapic_state lapic;
    if (ioctl(vm->vcpu, KVM_GET_LAPIC, &lapic) < 0) return -1;
    uint32_t lint0, lint1;
    memcpy(&lint0, lapic.regs + 0x350, 4);
    memcpy(&lint1, lapic.regs + 0x360, 4);
    lint0 = (lint0 & ~0x700u) | 0x700u;   /* ExtINT */
    lint1 = (lint1 & ~0x700u) | 0x400u;   /* NMI */
    memcpy(lapic.regs + 0x350, &lint0, 4);
    memcpy(lapic.regs + 0x360, &lint1, 4);
    return ioctl(vm->vcpu, KVM_SET_LAPIC, &lapic);
}

static struct kvm_segment flat(uint16_t selector, uint8_t type) {
    return (struct kvm_segment){.base = 0, .limit = 0xFFFFFFFF, .selector = selector, .type = type,
                                .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
}

int msb_vm_enter_pvh(struct msb_vm *vm, uint32_t entry, uint32_t start_info) {
    static const uint64_t gdt[4] = {0, 0x00CF9B000000FFFFull, 0x00CF93000000FFFFull, 0x008F8B000000FFFFull};
    uint8_t *at = msb_gpa(&vm->mem, GDT_GPA, sizeof gdt);
    if (!at || !msb_gpa(&vm->mem, start_info, 56)) return -1;
    memcpy(at, gdt, sizeof gdt);
    if (set_cpuid(vm) || set_msrs(vm) || set_lapic(vm)) return -1;
    struct kvm_fpu fpu = {.fcw = 0x37F, .mxcsr = 0x1F80};
    struct kvm_sregs sregs;
    if (ioctl(vm->vcpu, KVM_SET_FPU, &fpu) < 0 || ioctl(vm->vcpu, KVM_GET_SREGS, &sregs) < 0) return -1;
    sregs.cs = flat(0x08, 0xB);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat(0x10, 0x3);
    sregs.tr = (struct kvm_segment){.base = 0, .limit = 0x67, .selector = 0x18, .type = 0xB, .present = 1};
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = sizeof gdt - 1;
    sregs.cr0 = 0x11;
    sregs.cr4 = 0;
    sregs.efer = 0;
    struct kvm_regs regs = {.rip = entry, .rbx = start_info, .rflags = 0x2};
    if (ioctl(vm->vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vm->vcpu, KVM_SET_REGS, &regs) < 0) return -1;
    return 0;
}

/* 64-bit mode at `rip` with the first GiB identity-mapped by 2 MiB pages (tables at 0x9000-0xBFFF),
 * for hand-written test guests: the state a 64-bit kernel is in after its own early setup. */
int msb_vm_enter_long_mode(struct msb_vm *vm, uint64_t rip, uint64_t rsp) {
    static const uint64_t gdt[3] = {0, 0x00AF9B000000FFFFull, 0x00CF93000000FFFFull};
    enum { PML4 = 0x9000, PDPT = 0xA000, PD = 0xB000 };
    uint8_t *tables = msb_gpa(&vm->mem, PML4, 0x3000), *at = msb_gpa(&vm->mem, GDT_GPA, sizeof gdt);
    if (!tables || !at) return -1;
    uint64_t pml4e = PDPT | 3, pdpte = PD | 3;
    memset(tables, 0, 0x3000);
    memcpy(tables, &pml4e, 8);
    memcpy(tables + 0x1000, &pdpte, 8);
    for (uint64_t i = 0; i < 512; i++) {
        uint64_t pde = (i << 21) | 0x83; /* present, writable, 2 MiB page */
        memcpy(tables + 0x2000 + 8 * i, &pde, 8);
    }
    memcpy(at, gdt, sizeof gdt);
    struct kvm_sregs sregs;
    if (ioctl(vm->vcpu, KVM_GET_SREGS, &sregs) < 0) return -1;
    sregs.cs = flat(0x08, 0xB);
    sregs.cs.l = 1;
    sregs.cs.db = 0;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat(0x10, 0x3);
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = sizeof gdt - 1;
    sregs.cr3 = PML4;
    sregs.cr4 = 0x20;                 /* PAE */
    sregs.cr0 = 0x80000011;           /* PG, ET, PE */
    sregs.efer = 0x500;               /* LME, LMA */
    struct kvm_regs regs = {.rip = rip, .rsp = rsp, .rflags = 0x2};
    if (ioctl(vm->vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vm->vcpu, KVM_SET_REGS, &regs) < 0) return -1;
    return 0;
}

int msb_vm_add_irqchip(struct msb_vm *vm) {
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm, KVM_CREATE_IRQCHIP, 0) < 0 || ioctl(vm->vm, KVM_CREATE_PIT2, &pit) < 0) return -1;
    vm->irqchip = 1;
    return 0;
}
