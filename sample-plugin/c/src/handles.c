/*
 * handles.c: the handle tables and the cycle state, behind one mutex.
 *
 * A handle is a 64-bit value the framework cannot forge by accident (RC-4):
 *
 *     bits 63..56  kind tag: 'S' (0x53) for servers, 'O' (0x4F) for objects
 *     bits 55..32  generation: a counter that never repeats within 2^24 issues and skips 0
 *     bits 31..0   slot index in the table of that kind
 *
 * Handle 0 has no kind tag, so it is never valid. A handle is valid only while its slot holds an
 * entry issued with exactly that value: a closed handle finds its slot empty or reused with another
 * generation, a server handle used as an object handle fails the kind check, and a forged value
 * fails one of the three. Each failure is AAPI_EBADHANDLE with a message saying which.
 *
 * Thread safety (THR-1, THR-2): the plugin declares AAPI_CAP_CONCURRENT_OBJECTS, so object calls on
 * one server may run at once. Every table access holds g_lock, and only for a few instructions;
 * no file I/O happens under it (TIME-3). An object being used by one call is marked busy, so a
 * framework that breaks THR-1 by using one object handle on two threads gets AAPI_ESEQUENCE
 * instead of a use-after-free.
 */
#include "files.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIND_SERVER 0x53u
#define KIND_OBJECT 0x4Fu

typedef struct table {
    void **entries;     /* entry per slot, NULL when free */
    uint64_t *handles;  /* handle issued for the entry in the same slot */
    size_t cap;
} table;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
    int initialized;
    int claimed;
    aapi_log_fn log;    /* host_info->log_callback, usable during init, claim and terminate */
    void *log_ctx;
} g_state;

static table g_servers;
static table g_objects;
/* Not reset by terminate: handles of an earlier cycle stay invalid in the next one. */
static uint32_t g_generation;

void state_lock(void) { pthread_mutex_lock(&g_lock); }
void state_unlock(void) { pthread_mutex_unlock(&g_lock); }

int state_initialized(void)
{
    int v;
    state_lock();
    v = g_state.initialized;
    state_unlock();
    return v;
}

int state_begin_cycle(aapi_log_fn log, void *ctx)
{
    int rc = AAPI_EOK;
    state_lock();
    if (g_state.initialized) {
        rc = AAPI_ESEQUENCE;
    } else {
        g_state.initialized = 1;
        g_state.claimed = 0;
        g_state.log = log;
        g_state.log_ctx = ctx;
    }
    state_unlock();
    return rc;
}

void state_set_claimed(void)
{
    state_lock();
    g_state.claimed = 1;
    state_unlock();
}

void state_host_log(uint32_t level, const char *message)
{
    aapi_log_fn log;
    void *ctx;
    state_lock();
    log = g_state.initialized ? g_state.log : NULL;
    ctx = g_state.log_ctx;
    state_unlock();
    if (log != NULL)
        log(ctx, level, message);
}

static void table_free(table *t)
{
    free(t->entries);
    free(t->handles);
    t->entries = NULL;
    t->handles = NULL;
    t->cap = 0;
}

void state_end_cycle(void)
{
    state_lock();
    table_free(&g_servers);
    table_free(&g_objects);
    g_state.initialized = 0;
    g_state.claimed = 0;
    g_state.log = NULL;
    g_state.log_ctx = NULL;
    state_unlock();
}

/* Insert under g_lock; returns AAPI_EOK or AAPI_ENOMEM. */
static int table_insert(table *t, unsigned kind, void *entry, uint64_t *handle)
{
    size_t slot;
    uint64_t h;
    for (slot = 0; slot < t->cap; slot++)
        if (t->entries[slot] == NULL)
            break;
    if (slot == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        void **ne;
        uint64_t *nh;
        if (ncap > UINT32_MAX)
            return AAPI_ENOMEM;
        ne = realloc(t->entries, ncap * sizeof *ne);
        if (ne == NULL)
            return AAPI_ENOMEM;
        t->entries = ne;
        nh = realloc(t->handles, ncap * sizeof *nh);
        if (nh == NULL)
            return AAPI_ENOMEM;
        t->handles = nh;
        memset(t->entries + t->cap, 0, (ncap - t->cap) * sizeof *ne);
        memset(t->handles + t->cap, 0, (ncap - t->cap) * sizeof *nh);
        t->cap = ncap;
    }
    g_generation = (g_generation + 1) & 0xFFFFFFu;
    if (g_generation == 0)
        g_generation = 1;
    h = ((uint64_t)kind << 56) | ((uint64_t)g_generation << 32) | (uint64_t)slot;
    t->entries[slot] = entry;
    t->handles[slot] = h;
    *handle = h;
    return AAPI_EOK;
}

/* Find under g_lock; NULL when `h` is not a live handle of this kind. */
static void *table_find(const table *t, unsigned kind, uint64_t h)
{
    uint64_t slot = h & 0xFFFFFFFFu;
    if ((h >> 56) != kind || slot >= t->cap)
        return NULL;
    if (t->entries[slot] == NULL || t->handles[slot] != h)
        return NULL;
    return t->entries[slot];
}

static void table_remove(table *t, uint64_t h)
{
    uint64_t slot = h & 0xFFFFFFFFu;
    t->entries[slot] = NULL;
    t->handles[slot] = 0;
}

/* RC-4, RC-10: say which of the invalid cases it is. Called under g_lock. */
static int bad_handle(const char *fn, const char *what, unsigned kind, uint64_t h)
{
    unsigned other = kind == KIND_SERVER ? KIND_OBJECT : KIND_SERVER;
    if (h == 0)
        return fail(AAPI_EBADHANDLE, "%s: %s handle 0 is never valid", fn, what);
    if ((h >> 56) == other && table_find(other == KIND_SERVER ? &g_servers : &g_objects, other, h))
        return fail(AAPI_EBADHANDLE, "%s: handle 0x%016llx is a%s handle, not a%s handle", fn,
                    (unsigned long long)h, other == KIND_SERVER ? " server" : "n object",
                    kind == KIND_SERVER ? " server" : "n object");
    return fail(AAPI_EBADHANDLE, "%s: %s handle 0x%016llx is closed or was never issued", fn, what,
                (unsigned long long)h);
}

int require_claimed(const char *fn)
{
    int rc = AAPI_EOK;
    state_lock();
    /* LIFE-1: nothing but init, terminate and get_last_error before init; LIFE-3: sessions
     * (and so every handle) only after a successful claim. */
    if (!g_state.initialized)
        rc = fail(AAPI_ESEQUENCE, "%s before aapi_pgn_init", fn);
    else if (!g_state.claimed)
        rc = fail(AAPI_ESEQUENCE, "%s before a successful aapi_pgn_claim", fn);
    state_unlock();
    return rc;
}

int server_lookup(const char *fn, aapi_server_t h, files_server **out)
{
    int rc = AAPI_EOK;
    files_server *srv;
    state_lock();
    if ((srv = table_find(&g_servers, KIND_SERVER, h)) == NULL) {
        rc = bad_handle(fn, "server", KIND_SERVER, h);
    } else {
        *out = srv;
    }
    state_unlock();
    return rc;
}

int server_register(files_server *srv)
{
    int rc;
    state_lock();
    rc = table_insert(&g_servers, KIND_SERVER, srv, &srv->handle);
    state_unlock();
    return rc == AAPI_EOK ? rc : fail(rc, "aapi_open_server: out of memory for the server table");
}

int server_unregister(const char *fn, aapi_server_t h, files_server **out)
{
    int rc = AAPI_EOK;
    files_server *srv;
    state_lock();
    if ((srv = table_find(&g_servers, KIND_SERVER, h)) == NULL) {
        rc = bad_handle(fn, "server", KIND_SERVER, h);
    } else {
        table_remove(&g_servers, h);
        *out = srv;
    }
    state_unlock();
    return rc;
}

files_server *server_take_one(void)
{
    files_server *srv = NULL;
    size_t i;
    state_lock();
    for (i = 0; i < g_servers.cap; i++) {
        if (g_servers.entries[i] != NULL) {
            srv = g_servers.entries[i];
            table_remove(&g_servers, g_servers.handles[i]);
            break;
        }
    }
    state_unlock();
    return srv;
}

int object_register(files_object *obj)
{
    int rc;
    state_lock();
    rc = table_insert(&g_objects, KIND_OBJECT, obj, &obj->handle);
    state_unlock();
    return rc == AAPI_EOK ? rc : fail(rc, "out of memory for the object table");
}

int object_acquire(const char *fn, aapi_object_t h, files_object **out)
{
    int rc = AAPI_EOK;
    files_object *obj;
    state_lock();
    if ((obj = table_find(&g_objects, KIND_OBJECT, h)) == NULL) {
        rc = bad_handle(fn, "object", KIND_OBJECT, h);
    } else if (obj->busy) {
        rc = fail(AAPI_ESEQUENCE,
                  "%s: object handle 0x%016llx is in use by another call (THR-1: one call per "
                  "object at a time)",
                  fn, (unsigned long long)h);
    } else {
        obj->busy = 1;
        *out = obj;
    }
    state_unlock();
    return rc;
}

void object_release(files_object *obj)
{
    state_lock();
    obj->busy = 0;
    state_unlock();
}

int object_unregister(const char *fn, aapi_object_t h, files_object **out)
{
    int rc = AAPI_EOK;
    files_object *obj;
    state_lock();
    if ((obj = table_find(&g_objects, KIND_OBJECT, h)) == NULL) {
        rc = bad_handle(fn, "object", KIND_OBJECT, h);
    } else if (obj->busy) {
        rc = fail(AAPI_ESEQUENCE, "%s: object handle 0x%016llx is in use by another call", fn,
                  (unsigned long long)h);
    } else {
        table_remove(&g_objects, h);
        *out = obj;
    }
    state_unlock();
    return rc;
}

files_object *object_take_one(const files_server *srv)
{
    files_object *obj = NULL;
    size_t i;
    state_lock();
    for (i = 0; i < g_objects.cap; i++) {
        files_object *o = g_objects.entries[i];
        if (o != NULL && o->server == srv) {
            table_remove(&g_objects, g_objects.handles[i]);
            obj = o;
            break;
        }
    }
    state_unlock();
    return obj;
}
