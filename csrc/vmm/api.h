/* Public C API of the microsandbox KVM monitor (bound to Python with cffi, API mode). */
#ifndef MSB_VMM_API_H
#define MSB_VMM_API_H

/* Bumped whenever a declaration in cdef.h changes meaning, so Python can refuse a stale build. */
#define MSB_VMM_ABI_VERSION 1

int msb_vmm_abi_version(void);

#endif
