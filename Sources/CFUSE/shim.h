#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
