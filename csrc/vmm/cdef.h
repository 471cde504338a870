/* The monitor's C API as cffi sees it: keep in step with api.h. */
int msb_vmm_abi_version(void);
