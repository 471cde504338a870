/* Streaming gzip inflation with one interface over two engines: ISA-L's igzip when the build
 * found libisal (about twice as fast here), zlib otherwise. Multi-member streams are handled by
 * the caller resetting after each member. */
#ifndef MSB_GUNZIP_H
#define MSB_GUNZIP_H

#include <stddef.h>

typedef struct msb_gunzip msb_gunzip;

/* Status of one msb_gunzip_run call. */
enum { MSB_GZ_OK = 0, MSB_GZ_MEMBER_END = 1, MSB_GZ_CORRUPT = -1 };

msb_gunzip *msb_gunzip_new(void);
void msb_gunzip_free(msb_gunzip *g);
/* Start the next gzip member (after MSB_GZ_MEMBER_END). */
int msb_gunzip_reset(msb_gunzip *g);
/* Inflate from in[0..*in_len) into out[0..*out_len); on return both lengths say what is left. */
int msb_gunzip_run(msb_gunzip *g, const unsigned char *in, size_t *in_len, unsigned char *out,
                   size_t *out_len);
/* "isa-l" or "zlib". */
const char *msb_gunzip_engine(void);

#endif
