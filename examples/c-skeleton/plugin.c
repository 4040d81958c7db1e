/*
 * plugin.c: the smallest aapi plugin that loads, the first step of docs/guide-c.md.
 *
 * It exports the ABI marker and all 22 entry points, answers the handshake, claims one
 * workload type, keeps the call order of docs/contract.md §4 (LIFE-1..3, LIFE-7) and reports
 * every failure through aapi_get_last_error. It opens no sessions yet: aapi_open_server answers
 * AAPI_ECONNECT (one of its listed codes: it reaches no workload server), so every call that
 * needs a session meets no valid handle. The guide continues
 * from here; sample-plugin/c shows every entry point done in full.
 *
 *   cc -std=c99 -Wall -Wextra -Werror -fPIC -fvisibility=hidden -shared \
 *      $(pkg-config --cflags aapi) -o libmy_plugin.so plugin.c
 */
#include <stdio.h>
#include <string.h>

#include <aapi.h>

AAPI_DEFINE_ABI_MARKER(); /* LOAD-2 */

static int g_initialized, g_claimed;

/* One message per thread (RC-9). */
static __thread char t_error[256];

static int fail(int code, const char *fn, const char *what)
{
    snprintf(t_error, sizeof t_error, "%s: %s", fn, what);
    return code;
}

/* LIFE-1, LIFE-3: nothing works before init, and sessions only after a claim. */
static int phase(const char *fn)
{
    if (!g_initialized)
        return fail(AAPI_ESEQUENCE, fn, "called before aapi_pgn_init");
    if (!g_claimed)
        return fail(AAPI_ESEQUENCE, fn, "called before a successful aapi_pgn_claim");
    return AAPI_EOK;
}

int aapi_pgn_init(const aapi_host_info_t *host_info, aapi_plugin_info_t *plugin_info)
{
    if (g_initialized) /* LIFE-2 */
        return fail(AAPI_ESEQUENCE, "aapi_pgn_init", "called again without aapi_terminate");
    if (host_info == NULL || plugin_info == NULL)
        return fail(AAPI_EINVAL, "aapi_pgn_init", "NULL argument");
    if (host_info->struct_size < sizeof *host_info || host_info->abi_major != AAPI_ABI_MAJOR ||
        plugin_info->struct_size < sizeof *plugin_info) /* ABI-2, ABI-4 */
        return fail(AAPI_EABI, "aapi_pgn_init", "incompatible ABI version or struct size");
    plugin_info->abi_major = AAPI_ABI_MAJOR;
    plugin_info->abi_minor = AAPI_ABI_MINOR;
    plugin_info->name = "skeleton"; /* LOAD-5: static strings */
    plugin_info->version = "0.1.0";
    plugin_info->vendor = "me";
    plugin_info->workload_types = "skeleton";
    plugin_info->capabilities = 0;
    plugin_info->max_concurrent_objects = 1;
    g_initialized = 1;
    return AAPI_EOK;
}

int aapi_pgn_claim(const char *workload_type)
{
    if (!g_initialized)
        return fail(AAPI_ESEQUENCE, "aapi_pgn_claim", "called before aapi_pgn_init");
    if (workload_type == NULL || workload_type[0] == '\0')
        return fail(AAPI_EINVAL, "aapi_pgn_claim", "empty workload type");
    if (strcmp(workload_type, "skeleton") != 0) /* LOAD-6 */
        return fail(AAPI_ENOTCLAIMED, "aapi_pgn_claim", "workload type not handled");
    g_claimed = 1;
    return AAPI_EOK;
}

int aapi_open_server(const char *server, const aapi_session_def_t *session,
                     aapi_server_t *server_handle)
{
    int rc = phase("aapi_open_server");
    if (rc != AAPI_EOK)
        return rc;
    if (server == NULL || session == NULL || server_handle == NULL)
        return fail(AAPI_EINVAL, "aapi_open_server", "NULL argument");
    return fail(AAPI_ECONNECT, "aapi_open_server",
                "this skeleton reaches no workload server: it opens no sessions yet");
}

int aapi_terminate(void)
{
    g_initialized = g_claimed = 0; /* LIFE-7: repeatable, legal before init */
    return AAPI_EOK;
}

int aapi_get_last_error(char *buf, size_t *buf_size)
{
    size_t need = strlen(t_error) + 1;
    if (buf_size == NULL || (buf == NULL && *buf_size != 0))
        return AAPI_EINVAL;
    if (*buf_size < need || buf == NULL) { /* RC-6: the size needed, the buffer untouched */
        *buf_size = need;
        return AAPI_EBUFSIZE;
    }
    memcpy(buf, t_error, need);
    *buf_size = need;
    return AAPI_EOK;
}

/* Without a session there is no valid handle: every session and object call is refused with
 * AAPI_EBADHANDLE (RC-4) once the phase is right. Replace these as the plugin grows. */
#define NO_HANDLE(fn)                                                                          \
    do {                                                                                       \
        int rc_ = phase(#fn);                                                                  \
        return rc_ != AAPI_EOK ? rc_ : fail(AAPI_EBADHANDLE, #fn, "no such handle");           \
    } while (0)

int aapi_close_server(aapi_server_t s)
{
    (void)s;
    NO_HANDLE(aapi_close_server);
}

int aapi_get_server_prop(aapi_server_t s, aapi_server_info_t *info)
{
    (void)s, (void)info;
    NO_HANDLE(aapi_get_server_prop);
}

int aapi_discovery(aapi_server_t s, const char *const *selections, const char *const *hosts,
                   const char *dir, const char *suffix, uint32_t sched, aapi_snapid_t *snapid)
{
    (void)s, (void)selections, (void)hosts, (void)dir, (void)suffix, (void)sched, (void)snapid;
    NO_HANDLE(aapi_discovery);
}

int aapi_postprocess(aapi_server_t s, const char *const *selections, const char *const *hosts,
                     const char *dir, const char *suffix, uint32_t sched,
                     const aapi_snapid_t *snapid)
{
    (void)s, (void)selections, (void)hosts, (void)dir, (void)suffix, (void)sched, (void)snapid;
    NO_HANDLE(aapi_postprocess);
}

int aapi_get_snappath_from_realpath(aapi_server_t s, const char *snapname, const char *realpath,
                                    char *snappath, size_t *snappath_size)
{
    (void)s, (void)snapname, (void)realpath, (void)snappath, (void)snappath_size;
    NO_HANDLE(aapi_get_snappath_from_realpath);
}

int aapi_open_object(aapi_server_t s, const char *path, uint32_t flags, aapi_object_t *object)
{
    (void)s, (void)path, (void)flags, (void)object;
    NO_HANDLE(aapi_open_object);
}

int aapi_create_object(aapi_server_t s, const char *path, const aapi_object_prop_t *prop,
                       uint32_t flags, aapi_object_t *object)
{
    (void)s, (void)path, (void)prop, (void)flags, (void)object;
    NO_HANDLE(aapi_create_object);
}

int aapi_delete_object(aapi_server_t s, const char *path)
{
    (void)s, (void)path;
    NO_HANDLE(aapi_delete_object);
}

int aapi_read_object(aapi_object_t o, void *buf, size_t buf_size, size_t *bytes_read)
{
    (void)o, (void)buf, (void)buf_size, (void)bytes_read;
    NO_HANDLE(aapi_read_object);
}

int aapi_write_object(aapi_object_t o, const void *buf, size_t len)
{
    (void)o, (void)buf, (void)len;
    NO_HANDLE(aapi_write_object);
}

int aapi_flush(aapi_object_t o)
{
    (void)o;
    NO_HANDLE(aapi_flush);
}

int aapi_close_object(aapi_object_t o)
{
    (void)o;
    NO_HANDLE(aapi_close_object);
}

int aapi_get_object_prop(aapi_object_t o, aapi_object_prop_t *prop)
{
    (void)o, (void)prop;
    NO_HANDLE(aapi_get_object_prop);
}

int aapi_get_object_prop_byname(aapi_server_t s, const char *path, aapi_object_prop_t *prop)
{
    (void)s, (void)path, (void)prop;
    NO_HANDLE(aapi_get_object_prop_byname);
}

int aapi_set_object_utimes(aapi_server_t s, const char *path, const aapi_time_t *atime,
                           const aapi_time_t *mtime)
{
    (void)s, (void)path, (void)atime, (void)mtime;
    NO_HANDLE(aapi_set_object_utimes);
}

int aapi_restore_preprocess(aapi_server_t s, const aapi_restore_info_t *info)
{
    (void)s, (void)info;
    NO_HANDLE(aapi_restore_preprocess);
}

int aapi_restore_postprocess(aapi_server_t s, int status)
{
    (void)s, (void)status;
    NO_HANDLE(aapi_restore_postprocess);
}
