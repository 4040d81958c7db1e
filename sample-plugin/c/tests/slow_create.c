/*
 * slow_create.c: a library for LD_PRELOAD under tests/roundtrip.c. Its openat() holds up for
 * 0.4 s every creation (O_CREAT) of a name that contains "aapi-slow-create", then does what the C
 * library's does. The driver's concurrent-restore check names one file so: the create of that
 * file waits between making its missing parent directory and recording it, while another create
 * puts a file in that directory, which the rollback must then remove first.
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

int openat(int dirfd, const char *path, int flags, ...)
{
    static int (*next)(int, const char *, int, ...);
    unsigned mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, unsigned);
        va_end(ap);
        if (strstr(path, "aapi-slow-create") != NULL) {
            struct timespec pause = {0, 400000000L};
            nanosleep(&pause, NULL);
        }
    }
    if (next == NULL)
        *(void **)&next = dlsym(RTLD_NEXT, "openat");
    return next(dirfd, path, flags, mode);
}
