/* Guest RAM and the one accessor every device uses to reach it. */
#ifndef MSB_VMM_MEMORY_H
#define MSB_VMM_MEMORY_H

#include <stddef.h>
#include <stdint.h>

struct msb_guest_mem {
    uint8_t *host;  /* mapping of guest physical 0..size */
    uint64_t size;
};

/* Host pointer to [gpa, gpa+len) or NULL when any byte of it lies outside guest RAM
 * (overflow-safe). No device touches guest memory any other way. */
static inline uint8_t *msb_gpa(const struct msb_guest_mem *mem, uint64_t gpa, uint64_t len) {
    if (len > mem->size || gpa > mem->size - len) return NULL;
    return mem->host + gpa;
}

#endif
