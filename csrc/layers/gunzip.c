#include "gunzip.h"

#include <stdlib.h>

#ifdef MSB_HAVE_ISAL
#include <isa-l/igzip_lib.h>

struct msb_gunzip { struct inflate_state s; };

msb_gunzip *msb_gunzip_new(void) {
    msb_gunzip *g = malloc(sizeof *g);
    if (g) msb_gunzip_reset(g);
    return g;
}

int msb_gunzip_reset(msb_gunzip *g) {
    isal_inflate_init(&g->s);
    g->s.crc_flag = ISAL_GZIP;
    return 0;
}

void msb_gunzip_free(msb_gunzip *g) { free(g); }

int msb_gunzip_run(msb_gunzip *g, const unsigned char *in, size_t *in_len, unsigned char *out,
                   size_t *out_len) {
    g->s.next_in = (unsigned char *)in;
    g->s.avail_in = (uint32_t)*in_len;
    g->s.next_out = out;
    g->s.avail_out = (uint32_t)*out_len;
    int rc = isal_inflate(&g->s);
    *in_len = g->s.avail_in;
    *out_len = g->s.avail_out;
    if (rc < 0 || rc == ISAL_NEED_DICT) return MSB_GZ_CORRUPT;
    return g->s.block_state == ISAL_BLOCK_FINISH ? MSB_GZ_MEMBER_END : MSB_GZ_OK;
}

const char *msb_gunzip_engine(void) { return "isa-l"; }

#else
#include <zlib.h>

struct msb_gunzip { z_stream z; };

msb_gunzip *msb_gunzip_new(void) {
    msb_gunzip *g = calloc(1, sizeof *g);
    if (g && inflateInit2(&g->z, 15 + 16) != Z_OK) { free(g); return NULL; }
    return g;
}

int msb_gunzip_reset(msb_gunzip *g) { return inflateReset(&g->z) == Z_OK ? 0 : -1; }

void msb_gunzip_free(msb_gunzip *g) {
    if (g) inflateEnd(&g->z);
    free(g);
}

int msb_gunzip_run(msb_gunzip *g, const unsigned char *in, size_t *in_len, unsigned char *out,
                   size_t *out_len) {
    g->z.next_in = (unsigned char *)in;
    g->z.avail_in = (unsigned int)*in_len;
    g->z.next_out = out;
    g->z.avail_out = (unsigned int)*out_len;
    int rc = inflate(&g->z, Z_NO_FLUSH);
    *in_len = g->z.avail_in;
    *out_len = g->z.avail_out;
    if (rc == Z_STREAM_END) return MSB_GZ_MEMBER_END;
    if (rc == Z_OK || (rc == Z_BUF_ERROR && g->z.avail_in == 0)) return MSB_GZ_OK;
    return MSB_GZ_CORRUPT;
}

const char *msb_gunzip_engine(void) { return "zlib"; }
#endif
