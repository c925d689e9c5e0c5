// zlib for the Import target: gzip-compressed trace files are read through
// gzopen/gzread, which read uncompressed files unchanged. Package.swift finds
// it through pkg-config (zlib); on Debian/Ubuntu the package is zlib1g-dev.
#ifndef XENBLK_CZLIB_SHIM_H
#define XENBLK_CZLIB_SHIM_H
#include <zlib.h>
#endif
