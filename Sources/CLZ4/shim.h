// CLZ4: liblz4's block API (lz4.h) and its high-compression variant (lz4hc.h).
#include <lz4.h>
#include <lz4hc.h>
