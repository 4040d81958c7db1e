/*
 * roundtrip.c: a minimal local driver for `files` workload plugins, in C99 with libc and
 * include/aapi.h only.
 *
 *     roundtrip path/to/plugin.so
 *
 * It loads the plugin with dlopen(), builds a small directory tree with odd names, and runs the
 * job flow of docs/contract.md §1 the way a framework does, one init..terminate cycle per job:
 *
 *   discovery (2 backup hosts, `copy` snapshot) -> a backup session per workload file, reading
 *   the objects on 4 threads when the plugin declares AAPI_CAP_CONCURRENT_OBJECTS -> postprocess
 *   -> restore under an alternate root -> compare the restored tree with the original (types,
 *   bytes, modes, mtimes, link targets, nothing extra).
 *
 * It then checks an incremental discovery, a cancelled discovery (no file or snapshot left), a
 * snapshot directory below a directory that others may write into (refused) and the default one, a
 * snapshot directory too long for the paths of its copies (refused before anything is made), a
 * failed restore with AAPI_CREATE_OVERWRITE (the replaced file comes back, the directories that
 * existed get their mtimes back), a restore whose paths lead through symbolic links below the
 * alternate root (refused; nothing outside it changes, the rollback included), a failed restore
 * whose concurrent creates recorded a directory after an object in it (with tests/slow_create.c
 * preloaded, they do), the removal of a snapshot 200 directories deep with few descriptors, and a
 * set of bad calls: call order, bad handles, buffer sizes, the last-error message.
 *
 * Exit status 0 when everything held, 1 when a check failed (each failure is printed), 2 on a
 * usage or setup error. Set ROUNDTRIP_VERBOSE=1 to see the plugin's log lines. Built with
 * -fsanitize=address,undefined (make SANITIZE=1 check) or run under valgrind, it makes the
 * plugin's memory errors and leaks visible.
 */
#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "aapi.h"

/* ------------------------------------------------------------------------------------------ */
/* The plugin's entry points                                                                   */
/* ------------------------------------------------------------------------------------------ */

static struct {
    aapi_pgn_init_fn pgn_init;
    aapi_pgn_claim_fn pgn_claim;
    aapi_open_server_fn open_server;
    aapi_close_server_fn close_server;
    aapi_get_server_prop_fn get_server_prop;
    aapi_discovery_fn discovery;
    aapi_postprocess_fn postprocess;
    aapi_get_snappath_from_realpath_fn get_snappath;
    aapi_open_object_fn open_object;
    aapi_create_object_fn create_object;
    aapi_delete_object_fn delete_object;
    aapi_read_object_fn read_object;
    aapi_write_object_fn write_object;
    aapi_flush_fn flush;
    aapi_close_object_fn close_object;
    aapi_get_object_prop_fn get_object_prop;
    aapi_get_object_prop_byname_fn get_object_prop_byname;
    aapi_set_object_utimes_fn set_object_utimes;
    aapi_restore_preprocess_fn restore_preprocess;
    aapi_restore_postprocess_fn restore_postprocess;
    aapi_terminate_fn terminate;
    aapi_get_last_error_fn get_last_error;
} P;

static int failures;
static aapi_plugin_info_t info;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("roundtrip: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* The calling thread's last-error message of the plugin. */
static const char *last_error(void)
{
    static __thread char msg[2048];
    size_t size = sizeof msg;
    if (P.get_last_error(msg, &size) != AAPI_EOK)
        snprintf(msg, sizeof msg, "(no message)");
    return msg;
}

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            failures++;                                                                        \
            fprintf(stderr, "FAIL line %d: ", __LINE__);                                       \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

#define EXPECT(call, want)                                                                     \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != (want)) {                                                                   \
            failures++;                                                                        \
            fprintf(stderr, "FAIL line %d: %s gave %s, expected %s (%s)\n", __LINE__, #call,   \
                    aapi_code_name(rc_), aapi_code_name(want), last_error());                  \
        }                                                                                      \
    } while (0)

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (p == NULL)
        die("the plugin does not export %s (LOAD-1)", name);
    return p;
}

static void load(const char *path)
{
    const aapi_abi_marker_t *m;
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        die("cannot load %s: %s", path, dlerror());
    /* LOAD-7: the marker first, before any plugin code runs. */
    m = sym(lib, AAPI_MARKER_SYMBOL);
    if (memcmp(m->magic, AAPI_ABI_MAGIC, 8) != 0 || m->abi_major != AAPI_ABI_MAJOR ||
        m->abi_minor > AAPI_ABI_MINOR)
        die("%s: bad ABI marker (magic, or version %u.%u)", path, m->abi_major, m->abi_minor);
    P.pgn_init = (aapi_pgn_init_fn)sym(lib, "aapi_pgn_init");
    P.pgn_claim = (aapi_pgn_claim_fn)sym(lib, "aapi_pgn_claim");
    P.open_server = (aapi_open_server_fn)sym(lib, "aapi_open_server");
    P.close_server = (aapi_close_server_fn)sym(lib, "aapi_close_server");
    P.get_server_prop = (aapi_get_server_prop_fn)sym(lib, "aapi_get_server_prop");
    P.discovery = (aapi_discovery_fn)sym(lib, "aapi_discovery");
    P.postprocess = (aapi_postprocess_fn)sym(lib, "aapi_postprocess");
    P.get_snappath =
        (aapi_get_snappath_from_realpath_fn)sym(lib, "aapi_get_snappath_from_realpath");
    P.open_object = (aapi_open_object_fn)sym(lib, "aapi_open_object");
    P.create_object = (aapi_create_object_fn)sym(lib, "aapi_create_object");
    P.delete_object = (aapi_delete_object_fn)sym(lib, "aapi_delete_object");
    P.read_object = (aapi_read_object_fn)sym(lib, "aapi_read_object");
    P.write_object = (aapi_write_object_fn)sym(lib, "aapi_write_object");
    P.flush = (aapi_flush_fn)sym(lib, "aapi_flush");
    P.close_object = (aapi_close_object_fn)sym(lib, "aapi_close_object");
    P.get_object_prop = (aapi_get_object_prop_fn)sym(lib, "aapi_get_object_prop");
    P.get_object_prop_byname =
        (aapi_get_object_prop_byname_fn)sym(lib, "aapi_get_object_prop_byname");
    P.set_object_utimes = (aapi_set_object_utimes_fn)sym(lib, "aapi_set_object_utimes");
    P.restore_preprocess = (aapi_restore_preprocess_fn)sym(lib, "aapi_restore_preprocess");
    P.restore_postprocess = (aapi_restore_postprocess_fn)sym(lib, "aapi_restore_postprocess");
    P.terminate = (aapi_terminate_fn)sym(lib, "aapi_terminate");
    P.get_last_error = (aapi_get_last_error_fn)sym(lib, "aapi_get_last_error");
    /* LOAD-7: the library is never dlclose()d. */
}

/* ------------------------------------------------------------------------------------------ */
/* Framework side: callbacks and sessions                                                      */
/* ------------------------------------------------------------------------------------------ */

static int g_cancel;      /* the keepalive answers AAPI_ECANCELLED when set */
static long g_keepalives; /* keepalives received */

static void cb_log(void *ctx, uint32_t level, const char *message)
{
    (void)ctx;
    if (getenv("ROUNDTRIP_VERBOSE") != NULL)
        fprintf(stderr, "  [plugin log %u] %s\n", (unsigned)level, message);
}

static int cb_keepalive(void *ctx)
{
    (void)ctx;
    g_keepalives++;
    return g_cancel ? AAPI_ECANCELLED : AAPI_EOK;
}

static int cb_credential(void *ctx, const char *key, char *buf, size_t *buf_size)
{
    (void)ctx;
    (void)key;
    (void)buf;
    (void)buf_size;
    return AAPI_ENOENT;
}

static aapi_session_def_t session(uint32_t op, uint32_t sched, const char *snapid,
                                  const aapi_property_t *props, size_t nprops)
{
    aapi_session_def_t s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    s.abi_major = AAPI_ABI_MAJOR;
    s.abi_minor = AAPI_ABI_MINOR;
    s.sd_operation = op;
    s.sd_schedtype = sched;
    s.sd_job_id = "job/42 é";
    s.sd_backup_host = "bh1";
    s.sd_snapid = snapid;
    s.sd_properties = props;
    s.sd_property_count = nprops;
    s.sd_call_budget_ms = AAPI_DEFAULT_CALL_BUDGET_MS;
    s.sd_log_callback = cb_log;
    s.sd_keepalive_callback = cb_keepalive;
    s.sd_credential_callback = cb_credential;
    return s;
}

/* init + claim, as every job starts (LIFE-9). */
static void begin_cycle(void)
{
    aapi_host_info_t host;
    memset(&host, 0, sizeof host);
    host.struct_size = sizeof host;
    host.abi_major = AAPI_ABI_MAJOR;
    host.abi_minor = AAPI_ABI_MINOR;
    host.framework_name = "roundtrip";
    host.framework_version = "1";
    host.log_callback = cb_log;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT(P.pgn_init(&host, &info), AAPI_EOK);
    EXPECT(P.pgn_claim("files"), AAPI_EOK);
}

static aapi_server_t open_session(const aapi_session_def_t *s)
{
    aapi_server_t h = 0;
    EXPECT(P.open_server("localhost", s, &h), AAPI_EOK);
    return h;
}

/* ------------------------------------------------------------------------------------------ */
/* Files and trees                                                                              */
/* ------------------------------------------------------------------------------------------ */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p == NULL)
        die("out of memory");
    snprintf(p, n, "%s%s%s", a, b[0] == '/' ? "" : "/", b);
    return p;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) != 0 || close(fd) != 0)
        die("cannot write %s: %s", path, strerror(errno));
}

static unsigned char *read_file(const char *path, size_t *len)
{
    struct stat st;
    unsigned char *p;
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0)
        return NULL;
    p = malloc((size_t)st.st_size + 1);
    if (p == NULL || read(fd, p, (size_t)st.st_size) != (ssize_t)st.st_size)
        die("cannot read %s", path);
    close(fd);
    *len = (size_t)st.st_size;
    return p;
}

static void set_mtime(const char *path, time_t sec, long nsec)
{
    struct timespec ts[2];
    ts[0].tv_sec = sec;
    ts[0].tv_nsec = nsec;
    ts[1] = ts[0];
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0)
        die("cannot set times of %s: %s", path, strerror(errno));
}

static void remove_all(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        (void)chmod(path, 0700);
        d = opendir(path);
        while (d != NULL && (e = readdir(d)) != NULL) {
            char *c;
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            c = join(path, e->d_name);
            remove_all(c);
            free(c);
        }
        if (d != NULL)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Number of entries below `path` (not counting `path`). */
static long count_below(const char *path)
{
    long n = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        struct stat st;
        char *c;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        c = join(path, e->d_name);
        n++;
        if (lstat(c, &st) == 0 && S_ISDIR(st.st_mode))
            n += count_below(c);
        free(c);
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static char *g_work, *g_tree;
static long g_tree_objects; /* objects the tree holds (the fifo excluded) */

/* A tree with the cases a backup gets wrong: odd names, empty and multi-MiB files, symlinks
 * (one dangling), a read-only directory with contents, a fifo that must be skipped. */
static void make_tree(void)
{
    static const char *dirs[] = {"sub dir", "sub dir/nested", "ro-dir"};
    unsigned char *big;
    size_t i, big_len = 3 * 1024 * 1024 + 123;
    uint32_t x = 12345;
    char *p;

    g_tree = join(g_work, "tree");
    if (mkdir(g_tree, 0755) != 0)
        die("mkdir %s: %s", g_tree, strerror(errno));
    for (i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        p = join(g_tree, dirs[i]);
        if (mkdir(p, 0750) != 0)
            die("mkdir %s: %s", p, strerror(errno));
        free(p);
    }
    big = malloc(big_len);
    if (big == NULL)
        die("out of memory");
    for (i = 0; i < big_len; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (unsigned char)(x >> 16);
    }
    p = join(g_tree, "big.bin");
    write_file(p, big, big_len, 0640);
    free(p);
    free(big);
    p = join(g_tree, "empty");
    write_file(p, "", 0, 0600);
    free(p);
    p = join(g_tree, "small.txt");
    write_file(p, "hello\n", 6, 0644);
    free(p);
    p = join(g_tree, "run.sh");
    write_file(p, "#!/bin/sh\necho hi\n", 18, 0755);
    free(p);
    p = join(g_tree, "name\nwith newline\tand tab");
    write_file(p, "odd\n", 4, 0644);
    free(p);
    p = join(g_tree, "latin1-\xe9\xff");
    write_file(p, "bytes\n", 6, 0644);
    free(p);
    p = join(g_tree, "sub dir/nested/deep.txt");
    write_file(p, "deep\n", 5, 0600);
    free(p);
    p = join(g_tree, "ro-dir/inside");
    write_file(p, "inside a read-only directory\n", 29, 0444);
    free(p);
    p = join(g_tree, "link");
    if (symlink("small.txt", p) != 0)
        die("symlink: %s", strerror(errno));
    free(p);
    p = join(g_tree, "sub dir/dangling");
    if (symlink("/nonexistent/target with space", p) != 0)
        die("symlink: %s", strerror(errno));
    free(p);
    p = join(g_tree, "pipe");
    if (mkfifo(p, 0600) != 0)
        die("mkfifo: %s", strerror(errno));
    free(p);
    g_tree_objects = 1 + 3 + 8 + 2; /* root, dirs, files, symlinks */
    if (geteuid() == 0) {
        /* As root, setuid bits are restored: the owner must be set before the mode, since
         * changing the owner clears them. */
        p = join(g_tree, "setuid");
        write_file(p, "#!/bin/sh\n", 10, 04755);
        set_mtime(p, 1400000000, 42);
        free(p);
        g_tree_objects++;
    }

    /* Fixed past times (with nanoseconds) so that restored times compare exactly; directories
     * last, as their contents are written. */
    {
        static const char *all[] = {"big.bin", "empty", "small.txt", "run.sh",
                                    "name\nwith newline\tand tab", "latin1-\xe9\xff",
                                    "sub dir/nested/deep.txt", "ro-dir/inside", "link",
                                    "sub dir/dangling", "sub dir/nested", "sub dir", "ro-dir"};
        for (i = 0; i < sizeof all / sizeof all[0]; i++) {
            p = join(g_tree, all[i]);
            set_mtime(p, 1500000000 + (time_t)i * 1000, 123456789);
            free(p);
        }
        set_mtime(g_tree, 1600000000, 5);
        p = join(g_tree, "ro-dir");
        if (chmod(p, 0555) != 0)
            die("chmod: %s", strerror(errno));
        free(p);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Workload files (docs/workload-file.md), read and checked like a framework does              */
/* ------------------------------------------------------------------------------------------ */

typedef struct record {
    char *path;
    uint64_t size_hint;
    uint32_t flags;
} record;

typedef struct wfile {
    char *snapshot;
    char *host;
    record *recs;
    size_t n;
} wfile;

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    while (n-- > 0) {
        int k;
        crc ^= *p++;
        for (k = 0; k < 8; k++)
            crc = (crc & 1u) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

static uint32_t u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t u64le(const unsigned char *p) { return u32le(p) | (uint64_t)u32le(p + 4) << 32; }

static char *dup_bytes(const unsigned char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        die("out of memory");
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Returns 0 and fills `w`, or -1 (with a FAIL printed) when the file is not valid. */
static int read_workload(const char *path, wfile *w)
{
    size_t len, off = 0, cap = 0;
    unsigned char *b = read_file(path, &len);
    struct stat st;
    uint32_t sl, hl;
    memset(w, 0, sizeof *w);
    if (b == NULL) {
        CHECK(0, "workload file %s is missing", path);
        return -1;
    }
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "%s is not mode 0600 (DISC-4)",
          path);
#define NEED(n)                                                                                \
    if (len - off < (size_t)(n)) {                                                             \
        CHECK(0, "workload file %s is truncated", path);                                       \
        free(b);                                                                               \
        return -1;                                                                             \
    }
    NEED(24);
    CHECK(memcmp(b, AAPI_WKLD_MAGIC, 8) == 0 && u32le(b + 8) == AAPI_WKLD_FORMAT_VERSION &&
              u32le(b + 12) == 0,
          "%s: bad magic, version or header flags", path);
    sl = u32le(b + 16);
    off = 20;
    NEED(sl + 4);
    w->snapshot = dup_bytes(b + off, sl);
    off += sl;
    hl = u32le(b + off);
    off += 4;
    NEED(hl);
    w->host = dup_bytes(b + off, hl);
    off += hl;
    for (;;) {
        uint32_t rl, pl;
        NEED(4);
        rl = u32le(b + off);
        off += 4;
        if (rl == 0)
            break;
        NEED(rl);
        pl = u32le(b + off + 12);
        CHECK(rl >= 17 && pl >= 1 && 16 + pl <= rl, "%s: bad record lengths", path);
        if (w->n == cap) {
            cap = cap ? cap * 2 : 16;
            w->recs = realloc(w->recs, cap * sizeof *w->recs);
            if (w->recs == NULL)
                die("out of memory");
        }
        w->recs[w->n].size_hint = u64le(b + off);
        w->recs[w->n].flags = u32le(b + off + 8);
        w->recs[w->n].path = dup_bytes(b + off + 16, pl);
        w->n++;
        off += rl;
    }
    NEED(12);
    CHECK(u64le(b + off) == w->n, "%s: record count mismatch", path);
    CHECK(u32le(b + off + 8) == crc32_of(b, off + 8), "%s: CRC-32 mismatch", path);
    CHECK(off + 12 == len, "%s: bytes after the trailer", path);
#undef NEED
    free(b);
    return 0;
}

static void wfile_free(wfile *w)
{
    size_t i;
    for (i = 0; i < w->n; i++)
        free(w->recs[i].path);
    free(w->recs);
    free(w->snapshot);
    free(w->host);
}

/* ------------------------------------------------------------------------------------------ */
/* Backup: read the objects of one workload file, on several threads                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct item {
    char *path;
    uint32_t flags;
    aapi_object_prop_t prop;
    unsigned char *data;
    size_t len;
} item;

typedef struct backup_job {
    aapi_server_t server;
    const char *snapshot;
    item *items;
    size_t n, next;
    pthread_mutex_t lock;
} backup_job;

static pthread_mutex_t g_fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void thread_fail(const char *what, const char *path, int rc)
{
    pthread_mutex_lock(&g_fail_lock);
    failures++;
    fprintf(stderr, "FAIL: %s %s gave %s (%s)\n", what, path, aapi_code_name(rc), last_error());
    pthread_mutex_unlock(&g_fail_lock);
}

static void backup_one(backup_job *job, item *it)
{
    char *snap;
    size_t size = 0, cap = 0, got;
    unsigned char buf[65536];
    aapi_object_t obj;
    int rc;
    /* RC-6: a size query first, then the call with a buffer of the size reported. */
    rc = P.get_snappath(job->server, job->snapshot, it->path, NULL, &size);
    if (rc != AAPI_EBUFSIZE || size == 0) {
        thread_fail("size query of get_snappath_from_realpath", it->path, rc);
        return;
    }
    snap = malloc(size);
    if (snap == NULL)
        die("out of memory");
    rc = P.get_snappath(job->server, job->snapshot, it->path, snap, &size);
    if (rc != AAPI_EOK) {
        thread_fail("get_snappath_from_realpath", it->path, rc);
        free(snap);
        return;
    }
    rc = P.open_object(job->server, snap, AAPI_OPEN_READ, &obj);
    free(snap);
    if (rc != AAPI_EOK) {
        thread_fail("open_object", it->path, rc);
        return;
    }
    it->prop.struct_size = sizeof it->prop;
    rc = P.get_object_prop(obj, &it->prop);
    if (rc != AAPI_EOK)
        thread_fail("get_object_prop", it->path, rc);
    for (;;) {
        rc = P.read_object(obj, buf, sizeof buf, &got);
        if (rc != AAPI_EOK) {
            thread_fail("read_object", it->path, rc);
            break;
        }
        if (got == 0)
            break;
        if (it->len + got > cap) {
            cap = (it->len + got) * 2;
            it->data = realloc(it->data, cap);
            if (it->data == NULL)
                die("out of memory");
        }
        memcpy(it->data + it->len, buf, got);
        it->len += got;
    }
    rc = P.read_object(obj, buf, sizeof buf, &got); /* OBJ-1: 0 again after the end */
    if (rc != AAPI_EOK || got != 0)
        thread_fail("read_object after the end", it->path, rc);
    rc = P.close_object(obj);
    if (rc != AAPI_EOK)
        thread_fail("close_object", it->path, rc);
    if (P.close_object(obj) != AAPI_EBADHANDLE) /* LIFE-6: a second close */
        thread_fail("second close_object (expected AAPI_EBADHANDLE)", it->path, rc);
}

static void *backup_worker(void *arg)
{
    backup_job *job = arg;
    for (;;) {
        item *it;
        pthread_mutex_lock(&job->lock);
        it = job->next < job->n ? &job->items[job->next++] : NULL;
        pthread_mutex_unlock(&job->lock);
        if (it == NULL)
            return NULL;
        if (!(it->flags & AAPI_WKLD_UNCHANGED)) /* DISC-10 */
            backup_one(job, it);
    }
}

/* One backup child job over the records of `w`; the items are appended to *items. */
static void backup_child_job(const wfile *w, const aapi_property_t *props, size_t nprops,
                             item **items, size_t *nitems)
{
    aapi_session_def_t s;
    backup_job job;
    pthread_t threads[4];
    size_t i, nthreads;
    item *all;

    begin_cycle();
    s = session(AAPI_OP_BACKUP, AAPI_SCHED_FULL, w->snapshot, props, nprops);
    memset(&job, 0, sizeof job);
    job.server = open_session(&s);
    job.snapshot = w->snapshot;
    job.n = w->n;
    job.items = calloc(w->n ? w->n : 1, sizeof *job.items);
    if (job.items == NULL)
        die("out of memory");
    for (i = 0; i < w->n; i++) {
        job.items[i].path = strdup(w->recs[i].path);
        job.items[i].flags = w->recs[i].flags;
    }
    pthread_mutex_init(&job.lock, NULL);
    /* THR-1: object calls run at once only when the plugin says they may. */
    nthreads = (info.capabilities & AAPI_CAP_CONCURRENT_OBJECTS) ? 4 : 1;
    if (nthreads > info.max_concurrent_objects)
        nthreads = info.max_concurrent_objects ? info.max_concurrent_objects : 1;
    for (i = 0; i < nthreads; i++)
        if (pthread_create(&threads[i], NULL, backup_worker, &job) != 0)
            die("pthread_create failed");
    for (i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&job.lock);
    EXPECT(P.close_server(job.server), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);

    all = realloc(*items, (*nitems + job.n + 1) * sizeof *all);
    if (all == NULL)
        die("out of memory");
    memcpy(all + *nitems, job.items, job.n * sizeof *all);
    *items = all;
    *nitems += job.n;
    free(job.items);
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const item *)a)->path, ((const item *)b)->path);
}

static void items_free(item *items, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        free(items[i].path);
        free(items[i].data);
    }
    free(items);
}

/* ------------------------------------------------------------------------------------------ */
/* The jobs                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static const char *const g_hosts[] = {"bh1", "bh2", NULL};

/* A discovery job; returns the snapshot id in `snapid`. */
static int discovery_job(const char *outdir, const aapi_property_t *props, size_t nprops,
                         uint32_t sched, aapi_snapid_t *snapid, int want)
{
    const char *sel[2];
    aapi_session_def_t s;
    aapi_server_info_t si;
    aapi_server_t h;
    int rc;
    sel[0] = g_tree;
    sel[1] = NULL;
    begin_cycle();
    s = session(AAPI_OP_DISCOVERY, sched, "", props, nprops);
    h = open_session(&s);
    memset(&si, 0, sizeof si);
    si.struct_size = sizeof si;
    EXPECT(P.get_server_prop(h, &si), AAPI_EOK);
    CHECK(si.srv_flags & AAPI_SRVC_FULL_BACKUP_SUPPORT, "full backups not supported");
    memset(snapid, 0x5A, sizeof *snapid);
    rc = P.discovery(h, sel, g_hosts, outdir, ".wkld", sched, snapid);
    CHECK(rc == want, "discovery gave %s, expected %s (%s)", aapi_code_name(rc),
          aapi_code_name(want), last_error());
    if (rc == AAPI_EOK) /* LIFE-4: once per session */
        EXPECT(P.discovery(h, sel, g_hosts, outdir, ".wkld", sched, snapid), AAPI_ESEQUENCE);
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
    return rc;
}

static void postprocess_job(const aapi_property_t *props, size_t nprops, const aapi_snapid_t *id)
{
    const char *sel[2];
    aapi_session_def_t s;
    aapi_server_t h;
    sel[0] = g_tree;
    sel[1] = NULL;
    begin_cycle();
    s = session(AAPI_OP_POSTPROCESS, AAPI_SCHED_FULL, id->id, props, nprops);
    h = open_session(&s);
    EXPECT(P.postprocess(h, sel, g_hosts, g_work, ".wkld", AAPI_SCHED_FULL, id), AAPI_EOK);
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
}

static void restore_job(const char *alt, item *items, size_t n)
{
    aapi_session_def_t s;
    aapi_restore_info_t ri;
    aapi_server_t h;
    size_t i;
    uint64_t total = 0;

    begin_cycle();
    s = session(AAPI_OP_RESTORE, AAPI_SCHED_FULL, "", NULL, 0);
    h = open_session(&s);
    for (i = 0; i < n; i++)
        total += items[i].len;
    memset(&ri, 0, sizeof ri);
    ri.struct_size = sizeof ri;
    ri.target_root = alt;
    ri.total_bytes = total;
    ri.object_count = n;
    EXPECT(P.restore_preprocess(h, &ri), AAPI_EOK);
    for (i = 0; i < n; i++) { /* path order: containers before their contents */
        item *it = &items[i];
        char *path = join(alt, it->path);
        aapi_object_prop_t prop = it->prop, back;
        aapi_object_t obj;
        size_t off;
        prop.valid &= AAPI_PROP_MODE | AAPI_PROP_OWNER | AAPI_PROP_ATIME | AAPI_PROP_MTIME;
        EXPECT(P.create_object(h, path, &prop, 0, &obj), AAPI_EOK);
        for (off = 0; off < it->len; off += 100000) {
            size_t chunk = it->len - off < 100000 ? it->len - off : 100000;
            EXPECT(P.write_object(obj, it->data + off, chunk), AAPI_EOK);
        }
        EXPECT(P.flush(obj), AAPI_EOK);
        EXPECT(P.close_object(obj), AAPI_EOK);
        memset(&back, 0, sizeof back);
        back.struct_size = sizeof back;
        EXPECT(P.get_object_prop_byname(h, path, &back), AAPI_EOK); /* RST-4 */
        CHECK(back.obj_type == it->prop.obj_type && back.size == it->len &&
                  (it->prop.obj_type == AAPI_OBJ_SYMLINK || back.mode == it->prop.mode),
              "restored %s: type %u size %llu mode %o", path, (unsigned)back.obj_type,
              (unsigned long long)back.size, (unsigned)back.mode);
        if (it->prop.obj_type != AAPI_OBJ_DIR)
            EXPECT(P.set_object_utimes(h, path, &it->prop.atime, &it->prop.mtime), AAPI_EOK);
        free(path);
    }
    for (i = n; i-- > 0;) { /* containers after their contents */
        if (items[i].prop.obj_type == AAPI_OBJ_DIR) {
            char *path = join(alt, items[i].path);
            EXPECT(P.set_object_utimes(h, path, &items[i].prop.atime, &items[i].prop.mtime),
                   AAPI_EOK);
            free(path);
        }
    }
    EXPECT(P.restore_postprocess(h, AAPI_EOK), AAPI_EOK);
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
}

/* Every object restored under `alt` equals its original; nothing else is there. */
static void compare(const char *alt, const item *items, size_t n)
{
    size_t i;
    char *root = join(alt, g_tree);
    CHECK((long)n == g_tree_objects, "the workload files list %zu objects, the tree has %ld", n,
          g_tree_objects);
    CHECK(count_below(root) == g_tree_objects - 1,
          "the restored tree holds %ld entries, expected %ld (leftover temporary files?)",
          count_below(root), g_tree_objects - 1);
    for (i = 0; i < n; i++) {
        struct stat a, b;
        char *copy = join(alt, items[i].path);
        if (lstat(items[i].path, &a) != 0 || lstat(copy, &b) != 0) {
            CHECK(0, "%s was not restored", items[i].path);
            free(copy);
            continue;
        }
        CHECK((a.st_mode & S_IFMT) == (b.st_mode & S_IFMT), "%s: type differs", copy);
        CHECK(S_ISLNK(a.st_mode) || (a.st_mode & 07777) == (b.st_mode & 07777),
              "%s: mode %o, original %o", copy, (unsigned)(b.st_mode & 07777),
              (unsigned)(a.st_mode & 07777));
        CHECK(a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec,
              "%s: mtime %ld.%09ld, original %ld.%09ld", copy, (long)b.st_mtim.tv_sec,
              (long)b.st_mtim.tv_nsec, (long)a.st_mtim.tv_sec, (long)a.st_mtim.tv_nsec);
        if (S_ISREG(a.st_mode)) {
            size_t la, lb;
            unsigned char *da = read_file(items[i].path, &la), *db = read_file(copy, &lb);
            CHECK(da != NULL && db != NULL && la == lb && (la == 0 || memcmp(da, db, la) == 0),
                  "%s: restored bytes differ", copy);
            CHECK(la == items[i].len && (la == 0 || memcmp(da, items[i].data, la) == 0),
                  "%s: bytes read in the backup differ from the file", items[i].path);
            free(da);
            free(db);
        } else if (S_ISLNK(a.st_mode)) {
            char ta[4096], tb[4096];
            ssize_t na = readlink(items[i].path, ta, sizeof ta),
                    nb = readlink(copy, tb, sizeof tb);
            CHECK(na >= 0 && na == nb && memcmp(ta, tb, (size_t)na) == 0,
                  "%s: link target differs", copy);
        }
        free(copy);
    }
    free(root);
}

/* Collect the items of every workload file of a discovery into one path-sorted list. */
static item *backup_all(const char *outdir, const aapi_property_t *props, size_t nprops,
                        size_t *n, const char *want_snapshot)
{
    item *items = NULL;
    size_t h;
    *n = 0;
    for (h = 0; g_hosts[h] != NULL; h++) {
        char name[64];
        char *file;
        wfile w;
        size_t i;
        snprintf(name, sizeof name, "%s.wkld", g_hosts[h]);
        file = join(outdir, name);
        if (read_workload(file, &w) == 0) {
            CHECK(strcmp(w.host, g_hosts[h]) == 0, "%s: header names host %s", file, w.host);
            CHECK(strcmp(w.snapshot, want_snapshot) == 0, "%s: snapshot \"%s\", expected \"%s\"",
                  file, w.snapshot, want_snapshot);
            for (i = 1; i < w.n; i++)
                CHECK(strcmp(w.recs[i - 1].path, w.recs[i].path) < 0,
                      "%s: records not in path order", file);
            for (i = 0; i < w.n; i++)
                CHECK(strstr(w.recs[i].path, "/pipe") == NULL, "the fifo %s was listed",
                      w.recs[i].path);
            backup_child_job(&w, props, nprops, &items, n);
        }
        wfile_free(&w);
        free(file);
    }
    if (*n > 1)
        qsort(items, *n, sizeof *items, by_path);
    return items;
}

static void full_round_trip(void)
{
    char *out = join(g_work, "wkld"), *snapdir = join(g_work, "snapshots");
    char *alt = join(g_work, "restore");
    aapi_property_t props[2];
    aapi_snapid_t id;
    item *items;
    size_t n;
    struct stat st;

    if (mkdir(out, 0700) != 0 || mkdir(alt, 0700) != 0)
        die("mkdir: %s", strerror(errno));
    props[0].key = "files.snapshot";
    props[0].value = "copy";
    props[1].key = "files.snapshot_dir";
    props[1].value = snapdir;
    if (discovery_job(out, props, 2, AAPI_SCHED_FULL, &id, AAPI_EOK) == AAPI_EOK) {
        CHECK(id.id[0] != '\0', "a copy snapshot has an empty id");
        /* Every session of the policy gets the same properties (here: where snapshots are). */
        items = backup_all(out, props, 2, &n, id.id);
        postprocess_job(props, 2, &id);
        {
            char *snap = join(snapdir, id.id);
            CHECK(lstat(snap, &st) != 0, "postprocess left the snapshot %s", snap);
            free(snap);
        }
        restore_job(alt, items, n);
        compare(alt, items, n);
        printf("roundtrip: %zu objects backed up through snapshot %s and restored\n", n, id.id);
        items_free(items, n);
    }
    free(out);
    free(snapdir);
    free(alt);
}

/* DISC-8: an incremental relative to a time after every change lists every object, unchanged. */
static void incremental(void)
{
    char *out = join(g_work, "wkld-incr");
    aapi_property_t props[1];
    aapi_snapid_t id;
    char future[32];
    size_t h, i, total = 0;
    if (mkdir(out, 0700) != 0)
        die("mkdir: %s", strerror(errno));
    snprintf(future, sizeof future, "%ld", (long)time(NULL) + 100000);
    props[0].key = AAPI_PROP_LAST_BACKUP_TIME;
    props[0].value = future;
    if (discovery_job(out, props, 1, AAPI_SCHED_INCR, &id, AAPI_EOK) == AAPI_EOK) {
        CHECK(id.id[0] == '\0', "snapshot \"%s\" without files.snapshot", id.id);
        for (h = 0; g_hosts[h] != NULL; h++) {
            char name[64];
            char *file;
            wfile w;
            snprintf(name, sizeof name, "%s.wkld", g_hosts[h]);
            file = join(out, name);
            if (read_workload(file, &w) == 0)
                for (i = 0; i < w.n; i++, total++)
                    CHECK(w.recs[i].flags & AAPI_WKLD_UNCHANGED, "%s is not flagged unchanged",
                          w.recs[i].path);
            wfile_free(&w);
            free(file);
        }
        CHECK((long)total == g_tree_objects, "the incremental lists %zu objects, expected %ld",
              total, g_tree_objects);
    }
    remove_all(out);
    free(out);
}

/* TIME-4, DISC-5: a cancelled discovery returns AAPI_ECANCELLED and leaves nothing behind. */
static void cancelled(void)
{
    char *out = join(g_work, "wkld-cancel"), *snapdir = join(g_work, "snap-cancel");
    aapi_property_t props[2];
    aapi_snapid_t id;
    long before = g_keepalives;
    if (mkdir(out, 0700) != 0)
        die("mkdir: %s", strerror(errno));
    props[0].key = "files.snapshot";
    props[0].value = "copy";
    props[1].key = "files.snapshot_dir";
    props[1].value = snapdir;
    g_cancel = 1;
    {
        /* A budget of 1 ms makes every checkpoint send a keepalive. */
        const char *sel[2];
        aapi_session_def_t s;
        aapi_server_t h;
        int rc;
        sel[0] = g_tree;
        sel[1] = NULL;
        begin_cycle();
        s = session(AAPI_OP_DISCOVERY, AAPI_SCHED_FULL, "", props, 2);
        s.sd_call_budget_ms = 1;
        h = open_session(&s);
        memset(&id, 0x5A, sizeof id);
        rc = P.discovery(h, sel, g_hosts, out, ".wkld", AAPI_SCHED_FULL, &id);
        CHECK(rc == AAPI_ECANCELLED, "cancelled discovery gave %s", aapi_code_name(rc));
        CHECK((unsigned char)id.id[0] == 0x5A, "snapid written on failure (RC-5)");
        EXPECT(P.close_server(h), AAPI_EOK);
        EXPECT(P.terminate(), AAPI_EOK);
    }
    g_cancel = 0;
    CHECK(g_keepalives > before, "no keepalive was sent");
    CHECK(count_below(out) == 0, "a cancelled discovery left %ld workload files",
          count_below(out));
    CHECK(count_below(snapdir) <= 0, "a cancelled discovery left a snapshot");
    remove_all(out);
    remove_all(snapdir);
    free(out);
    free(snapdir);
}

/* SEC-2: a snapshot directory below a directory that others may write into (0777, no sticky bit)
 * is refused with AAPI_ESNAPSHOT naming that directory, before anything is made; without
 * files.snapshot_dir the snapshot goes to $TMPDIR/aapi-files-snapshots (with "-<uid>" for a user
 * other than root), made 0700. */
static void snapshot_ancestors(void)
{
    const char *tmp = getenv("TMPDIR");
    char *open_dir = join(g_work, "open-to-all"), *snapdir = join(open_dir, "snapshots");
    char *out = join(g_work, "wkld-ancestors"), *dflt, *snap, want[4200], name[64];
    aapi_property_t props[2];
    aapi_snapid_t id;
    struct stat st;
    if (mkdir(open_dir, 0700) != 0 || chmod(open_dir, 0777) != 0 || mkdir(out, 0700) != 0)
        die("mkdir: %s", strerror(errno));
    props[0].key = "files.snapshot";
    props[0].value = "copy";
    props[1].key = "files.snapshot_dir";
    props[1].value = snapdir;
    {
        const char *sel[2];
        aapi_session_def_t s;
        aapi_server_t h;
        int rc;
        sel[0] = g_tree;
        sel[1] = NULL;
        begin_cycle();
        s = session(AAPI_OP_DISCOVERY, AAPI_SCHED_FULL, "", props, 2);
        h = open_session(&s);
        rc = P.discovery(h, sel, g_hosts, out, ".wkld", AAPI_SCHED_FULL, &id);
        CHECK(rc == AAPI_ESNAPSHOT, "discovery below a 0777 directory gave %s",
              aapi_code_name(rc));
        snprintf(want, sizeof want, "its ancestor %s (owner uid %lu, mode 0777) may be written",
                 open_dir, (unsigned long)geteuid());
        CHECK(strstr(last_error(), want) != NULL, "the refusal does not say \"%s\": %s", want,
              last_error());
        EXPECT(P.close_server(h), AAPI_EOK);
        EXPECT(P.terminate(), AAPI_EOK);
    }
    CHECK(lstat(snapdir, &st) != 0, "the refused snapshot directory %s was made", snapdir);
    CHECK(count_below(out) == 0, "a refused discovery left %ld workload files", count_below(out));

    discovery_job(out, props, 1, AAPI_SCHED_FULL, &id, AAPI_EOK);
    if (geteuid() == 0)
        snprintf(name, sizeof name, "aapi-files-snapshots");
    else
        snprintf(name, sizeof name, "aapi-files-snapshots-%lu", (unsigned long)geteuid());
    dflt = join(tmp != NULL && tmp[0] == '/' ? tmp : "/tmp", name);
    snap = join(dflt, id.id);
    CHECK(lstat(dflt, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700,
          "the default snapshot directory %s is not a directory of mode 0700", dflt);
    CHECK(lstat(snap, &st) == 0 && S_ISDIR(st.st_mode), "no snapshot %s", snap);
    postprocess_job(props, 1, &id);
    CHECK(lstat(snap, &st) != 0, "postprocess left the snapshot %s", snap);
    remove_all(out);
    remove_all(open_dir);
    free(out);
    free(snapdir);
    free(open_dir);
    free(snap);
    free(dflt);
}

/* DISC-5: a snapshot whose copies would have paths longer than PATH_MAX is refused before anything
 * is made (not even the missing directories on the way), with the reason and the fix before the
 * long paths, which the message may not hold whole. */
static void snapshot_too_long(void)
{
    char *base = join(g_work, "long"), *out = join(g_work, "wkld-long"), *dir;
    aapi_property_t props[2];
    const char *sel[2];
    aapi_session_def_t s;
    aapi_snapid_t id;
    aapi_server_t h;
    int i, rc;
    if (mkdir(base, 0700) != 0 || mkdir(out, 0700) != 0)
        die("mkdir: %s", strerror(errno));
    dir = malloc(strlen(base) + 17 * 251 + 1);
    if (dir == NULL)
        die("out of memory");
    strcpy(dir, base);
    for (i = 0; i < 17; i++) { /* 17 components of 250 bytes: longer than PATH_MAX */
        size_t len = strlen(dir);
        dir[len] = '/';
        memset(dir + len + 1, 'b', 250);
        dir[len + 251] = '\0';
    }
    props[0].key = "files.snapshot";
    props[0].value = "copy";
    props[1].key = "files.snapshot_dir";
    props[1].value = dir;
    sel[0] = g_tree;
    sel[1] = NULL;
    begin_cycle();
    s = session(AAPI_OP_DISCOVERY, AAPI_SCHED_FULL, "", props, 2);
    h = open_session(&s);
    rc = P.discovery(h, sel, g_hosts, out, ".wkld", AAPI_SCHED_FULL, &id);
    CHECK(rc == AAPI_ESNAPSHOT, "a snapshot directory longer than PATH_MAX gave %s",
          aapi_code_name(rc));
    CHECK(strstr(last_error(), "bytes a path may have; set files.snapshot_dir to a shorter "
                               "directory (it is ") != NULL,
          "the refusal gives no reason or fix: %s", last_error());
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
    CHECK(count_below(base) == 0, "a refused snapshot left %ld entries", count_below(base));
    CHECK(count_below(out) == 0, "a refused discovery left %ld workload files", count_below(out));
    remove_all(out);
    remove_all(base);
    free(dir);
    free(out);
    free(base);
}

/* Directories that existed before the failed restore, each given a new file by it. */
#define ROLLBACK_DIRS 40

/* RST-6, RST-7: a failed restore removes what it created and puts replaced objects back; the
 * directories that existed get their mtimes, modes and owners back (sample-plugin/README.md). */
static void failed_restore(void)
{
    char *alt = join(g_work, "restore-fail");
    char *keep = join(alt, "keep.txt"), *fresh = join(alt, "new/dir/file");
    char *dirs[ROLLBACK_DIRS];
    struct stat before[ROLLBACK_DIRS];
    int i;
    aapi_session_def_t s;
    aapi_restore_info_t ri;
    aapi_object_prop_t prop;
    aapi_server_t h;
    aapi_object_t obj;
    unsigned char *data;
    size_t len;
    struct stat st;

    if (mkdir(alt, 0700) != 0)
        die("mkdir: %s", strerror(errno));
    write_file(keep, "original\n", 9, 0644);
    for (i = 0; i < ROLLBACK_DIRS; i++) {
        char name[16];
        snprintf(name, sizeof name, "d%02d", i);
        dirs[i] = join(alt, name);
        if (mkdir(dirs[i], 0700) != 0)
            die("mkdir: %s", strerror(errno));
        set_mtime(dirs[i], 1400000000 + i, 100000000L + i);
        if (lstat(dirs[i], &before[i]) != 0)
            die("lstat: %s", strerror(errno));
    }
    set_mtime(alt, 1300000000, 123456789L);
    begin_cycle();
    s = session(AAPI_OP_RESTORE, AAPI_SCHED_FULL, "", NULL, 0);
    h = open_session(&s);
    memset(&ri, 0, sizeof ri);
    ri.struct_size = sizeof ri;
    ri.target_root = alt;
    EXPECT(P.restore_preprocess(h, &ri), AAPI_EOK);
    memset(&prop, 0, sizeof prop);
    prop.struct_size = sizeof prop;
    prop.obj_type = AAPI_OBJ_FILE;
    prop.valid = AAPI_PROP_MODE;
    prop.mode = 0600;
    EXPECT(P.create_object(h, keep, &prop, 0, &obj), AAPI_EEXIST); /* RST-3 */
    EXPECT(P.create_object(h, keep, &prop, AAPI_CREATE_OVERWRITE, &obj), AAPI_EOK);
    EXPECT(P.write_object(obj, "replacement\n", 12), AAPI_EOK);
    {
        char buf[8];
        size_t got;
        EXPECT(P.read_object(obj, buf, sizeof buf, &got), AAPI_ESEQUENCE); /* LIFE-5 */
    }
    data = read_file(keep, &len);
    CHECK(data != NULL && len == 9, "the old file changed before close (OBJ-6)");
    free(data);
    EXPECT(P.close_object(obj), AAPI_EOK);
    data = read_file(keep, &len);
    CHECK(data != NULL && len == 12, "the new file is not in place after close");
    free(data);
    EXPECT(P.create_object(h, fresh, &prop, 0, &obj), AAPI_EOK);
    EXPECT(P.write_object(obj, "x", 1), AAPI_EOK);
    EXPECT(P.close_object(obj), AAPI_EOK);
    for (i = 0; i < ROLLBACK_DIRS; i++) {
        char *f = join(dirs[i], "f");
        if (i % 2 == 0) {
            /* A directory object onto the existing directory (with and without overwrite): it
             * gets another mode, and as root another owner, at close. */
            aapi_object_prop_t dprop = prop;
            dprop.obj_type = AAPI_OBJ_DIR;
            dprop.valid = AAPI_PROP_MODE | AAPI_PROP_OWNER;
            dprop.mode = 0751;
            dprop.uid = 4321;
            dprop.gid = 4322;
            EXPECT(P.create_object(h, dirs[i], &dprop, i % 4 ? AAPI_CREATE_OVERWRITE : 0, &obj),
                   AAPI_EOK);
            EXPECT(P.close_object(obj), AAPI_EOK);
            CHECK(lstat(dirs[i], &st) == 0 && (st.st_mode & 07777) == 0751,
                  "%s did not get the mode of its object", dirs[i]);
        }
        EXPECT(P.create_object(h, f, &prop, 0, &obj), AAPI_EOK);
        EXPECT(P.write_object(obj, "y", 1), AAPI_EOK);
        EXPECT(P.close_object(obj), AAPI_EOK);
        free(f);
    }
    EXPECT(P.create_object(h, fresh, &prop, AAPI_CREATE_OVERWRITE, &obj), AAPI_EOK);
    /* left open: restore_postprocess closes it */
    EXPECT(P.restore_postprocess(h, AAPI_EIO), AAPI_EOK);
    EXPECT(P.restore_postprocess(h, AAPI_EIO), AAPI_ESEQUENCE);
    EXPECT(P.close_object(obj), AAPI_EBADHANDLE);
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
    data = read_file(keep, &len);
    CHECK(data != NULL && len == 9 && memcmp(data, "original\n", 9) == 0,
          "the replaced file was not put back (RST-7)");
    free(data);
    {
        char *newdir = join(alt, "new");
        CHECK(lstat(newdir, &st) != 0, "the failed restore left %s (RST-6)", newdir);
        free(newdir);
    }
    for (i = 0; i < ROLLBACK_DIRS; i++) {
        CHECK(lstat(dirs[i], &st) == 0 && st.st_mtim.tv_sec == 1400000000 + i &&
                  st.st_mtim.tv_nsec == 100000000L + i,
              "the failed restore left %s with mtime %ld.%09ld", dirs[i], (long)st.st_mtim.tv_sec,
              (long)st.st_mtim.tv_nsec);
        CHECK(st.st_mode == before[i].st_mode && st.st_uid == before[i].st_uid &&
                  st.st_gid == before[i].st_gid,
              "the failed restore left %s with mode %o, owner %ld:%ld", dirs[i],
              (unsigned)(st.st_mode & 07777), (long)st.st_uid, (long)st.st_gid);
        free(dirs[i]);
    }
    CHECK(lstat(alt, &st) == 0 && st.st_mtim.tv_sec == 1300000000 &&
              st.st_mtim.tv_nsec == 123456789L,
          "the failed restore left %s with mtime %ld.%09ld", alt, (long)st.st_mtim.tv_sec,
          (long)st.st_mtim.tv_nsec);
    CHECK(count_below(alt) == 1 + ROLLBACK_DIRS,
          "the failed restore left %ld entries, expected %d", count_below(alt),
          1 + ROLLBACK_DIRS);
    free(keep);
    free(fresh);
    free(alt);
}

/* RST-10: under an alternate root, no call follows a symbolic link below it, whether it was
 * there or the restore made it, and the rollback stays inside too. */
static void confined_restore(void)
{
    char *alt = join(g_work, "restore-confined"), *outside = join(g_work, "outside");
    char *victim = join(outside, "victim"), *pre = join(alt, "pre"), *made = join(alt, "made");
    char *through_pre = join(pre, "victim"), *new_pre = join(pre, "missing/new.txt");
    char *through_made = join(made, "new.txt"), *inside = join(alt, "in/side.txt");
    aapi_session_def_t s;
    aapi_restore_info_t ri;
    aapi_object_prop_t prop, lprop;
    aapi_time_t t = {1000000000, 0, 0};
    aapi_server_t h;
    aapi_object_t obj;
    struct stat before, after;

    if (mkdir(alt, 0700) != 0 || mkdir(outside, 0700) != 0 || symlink(outside, pre) != 0)
        die("setup: %s", strerror(errno));
    write_file(victim, "victim", 6, 0644);
    set_mtime(victim, 1500000000, 0);
    if (lstat(victim, &before) != 0)
        die("lstat: %s", strerror(errno));
    begin_cycle();
    s = session(AAPI_OP_RESTORE, AAPI_SCHED_FULL, "", NULL, 0);
    h = open_session(&s);
    memset(&ri, 0, sizeof ri);
    ri.struct_size = sizeof ri;
    ri.target_root = alt;
    EXPECT(P.restore_preprocess(h, &ri), AAPI_EOK);
    memset(&prop, 0, sizeof prop);
    prop.struct_size = sizeof prop;
    prop.obj_type = AAPI_OBJ_FILE;
    prop.valid = AAPI_PROP_MODE;
    prop.mode = 0600;
    lprop = prop;
    lprop.obj_type = AAPI_OBJ_SYMLINK;
    lprop.valid = 0;
    /* The root stays the directory it was at preprocess: nothing else replaces it, and it is
     * never deleted. */
    EXPECT(P.create_object(h, alt, &lprop, AAPI_CREATE_OVERWRITE, &obj), AAPI_EEXIST);
    EXPECT(P.delete_object(h, alt), AAPI_EINVAL);
    EXPECT(P.create_object(h, through_pre, &prop, AAPI_CREATE_OVERWRITE, &obj), AAPI_EINVAL);
    EXPECT(P.create_object(h, new_pre, &prop, 0, &obj), AAPI_EINVAL);
    EXPECT(P.set_object_utimes(h, through_pre, &t, &t), AAPI_EINVAL);
    EXPECT(P.delete_object(h, through_pre), AAPI_EINVAL);
    EXPECT(P.create_object(h, made, &lprop, 0, &obj), AAPI_EOK);
    EXPECT(P.write_object(obj, outside, strlen(outside)), AAPI_EOK);
    EXPECT(P.close_object(obj), AAPI_EOK);
    EXPECT(P.create_object(h, through_made, &prop, 0, &obj), AAPI_EINVAL);
    EXPECT(P.create_object(h, inside, &prop, 0, &obj), AAPI_EOK);
    EXPECT(P.write_object(obj, "inside", 6), AAPI_EOK);
    EXPECT(P.close_object(obj), AAPI_EOK);
    EXPECT(P.restore_postprocess(h, AAPI_EIO), AAPI_EOK);
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
    CHECK(count_below(outside) == 1, "%ld entries outside the alternate root, expected 1",
          count_below(outside));
    CHECK(lstat(victim, &after) == 0 && after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
              after.st_ctim.tv_sec == before.st_ctim.tv_sec &&
              after.st_ctim.tv_nsec == before.st_ctim.tv_nsec,
          "%s outside the alternate root changed", victim);
    CHECK(count_below(alt) == 1, "the failed restore left %ld entries in %s, expected 1 (pre)",
          count_below(alt), alt);
    free(alt);
    free(outside);
    free(victim);
    free(pre);
    free(made);
    free(through_pre);
    free(new_pre);
    free(through_made);
    free(inside);
}

/* The second of two concurrent creates (RST-6 below). */
typedef struct fast_create {
    aapi_server_t h;
    char *path;
    int rc[3];
} fast_create;

static void *create_later(void *arg)
{
    fast_create *f = arg;
    struct timespec pause = {0, 100000000L};
    aapi_object_prop_t prop;
    aapi_object_t obj = 0;
    nanosleep(&pause, NULL);
    memset(&prop, 0, sizeof prop);
    prop.struct_size = sizeof prop;
    prop.obj_type = AAPI_OBJ_FILE;
    f->rc[0] = P.create_object(f->h, f->path, &prop, 0, &obj);
    f->rc[1] = f->rc[0] == AAPI_EOK ? P.write_object(obj, "fast", 4) : AAPI_EOK;
    f->rc[2] = f->rc[0] == AAPI_EOK ? P.close_object(obj) : AAPI_EOK;
    return NULL;
}

/* RST-6 under concurrent creates: one create makes the missing directory d and, before it records
 * it, is held up creating its file (tests/slow_create.c, when preloaded, holds up for 0.4 s the
 * creation of every name with "aapi-slow-create" in it); meanwhile another create puts its file
 * in d. d is then recorded after an object in it: the rollback still removes it last, and leaves
 * nothing. */
static void concurrent_rollback(void)
{
    char *alt = join(g_work, "restore-concurrent");
    char *slow = join(alt, "d/aapi-slow-create");
    aapi_session_def_t s;
    aapi_restore_info_t ri;
    aapi_object_prop_t prop;
    aapi_server_t h;
    aapi_object_t obj;
    fast_create f;
    pthread_t t;
    if (mkdir(alt, 0700) != 0)
        die("mkdir: %s", strerror(errno));
    begin_cycle();
    if (!(info.capabilities & AAPI_CAP_CONCURRENT_OBJECTS)) {
        EXPECT(P.terminate(), AAPI_EOK);
        free(alt);
        free(slow);
        return;
    }
    s = session(AAPI_OP_RESTORE, AAPI_SCHED_FULL, "", NULL, 0);
    h = open_session(&s);
    memset(&ri, 0, sizeof ri);
    ri.struct_size = sizeof ri;
    ri.target_root = alt;
    EXPECT(P.restore_preprocess(h, &ri), AAPI_EOK);
    memset(&f, 0, sizeof f);
    f.h = h;
    f.path = join(alt, "d/fast");
    if (pthread_create(&t, NULL, create_later, &f) != 0)
        die("pthread_create failed");
    memset(&prop, 0, sizeof prop);
    prop.struct_size = sizeof prop;
    prop.obj_type = AAPI_OBJ_FILE;
    EXPECT(P.create_object(h, slow, &prop, 0, &obj), AAPI_EOK);
    EXPECT(P.write_object(obj, "slow", 4), AAPI_EOK);
    EXPECT(P.close_object(obj), AAPI_EOK);
    pthread_join(t, NULL);
    EXPECT(f.rc[0], AAPI_EOK);
    EXPECT(f.rc[1], AAPI_EOK);
    EXPECT(f.rc[2], AAPI_EOK);
    EXPECT(P.restore_postprocess(h, AAPI_EIO), AAPI_EOK);
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
    CHECK(count_below(alt) == 0, "the failed restore left %ld entries in %s", count_below(alt),
          alt);
    free(f.path);
    free(alt);
    free(slow);
}

/* The id of the snapshot of job `job` made in `dir` (sample-plugin/README.md, Snapshots):
 * "files-<job>-" and 16 lowercase hex digits of the 64-bit FNV-1a hash of the directory's path. */
static void snapshot_id(const char *job, const char *dir, aapi_snapid_t *id)
{
    uint64_t hash = UINT64_C(0xcbf29ce484222325);
    const unsigned char *p;
    for (p = (const unsigned char *)dir; *p != '\0'; p++) {
        hash ^= *p;
        hash *= UINT64_C(0x100000001b3);
    }
    memset(id, 0, sizeof *id);
    snprintf(id->id, sizeof id->id, "files-%s-%016llx", job, (unsigned long long)hash);
}

/* DISC-7 with few descriptors: postprocess removes a snapshot 200 directories deep with the
 * descriptor limit at 256, so the removal holds one descriptor per directory level, not more. */
#define DEEP_LEVELS 200
static void deep_snapshot(void)
{
    char *snaps = join(g_work, "snapshots-deep"), *root, *p;
    const char *sel[2];
    aapi_property_t props[1];
    aapi_session_def_t s;
    aapi_snapid_t id;
    aapi_server_t h;
    struct rlimit before, low;
    struct stat st;
    size_t len;
    int i;
    snapshot_id("deep", snaps, &id);
    root = join(snaps, id.id);
    if (mkdir(snaps, 0700) != 0 || mkdir(root, 0700) != 0)
        die("mkdir: %s", strerror(errno));
    len = strlen(root);
    p = malloc(len + 2 * DEEP_LEVELS + 1);
    if (p == NULL)
        die("out of memory");
    memcpy(p, root, len + 1);
    for (i = 0; i < DEEP_LEVELS; i++) {
        memcpy(p + len, "/d", 3);
        len += 2;
        if (mkdir(p, 0700) != 0)
            die("mkdir %s: %s", p, strerror(errno));
    }
    free(p);
    props[0].key = "files.snapshot_dir";
    props[0].value = snaps;
    sel[0] = g_tree;
    sel[1] = NULL;
    begin_cycle();
    s = session(AAPI_OP_POSTPROCESS, AAPI_SCHED_FULL, id.id, props, 1);
    h = open_session(&s);
    if (getrlimit(RLIMIT_NOFILE, &before) != 0)
        die("getrlimit: %s", strerror(errno));
    low = before;
    if (low.rlim_cur == RLIM_INFINITY || low.rlim_cur > 256)
        low.rlim_cur = 256;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0)
        die("setrlimit: %s", strerror(errno));
    EXPECT(P.postprocess(h, sel, g_hosts, g_work, ".wkld", AAPI_SCHED_FULL, &id), AAPI_EOK);
    if (setrlimit(RLIMIT_NOFILE, &before) != 0)
        die("setrlimit: %s", strerror(errno));
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
    CHECK(lstat(root, &st) != 0, "the deep snapshot %s is still there", root);
    free(root);
    free(snaps);
}

/* Bad calls get the documented codes and leave out-parameters alone (LIFE, RC). */
static void bad_calls(void)
{
    aapi_host_info_t host;
    aapi_plugin_info_t pi;
    aapi_session_def_t s;
    aapi_server_t h, srv = 0;
    aapi_object_t obj = 0x77;
    char small[4] = "abc", msg[512];
    size_t size;

    EXPECT(P.terminate(), AAPI_EOK); /* LIFE-7: before init */
    EXPECT(P.pgn_claim("files"), AAPI_ESEQUENCE); /* LIFE-1 */
    EXPECT(P.close_server(1), AAPI_ESEQUENCE);
    size = 0; /* RC-9: a size query of the message of the last failure */
    EXPECT(P.get_last_error(NULL, &size), AAPI_EBUFSIZE);
    CHECK(size > 1, "the last-error message is empty after a failure");
    EXPECT(P.get_last_error(msg, NULL), AAPI_EINVAL);
    memset(&host, 0, sizeof host);
    host.struct_size = sizeof host;
    host.abi_major = AAPI_ABI_MAJOR + 1;
    host.framework_name = "roundtrip";
    host.framework_version = "1";
    host.log_callback = cb_log;
    memset(&pi, 0, sizeof pi);
    pi.struct_size = sizeof pi;
    EXPECT(P.pgn_init(&host, &pi), AAPI_EABI); /* ABI-2 */
    CHECK(pi.name == NULL, "plugin_info written on failure (RC-5)");
    EXPECT(P.pgn_init(NULL, &pi), AAPI_EINVAL);

    begin_cycle();
    host.abi_major = AAPI_ABI_MAJOR;
    EXPECT(P.pgn_init(&host, &pi), AAPI_ESEQUENCE); /* LIFE-2 */
    EXPECT(P.pgn_claim("Files"), AAPI_ENOTCLAIMED);
    EXPECT(P.pgn_claim(""), AAPI_EINVAL);
    s = session(AAPI_OP_BACKUP, AAPI_SCHED_FULL, "", NULL, 0);
    s.struct_size = 8;
    EXPECT(P.open_server("localhost", &s, &srv), AAPI_EABI); /* ABI-4 */
    CHECK(srv == 0, "server handle written on failure (RC-5)");
    s = session(AAPI_OP_BACKUP, AAPI_SCHED_FULL, "", NULL, 0);
    EXPECT(P.open_server("", &s, &srv), AAPI_EINVAL);
    {
        /* A ".." in the snapshot directory would stay in every snapshot path. */
        aapi_property_t dd[1];
        dd[0].key = "files.snapshot_dir";
        dd[0].value = "/tmp/../tmp/snaps";
        s = session(AAPI_OP_BACKUP, AAPI_SCHED_FULL, "", dd, 1);
        EXPECT(P.open_server("localhost", &s, &srv), AAPI_EINVAL);
        CHECK(strstr(last_error(), "files.snapshot_dir=\"/tmp/../tmp/snaps\" contains a \"..\" "
                                   "component") != NULL,
              "the refusal of a \"..\" does not name it: %s", last_error());
        CHECK(srv == 0, "server handle written on failure (RC-5)");
        s = session(AAPI_OP_BACKUP, AAPI_SCHED_FULL, "", NULL, 0);
    }
    h = open_session(&s);
    /* RC-4: 0, forged, and a server handle used as an object handle. */
    EXPECT(P.close_object(0), AAPI_EBADHANDLE);
    EXPECT(P.close_object(h ^ 0x10000), AAPI_EBADHANDLE);
    EXPECT(P.close_object((aapi_object_t)h), AAPI_EBADHANDLE);
    EXPECT(P.open_object(0, g_tree, AAPI_OPEN_READ, &obj), AAPI_EBADHANDLE);
    /* RC-3, RC-7 */
    EXPECT(P.open_object(h, "relative/path", AAPI_OPEN_READ, &obj), AAPI_EINVAL);
    EXPECT(P.open_object(h, g_tree, 0, &obj), AAPI_EINVAL);
    EXPECT(P.open_object(h, g_tree, AAPI_OPEN_READ, NULL), AAPI_EINVAL);
    {
        char *missing = join(g_tree, "no such file");
        EXPECT(P.open_object(h, missing, AAPI_OPEN_READ, &obj), AAPI_ENOENT);
        free(missing);
    }
    CHECK(obj == 0x77, "object handle written on failure (RC-5)");
    /* RC-6: too small a buffer: the size needed, and the buffer untouched. */
    size = sizeof small;
    EXPECT(P.get_snappath(h, "", g_tree, small, &size), AAPI_EBUFSIZE);
    CHECK(size == strlen(g_tree) + 1 && memcmp(small, "abc", 4) == 0,
          "EBUFSIZE reported %zu (want %zu) or wrote the buffer", size, strlen(g_tree) + 1);
    /* LIFE-4: restore calls in a backup session; LIFE-5: write on an opened object. */
    EXPECT(P.restore_postprocess(h, AAPI_EOK), AAPI_ESEQUENCE);
    EXPECT(P.open_object(h, g_tree, AAPI_OPEN_READ, &obj), AAPI_EOK);
    EXPECT(P.write_object(obj, "x", 1), AAPI_ESEQUENCE);
    EXPECT(P.flush(obj), AAPI_ESEQUENCE);
    {
        char buf[16];
        size_t got = 99;
        EXPECT(P.read_object(obj, buf, 0, &got), AAPI_EINVAL); /* OBJ-1 */
        EXPECT(P.read_object(obj, buf, sizeof buf, &got), AAPI_EOK);
        CHECK(got == 0, "a directory gave %zu bytes (OBJ-3)", got);
    }
    /* LIFE-6: close_server closes the object; both handles are dead afterwards. */
    EXPECT(P.close_server(h), AAPI_EOK);
    EXPECT(P.close_object(obj), AAPI_EBADHANDLE);
    EXPECT(P.close_server(h), AAPI_EBADHANDLE);
    EXPECT(P.terminate(), AAPI_EOK);
    EXPECT(P.terminate(), AAPI_EOK);
    EXPECT(P.open_object(h, g_tree, AAPI_OPEN_READ, &obj), AAPI_ESEQUENCE); /* LIFE-1 */
}

int main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    char templ[4096];
    if (argc != 2) {
        fprintf(stderr, "usage: %s path/to/plugin.so\n", argv[0]);
        return 2;
    }
    load(argv[1]);
    snprintf(templ, sizeof templ, "%s/aapi-roundtrip-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(templ) == NULL)
        die("mkdtemp: %s", strerror(errno));
    g_work = templ;
    make_tree();

    bad_calls();
    full_round_trip();
    incremental();
    cancelled();
    snapshot_ancestors();
    snapshot_too_long();
    failed_restore();
    confined_restore();
    concurrent_rollback();
    deep_snapshot();

    remove_all(g_work);
    free(g_tree);
    if (failures > 0) {
        fprintf(stderr, "roundtrip: %d check(s) failed\n", failures);
        return 1;
    }
    printf("roundtrip: all checks passed\n");
    return 0;
}
