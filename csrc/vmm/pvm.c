/* kvm-pvm work-arounds (spec vmm.md section 0): its instruction emulator stops KVM_RUN on a few
 * instructions an ordinary guest kernel executes in ring 0. Each is either skipped (it has no
 * effect a guest relies on here: fences, clac/stac, fwait, fninit, ldmxcsr/stmxcsr) or, for int3,
 * turned into the #BP exception the guest expected. On hardware KVM none of this is ever reached. */
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/api.h"

/* Length of `0F AE /2|/3 modrm...` (ldmxcsr/stmxcsr) from its ModRM, SIB and displacement. */
static int modrm_length(const uint8_t *b, int avail) {
    if (avail < 3) return -1;
    uint8_t modrm = b[2], mod = modrm >> 6, rm = modrm & 7;
    int len = 3;
    if (mod != 3 && rm == 4) {
        if (avail < 4) return -1;
        if (mod == 0 && (b[3] & 7) == 5) len += 4;
        len += 1;
    }
    if (mod == 0 && rm == 5) len += 4;
    else if (mod == 1) len += 1;
    else if (mod == 2) len += 4;
    return len;
}

static int skip_length(const uint8_t *b, int n) {
    if (n >= 1 && b[0] == 0x9B) return 1;                                             /* fwait */
    if (n >= 2 && b[0] == 0xDB && b[1] == 0xE3) return 2;                             /* fninit */
    if (n >= 3 && b[0] == 0x0F && b[1] == 0x01 && (b[2] == 0xCA || b[2] == 0xCB)) return 3;  /* clac/stac */
    if (n >= 3 && b[0] == 0x0F && b[1] == 0xAE && (b[2] == 0xE8 || b[2] == 0xF0 || b[2] == 0xF8)) return 3;
    if (n >= 3 && b[0] == 0x0F && b[1] == 0xAE && ((b[2] >> 3) & 7) >= 2 && ((b[2] >> 3) & 7) <= 3 && b[2] < 0xC0)
        return modrm_length(b, n);                                                    /* ldmxcsr/stmxcsr */
    return -1;
}

int msb_pvm_fixup(struct msb_vm *vm) {
    struct kvm_run *r = vm->run;
    if (r->emulation_failure.suberror != KVM_INTERNAL_ERROR_EMULATION ||
        !(r->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES))
        return -1;
    const uint8_t *b = r->emulation_failure.insn_bytes;
    int n = r->emulation_failure.insn_size;
    struct kvm_regs regs;
    if (ioctl(vm->vcpu, KVM_GET_REGS, &regs) < 0) return -1;
    if (n >= 1 && b[0] == 0xCC) {
        struct kvm_vcpu_events events;
        if (ioctl(vm->vcpu, KVM_GET_VCPU_EVENTS, &events) < 0) return -1;
        regs.rip += 1;
        events.exception.injected = 1;
        events.exception.nr = 3;
        events.exception.has_error_code = 0;
        if (ioctl(vm->vcpu, KVM_SET_REGS, &regs) < 0) return -1;
        return ioctl(vm->vcpu, KVM_SET_VCPU_EVENTS, &events) < 0 ? -1 : 0;
    }
    int len = skip_length(b, n);
    if (len < 0) return -1;
    regs.rip += (uint64_t)len;
    return ioctl(vm->vcpu, KVM_SET_REGS, &regs) < 0 ? -1 : 0;
}
