/*
 * The zoo: one small but complete plugin of the `files` workload, and deliberately broken
 * variants of it. Built without any ZOO_* macro it keeps the whole contract; each ZOO_* macro
 * breaks one rule; tests/zoo.rs lists the clauses each variant must fail, and nothing else.
 *
 * Simplifications against the sample plugins: no snapshots (the snapshot id is always ""),
 * restore needs absolute paths, and the property `zoo.walk_delay_us` slows the discovery walk
 * down per entry so that tests get a long call cheaply.
 */
#define _GNU_SOURCE
#ifdef ZOO_MISSING_SYMBOL
#define aapi_flush zoo_unexported_flush
#endif
#include "aapi.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>
#include <unwind.h>

#ifdef ZOO_ABI_MAJOR
const aapi_abi_marker_t aapi_abi_marker = {"AAPIABI", AAPI_ABI_MAJOR + 1, 0, 16};
#define PLUGIN_MAJOR (AAPI_ABI_MAJOR + 1)
#elif defined(ZOO_BAD_MAGIC)
const aapi_abi_marker_t aapi_abi_marker = {"AAPIAB", AAPI_ABI_MAJOR, AAPI_ABI_MINOR, 16};
#define PLUGIN_MAJOR AAPI_ABI_MAJOR
#elif !defined(ZOO_NO_MARKER)
AAPI_DEFINE_ABI_MARKER();
#define PLUGIN_MAJOR AAPI_ABI_MAJOR
#else
#define PLUGIN_MAJOR AAPI_ABI_MAJOR
#endif

#ifdef ZOO_CONSTRUCTOR
__attribute__((constructor)) static void zoo_ctor(void) { fputs("zoo: loaded\n", stderr); }
#endif
#ifdef ZOO_CONSTRUCTOR_HANG
__attribute__((constructor)) static void zoo_ctor(void) { sleep(600); }
#endif

#ifdef ZOO_DTOR_HANG
__attribute__((destructor)) static void zoo_dtor(void) { sleep(600); }
#endif
#ifdef ZOO_DTOR_CRASH
__attribute__((destructor)) static void zoo_dtor(void) { abort(); }
#endif

#ifdef ZOO_UNDEFINED
extern void aapi_framework_service(void);
#endif

#define MAX_SERVERS 256
#define MAX_OBJECTS 16384
#define SERVER_TAG 0x5300000000000000ULL
#define OBJECT_TAG 0x4f00000000000000ULL

/* ------------------------------------------------------------------------------------------ */
/* State, errors, logging                                                                     */
/* ------------------------------------------------------------------------------------------ */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* Guards every server's list of created objects: object calls of one server run concurrently. */
static pthread_mutex_t g_created_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_init, g_ever_init, g_claimed;
static uint64_t g_seq = 1;
#ifdef ZOO_SLOW_POSTPROCESS
static int g_slow_walk_seen; /* a slowed discovery ran in this process */
#endif
static aapi_log_fn g_host_log;
static void *g_host_ctx;
#ifdef ZOO_GLOBAL_ERROR
static char t_err[512];
#else
static __thread char t_err[512];
#endif
#ifdef ZOO_INFO_HEAP
static char *g_name;
#endif
#ifdef ZOO_INIT_FD
static int g_init_fd = -1;
#endif
#if defined(ZOO_STRAY_CALLBACK) || defined(ZOO_THREAD_LEAK)
static pthread_t g_thread;
#endif
#ifdef ZOO_LATE_CALLBACK
/* the keepalive of the last session closed, as a shared worker pool may still hold it */
static aapi_keepalive_fn g_stale_keepalive;
static void *g_stale_ctx;
#endif

/* Whether a struct passed in is too small for this plugin: ABI-4 refuses one below the ABI 1.0
 * size and accepts a larger one (a newer 1.x framework's), of which it reads only its own part. */
#ifdef ZOO_STRICT_SIZE
#define IN_STRUCT_BAD(p) ((p)->struct_size != sizeof *(p)) /* refuses every newer framework */
#else
#define IN_STRUCT_BAD(p) ((p)->struct_size < sizeof *(p))
#endif

static void seterr(const char *fmt, ...) {
#ifdef ZOO_NO_LAST_ERROR
    /* every failure leaves aapi_get_last_error at "", the message of "no call failed" */
    (void)fmt;
#else
#ifdef ZOO_FIRST_ERROR
    /* keeps the first failure's message of a thread instead of the last's */
    if (t_err[0]) return;
#endif
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_err, sizeof t_err, fmt, ap);
    va_end(ap);
#endif
}

#define FAIL(code, ...)          \
    do {                         \
        seterr(__VA_ARGS__);     \
        return (code);           \
    } while (0)

typedef struct created {
    char *path;
    char *aside; /* non-NULL: an existing object was set aside here and `path` replaced it */
} created_t;

typedef struct server {
    uint64_t h;
    uint32_t op;
    const aapi_session_def_t *def;
    int disc_done, pp_done, pre_done, post_done;
    char root[PATH_MAX]; /* the restore's target root ("" for the original place) */
    unsigned walk_delay_us;
    created_t *created;
    size_t ncreated, capcreated;
} server_t;

typedef struct object {
    uint64_t h;
    uint64_t server;
    int writing, closed;
    uint32_t type;
    int fd;
#ifdef ZOO_LEAK_FD
    int leak;
#endif
    char *path, *tmp;
    char *buf;
    size_t len, cap, pos;
    struct stat st;
    aapi_object_prop_t prop;
    int overwrite, existed;
} object_t;

static server_t g_servers[MAX_SERVERS];
static object_t *g_objects[MAX_OBJECTS];

#ifdef ZOO_GLOBAL_SESSION
/* the callbacks of "the current session": the last one opened, whichever session calls (THR-3) */
static aapi_log_fn g_cur_log;
static aapi_keepalive_fn g_cur_keepalive;
static void *g_cur_ctx;
#endif

static void slog(server_t *s, uint32_t level, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
#ifdef ZOO_GLOBAL_SESSION
    if (s && g_cur_log) {
        g_cur_log(g_cur_ctx, level, line);
        return;
    }
#endif
    if (s && s->def && s->def->sd_log_callback)
        s->def->sd_log_callback(s->def->sd_callback_ctx, level, line);
    else if (g_host_log)
        g_host_log(g_host_ctx, level, line);
}

static int live(void) {
#ifdef ZOO_AFTER_TERMINATE
    return g_ever_init;
#else
    return g_init;
#endif
}

static server_t *server_of(uint64_t h) {
    if ((h & 0xff00000000000000ULL) != SERVER_TAG) return NULL;
    for (int i = 0; i < MAX_SERVERS; i++)
        if (g_servers[i].h == h && h != 0) return &g_servers[i];
    return NULL;
}

static object_t *object_of(uint64_t h) {
    if ((h & 0xff00000000000000ULL) != OBJECT_TAG) return NULL;
    object_t *o = NULL;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_OBJECTS; i++)
        if (g_objects[i] && g_objects[i]->h == h) {
            o = g_objects[i];
            break;
        }
    pthread_mutex_unlock(&g_lock);
    return o;
}

static uint64_t next_handle(uint64_t tag) {
    return tag | __atomic_fetch_add(&g_seq, 1, __ATOMIC_SEQ_CST);
}

static int keepalive(server_t *s) {
#ifdef ZOO_GLOBAL_SESSION
    if (g_cur_keepalive) return g_cur_keepalive(g_cur_ctx);
#endif
    if (!s->def->sd_keepalive_callback) return AAPI_EOK;
    return s->def->sd_keepalive_callback(s->def->sd_callback_ctx);
}

static const char *prop_value(server_t *s, const char *key) {
    for (size_t i = 0; i < s->def->sd_property_count; i++)
        if (s->def->sd_properties[i].key && strcmp(s->def->sd_properties[i].key, key) == 0)
            return s->def->sd_properties[i].value;
    return NULL;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------------------------------ */
/* Init, claim, terminate, last error                                                         */
/* ------------------------------------------------------------------------------------------ */

#if defined(ZOO_STRAY_CALLBACK)
static void *stray(void *arg) {
    (void)arg;
    usleep(100 * 1000);
    if (g_host_log) g_host_log(g_host_ctx, AAPI_LOG_INFO, "zoo: hello from a background thread");
    return NULL;
}
#elif defined(ZOO_THREAD_LEAK)
static void *forever(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}
#endif

static void close_object_internal(object_t *o, int discard);
static void free_object(object_t *o);

static void reset_tables(void) {
    for (int i = 0; i < MAX_OBJECTS; i++)
        if (g_objects[i]) {
            close_object_internal(g_objects[i], 1);
            free_object(g_objects[i]);
            g_objects[i] = NULL;
        }
    for (int i = 0; i < MAX_SERVERS; i++) {
        server_t *s = &g_servers[i];
        for (size_t j = 0; j < s->ncreated; j++) {
            free(s->created[j].path);
            free(s->created[j].aside);
        }
        free(s->created);
        memset(s, 0, sizeof *s);
    }
}

int aapi_pgn_init(const aapi_host_info_t *host_info, aapi_plugin_info_t *plugin_info) {
    if (!host_info || !plugin_info) FAIL(AAPI_EINVAL, "aapi_pgn_init: NULL argument");
#ifndef ZOO_ACCEPT_MAJOR
    if (host_info->abi_major != PLUGIN_MAJOR)
        FAIL(AAPI_EABI, "host ABI major %u, plugin %u", host_info->abi_major, PLUGIN_MAJOR);
#endif
    if (IN_STRUCT_BAD(host_info) || plugin_info->struct_size < sizeof(aapi_plugin_info_t))
        FAIL(AAPI_EABI, "struct_size too small");
#ifndef ZOO_DOUBLE_INIT
    if (g_init) FAIL(AAPI_ESEQUENCE, "aapi_pgn_init: already initialised");
#endif
    g_host_log = host_info->log_callback;
    g_host_ctx = host_info->callback_ctx;
#ifdef ZOO_CLOSE_FDS
    /* Daemon-style code: close every descriptor but the standard ones, the framework's too. */
    for (int fd = 3; fd < 1024; fd++) close(fd);
#endif
    aapi_plugin_info_t info;
    memset(&info, 0, sizeof info);
    info.struct_size = plugin_info->struct_size;
    info.abi_major = PLUGIN_MAJOR;
#ifdef ZOO_INFO_MINOR
    info.abi_minor = 7;
#else
    info.abi_minor = AAPI_ABI_MINOR;
#endif
#if defined(ZOO_BAD_NAME)
    info.name = "zoo\tplugin";
#elif defined(ZOO_INFO_HEAP)
    g_name = strdup("zoo");
    info.name = g_name;
#else
    info.name = "zoo";
#endif
    info.version = "1.0";
    info.vendor = "aapi conformance zoo";
#ifdef ZOO_FLAT
    info.workload_types = "flat"; /* a selection is a directory and the entries directly in it */
#else
    info.workload_types = "files";
#endif
#if defined(ZOO_BACKUP_ONLY)
    info.capabilities = AAPI_CAP_CONCURRENT_OBJECTS;
#elif defined(ZOO_NO_ALT_RESTORE)
    info.capabilities = AAPI_CAP_CONCURRENT_OBJECTS | AAPI_CAP_RESTORE;
#else
    info.capabilities = AAPI_CAP_CONCURRENT_OBJECTS | AAPI_CAP_RESTORE | AAPI_CAP_ALTERNATE_RESTORE;
#endif
    info.max_concurrent_objects = 4;
    memcpy((char *)plugin_info + 4, (char *)&info + 4, sizeof info - 4);
    g_init = 1;
    g_ever_init = 1;
    g_claimed = 0;
#ifdef ZOO_INIT_FD
    if (g_init_fd < 0) g_init_fd = open("/dev/null", O_RDONLY);
#endif
#ifdef ZOO_FORK_CHILD
    if (fork() == 0) { /* a helper process that outlives terminate (RES-2) */
        for (int fd = 3; fd < 1024; fd++) close(fd); /* as helpers do; keeps the suite quick */
        sleep(120);
        _exit(0);
    }
#endif
#if defined(ZOO_STRAY_CALLBACK)
    pthread_create(&g_thread, NULL, stray, NULL);
#elif defined(ZOO_THREAD_LEAK)
    pthread_create(&g_thread, NULL, forever, NULL);
    pthread_detach(g_thread);
#endif
    return AAPI_EOK;
}

int aapi_pgn_claim(const char *workload_type) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_pgn_claim before aapi_pgn_init");
    if (!workload_type || !*workload_type) FAIL(AAPI_EINVAL, "aapi_pgn_claim: empty type");
#ifdef ZOO_CLAIM_REFUSED
    FAIL(AAPI_ENOTCLAIMED, "not claimed: %s", workload_type);
#endif
#ifndef ZOO_CLAIM_ANY
#ifdef ZOO_FLAT
    if (strcmp(workload_type, "flat") != 0) FAIL(AAPI_ENOTCLAIMED, "not claimed: %s", workload_type);
#else
    if (strcmp(workload_type, "files") != 0) FAIL(AAPI_ENOTCLAIMED, "not claimed: %s", workload_type);
#endif
#endif
#ifdef ZOO_SLOW_CLAIM
    usleep(1300 * 1000); /* over the tests' [timing] budget (1 s), within call_budget_ms (2 s) */
#endif
    g_claimed = 1;
    return AAPI_EOK;
}

int aapi_terminate(void) {
#ifdef ZOO_TERMINATE_TWICE
    if (!g_init) FAIL(AAPI_ESEQUENCE, "aapi_terminate: not initialised");
#endif
    if (!g_init) return AAPI_EOK;
#ifdef ZOO_EXIT_IN_TERMINATE
    _exit(0); /* ends the framework's process, with a status that looks like success */
#endif
#ifdef ZOO_CRASH_IN_SECOND_TERMINATE
    { /* frees a global that a new init does not re-create: the second cycle crashes */
        static int cycles;
        if (++cycles == 2) *(volatile int *)8 = 1;
    }
#endif
    reset_tables();
#ifdef ZOO_STRAY_CALLBACK
    pthread_join(g_thread, NULL);
#endif
#ifdef ZOO_INFO_HEAP
    memset(g_name, 'X', strlen(g_name));
    free(g_name);
    g_name = NULL;
#endif
    g_init = 0;
    g_claimed = 0;
    return AAPI_EOK;
}

int aapi_get_last_error(char *buf, size_t *buf_size) {
    if (!buf_size || (!buf && *buf_size)) return AAPI_EINVAL;
    size_t need = strlen(t_err) + 1;
    if (*buf_size < need) {
        *buf_size = need;
        return AAPI_EBUFSIZE;
    }
    memcpy(buf, t_err, need);
    *buf_size = need;
    return AAPI_EOK;
}

/* ------------------------------------------------------------------------------------------ */
/* Sessions                                                                                   */
/* ------------------------------------------------------------------------------------------ */

int aapi_open_server(const char *server, const aapi_session_def_t *session, aapi_server_t *server_handle) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_open_server before aapi_pgn_init");
#ifndef ZOO_NO_CLAIM_CHECK
    if (!g_claimed) FAIL(AAPI_ESEQUENCE, "aapi_open_server before a successful aapi_pgn_claim");
#endif
    if (!server || !session || !server_handle) FAIL(AAPI_EINVAL, "aapi_open_server: NULL argument");
    if (!*server) FAIL(AAPI_EINVAL, "aapi_open_server: empty server name");
    if (IN_STRUCT_BAD(session)) FAIL(AAPI_EABI, "session struct_size %u", session->struct_size);
    if (session->abi_major != PLUGIN_MAJOR) FAIL(AAPI_EABI, "session ABI major %u", session->abi_major);
#ifdef ZOO_READ_PAST_STRUCT
    /* built against a newer header: reads a field the framework's session does not have */
    volatile uint64_t newer_field;
    memcpy((void *)&newer_field, (const char *)session + session->struct_size, sizeof newer_field);
#endif
    if (session->sd_operation < AAPI_OP_DISCOVERY || session->sd_operation > AAPI_OP_RESTORE)
        FAIL(AAPI_EINVAL, "unknown operation %u", session->sd_operation);
    if (session->sd_schedtype < AAPI_SCHED_FULL || session->sd_schedtype > AAPI_SCHED_CINC)
        FAIL(AAPI_EINVAL, "unknown schedule %u", session->sd_schedtype);
    if (!session->sd_job_id || !session->sd_backup_host || !session->sd_snapid ||
        (session->sd_property_count && !session->sd_properties))
        FAIL(AAPI_EINVAL, "aapi_open_server: NULL field in the session");
#ifdef ZOO_NO_SESSIONS
    FAIL(AAPI_ECONNECT, "the zoo reaches no server"); /* as a plugin does before it is written */
#endif
    pthread_mutex_lock(&g_lock);
    server_t *s = NULL;
    for (int i = 0; i < MAX_SERVERS; i++)
        if (g_servers[i].h == 0) {
            s = &g_servers[i];
            break;
        }
    if (!s) {
        pthread_mutex_unlock(&g_lock);
        FAIL(AAPI_ENOMEM, "too many servers");
    }
    memset(s, 0, sizeof *s);
    s->h = next_handle(SERVER_TAG);
    s->op = session->sd_operation;
    s->def = session;
#ifdef ZOO_GLOBAL_SESSION
    g_cur_log = session->sd_log_callback;
    g_cur_keepalive = session->sd_keepalive_callback;
    g_cur_ctx = session->sd_callback_ctx;
#endif
    pthread_mutex_unlock(&g_lock);
    const char *d = prop_value(s, "zoo.walk_delay_us");
    s->walk_delay_us = d ? (unsigned)strtoul(d, NULL, 10) : 0;
#ifdef ZOO_UNDEFINED
    if (prop_value(s, "zoo.framework_service")) aapi_framework_service();
#endif
    if (session->sd_credential_callback) {
        char secret[128];
        size_t n = sizeof secret;
        if (session->sd_credential_callback(session->sd_callback_ctx, "zoo.token", secret, &n) == AAPI_EOK) {
#ifdef ZOO_SECRET_LOG
            slog(s, AAPI_LOG_DEBUG, "connecting with token %s", secret);
#endif
            memset(secret, 0, sizeof secret);
        }
    }
#ifdef ZOO_STDOUT
    printf("zoo: session %llu opened\n", (unsigned long long)s->h);
    fflush(stdout);
#endif
    *server_handle = s->h;
    return AAPI_EOK;
}

static void restore_cleanup(server_t *s, int ok);

#ifdef ZOO_CODE_BEFORE_CRASH
static int g_code_before_crash;
#endif

int aapi_close_server(aapi_server_t server) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_close_server before aapi_pgn_init");
#ifdef ZOO_CODE_BEFORE_CRASH
    if (g_code_before_crash) *(volatile int *)8 = 1;
#endif
    server_t *s = server_of(server);
    if (!s) FAIL(AAPI_EBADHANDLE, "aapi_close_server: bad handle %llx", (unsigned long long)server);
#ifndef ZOO_CLOSE_SERVER_KEEPS_OBJECTS
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_OBJECTS; i++)
        if (g_objects[i] && g_objects[i]->server == server) {
            close_object_internal(g_objects[i], 1);
            free_object(g_objects[i]);
            g_objects[i] = NULL;
        }
    pthread_mutex_unlock(&g_lock);
#endif
    for (size_t j = 0; j < s->ncreated; j++) {
        free(s->created[j].path);
        free(s->created[j].aside);
    }
    free(s->created);
#ifdef ZOO_LATE_CALLBACK
    pthread_mutex_lock(&g_lock);
    g_stale_keepalive = s->def->sd_keepalive_callback;
    g_stale_ctx = s->def->sd_callback_ctx;
    pthread_mutex_unlock(&g_lock);
#endif
    memset(s, 0, sizeof *s);
    return AAPI_EOK;
}

#define SERVER(h, fn)                                                                  \
    if (!live()) FAIL(AAPI_ESEQUENCE, fn " before aapi_pgn_init");                     \
    server_t *s = server_of(h);                                                        \
    if (!s) FAIL(AAPI_EBADHANDLE, fn ": bad server handle %llx", (unsigned long long)h)

int aapi_get_server_prop(aapi_server_t server, aapi_server_info_t *server_info) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_get_server_prop before aapi_pgn_init");
    if (!server_info) FAIL(AAPI_EINVAL, "aapi_get_server_prop: NULL server_info");
    SERVER(server, "aapi_get_server_prop");
    (void)s;
#ifndef ZOO_IGNORE_STRUCT_SIZE
    if (server_info->struct_size < sizeof(aapi_server_info_t)) FAIL(AAPI_EABI, "server_info too small");
#endif
    server_info->reserved = 0;
    server_info->srv_flags =
        AAPI_SRVC_FULL_BACKUP_SUPPORT | AAPI_SRVC_INCR_BACKUP_SUPPORT | AAPI_SRVC_CINC_BACKUP_SUPPORT;
    return AAPI_EOK;
}

/* ------------------------------------------------------------------------------------------ */
/* Discovery                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct entry {
    char *path;
    uint64_t size;
    uint32_t flags;
    int host;
} entry_t;

typedef struct walk {
    server_t *s;
    entry_t *v;
    size_t n, cap;
    int64_t ref;
    double last_alive, budget;
    int cancelled;
    int depth; /* of the path walked, below its selection */
} walk_t;

static int add_entry(walk_t *w, const char *path, const struct stat *st) {
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->v = realloc(w->v, w->cap * sizeof *w->v);
    }
    entry_t *e = &w->v[w->n++];
    e->path = strdup(path);
    e->flags = S_ISDIR(st->st_mode) ? AAPI_WKLD_DIR : S_ISLNK(st->st_mode) ? AAPI_WKLD_SYMLINK : 0;
    e->size = S_ISREG(st->st_mode) || S_ISLNK(st->st_mode) ? (uint64_t)st->st_size : 0;
    e->host = 0;
#ifndef ZOO_NO_UNCHANGED
    if (w->ref >= 0 && st->st_mtime < w->ref && st->st_ctime < w->ref) {
        e->flags |= AAPI_WKLD_UNCHANGED;
        e->size = 0;
    }
#endif
    return 0;
}

static int walk_path(walk_t *w, const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) return 0;
    if (w->s->walk_delay_us) usleep(w->s->walk_delay_us);
    double t = now_ms();
    if (t - w->last_alive >= w->budget / 8) {
        w->last_alive = t;
        if (keepalive(w->s) != AAPI_EOK) {
#ifdef ZOO_IGNORE_CANCEL
            usleep(200 * 1000);
#else
            w->cancelled = 1;
            return -1;
#endif
        }
    }
    add_entry(w, path, &st);
#ifdef ZOO_FLAT
    if (w->depth > 0) return 0; /* the entries of a selection, not their contents */
#endif
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return 0;
        struct dirent *de;
        char child[PATH_MAX];
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            snprintf(child, sizeof child, "%s/%s", strcmp(path, "/") ? path : "", de->d_name);
            w->depth++;
            int rc = walk_path(w, child);
            w->depth--;
            if (rc < 0) {
                closedir(d);
                return -1;
            }
        }
        closedir(d);
    }
    return 0;
}

static int by_path(const void *a, const void *b) {
    return strcmp(((const entry_t *)a)->path, ((const entry_t *)b)->path);
}

static const entry_t *g_sort_base;
static int by_size_desc(const void *a, const void *b) {
    const entry_t *x = &g_sort_base[*(const size_t *)a], *y = &g_sort_base[*(const size_t *)b];
    if (x->size != y->size) return x->size > y->size ? -1 : 1;
    return strcmp(x->path, y->path);
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void put32(buf_t *b, uint32_t v) {
    unsigned char x[4] = {v, v >> 8, v >> 16, v >> 24};
    put(b, x, 4);
}
static void put64(buf_t *b, uint64_t v) {
    put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
}

static int write_workload(const char *dir, const char *host, const char *suffix, walk_t *w, int hi,
                          char *written, size_t written_size) {
    buf_t b = {0};
    put(&b, "AAPIWKLD", 8);
    put32(&b, 1);
    put32(&b, 0);
    put32(&b, 0); /* snapshot id "" */
#ifdef ZOO_WKLD_HOST
    put32(&b, 7);
    put(&b, "WRONG-H", 7);
#else
    put32(&b, (uint32_t)strlen(host));
    put(&b, host, strlen(host));
#endif
    uint64_t count = 0;
#ifdef ZOO_DISC_DUP
    int duplicated = 0;
#endif
    for (size_t i = 0; i < w->n; i++) {
        int mine = w->v[i].host == hi;
#ifdef ZOO_DISC_DUP
        if (hi == 1 && w->v[i].host == 0 && w->v[i].flags == 0 && !duplicated) mine = duplicated = 1;
#endif
        if (!mine) continue;
#ifdef ZOO_DISC_DROP
        size_t pl = strlen(w->v[i].path);
        if (pl >= 9 && strcmp(w->v[i].path + pl - 9, "empty.txt") == 0) continue;
#endif
        uint32_t p = (uint32_t)strlen(w->v[i].path);
        put32(&b, 16 + p);
        put64(&b, w->v[i].size);
        put32(&b, w->v[i].flags);
        put32(&b, p);
        put(&b, w->v[i].path, p);
        count++;
    }
    put32(&b, 0);
    put64(&b, count);
    put32(&b, crc32_of(b.p, b.n));
    char tmp[PATH_MAX], final[PATH_MAX];
    snprintf(final, sizeof final, "%s/%s%s", dir, host, suffix);
    snprintf(tmp, sizeof tmp, "%s/.%s%s.tmp", dir, host, suffix);
#ifdef ZOO_WKLD_MODE
    mode_t mode = 0644;
#else
    mode_t mode = 0600;
#endif
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) {
        free(b.p);
        return -1;
    }
    fchmod(fd, mode);
    ssize_t n = write(fd, b.p, b.n);
    fsync(fd);
    close(fd);
    free(b.p);
    if (n != (ssize_t)b.n || rename(tmp, final) != 0) {
        unlink(tmp);
        return -1;
    }
    snprintf(written, written_size, "%s", final);
    return 0;
}

static int check_disc_args(const char *const *selections, const char *const *backuphosts,
                           const char *wkldoutdir, const char *wkldfilesuffix) {
    if (!selections || !backuphosts || !wkldoutdir || !wkldfilesuffix) FAIL(AAPI_EINVAL, "NULL argument");
    if (!selections[0] || !backuphosts[0]) FAIL(AAPI_EINVAL, "empty selection or host list");
    for (size_t i = 0; selections[i]; i++)
        if (selections[i][0] != '/') FAIL(AAPI_EINVAL, "selection \"%s\" is not absolute", selections[i]);
    for (size_t i = 0; backuphosts[i]; i++)
        if (!backuphosts[i][0] || strchr(backuphosts[i], '/')) FAIL(AAPI_EINVAL, "bad backup host name");
    return AAPI_EOK;
}

int aapi_discovery(aapi_server_t server, const char *const *selections, const char *const *backuphosts,
                   const char *wkldoutdir, const char *wkldfilesuffix, uint32_t schedtype, aapi_snapid_t *snapid) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_discovery before aapi_pgn_init");
    if (!snapid) FAIL(AAPI_EINVAL, "aapi_discovery: NULL snapid");
    int rc = check_disc_args(selections, backuphosts, wkldoutdir, wkldfilesuffix);
    if (rc) return rc;
    SERVER(server, "aapi_discovery");
    if (s->op != AAPI_OP_DISCOVERY || s->disc_done) FAIL(AAPI_ESEQUENCE, "aapi_discovery not legal here");
    slog(s, AAPI_LOG_INFO, "zoo: discovery of %s and what is below", selections[0]);
#ifdef ZOO_DISCOVERY_FAILS
    FAIL(AAPI_EIO, "aapi_discovery: the zoo cannot discover");
#endif
#ifdef ZOO_KEEPALIVE_FOREVER
    for (;;) { /* alive, but never done (TIME-3) */
        keepalive(s);
        usleep(100 * 1000);
    }
#endif
#ifdef ZOO_SCHED
    if (schedtype > AAPI_SCHED_CINC) schedtype = AAPI_SCHED_FULL;
#endif
    if (schedtype < AAPI_SCHED_FULL || schedtype > AAPI_SCHED_CINC)
        FAIL(AAPI_ESCHED_NOT_SUPPORTED, "schedule %u is not supported", schedtype);
    size_t nhosts = 0;
    while (backuphosts[nhosts]) nhosts++;
#ifdef ZOO_FAIL_LEAVES
    for (size_t h = 0; h < nhosts; h++) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s%s", wkldoutdir, backuphosts[h], wkldfilesuffix);
        int fd = open(p, O_WRONLY | O_CREAT, 0600);
        if (fd >= 0) close(fd);
    }
#endif
    for (size_t i = 0; selections[i]; i++) {
        struct stat st;
        if (lstat(selections[i], &st) != 0) FAIL(AAPI_ENOENT, "selection %s: %s", selections[i], strerror(errno));
    }
    walk_t w = {0};
    w.s = s;
    w.ref = -1;
    w.budget = s->def->sd_call_budget_ms;
    w.last_alive = now_ms();
    const char *ref = schedtype == AAPI_SCHED_INCR ? prop_value(s, AAPI_PROP_LAST_BACKUP_TIME)
                      : schedtype == AAPI_SCHED_CINC ? prop_value(s, AAPI_PROP_LAST_FULL_TIME)
                                                     : NULL;
    if (ref) w.ref = strtoll(ref, NULL, 10);
#ifdef ZOO_SLOW_POSTPROCESS
    if (s->walk_delay_us) g_slow_walk_seen = 1;
#endif
#if defined(ZOO_SLOW_KEEPALIVE) || defined(ZOO_SLOW_NO_CADENCE)
    if (s->walk_delay_us) {
#ifdef ZOO_SLOW_KEEPALIVE
        double step = w.budget / 8;
#else
        double step = w.budget / 2;
#endif
        for (double waited = 0; waited < w.budget * 1.5; waited += step) {
            usleep((useconds_t)(step * 1000));
            if (keepalive(s) != AAPI_EOK) FAIL(AAPI_ECANCELLED, "cancelled");
        }
    }
#endif
    for (size_t i = 0; selections[i] && !w.cancelled; i++) walk_path(&w, selections[i]);
    if (w.cancelled) {
        for (size_t i = 0; i < w.n; i++) free(w.v[i].path);
        free(w.v);
        FAIL(AAPI_ECANCELLED, "discovery cancelled");
    }
    qsort(w.v, w.n, sizeof *w.v, by_path);
    size_t n = 0;
    for (size_t i = 0; i < w.n; i++) {
        if (n && strcmp(w.v[n - 1].path, w.v[i].path) == 0) {
            free(w.v[i].path);
            continue;
        }
        w.v[n++] = w.v[i];
    }
    w.n = n;
    size_t *order = malloc((n + 1) * sizeof *order);
    for (size_t i = 0; i < n; i++) order[i] = i;
    g_sort_base = w.v;
    qsort(order, n, sizeof *order, by_size_desc);
    uint64_t *bytes = calloc(nhosts, sizeof *bytes);
    uint64_t *objs = calloc(nhosts, sizeof *objs);
    for (size_t k = 0; k < n; k++) {
        size_t best = 0;
#ifndef ZOO_UNBALANCED
        for (size_t h = 1; h < nhosts; h++)
            if (bytes[h] < bytes[best] || (bytes[h] == bytes[best] && objs[h] < objs[best])) best = h;
#endif
        w.v[order[k]].host = (int)best;
        bytes[best] += w.v[order[k]].size;
        objs[best]++;
    }
    char written[64][PATH_MAX];
    size_t nwritten = 0;
    rc = AAPI_EOK;
    for (size_t h = 0; h < nhosts; h++) {
#ifdef ZOO_SKIP_EMPTY_HOSTS
        if (objs[h] == 0) continue;
#endif
#ifndef ZOO_IGNORE_CANCEL
        if (keepalive(s) != AAPI_EOK) {
            rc = AAPI_ECANCELLED;
            seterr("discovery cancelled");
            break;
        }
#endif
        if (write_workload(wkldoutdir, backuphosts[h], wkldfilesuffix, &w, (int)h, written[nwritten % 64],
                           PATH_MAX) != 0) {
            rc = AAPI_EIO;
            seterr("cannot write the workload file of %s: %s", backuphosts[h], strerror(errno));
            break;
        }
        nwritten++;
        slog(s, AAPI_LOG_INFO, "zoo: backup host %s: %llu objects, %llu bytes", backuphosts[h],
             (unsigned long long)objs[h], (unsigned long long)bytes[h]);
    }
    if (rc != AAPI_EOK)
        for (size_t i = 0; i < nwritten && i < 64; i++) unlink(written[i]);
    for (size_t i = 0; i < n; i++) free(w.v[i].path);
    free(w.v);
    free(order);
    free(bytes);
    free(objs);
    if (rc != AAPI_EOK) return rc;
    snapid->id[0] = 0;
    s->disc_done = 1;
    return AAPI_EOK;
}

int aapi_postprocess(aapi_server_t server, const char *const *selections, const char *const *backuphosts,
                     const char *wkldoutdir, const char *wkldfilesuffix, uint32_t schedtype,
                     const aapi_snapid_t *snapid) {
    (void)schedtype;
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_postprocess before aapi_pgn_init");
    if (!snapid) FAIL(AAPI_EINVAL, "aapi_postprocess: NULL snapid");
    int rc = check_disc_args(selections, backuphosts, wkldoutdir, wkldfilesuffix);
    if (rc) return rc;
    SERVER(server, "aapi_postprocess");
    if (s->op != AAPI_OP_POSTPROCESS || s->pp_done) FAIL(AAPI_ESEQUENCE, "aapi_postprocess not legal here");
#ifdef ZOO_POSTPROCESS_TWICE
    static int done;
    if (done++) FAIL(AAPI_ESNAPSHOT, "snapshot already deleted");
#endif
#ifdef ZOO_SLOW_POSTPROCESS
    /* After the long discovery, a long cleanup that keeps alive every 0.6 of ITS session's
       budget: within TIME-1 (MUST), outside TIME-2's quarter (SHOULD). */
    if (g_slow_walk_seen) {
        double budget = s->def->sd_call_budget_ms;
        for (double waited = 0; waited < budget * 1.5; waited += budget * 0.6) {
            usleep((useconds_t)(budget * 0.6 * 1000));
            if (keepalive(s) != AAPI_EOK) FAIL(AAPI_ECANCELLED, "cancelled");
        }
    }
#endif
    s->pp_done = 1;
    return AAPI_EOK;
}

int aapi_get_snappath_from_realpath(aapi_server_t server, const char *snapname, const char *realpath,
                                    char *snappath, size_t *snappath_size) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "snappath before aapi_pgn_init");
    if (!snapname || !realpath || !snappath_size || (!snappath && *snappath_size))
        FAIL(AAPI_EINVAL, "aapi_get_snappath_from_realpath: NULL argument");
    if (realpath[0] != '/') FAIL(AAPI_EINVAL, "realpath \"%s\" is not absolute", realpath);
    SERVER(server, "aapi_get_snappath_from_realpath");
#ifndef ZOO_ANY_OPERATION
    if (s->op != AAPI_OP_BACKUP) FAIL(AAPI_ESEQUENCE, "snappath outside a backup session");
#endif
    if (*snapname) FAIL(AAPI_ESNAPSHOT, "no snapshot %s", snapname);
#ifdef ZOO_SNAPPATH_PREFIX
    char path[PATH_MAX];
    snprintf(path, sizeof path, "/.%s", realpath);
    realpath = path;
#endif
    size_t need = strlen(realpath) + 1;
#ifdef ZOO_OVERFLOW
    if (snappath) memcpy(snappath, realpath, need);
#endif
    if (*snappath_size < need) {
        *snappath_size = need;
        FAIL(AAPI_EBUFSIZE, "snappath buffer of %zu bytes, %zu needed", *snappath_size, need);
    }
    memcpy(snappath, realpath, need);
    *snappath_size = need;
    return AAPI_EOK;
}

/* ------------------------------------------------------------------------------------------ */
/* Objects                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static object_t *new_object(server_t *s, const char *path, int writing) {
    object_t *o = calloc(1, sizeof *o);
    o->server = s->h;
    o->writing = writing;
    o->fd = -1;
#ifdef ZOO_LEAK_FD
    o->leak = -1;
#endif
    o->path = strdup(path);
    return o;
}

static int insert_object(object_t *o, aapi_object_t *out) {
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_OBJECTS; i++)
        if (!g_objects[i]) {
            o->h = next_handle(OBJECT_TAG);
            g_objects[i] = o;
            *out = o->h;
            pthread_mutex_unlock(&g_lock);
            return AAPI_EOK;
        }
    pthread_mutex_unlock(&g_lock);
    FAIL(AAPI_ENOMEM, "too many objects");
}

static void free_object(object_t *o) {
    free(o->path);
    free(o->tmp);
    free(o->buf);
    free(o);
}

static void fill_prop(aapi_object_prop_t *p, const struct stat *st, uint64_t size) {
    memset(p, 0, sizeof *p);
    p->obj_type = S_ISDIR(st->st_mode) ? AAPI_OBJ_DIR : S_ISLNK(st->st_mode) ? AAPI_OBJ_SYMLINK : AAPI_OBJ_FILE;
    p->valid = AAPI_PROP_SIZE | AAPI_PROP_MODE | AAPI_PROP_OWNER | AAPI_PROP_ATIME | AAPI_PROP_MTIME | AAPI_PROP_CTIME;
#ifdef ZOO_PROP_VALID
    p->valid |= 1u << 9;
#endif
    p->mode = st->st_mode & 07777;
    p->size = size;
    p->uid = st->st_uid;
    p->gid = st->st_gid;
    p->atime.sec = st->st_atim.tv_sec;
    p->atime.nsec = (uint32_t)st->st_atim.tv_nsec;
    p->mtime.sec = st->st_mtim.tv_sec;
    p->mtime.nsec = (uint32_t)st->st_mtim.tv_nsec;
    p->ctime.sec = st->st_ctim.tv_sec;
    p->ctime.nsec = (uint32_t)st->st_ctim.tv_nsec;
}

static int copy_prop(aapi_object_prop_t *out, const aapi_object_prop_t *p) {
    size_t n = out->struct_size < sizeof *p ? out->struct_size : sizeof *p;
#ifdef ZOO_STRUCT_OVERWRITE
    n = out->struct_size;
    memset((char *)out + 4, 0, n - 4);
    if (n > sizeof *p) n = sizeof *p;
#endif
    memcpy((char *)out + 4, (const char *)p + 4, n - 4);
    return AAPI_EOK;
}

int aapi_open_object(aapi_server_t server, const char *path, uint32_t flags, aapi_object_t *object) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_open_object before aapi_pgn_init");
#ifdef ZOO_KILL_PARENT
    /* The framework's process is not the plugin's to end (MEM-3). */
    kill(getppid(), SIGTERM);
#endif
#ifdef ZOO_OUTPARAM
    if (object) *object = 0;
#endif
#if defined(ZOO_NULL_CODE) || defined(ZOO_OPEN_FOREVER) || defined(ZOO_OPEN_HANG) || \
    defined(ZOO_OPEN_HANG_THEN_FOREVER)
    /* ZOO_OPEN_FOREVER, ZOO_OPEN_HANG...: a second bug in a function that hangs, found at once */
    if (!path) FAIL(AAPI_ENOENT, "aapi_open_object: no path");
#endif
#ifdef ZOO_OPEN_TWO_BUGS
    /* two bugs in one function: a crash on a NULL path (RC-3), and one on some valid paths */
    if (!path || strstr(path, "spaces")) *(volatile int *)8 = 1;
#endif
    if (!path || !object) FAIL(AAPI_EINVAL, "aapi_open_object: NULL argument");
    if (flags != AAPI_OPEN_READ) FAIL(AAPI_EINVAL, "aapi_open_object: flags %#x", flags);
    if (path[0] != '/') FAIL(AAPI_EINVAL, "path \"%s\" is not absolute", path);
    SERVER(server, "aapi_open_object");
#ifndef ZOO_ANY_OPERATION
    if (s->op != AAPI_OP_BACKUP) FAIL(AAPI_ESEQUENCE, "aapi_open_object outside a backup session");
#endif
    struct stat st;
#ifdef ZOO_CRASH_IN_OPEN
    *(volatile int *)8 = 1; /* every valid open crashes */
#endif
#ifdef ZOO_OPEN_FOREVER
    for (;;) { /* every valid open keeps alive, but never returns (TIME-3) */
        keepalive(s);
        usleep(100 * 1000);
    }
#endif
#ifdef ZOO_OPEN_HANG
    for (;;) pause(); /* every valid open hangs without keepalive (TIME-1) */
#endif
#ifdef ZOO_OPEN_HANG_THEN_FOREVER
    /* a valid open of a directory (the backup's first) hangs without keepalive (TIME-1); of
       anything else it keeps alive, but never returns (TIME-3) */
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        for (;;) pause();
    for (;;) {
        keepalive(s);
        usleep(100 * 1000);
    }
#endif
    if (lstat(path, &st) != 0) FAIL(AAPI_ENOENT, "open %s: %s", path, strerror(errno));
    object_t *o = new_object(s, path, 0);
    o->st = st;
    o->type = S_ISDIR(st.st_mode) ? AAPI_OBJ_DIR : S_ISLNK(st.st_mode) ? AAPI_OBJ_SYMLINK : AAPI_OBJ_FILE;
    if (o->type == AAPI_OBJ_FILE) {
        o->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (o->fd < 0) {
            int e = errno;
            free_object(o);
            FAIL(e == ENOENT ? AAPI_ENOENT : AAPI_EACCES, "open %s: %s", path, strerror(e));
        }
#ifdef ZOO_LEAK_FD
        o->leak = dup(o->fd);
#endif
    } else if (o->type == AAPI_OBJ_SYMLINK) {
        o->buf = malloc(PATH_MAX);
        ssize_t n = readlink(path, o->buf, PATH_MAX);
        if (n < 0) {
            free_object(o);
            FAIL(AAPI_ENOENT, "readlink %s: %s", path, strerror(errno));
        }
        o->len = (size_t)n;
    }
#ifdef ZOO_DIR_DATA
    else {
        o->buf = strdup("dir\n");
        o->len = 4;
    }
#endif
    return insert_object(o, object);
}

int aapi_read_object(aapi_object_t object, void *buf, size_t buf_size, size_t *bytes_read) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_read_object before aapi_pgn_init");
    if (!buf || !bytes_read || !buf_size) FAIL(AAPI_EINVAL, "aapi_read_object: NULL or empty buffer");
    object_t *o = object_of(object);
#ifdef ZOO_ACCEPT_CLOSED
    if (!o && (object & 0xff00000000000000ULL) == OBJECT_TAG && (object & 0xffffffffffffULL) < g_seq) {
        *bytes_read = 0;
        return AAPI_EOK;
    }
#endif
    if (!o) FAIL(AAPI_EBADHANDLE, "aapi_read_object: bad handle %llx", (unsigned long long)object);
    if (o->writing) FAIL(AAPI_ESEQUENCE, "aapi_read_object on a created object");
#ifdef ZOO_LATE_CALLBACK
    /* while serving another session, calls back a session that was closed (THR-3) */
    pthread_mutex_lock(&g_lock);
    aapi_keepalive_fn stale = g_stale_keepalive;
    void *stale_ctx = g_stale_ctx;
    pthread_mutex_unlock(&g_lock);
    if (stale) (void)stale(stale_ctx);
#endif
    if (o->type != AAPI_OBJ_FILE) {
        size_t n = o->len - o->pos < buf_size ? o->len - o->pos : buf_size;
        memcpy(buf, o->buf + o->pos, n);
        o->pos += n;
        *bytes_read = n;
        return AAPI_EOK;
    }
#ifdef ZOO_CRASH_IN_READ
    if (o->pos > 0) *(volatile int *)(uintptr_t)8 = 1;
#endif
#ifdef ZOO_NEGATIVE_CODE
    if (o->pos > 0) return -1; /* no AAPI_E* code */
#endif
#ifdef ZOO_HANG
    if (o->st.st_size > (1 << 20))
        for (;;) pause();
#endif
#ifdef ZOO_RACY
    static char shared[65536];
    size_t want = buf_size < sizeof shared ? buf_size : sizeof shared;
    ssize_t n = read(o->fd, shared, want);
    usleep(200);
    if (n > 0) memcpy(buf, shared, (size_t)n);
#else
    ssize_t n = read(o->fd, buf, buf_size);
#endif
    if (n < 0) FAIL(AAPI_EIO, "read %s: %s", o->path, strerror(errno));
    if (n == 0) {
#ifdef ZOO_NO_EOF
        if (o->st.st_size > 0) {
            lseek(o->fd, 0, SEEK_SET);
            n = read(o->fd, buf, buf_size);
            *bytes_read = n > 0 ? (size_t)n : 0;
            return AAPI_EOK;
        }
#endif
#ifndef ZOO_NO_CHANGED
        struct stat st;
        if (fstat(o->fd, &st) == 0 &&
            (st.st_size != o->st.st_size || st.st_mtim.tv_sec != o->st.st_mtim.tv_sec ||
             st.st_mtim.tv_nsec != o->st.st_mtim.tv_nsec || st.st_ctim.tv_sec != o->st.st_ctim.tv_sec ||
             st.st_ctim.tv_nsec != o->st.st_ctim.tv_nsec || (off_t)o->pos != o->st.st_size))
            FAIL(AAPI_ECHANGED, "%s changed while read", o->path);
#endif
    }
#ifdef ZOO_READ_OVERFLOW
    ((char *)buf)[buf_size] = 0;
#endif
    o->pos += (size_t)n;
    *bytes_read = (size_t)n;
    return AAPI_EOK;
}

static void record(server_t *s, const char *path, const char *aside) {
    pthread_mutex_lock(&g_created_lock);
    if (s->ncreated == s->capcreated) {
        s->capcreated = s->capcreated ? s->capcreated * 2 : 16;
        s->created = realloc(s->created, s->capcreated * sizeof *s->created);
    }
    s->created[s->ncreated].path = strdup(path);
    s->created[s->ncreated++].aside = aside ? strdup(aside) : NULL;
    pthread_mutex_unlock(&g_created_lock);
}

static int mkparents(server_t *s, const char *path) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        struct stat st;
        if (lstat(p, &st) != 0) {
            if (mkdir(p, 0700) != 0) {
                if (errno != EEXIST) return -1; /* another writer made it first */
            } else {
                record(s, p, NULL);
            }
        }
        *c = '/';
    }
    return 0;
}

/* RST-10: a path whose parent directories below the target root include a symbolic link. */
static int through_link(server_t *s, const char *path) {
#ifdef ZOO_FOLLOW_SYMLINKS
    (void)s, (void)path;
    return 0;
#else
    size_t n = strlen(s->root);
    if (!n || strncmp(path, s->root, n) != 0 || path[n] != '/') return 0;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + n + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        struct stat st;
        int link = lstat(p, &st) == 0 && S_ISLNK(st.st_mode);
        *c = '/';
        if (link) return 1;
    }
    return 0;
#endif
}

/* RST-10: whether `path` names the target root itself ("R", "R/", "R/."). */
static int is_root(server_t *s, const char *path) {
#ifdef ZOO_FOLLOW_SYMLINKS
    (void)s, (void)path;
    return 0;
#else
    size_t n = strlen(s->root);
    if (!n || strncmp(path, s->root, n) != 0) return 0;
    for (const char *c = path + n; *c; c++)
        if (*c != '/' && *c != '.') return 0;
    return !strstr(path + n, "..");
#endif
}

#define CONFINED(s, path)                                                                     \
    if (through_link(s, path)) FAIL(AAPI_EINVAL, "%s passes through a symbolic link below the target root", path)

#define RESTORE_STEP(s, fn)                                                                  \
    if (s->op != AAPI_OP_RESTORE || !s->pre_done || s->post_done)                             \
    FAIL(AAPI_ESEQUENCE, fn " outside a restore between pre- and postprocess")

int aapi_create_object(aapi_server_t server, const char *path, const aapi_object_prop_t *prop, uint32_t flags,
                       aapi_object_t *object) {
    static unsigned long counter;
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_create_object before aapi_pgn_init");
    if (!path || !prop || !object) FAIL(AAPI_EINVAL, "aapi_create_object: NULL argument");
    if (path[0] != '/') FAIL(AAPI_EINVAL, "path \"%s\" is not absolute", path);
    SERVER(server, "aapi_create_object");
    RESTORE_STEP(s, "aapi_create_object");
    CONFINED(s, path);
#ifdef ZOO_CREATE_LEAVES
    if (flags & ~AAPI_CREATE_OVERWRITE) {
        int fd = open(path, O_WRONLY | O_CREAT, 0644);
        if (fd >= 0) close(fd);
    }
#endif
    if (flags & ~AAPI_CREATE_OVERWRITE) FAIL(AAPI_EINVAL, "aapi_create_object: unknown flags %#x", flags);
    if (IN_STRUCT_BAD(prop)) FAIL(AAPI_EABI, "prop struct_size %u", prop->struct_size);
    if (prop->obj_type < AAPI_OBJ_FILE || prop->obj_type > AAPI_OBJ_SYMLINK)
        FAIL(AAPI_EINVAL, "unknown object type %u", prop->obj_type);
#ifdef ZOO_NO_SYMLINK_RESTORE
    /* restores no symbolic links: the type is refused, at the root's path too, before the path
     * is looked at (RST-10 allows either order) */
    if (prop->obj_type == AAPI_OBJ_SYMLINK) FAIL(AAPI_ENOTSUP, "%s: symbolic links are not restored", path);
#endif
#ifdef ZOO_NEAR_ROOT_LINKS
    /* restores links, but refuses them as a type at the root and just below it */
    if (prop->obj_type == AAPI_OBJ_SYMLINK && s->root[0]) {
        size_t n = strlen(s->root);
        if (!strncmp(path, s->root, n) && !strchr(path + n + (path[n] == '/'), '/'))
            FAIL(AAPI_ENOTSUP, "%s: no symbolic links near the target root", path);
    }
#endif
    if (is_root(s, path) && prop->obj_type != AAPI_OBJ_DIR) FAIL(AAPI_EEXIST, "%s is the target root", path);
    struct stat st;
    int exists = lstat(path, &st) == 0;
    int reuse_dir = exists && prop->obj_type == AAPI_OBJ_DIR && S_ISDIR(st.st_mode);
#ifndef ZOO_OVERWRITE_ALWAYS
    if (exists && !reuse_dir && !(flags & AAPI_CREATE_OVERWRITE)) FAIL(AAPI_EEXIST, "%s exists", path);
#endif
    if (mkparents(s, path) != 0) FAIL(AAPI_EACCES, "cannot create the parents of %s: %s", path, strerror(errno));
    object_t *o = new_object(s, path, 1);
    o->type = prop->obj_type;
    o->prop = *prop;
    o->overwrite = exists && !reuse_dir;
    o->existed = exists;
    if (o->type == AAPI_OBJ_FILE) {
        char tmp[PATH_MAX];
        const char *slash = strrchr(path, '/');
#ifdef ZOO_VISIBLE_EARLY
        if (!exists)
            snprintf(tmp, sizeof tmp, "%s", path);
        else
#endif
            snprintf(tmp, sizeof tmp, "%.*s/.%s.zoo-tmp-%lu", (int)(slash - path), path, slash + 1,
                     __atomic_fetch_add(&counter, 1, __ATOMIC_SEQ_CST));
        o->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (o->fd < 0) {
            int e = errno;
            free_object(o);
            FAIL(e == ENOSPC ? AAPI_ENOSPC : AAPI_EACCES, "create %s: %s", tmp, strerror(e));
        }
        o->tmp = strdup(tmp);
    }
    return insert_object(o, object);
}

int aapi_write_object(aapi_object_t object, const void *buf, size_t len) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_write_object before aapi_pgn_init");
#ifdef ZOO_WRITE_ZERO
    if (len == 0) FAIL(AAPI_EINVAL, "nothing to write");
#endif
    if (!buf && len) FAIL(AAPI_EINVAL, "aapi_write_object: NULL buffer");
    object_t *o = object_of(object);
    if (!o) FAIL(AAPI_EBADHANDLE, "aapi_write_object: bad handle %llx", (unsigned long long)object);
#ifndef ZOO_OBJ_MODE
    if (!o->writing) FAIL(AAPI_ESEQUENCE, "aapi_write_object on an object opened for reading");
#endif
    if (len == 0) return AAPI_EOK;
    if (o->type == AAPI_OBJ_FILE) {
        const char *p = buf;
#ifdef ZOO_WRONG_BYTES
        char *copy = NULL;
        if (len > 100) {
            copy = malloc(len);
            memcpy(copy, buf, len);
            copy[len / 2] ^= 0x20;
            p = copy;
        }
#endif
        size_t done = 0;
        while (done < len) {
            ssize_t n = write(o->fd, p + done, len - done);
            if (n < 0) {
                int e = errno;
#ifdef ZOO_WRONG_BYTES
                free(copy);
#endif
                FAIL(e == ENOSPC ? AAPI_ENOSPC : AAPI_EIO, "write %s: %s", o->path, strerror(e));
            }
            done += (size_t)n;
        }
#ifdef ZOO_WRONG_BYTES
        free(copy);
#endif
        o->len += len;
        return AAPI_EOK;
    }
    if (o->type == AAPI_OBJ_DIR) return AAPI_EOK; /* directories have no data: ignored */
    if (o->len + len + 1 > o->cap) {
        o->cap = (o->len + len) * 2 + 16;
        o->buf = realloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, buf, len);
    o->len += len;
    o->buf[o->len] = 0;
    return AAPI_EOK;
}

int aapi_flush(aapi_object_t object) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_flush before aapi_pgn_init");
    object_t *o = object_of(object);
    if (!o) FAIL(AAPI_EBADHANDLE, "aapi_flush: bad handle %llx", (unsigned long long)object);
#ifndef ZOO_OBJ_MODE
    if (!o->writing) FAIL(AAPI_ESEQUENCE, "aapi_flush on an object opened for reading");
#endif
    if (o->fd >= 0 && fsync(o->fd) != 0 && o->writing) FAIL(AAPI_EIO, "fsync %s: %s", o->path, strerror(errno));
    return AAPI_EOK;
}

/* Finish or discard an object; returns an AAPI code. */
static int finish_object(object_t *o) {
    server_t *s = server_of(o->server);
    int rc = AAPI_EOK;
    if (!o->writing) {
        if (o->fd >= 0) close(o->fd);
#ifdef ZOO_LEAK_FD
        (void)o->leak; /* never closed */
#endif
        o->fd = -1;
        return AAPI_EOK;
    }
    mode_t mode = (o->prop.valid & AAPI_PROP_MODE) ? (o->prop.mode & 07777) : (o->type == AAPI_OBJ_DIR ? 0755 : 0644);
    char aside[PATH_MAX] = "";
    if (o->overwrite) {
        snprintf(aside, sizeof aside, "%s.zoo-old-%llu", o->path, (unsigned long long)(o->h & 0xffffff));
        if (rename(o->path, aside) != 0) aside[0] = 0;
    }
    if (o->type == AAPI_OBJ_FILE) {
        if (fchmod(o->fd, mode) != 0) rc = AAPI_EIO;
        if (geteuid() == 0 && (o->prop.valid & AAPI_PROP_OWNER)) {
            if (fchown(o->fd, o->prop.uid, o->prop.gid) != 0) rc = AAPI_EIO;
        }
        close(o->fd);
        o->fd = -1;
        if (strcmp(o->tmp, o->path) != 0 && rename(o->tmp, o->path) != 0) {
            rc = AAPI_EIO;
            unlink(o->tmp);
        }
    } else if (o->type == AAPI_OBJ_SYMLINK) {
        if (symlink(o->buf ? o->buf : "", o->path) != 0) rc = AAPI_EIO;
        else if (geteuid() == 0 && (o->prop.valid & AAPI_PROP_OWNER) &&
                 lchown(o->path, o->prop.uid, o->prop.gid) != 0)
            rc = AAPI_EIO;
    } else {
        struct stat st;
        if (lstat(o->path, &st) != 0) {
            if (mkdir(o->path, mode) != 0) rc = AAPI_EIO;
        } else {
            o->existed = 2; /* reused container */
        }
        if (rc == AAPI_EOK) {
            if (chmod(o->path, mode) != 0) rc = AAPI_EIO;
            if (geteuid() == 0 && (o->prop.valid & AAPI_PROP_OWNER) &&
                lchown(o->path, o->prop.uid, o->prop.gid) != 0)
                rc = AAPI_EIO;
        }
    }
    if (rc == AAPI_EOK && s && o->existed != 2) record(s, o->path, aside[0] ? aside : NULL);
    if (rc != AAPI_EOK) seterr("closing %s failed: %s", o->path, strerror(errno));
    return rc;
}

static void close_object_internal(object_t *o, int discard) {
    if (o->closed) return;
    o->closed = 1;
    if (discard && o->writing) {
        if (o->fd >= 0) close(o->fd);
        if (o->tmp && strcmp(o->tmp, o->path) != 0) unlink(o->tmp);
        o->fd = -1;
        return;
    }
    finish_object(o);
}

int aapi_close_object(aapi_object_t object) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_close_object before aapi_pgn_init");
    object_t *o = object_of(object);
    if (!o) FAIL(AAPI_EBADHANDLE, "aapi_close_object: bad handle %llx", (unsigned long long)object);
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_OBJECTS; i++)
        if (g_objects[i] == o) g_objects[i] = NULL;
    pthread_mutex_unlock(&g_lock);
    o->closed = 1;
    int rc = finish_object(o);
    free_object(o);
    return rc;
}

int aapi_get_object_prop(aapi_object_t object, aapi_object_prop_t *prop) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "aapi_get_object_prop before aapi_pgn_init");
    if (!prop) FAIL(AAPI_EINVAL, "aapi_get_object_prop: NULL prop");
    object_t *o = object_of(object);
    if (!o) FAIL(AAPI_EBADHANDLE, "aapi_get_object_prop: bad handle %llx", (unsigned long long)object);
    if (prop->struct_size < sizeof *prop) FAIL(AAPI_EABI, "prop struct too small");
    aapi_object_prop_t p;
    if (o->writing) {
        memset(&p, 0, sizeof p);
        p.obj_type = o->type;
        p.valid = AAPI_PROP_SIZE | (o->prop.valid & AAPI_PROP_MODE);
        p.mode = o->prop.mode;
        p.size = o->len;
    } else {
#ifdef ZOO_ABORT
        if (o->type == AAPI_OBJ_SYMLINK) abort();
#endif
#ifdef ZOO_THROW
        /* What a C++ `throw` out of the entry point does: a foreign exception unwinds into the
         * framework's frames. */
        if (o->type == AAPI_OBJ_SYMLINK) {
            static struct _Unwind_Exception exc;
            memset(&exc, 0, sizeof exc);
            exc.exception_class = 0x5a4f4f0000000000ull; /* "ZOO" */
            _Unwind_RaiseException(&exc);
            abort();
        }
#endif
        struct stat st;
        if (lstat(o->path, &st) != 0) FAIL(AAPI_EIO, "lstat %s: %s", o->path, strerror(errno));
        fill_prop(&p, &st, o->type == AAPI_OBJ_DIR ? 0 : (uint64_t)st.st_size);
#ifdef ZOO_SHORT_SIZE
        if (p.size > 0) p.size--;
#endif
    }
    return copy_prop(prop, &p);
}

int aapi_get_object_prop_byname(aapi_server_t server, const char *path, aapi_object_prop_t *prop) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "byname before aapi_pgn_init");
    if (!path || !prop) FAIL(AAPI_EINVAL, "aapi_get_object_prop_byname: NULL argument");
    if (path[0] != '/') FAIL(AAPI_EINVAL, "path \"%s\" is not absolute", path);
    SERVER(server, "aapi_get_object_prop_byname");
#ifndef ZOO_ANY_OPERATION
    if (!(s->op == AAPI_OP_BACKUP || (s->op == AAPI_OP_RESTORE && s->pre_done)))
        FAIL(AAPI_ESEQUENCE, "byname not legal here");
#endif
    if (prop->struct_size < sizeof *prop) FAIL(AAPI_EABI, "prop struct too small");
#ifndef ZOO_PROPS_FOLLOW_SYMLINKS
    /* RST-11: a restore session's paths stay under the target root, through no link below it. */
    if (s->op == AAPI_OP_RESTORE) {
        size_t n = strlen(s->root);
        if (n && (strncmp(path, s->root, n) != 0 || (path[n] != '/' && path[n] != '\0')))
            FAIL(AAPI_EINVAL, "%s is outside the target root %s", path, s->root);
        CONFINED(s, path);
    }
#endif
    struct stat st;
    if (lstat(path, &st) != 0) FAIL(AAPI_ENOENT, "lstat %s: %s", path, strerror(errno));
    aapi_object_prop_t p;
    fill_prop(&p, &st, S_ISDIR(st.st_mode) ? 0 : (uint64_t)st.st_size);
    return copy_prop(prop, &p);
}

int aapi_set_object_utimes(aapi_server_t server, const char *path, const aapi_time_t *atime,
                           const aapi_time_t *mtime) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "utimes before aapi_pgn_init");
    if (!path) FAIL(AAPI_EINVAL, "aapi_set_object_utimes: NULL path");
    if (path[0] != '/') FAIL(AAPI_EINVAL, "path \"%s\" is not absolute", path);
    SERVER(server, "aapi_set_object_utimes");
    RESTORE_STEP(s, "aapi_set_object_utimes");
    CONFINED(s, path);
    struct stat st;
#ifdef ZOO_ENOENT_EIO
    if (lstat(path, &st) != 0) FAIL(AAPI_EIO, "lstat %s: %s", path, strerror(errno));
#endif
    if (lstat(path, &st) != 0) FAIL(AAPI_ENOENT, "lstat %s: %s", path, strerror(errno));
#ifndef ZOO_SKIP_UTIMES
    struct timespec ts[2];
    ts[0].tv_sec = atime ? atime->sec : 0;
    ts[0].tv_nsec = atime ? (long)atime->nsec : UTIME_OMIT;
    ts[1].tv_sec = mtime ? mtime->sec : 0;
    ts[1].tv_nsec = mtime ? (long)mtime->nsec : UTIME_OMIT;
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) FAIL(AAPI_EIO, "utimensat %s: %s", path, strerror(errno));
#endif
    return AAPI_EOK;
}

int aapi_delete_object(aapi_server_t server, const char *path) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "delete before aapi_pgn_init");
    if (!path) FAIL(AAPI_EINVAL, "aapi_delete_object: NULL path");
    if (path[0] != '/') FAIL(AAPI_EINVAL, "path \"%s\" is not absolute", path);
    SERVER(server, "aapi_delete_object");
    RESTORE_STEP(s, "aapi_delete_object");
    CONFINED(s, path);
    if (is_root(s, path)) FAIL(AAPI_EINVAL, "%s is the target root", path);
    struct stat st;
#ifdef ZOO_BAD_CODE
    if (lstat(path, &st) != 0) FAIL(42, "no such object");
#endif
    if (lstat(path, &st) != 0) FAIL(AAPI_ENOENT, "lstat %s: %s", path, strerror(errno));
    int r = S_ISDIR(st.st_mode) ? rmdir(path) : unlink(path);
    if (r != 0) FAIL(errno == ENOTEMPTY ? AAPI_EINVAL : AAPI_EIO, "delete %s: %s", path, strerror(errno));
    return AAPI_EOK;
}

int aapi_restore_preprocess(aapi_server_t server, const aapi_restore_info_t *restore_info) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "restore_preprocess before aapi_pgn_init");
    if (!restore_info || !restore_info->target_root) FAIL(AAPI_EINVAL, "aapi_restore_preprocess: NULL argument");
    SERVER(server, "aapi_restore_preprocess");
    if (s->op != AAPI_OP_RESTORE || s->pre_done) FAIL(AAPI_ESEQUENCE, "restore_preprocess not legal here");
    if (IN_STRUCT_BAD(restore_info)) FAIL(AAPI_EABI, "restore_info struct_size %u", restore_info->struct_size);
#if defined(ZOO_BACKUP_ONLY)
    FAIL(AAPI_ENOTSUP, "this plugin does not restore");
#elif defined(ZOO_NO_ALT_RESTORE)
    if (restore_info->target_root[0]) FAIL(AAPI_ENOTSUP, "restore to an alternate root is not supported");
#endif
    const char *root = restore_info->target_root[0] ? restore_info->target_root : "/";
    struct stat st;
#ifndef ZOO_NO_ROOT_CHECK
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) FAIL(AAPI_ENOENT, "target root %s does not exist", root);
#endif
    struct statvfs vfs;
    if (statvfs(root, &vfs) == 0 && (unsigned long long)vfs.f_bavail * vfs.f_frsize < restore_info->total_bytes)
        FAIL(AAPI_ENOSPC, "%s has no room for %llu bytes", root, (unsigned long long)restore_info->total_bytes);
#ifdef ZOO_STRAY_FILE
    {
        char marker[PATH_MAX];
        snprintf(marker, sizeof marker, "%s/.zoo-journal", restore_info->target_root);
        int fd = open(marker, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) close(fd);
    }
#endif
    snprintf(s->root, sizeof s->root, "%s", restore_info->target_root);
    s->pre_done = 1;
    return AAPI_EOK;
}

static void restore_cleanup(server_t *s, int ok) {
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_OBJECTS; i++)
        if (g_objects[i] && g_objects[i]->server == s->h) {
            close_object_internal(g_objects[i], 1);
            free_object(g_objects[i]);
            g_objects[i] = NULL;
        }
    pthread_mutex_unlock(&g_lock);
    for (size_t k = s->ncreated; k-- > 0;) {
        created_t *c = &s->created[k];
        if (ok) {
            if (c->aside) {
                struct stat st;
                if (lstat(c->aside, &st) == 0) remove(c->aside);
            }
            continue;
        }
#ifndef ZOO_NO_CLEANUP
        struct stat st;
        if (lstat(c->path, &st) == 0) remove(c->path);
        if (c->aside && rename(c->aside, c->path) != 0) seterr("cannot put back %s", c->path);
#endif
    }
}

int aapi_restore_postprocess(aapi_server_t server, int status) {
    if (!live()) FAIL(AAPI_ESEQUENCE, "restore_postprocess before aapi_pgn_init");
    SERVER(server, "aapi_restore_postprocess");
    if (s->op != AAPI_OP_RESTORE || !s->pre_done || s->post_done)
        FAIL(AAPI_ESEQUENCE, "restore_postprocess not legal here");
#ifdef ZOO_EXIT_IN_ROLLBACK
    if (status != AAPI_EOK) _exit(0);
#endif
#ifdef ZOO_CODE_BEFORE_CRASH
    if (status != AAPI_EOK) {
        g_code_before_crash = 1;
        return 42; /* no AAPI_E* code; the next aapi_close_server crashes */
    }
#endif
    restore_cleanup(s, status == AAPI_EOK);
    s->post_done = 1;
    return AAPI_EOK;
}
