#include "vmm/api.h"

int msb_vmm_abi_version(void) { return MSB_VMM_ABI_VERSION; }
