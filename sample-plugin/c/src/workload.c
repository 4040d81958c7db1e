/*
 * workload.c: the workload file writer (docs/workload-file.md), byte for byte what
 * aapi_sdk::workload::WorkloadWriter writes.
 *
 *   "AAPIWKLD" | u32 version 1 | u32 flags 0 | u32 S | snapshot | u32 H | host
 *   { u32 L = 48 + P | u64 size hint | u32 flags | u32 P | path | stamp }*
 *   stamp: i64 mtime seconds | u32 nanoseconds | i64 ctime seconds | u32 nanoseconds | u64 id
 *   u32 0 (end mark) | u64 record count | u32 CRC-32 of every byte before it
 *
 * All integers little-endian. The file is built in memory, written to "<path>.tmp.<pid>" with
 * mode 0600, synced and renamed over <path>, so a reader sees the whole file or none (DISC-4).
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SNAPSHOT_LEN 4096u
#define MAX_HOST_LEN 1024u
#define MAX_PATH_LEN 65535u
#define RECORD_FIXED 16u
#define STAMP_LEN 32u

/* CRC-32 as zlib and crc32fast compute it: reflected polynomial 0xEDB88320, initial value and
 * final XOR 0xFFFFFFFF, one table lookup per byte. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    uint32_t i;
    for (i = 0; i < 256; i++) {
        uint32_t c = i;
        int k;
        for (k = 0; k < 8; k++)
            c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (n-- > 0)
        crc = crc_table[(crc ^ *p++) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

static int encode(const char *fn, files_buf *b, const char *snapshot, const char *host,
                  const files_record *records, size_t n)
{
    size_t sl = strlen(snapshot), hl = strlen(host), i;
    int rc = AAPI_EOK;
    if (sl > MAX_SNAPSHOT_LEN)
        return fail(AAPI_EINVAL, "%s: snapshot id is longer than %u bytes", fn, MAX_SNAPSHOT_LEN);
    if (hl < 1 || hl > MAX_HOST_LEN)
        return fail(AAPI_EINVAL, "%s: backup host name must have 1 to %u bytes", fn, MAX_HOST_LEN);
    rc |= buf_append(b, AAPI_WKLD_MAGIC, 8);
    rc |= buf_append_u32(b, AAPI_WKLD_FORMAT_VERSION);
    rc |= buf_append_u32(b, 0);
    rc |= buf_append_u32(b, (uint32_t)sl);
    rc |= buf_append(b, snapshot, sl);
    rc |= buf_append_u32(b, (uint32_t)hl);
    rc |= buf_append(b, host, hl);
    for (i = 0; i < n && rc == AAPI_EOK; i++) {
        size_t pl = strlen(records[i].path);
        if (pl < 1 || pl > MAX_PATH_LEN)
            return fail(AAPI_EINVAL, "%s: object path %s is longer than %u bytes", fn,
                        records[i].path, MAX_PATH_LEN);
        rc |= buf_append_u32(b, (uint32_t)(RECORD_FIXED + pl + STAMP_LEN));
        rc |= buf_append_u64(b, records[i].size_hint);
        rc |= buf_append_u32(b, records[i].flags);
        rc |= buf_append_u32(b, (uint32_t)pl);
        rc |= buf_append(b, records[i].path, pl);
        rc |= buf_append_u64(b, (uint64_t)(int64_t)records[i].mtime.tv_sec);
        rc |= buf_append_u32(b, (uint32_t)records[i].mtime.tv_nsec);
        rc |= buf_append_u64(b, (uint64_t)(int64_t)records[i].ctime.tv_sec);
        rc |= buf_append_u32(b, (uint32_t)records[i].ctime.tv_nsec);
        rc |= buf_append_u64(b, records[i].id);
    }
    rc |= buf_append_u32(b, 0);
    rc |= buf_append_u64(b, (uint64_t)n);
    if (rc != AAPI_EOK)
        return fail(AAPI_ENOMEM, "%s: out of memory for a workload file", fn);
    if (buf_append_u32(b, crc32_update(0, b->p, b->len)) != AAPI_EOK)
        return fail(AAPI_ENOMEM, "%s: out of memory for a workload file", fn);
    return AAPI_EOK;
}

int workload_write(const char *fn, const char *path, const char *snapshot, const char *host,
                   const files_record *records, size_t n)
{
    files_buf b = {0};
    char *tmp;
    int fd, err = 0, rc;
    size_t len = strlen(path) + 32;

    rc = encode(fn, &b, snapshot, host, records, n);
    if (rc != AAPI_EOK) {
        buf_free(&b);
        return rc;
    }
    tmp = malloc(len);
    if (tmp == NULL) {
        buf_free(&b);
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    }
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    /* SEC-2: created 0600 from the start, never readable by others even for a moment. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = fail_errno(errno, "%s: cannot create workload file %s", fn, tmp);
        free(tmp);
        buf_free(&b);
        return rc;
    }
    err = write_all(fd, b.p, b.len);
    if (err == 0 && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err == 0 && rename(tmp, path) != 0)
        err = errno;
    if (err != 0) {
        rc = fail_errno(err, "%s: cannot write workload file %s", fn, path);
        (void)unlink(tmp);
    }
    free(tmp);
    buf_free(&b);
    return rc;
}
