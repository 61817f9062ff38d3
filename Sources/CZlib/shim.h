#include <zlib.h>

// inflateInit2 and deflateInit2 are macros (they pass the library version and struct size),
// which Swift cannot call.
static inline int wkfs_inflate_init(z_stream *stream) {
    // 15 + 32: a window of 32 KiB, gzip or zlib header detected.
    return inflateInit2(stream, 15 + 32);
}

static inline int wkfs_deflate_init_gzip(z_stream *stream, int level) {
    // 15 + 16: a window of 32 KiB, written with a gzip header and trailer.
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
