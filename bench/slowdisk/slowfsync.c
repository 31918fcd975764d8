/* LD_PRELOAD shim for bench/gateway_throughput.py --fsync-ms: every fsync/fdatasync of the process
 * takes SLOW_FSYNC_US microseconds longer (a gateway on an SD card or a USB stick), then does the
 * real call. Nothing else changes. Build: cc -shared -fPIC -O2 -o slowfsync.so slowfsync.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned delay_us(void) {
    const char *s = getenv("SLOW_FSYNC_US");
    return s ? (unsigned)strtoul(s, NULL, 10) : 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    usleep(delay_us());
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    usleep(delay_us());
    return real(fd);
}
