#include "vmm/api.h"

int msb_vmm_abi_version(void) { return MSB_VMM_ABI_VERSION; }

uint8_t *msb_gpa_check(const struct msb_guest_mem *mem, uint64_t gpa, uint64_t len) { return msb_gpa(mem, gpa, len); }
