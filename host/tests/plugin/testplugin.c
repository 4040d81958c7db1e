/*
 * A small "files" workload plugin used by the aapi-host tests, with fault injection.
 *
 * It backs up and restores local directory trees (no snapshots, round-robin split) and can be told
 * to misbehave through the environment, so the host's supervision can be tested:
 *
 *   AAPI_TEST_FAULT=<kind>:<function>[:<arg>]   kind: crash | hang | slow | pause | exit | fork |
 *                                               ignore-cancel | fail | late-keepalive
 *   AAPI_TEST_FAULT_AFTER=<n>                   trigger only from the n-th call of <function> on
 *   AAPI_TEST_FAULT_COUNT=<n>                   and only n times
 *
 * crash: SIGSEGV; hang: sleep forever without keepalive; slow: take <arg> ms, with a keepalive
 * every 20 ms, returning AAPI_ECANCELLED when cancelled; pause: take <arg> ms without any
 * keepalive, then go on normally (a short call of a plugin that never keeps alive); exit: end the
 * process with _exit(<arg>) inside the call; fork: start a child process that sleeps 30 s (its
 * pid written to $AAPI_TEST_FORK_PIDFILE), then go on normally (after <arg> ms as slow, when
 * <arg> is given); ignore-cancel: keep sending keepalives
 * forever and ignore their answer; fail: return code <arg>; late-keepalive: call the keepalive
 * of the last session closed (which the contract forbids), then go on normally.
 *
 * Compile-time variants: -DTEST_OMIT_SYMBOLS drops aapi_flush and aapi_delete_object;
 * -DTEST_ABI_MAJOR=<n> exports a marker with another ABI major; -DTEST_CTOR_SLEEP_MS=<n> sleeps in
 * a library constructor (while the library is being loaded); -DTEST_DTOR_SLEEP_MS=<n> sleeps in a
 * library destructor (while the worker process exits).
 */
#define _GNU_SOURCE
#include "aapi.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <unwind.h>

#ifdef TEST_ABI_MAJOR
const aapi_abi_marker_t aapi_abi_marker = {
    {'A', 'A', 'P', 'I', 'A', 'B', 'I', 0}, TEST_ABI_MAJOR, 0, sizeof(aapi_abi_marker_t)};
#else
AAPI_DEFINE_ABI_MARKER();
#endif

#ifdef TEST_CTOR_SLEEP_MS
__attribute__((constructor)) static void slow_constructor(void) {
    struct timespec ts = {TEST_CTOR_SLEEP_MS / 1000, (TEST_CTOR_SLEEP_MS % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
#endif

#ifdef TEST_DTOR_SLEEP_MS
__attribute__((destructor)) static void slow_destructor(void) {
    struct timespec ts = {TEST_DTOR_SLEEP_MS / 1000, (TEST_DTOR_SLEEP_MS % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
#endif

static int g_init, g_claimed;
static aapi_log_fn g_log;
static void *g_log_ctx;
/* The keepalive of the last session closed, for the late-keepalive fault. */
static aapi_keepalive_fn g_closed_keepalive;
static void *g_closed_ctx;
static char g_err[512];

#define MAX_SERVERS 16
#define MAX_OBJECTS 64
#define MAX_CREATED 4096

struct server {
    int used;
    uint32_t op;
    const aapi_session_def_t *sd;
    int preprocessed, postprocessed;
};
static struct server g_servers[MAX_SERVERS];

struct object {
    int used, writing;
    uint64_t server;
    uint32_t type;
    int fd;
    char *path, *tmp;
    char *data; /* symlink target */
    size_t len, pos, cap;
    aapi_object_prop_t prop;
};
static struct object g_objects[MAX_OBJECTS];
static char *g_created[MAX_CREATED];
static int g_ncreated;

static int fail(int code, const char *fmt, const char *arg) {
    snprintf(g_err, sizeof g_err, fmt, arg ? arg : "");
    return code;
}

static void slog(struct server *s, uint32_t level, const char *msg) {
    if (s && s->sd) s->sd->sd_log_callback(s->sd->sd_callback_ctx, level, msg);
    else if (g_log) g_log(g_log_ctx, level, msg);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Fault injection: returns -1 to go on normally, else the code to return. */
static int fault(const char *function, struct server *s) {
    static int calls[32];
    static const char *names[32];
    const char *spec = getenv("AAPI_TEST_FAULT");
    if (!spec) return -1;
    const char *colon = strchr(spec, ':');
    if (!colon) return -1;
    size_t kind_len = (size_t)(colon - spec);
    const char *fn = colon + 1;
    const char *arg = strchr(fn, ':');
    size_t fn_len = arg ? (size_t)(arg - fn) : strlen(fn);
    if (strlen(function) != fn_len || strncmp(function, fn, fn_len) != 0) return -1;
    int slot = 0;
    while (slot < 31 && names[slot] && names[slot] != function) slot++;
    names[slot] = function;
    int n = ++calls[slot];
    const char *after = getenv("AAPI_TEST_FAULT_AFTER");
    const char *count = getenv("AAPI_TEST_FAULT_COUNT");
    int first = after ? atoi(after) : 1;
    if (n < first) return -1;
    if (count && n >= first + atoi(count)) return -1;
    if (!strncmp(spec, "crash", kind_len)) {
        volatile int *p = NULL;
        *p = 1;
    }
    if (!strncmp(spec, "hang", kind_len)) {
        for (;;) sleep_ms(1000);
    }
    if (!strncmp(spec, "slow", kind_len)) {
        long total = arg ? atol(arg + 1) : 1000;
        for (long t = 0; t < total; t += 20) {
            if (s && s->sd->sd_keepalive_callback(s->sd->sd_callback_ctx) != AAPI_EOK)
                return fail(AAPI_ECANCELLED, "cancelled in %s", function);
            sleep_ms(20);
        }
        return -1;
    }
    if (!strncmp(spec, "exit", kind_len)) _exit(arg ? atoi(arg + 1) : 0);
    if (!strncmp(spec, "fork", kind_len)) {
        pid_t pid = fork();
        if (pid == 0) {
            sleep_ms(30000);
            _exit(0);
        }
        const char *pidfile = getenv("AAPI_TEST_FORK_PIDFILE");
        FILE *f = pidfile ? fopen(pidfile, "w") : NULL;
        if (f) {
            fprintf(f, "%d\n", (int)pid);
            fclose(f);
        }
        for (long t = 0, total = arg ? atol(arg + 1) : 0; t < total; t += 20) {
            if (s && s->sd->sd_keepalive_callback(s->sd->sd_callback_ctx) != AAPI_EOK)
                return fail(AAPI_ECANCELLED, "cancelled in %s", function);
            sleep_ms(20);
        }
        return -1;
    }
    if (!strncmp(spec, "pause", kind_len)) {
        sleep_ms(arg ? atol(arg + 1) : 100);
        return -1;
    }
    if (!strncmp(spec, "ignore-cancel", kind_len)) {
        for (;;) {
            if (s) s->sd->sd_keepalive_callback(s->sd->sd_callback_ctx);
            sleep_ms(20);
        }
    }
    if (!strncmp(spec, "late-keepalive", kind_len)) {
        if (g_closed_keepalive) (void)g_closed_keepalive(g_closed_ctx);
        return -1;
    }
    if (!strncmp(spec, "throw", kind_len)) {
        /* What a C++ `throw` out of an entry point does: a foreign exception starts unwinding
         * through the caller's frames. */
        static struct _Unwind_Exception exc;
        memset(&exc, 0, sizeof exc);
        exc.exception_class = 0x5445535400000000ull; /* "TEST" */
        _Unwind_RaiseException(&exc);
        abort(); /* no handler was found at all */
    }
    if (!strncmp(spec, "closefds", kind_len)) {
        /* Daemon-style code: close every descriptor but the standard ones. */
        for (int fd = 3; fd < 1024; fd++) close(fd);
        return -1;
    }
    if (!strncmp(spec, "ctlnull", kind_len)) {
        /* Put /dev/null over the worker's control pipe (a plugin reusing a descriptor number). */
        const char *ctl = getenv("AAPI_WORKER_CONTROL_FD");
        int null = open("/dev/null", O_RDONLY);
        if (ctl && null >= 0) dup2(null, atoi(ctl));
        if (null >= 0) close(null);
        return -1;
    }
    if (!strncmp(spec, "print", kind_len)) {
        printf("testplugin: printed in %s\n", function);
        fflush(stdout);
        return -1;
    }
    if (!strncmp(spec, "fail", kind_len)) return fail(arg ? atoi(arg + 1) : AAPI_EIO, "injected failure in %s", function);
    return -1;
}

#define FAULT(s)                                   \
    do {                                           \
        int fault_rc_ = fault(__func__, (s));      \
        if (fault_rc_ >= 0) return fault_rc_;      \
    } while (0)

static struct server *server_of(aapi_server_t h) {
    if (h == 0 || h > MAX_SERVERS || !g_servers[h - 1].used) return NULL;
    return &g_servers[h - 1];
}

static struct object *object_of(aapi_object_t h) {
    if (h < 1000 || h >= 1000 + MAX_OBJECTS || !g_objects[h - 1000].used) return NULL;
    return &g_objects[h - 1000];
}

int aapi_pgn_init(const aapi_host_info_t *host, aapi_plugin_info_t *info) {
    if (!host || !info) return AAPI_EINVAL;
    if (host->abi_major != AAPI_ABI_MAJOR) return AAPI_EABI;
    if (g_init) return AAPI_ESEQUENCE;
    FAULT(NULL);
    g_log = host->log_callback;
    g_log_ctx = host->callback_ctx;
    info->abi_major = AAPI_ABI_MAJOR;
    info->abi_minor = AAPI_ABI_MINOR;
    info->name = "files-test";
    info->version = "0.1.0";
    info->vendor = "aapi project tests";
#ifdef TEST_WORKLOAD_TYPES
    info->workload_types = TEST_WORKLOAD_TYPES;
#else
    info->workload_types = "files";
#endif
    info->capabilities = AAPI_CAP_RESTORE | AAPI_CAP_ALTERNATE_RESTORE;
    info->max_concurrent_objects = 1;
    g_init = 1;
    return AAPI_EOK;
}

int aapi_pgn_claim(const char *type) {
    if (!type || !*type) return AAPI_EINVAL;
    if (!g_init) return AAPI_ESEQUENCE;
#ifdef TEST_WORKLOAD_TYPES
    /* One type of its own (a list of several is only for the init checks). */
    if (strcmp(type, TEST_WORKLOAD_TYPES)) return AAPI_ENOTCLAIMED;
#else
    if (strcmp(type, "files")) return AAPI_ENOTCLAIMED;
#endif
    g_claimed = 1;
    return AAPI_EOK;
}

int aapi_open_server(const char *name, const aapi_session_def_t *sd, aapi_server_t *out) {
    if (!name || !sd || !out || !*name) return AAPI_EINVAL;
    if (!g_claimed) return AAPI_ESEQUENCE;
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (!g_servers[i].used) {
            memset(&g_servers[i], 0, sizeof g_servers[i]);
            g_servers[i].used = 1;
            g_servers[i].op = sd->sd_operation;
            g_servers[i].sd = sd;
            FAULT(&g_servers[i]);
            *out = (aapi_server_t)(i + 1);
            return AAPI_EOK;
        }
    }
    return AAPI_ENOMEM;
}

static void close_obj(struct object *o) {
    if (o->fd >= 0) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    free(o->path);
    free(o->tmp);
    free(o->data);
    memset(o, 0, sizeof *o);
}

int aapi_close_server(aapi_server_t h) {
    struct server *s = server_of(h);
    if (!s) return AAPI_EBADHANDLE;
    for (int i = 0; i < MAX_OBJECTS; i++)
        if (g_objects[i].used && g_objects[i].server == h) close_obj(&g_objects[i]);
    g_closed_keepalive = s->sd->sd_keepalive_callback;
    g_closed_ctx = s->sd->sd_callback_ctx;
    s->used = 0;
    return AAPI_EOK;
}

int aapi_get_server_prop(aapi_server_t h, aapi_server_info_t *info) {
    struct server *s = server_of(h);
    if (!info) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    FAULT(s);
    info->srv_flags = AAPI_SRVC_FULL_BACKUP_SUPPORT | AAPI_SRVC_INCR_BACKUP_SUPPORT;
    return AAPI_EOK;
}

/* ---- discovery ---- */

struct entry {
    char *path;
    uint64_t size;
    uint32_t flags;
    struct timespec mtime, ctime;
    uint64_t ino;
};
static struct entry *g_entries;
static size_t g_nentries, g_capentries;

static int walk(const char *path, struct server *s, int64_t since) {
    struct stat st;
    if (lstat(path, &st) != 0) return fail(AAPI_ENOENT, "cannot stat %s", path);
    if (s->sd->sd_keepalive_callback(s->sd->sd_callback_ctx) != AAPI_EOK) return AAPI_ECANCELLED;
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) return AAPI_EOK;
    if (g_nentries == g_capentries) {
        g_capentries = g_capentries ? g_capentries * 2 : 256;
        g_entries = realloc(g_entries, g_capentries * sizeof *g_entries);
    }
    struct entry *e = &g_entries[g_nentries++];
    e->path = strdup(path);
    e->size = S_ISDIR(st.st_mode) ? 0 : (uint64_t)st.st_size;
    e->flags = S_ISDIR(st.st_mode) ? AAPI_WKLD_DIR : S_ISLNK(st.st_mode) ? AAPI_WKLD_SYMLINK : 0;
    e->mtime = st.st_mtim;
    e->ctime = st.st_ctim;
    e->ino = (uint64_t)st.st_ino;
    if (since >= 0 && st.st_mtime < since && st.st_ctime < since) e->flags |= AAPI_WKLD_UNCHANGED;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return fail(AAPI_EACCES, "cannot open directory %s", path);
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            size_t n = strlen(path) + strlen(de->d_name) + 2;
            char *child = malloc(n);
            snprintf(child, n, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", de->d_name);
            int rc = walk(child, s, since);
            free(child);
            if (rc != AAPI_EOK) {
                closedir(d);
                return rc;
            }
        }
        closedir(d);
    }
    return AAPI_EOK;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static uint32_t crc_update(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

struct wfile {
    FILE *f;
    uint32_t crc;
};
static void put(struct wfile *w, const void *p, size_t n) {
    fwrite(p, 1, n, w->f);
    w->crc = crc_update(w->crc, p, n);
}
static void put32(struct wfile *w, uint32_t v) { put(w, &v, 4); }
static void put64(struct wfile *w, uint64_t v) { put(w, &v, 8); }

static int64_t prop_time(const aapi_session_def_t *sd, const char *key) {
    for (size_t i = 0; i < sd->sd_property_count; i++)
        if (!strcmp(sd->sd_properties[i].key, key)) return atoll(sd->sd_properties[i].value);
    return -1;
}

int aapi_discovery(aapi_server_t h, const char *const *sel, const char *const *hosts, const char *dir,
                   const char *suffix, uint32_t sched, aapi_snapid_t *snapid) {
    struct server *s = server_of(h);
    if (!sel || !hosts || !dir || !suffix || !snapid || !sel[0] || !hosts[0]) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    if (s->op != AAPI_OP_DISCOVERY) return AAPI_ESEQUENCE;
    if (sched == AAPI_SCHED_CINC) return fail(AAPI_ESCHED_NOT_SUPPORTED, "cumulative incrementals are not supported%s", NULL);
    if (sched != AAPI_SCHED_FULL && sched != AAPI_SCHED_INCR) return AAPI_ESCHED_NOT_SUPPORTED;
    FAULT(s);
    int64_t since = sched == AAPI_SCHED_INCR ? prop_time(s->sd, AAPI_PROP_LAST_BACKUP_TIME) : -1;
    g_nentries = 0;
    for (int i = 0; sel[i]; i++) {
        if (sel[i][0] != '/') return fail(AAPI_EINVAL, "selection %s is not absolute", sel[i]);
        struct stat st;
        if (lstat(sel[i], &st) != 0) return fail(AAPI_ENOENT, "selection %s does not exist", sel[i]);
    }
    for (int i = 0; sel[i]; i++) {
        int rc = walk(sel[i], s, since);
        if (rc != AAPI_EOK) return rc;
    }
    qsort(g_entries, g_nentries, sizeof *g_entries, cmp_entry);
    int nhosts = 0;
    while (hosts[nhosts]) nhosts++;
    for (int hi = 0; hi < nhosts; hi++) {
        char path[4096], tmp[4200];
        snprintf(path, sizeof path, "%s/%s%s", dir, hosts[hi], suffix);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) return fail(AAPI_EIO, "cannot write %s", tmp);
        struct wfile w = {fdopen(fd, "wb"), 0};
        put(&w, AAPI_WKLD_MAGIC, 8);
        put32(&w, AAPI_WKLD_FORMAT_VERSION);
        put32(&w, 0);
        put32(&w, 0);
        put32(&w, (uint32_t)strlen(hosts[hi]));
        put(&w, hosts[hi], strlen(hosts[hi]));
        uint64_t count = 0;
        for (size_t i = (size_t)hi; i < g_nentries; i += (size_t)nhosts) {
            uint32_t plen = (uint32_t)strlen(g_entries[i].path);
            put32(&w, 16 + plen + 32);
            put64(&w, g_entries[i].size);
            put32(&w, g_entries[i].flags);
            put32(&w, plen);
            put(&w, g_entries[i].path, plen);
            /* The stamp extension (docs/workload-file.md). */
            put64(&w, (uint64_t)(int64_t)g_entries[i].mtime.tv_sec);
            put32(&w, (uint32_t)g_entries[i].mtime.tv_nsec);
            put64(&w, (uint64_t)(int64_t)g_entries[i].ctime.tv_sec);
            put32(&w, (uint32_t)g_entries[i].ctime.tv_nsec);
            put64(&w, g_entries[i].ino);
            count++;
        }
        put32(&w, 0);
        put64(&w, count);
        uint32_t crc = w.crc;
        fwrite(&crc, 1, 4, w.f);
        if (fclose(w.f) != 0 || rename(tmp, path) != 0) return fail(AAPI_EIO, "cannot write %s", path);
    }
    for (size_t i = 0; i < g_nentries; i++) free(g_entries[i].path);
    if (getenv("AAPI_TEST_FILL_AFTER_DISCOVERY")) {
        /* Fill the file system of the workload directory (the store's) once the files are
         * written: the framework's next write there fails. */
        static char zeros[65536];
        char filler[4200];
        snprintf(filler, sizeof filler, "%s/filler", dir);
        int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        while (fd >= 0 && write(fd, zeros, sizeof zeros) > 0) {
        }
        if (fd >= 0) close(fd);
    }
    snapid->id[0] = 0;
    return AAPI_EOK;
}

int aapi_postprocess(aapi_server_t h, const char *const *sel, const char *const *hosts, const char *dir,
                     const char *suffix, uint32_t sched, const aapi_snapid_t *snapid) {
    struct server *s = server_of(h);
    (void)sel, (void)hosts, (void)dir, (void)suffix, (void)sched;
    if (!snapid) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    if (s->op != AAPI_OP_POSTPROCESS) return AAPI_ESEQUENCE;
    FAULT(s);
    slog(s, AAPI_LOG_INFO, "postprocess ran");
    return AAPI_EOK;
}

int aapi_get_snappath_from_realpath(aapi_server_t h, const char *snap, const char *real, char *out,
                                    size_t *size) {
    struct server *s = server_of(h);
    if (!snap || !real || !size) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    FAULT(s);
    size_t need = strlen(real) + 1;
    if (*size < need || !out) {
        *size = need;
        return AAPI_EBUFSIZE;
    }
    memcpy(out, real, need);
    *size = need;
    return AAPI_EOK;
}

static void fill_prop(const struct stat *st, aapi_object_prop_t *p) {
    p->obj_type = S_ISDIR(st->st_mode) ? AAPI_OBJ_DIR : S_ISLNK(st->st_mode) ? AAPI_OBJ_SYMLINK : AAPI_OBJ_FILE;
    p->valid = AAPI_PROP_SIZE | AAPI_PROP_MODE | AAPI_PROP_OWNER | AAPI_PROP_ATIME | AAPI_PROP_MTIME | AAPI_PROP_CTIME;
    p->mode = st->st_mode & 07777;
    p->size = S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size;
    p->uid = st->st_uid;
    p->gid = st->st_gid;
    p->atime.sec = st->st_atim.tv_sec;
    p->atime.nsec = (uint32_t)st->st_atim.tv_nsec;
    p->mtime.sec = st->st_mtim.tv_sec;
    p->mtime.nsec = (uint32_t)st->st_mtim.tv_nsec;
    p->ctime.sec = st->st_ctim.tv_sec;
    p->ctime.nsec = (uint32_t)st->st_ctim.tv_nsec;
}

static struct object *new_object(aapi_server_t h, aapi_object_t *out) {
    for (int i = 0; i < MAX_OBJECTS; i++) {
        if (!g_objects[i].used) {
            memset(&g_objects[i], 0, sizeof g_objects[i]);
            g_objects[i].used = 1;
            g_objects[i].fd = -1;
            g_objects[i].server = h;
            *out = (aapi_object_t)(1000 + i);
            return &g_objects[i];
        }
    }
    return NULL;
}

int aapi_open_object(aapi_server_t h, const char *path, uint32_t flags, aapi_object_t *out) {
    struct server *s = server_of(h);
    if (!path || !out || flags != AAPI_OPEN_READ) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    if (s->op != AAPI_OP_BACKUP) return AAPI_ESEQUENCE;
    FAULT(s);
    struct stat st;
    if (lstat(path, &st) != 0) return fail(AAPI_ENOENT, "%s does not exist", path);
    aapi_object_t handle;
    struct object *o = new_object(h, &handle);
    if (!o) return AAPI_ENOMEM;
    fill_prop(&st, &o->prop);
    o->type = o->prop.obj_type;
    o->path = strdup(path);
    if (o->type == AAPI_OBJ_FILE) {
        o->fd = open(path, O_RDONLY | O_NOFOLLOW);
        if (o->fd < 0) {
            close_obj(o);
            return fail(AAPI_EACCES, "cannot open %s", path);
        }
    } else if (o->type == AAPI_OBJ_SYMLINK) {
        o->data = malloc(st.st_size + 1);
        ssize_t n = readlink(path, o->data, st.st_size + 1);
        o->len = n < 0 ? 0 : (size_t)n;
    }
    *out = handle;
    return AAPI_EOK;
}

static int make_parents(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(path, 0700) == 0 && g_ncreated < MAX_CREATED) g_created[g_ncreated++] = strdup(path);
            *p = '/';
        }
    }
    return 0;
}

int aapi_create_object(aapi_server_t h, const char *path, const aapi_object_prop_t *prop, uint32_t flags,
                       aapi_object_t *out) {
    struct server *s = server_of(h);
    if (!path || !prop || !out || path[0] != '/' || (flags & ~AAPI_CREATE_OVERWRITE)) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    if (s->op != AAPI_OP_RESTORE || !s->preprocessed || s->postprocessed) return AAPI_ESEQUENCE;
    FAULT(s);
    struct stat st;
    if (!(flags & AAPI_CREATE_OVERWRITE) && lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        return fail(AAPI_EEXIST, "%s exists", path);
    aapi_object_t handle;
    struct object *o = new_object(h, &handle);
    if (!o) return AAPI_ENOMEM;
    o->writing = 1;
    o->type = prop->obj_type;
    o->prop = *prop;
    o->path = strdup(path);
    make_parents(o->path);
    if (o->type == AAPI_OBJ_FILE) {
        size_t n = strlen(path) + 16;
        o->tmp = malloc(n);
        snprintf(o->tmp, n, "%s.aapi-tmp", path);
        o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o->fd < 0) {
            int e = errno;
            close_obj(o);
            return fail(e == ENOSPC ? AAPI_ENOSPC : AAPI_EIO, "cannot create %s", path);
        }
    } else if (o->type == AAPI_OBJ_DIR) {
        if (mkdir(path, 0700) == 0 && g_ncreated < MAX_CREATED) g_created[g_ncreated++] = strdup(path);
    } else if (o->type != AAPI_OBJ_SYMLINK) {
        close_obj(o);
        return AAPI_ENOTSUP;
    }
    *out = handle;
    return AAPI_EOK;
}

#ifndef TEST_OMIT_SYMBOLS
int aapi_delete_object(aapi_server_t h, const char *path) {
    struct server *s = server_of(h);
    if (!path) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    if (s->op != AAPI_OP_RESTORE) return AAPI_ESEQUENCE;
    if (unlink(path) != 0 && rmdir(path) != 0) return AAPI_ENOENT;
    return AAPI_EOK;
}
#endif

int aapi_read_object(aapi_object_t h, void *buf, size_t size, size_t *got) {
    struct object *o = object_of(h);
    if (!buf || !got || size == 0) return AAPI_EINVAL;
    if (!o) return AAPI_EBADHANDLE;
    if (o->writing) return AAPI_ESEQUENCE;
    FAULT(server_of(o->server));
    if (o->type == AAPI_OBJ_FILE) {
        ssize_t n = read(o->fd, buf, size);
        if (n < 0) return fail(AAPI_EIO, "read error on %s", o->path);
        *got = (size_t)n;
    } else if (o->type == AAPI_OBJ_SYMLINK) {
        size_t n = o->len - o->pos < size ? o->len - o->pos : size;
        memcpy(buf, o->data + o->pos, n);
        o->pos += n;
        *got = n;
    } else {
        *got = 0;
    }
    return AAPI_EOK;
}

int aapi_write_object(aapi_object_t h, const void *buf, size_t len) {
    struct object *o = object_of(h);
    if (!buf && len) return AAPI_EINVAL;
    if (!o) return AAPI_EBADHANDLE;
    if (!o->writing) return AAPI_ESEQUENCE;
    FAULT(server_of(o->server));
    if (o->type == AAPI_OBJ_FILE) {
        const char *p = buf;
        while (len) {
            ssize_t n = write(o->fd, p, len);
            if (n < 0) return fail(errno == ENOSPC ? AAPI_ENOSPC : AAPI_EIO, "write error on %s", o->path);
            p += n;
            len -= (size_t)n;
        }
    } else if (o->type == AAPI_OBJ_SYMLINK) {
        if (o->len + len > o->cap) {
            o->cap = (o->len + len) * 2;
            o->data = realloc(o->data, o->cap + 1);
        }
        memcpy(o->data + o->len, buf, len);
        o->len += len;
    } else if (len) {
        return AAPI_EINVAL;
    }
    return AAPI_EOK;
}

#ifndef TEST_OMIT_SYMBOLS
int aapi_flush(aapi_object_t h) {
    struct object *o = object_of(h);
    if (!o) return AAPI_EBADHANDLE;
    if (!o->writing) return AAPI_ESEQUENCE;
    if (o->fd >= 0 && fsync(o->fd) != 0) return AAPI_EIO;
    return AAPI_EOK;
}
#endif

int aapi_close_object(aapi_object_t h) {
    struct object *o = object_of(h);
    if (!o) return AAPI_EBADHANDLE;
    int rc = AAPI_EOK;
    if (o->writing) {
        if (o->type == AAPI_OBJ_FILE) {
            fchmod(o->fd, o->prop.mode & 0777);
            close(o->fd);
            o->fd = -1;
            if (rename(o->tmp, o->path) != 0) rc = AAPI_EIO;
            else if (g_ncreated < MAX_CREATED) g_created[g_ncreated++] = strdup(o->path);
        } else if (o->type == AAPI_OBJ_SYMLINK) {
            o->data = realloc(o->data, o->len + 1);
            o->data[o->len] = 0;
            unlink(o->path);
            if (symlink(o->data, o->path) != 0) rc = AAPI_EIO;
            else if (g_ncreated < MAX_CREATED) g_created[g_ncreated++] = strdup(o->path);
        } else {
            chmod(o->path, o->prop.mode & 07777);
        }
    }
    close_obj(o);
    return rc;
}

int aapi_get_object_prop(aapi_object_t h, aapi_object_prop_t *p) {
    struct object *o = object_of(h);
    if (!p) return AAPI_EINVAL;
    if (!o) return AAPI_EBADHANDLE;
    FAULT(server_of(o->server));
    uint32_t size = p->struct_size;
    *p = o->prop;
    p->struct_size = size;
    return AAPI_EOK;
}

int aapi_get_object_prop_byname(aapi_server_t h, const char *path, aapi_object_prop_t *p) {
    struct server *s = server_of(h);
    if (!path || !p) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    FAULT(s);
    struct stat st;
    if (lstat(path, &st) != 0) return fail(AAPI_ENOENT, "%s does not exist", path);
    uint32_t size = p->struct_size;
    fill_prop(&st, p);
    p->struct_size = size;
    return AAPI_EOK;
}

int aapi_set_object_utimes(aapi_server_t h, const char *path, const aapi_time_t *at, const aapi_time_t *mt) {
    struct server *s = server_of(h);
    if (!path) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    if (s->op != AAPI_OP_RESTORE) return AAPI_ESEQUENCE;
    FAULT(s);
    struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (at) ts[0] = (struct timespec){at->sec, at->nsec};
    if (mt) ts[1] = (struct timespec){mt->sec, mt->nsec};
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) return fail(AAPI_ENOENT, "cannot set times of %s", path);
    return AAPI_EOK;
}

int aapi_restore_preprocess(aapi_server_t h, const aapi_restore_info_t *info) {
    struct server *s = server_of(h);
    if (!info || !info->target_root) return AAPI_EINVAL;
    if (!s) return AAPI_EBADHANDLE;
    if (s->op != AAPI_OP_RESTORE || s->preprocessed) return AAPI_ESEQUENCE;
    FAULT(s);
    struct stat st;
    if (info->target_root[0] && (stat(info->target_root, &st) != 0 || !S_ISDIR(st.st_mode)))
        return fail(AAPI_ENOENT, "target root %s does not exist", info->target_root);
    s->preprocessed = 1;
    g_ncreated = 0;
    return AAPI_EOK;
}

int aapi_restore_postprocess(aapi_server_t h, int status) {
    struct server *s = server_of(h);
    if (!s) return AAPI_EBADHANDLE;
    if (s->op != AAPI_OP_RESTORE || !s->preprocessed || s->postprocessed) return AAPI_ESEQUENCE;
    s->postprocessed = 1;
    char msg[64];
    snprintf(msg, sizeof msg, "restore_postprocess status=%d", status);
    slog(s, AAPI_LOG_INFO, msg);
    if (status != AAPI_EOK) {
        /* Objects still open (abandoned by the host) go first, with their temporary files. */
        for (int i = 0; i < MAX_OBJECTS; i++)
            if (g_objects[i].used && g_objects[i].server == h) close_obj(&g_objects[i]);
        for (int i = g_ncreated - 1; i >= 0; i--) {
            if (unlink(g_created[i]) != 0) rmdir(g_created[i]);
        }
    }
    for (int i = 0; i < g_ncreated; i++) free(g_created[i]);
    g_ncreated = 0;
    return AAPI_EOK;
}

int aapi_terminate(void) {
    FAULT(NULL);
    for (int i = 0; i < MAX_SERVERS; i++)
        if (g_servers[i].used) aapi_close_server((aapi_server_t)(i + 1));
    g_init = g_claimed = 0;
    return AAPI_EOK;
}

int aapi_get_last_error(char *buf, size_t *size) {
    if (!size) return AAPI_EINVAL;
    size_t need = strlen(g_err) + 1;
    if (*size < need || !buf) {
        *size = need;
        return AAPI_EBUFSIZE;
    }
    memcpy(buf, g_err, need);
    *size = need;
    return AAPI_EOK;
}
