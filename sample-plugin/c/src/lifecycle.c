/*
 * lifecycle.c: the ABI marker, init, claim, server sessions, terminate and the last-error call.
 *
 * Every entry point of this plugin checks, in this order (the order of the Rust SDK's runtime,
 * so that both sample plugins give the same code for the same bad call):
 *
 *   1. the cycle: initialised and claimed                      AAPI_ESEQUENCE  (LIFE-1, LIFE-3)
 *   2. NULL pointers                                           AAPI_EINVAL     (RC-3)
 *   3. the handle                                              AAPI_EBADHANDLE (RC-4)
 *   4. the call in this session: operation, once-only calls,
 *      restore window, read vs write object                    AAPI_ESEQUENCE  (LIFE-4, LIFE-5)
 *   5. struct_size                                             AAPI_EABI       (ABI-4)
 *   6. values: empty strings, flags, enumerations              AAPI_EINVAL ... (RC-3, RC-8)
 *
 * Only then does it act, and it writes out-parameters only on success (RC-5).
 */
#include "files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* LOAD-2: the static marker tools read from the ELF file without running any plugin code. */
AAPI_DEFINE_ABI_MARKER();

int aapi_pgn_init(const aapi_host_info_t *host_info, aapi_plugin_info_t *plugin_info)
{
    static const char fn[] = "aapi_pgn_init";
    /* LIFE-2: a second init without terminate changes nothing. */
    if (state_initialized())
        return fail(AAPI_ESEQUENCE, "%s called again without aapi_terminate", fn);
    if (host_info == NULL || plugin_info == NULL)
        return fail(AAPI_EINVAL, "%s: host_info and plugin_info must not be NULL", fn);
    /* ABI-2, ABI-4: host_info is checked first, and nothing is written when it does not fit. */
    if (host_info->struct_size < sizeof(aapi_host_info_t))
        return fail(AAPI_EABI, "%s: host_info->struct_size %u is smaller than the ABI 1.0 size %u",
                    fn, (unsigned)host_info->struct_size, (unsigned)sizeof(aapi_host_info_t));
    if (host_info->abi_major != AAPI_ABI_MAJOR)
        return fail(AAPI_EABI, "%s: framework ABI major %u differs from this plugin's %u", fn,
                    (unsigned)host_info->abi_major, (unsigned)AAPI_ABI_MAJOR);
    if (plugin_info->struct_size < sizeof(aapi_plugin_info_t))
        return fail(AAPI_EABI,
                    "%s: plugin_info->struct_size %u is smaller than the ABI 1.0 size %u", fn,
                    (unsigned)plugin_info->struct_size, (unsigned)sizeof(aapi_plugin_info_t));
    if (host_info->log_callback == NULL || host_info->framework_name == NULL ||
        host_info->framework_version == NULL)
        return fail(AAPI_EINVAL, "%s: host_info->log_callback, framework_name and "
                                 "framework_version must not be NULL",
                    fn);
    if (state_begin_cycle(host_info->log_callback, host_info->callback_ctx) != AAPI_EOK)
        return fail(AAPI_ESEQUENCE, "%s called again without aapi_terminate", fn);

    /* ABI-5: write the ABI 1.0 fields only; struct_size and anything past it stay the caller's. */
    plugin_info->abi_major = AAPI_ABI_MAJOR; /* ABI-3: the same values as the marker */
    plugin_info->abi_minor = AAPI_ABI_MINOR;
    plugin_info->name = FILES_PLUGIN_NAME; /* LOAD-5, MEM-2: static strings */
    plugin_info->version = FILES_PLUGIN_VERSION;
    plugin_info->vendor = FILES_PLUGIN_VENDOR;
    plugin_info->workload_types = FILES_WORKLOAD_TYPE;
    plugin_info->capabilities = AAPI_CAP_CONCURRENT_OBJECTS | AAPI_CAP_RESTORE |
                                AAPI_CAP_ALTERNATE_RESTORE | AAPI_CAP_SNAPSHOT;
    plugin_info->max_concurrent_objects = FILES_MAX_CONCURRENT; /* THR-2: at least 2 */
    plugin_info->reserved = 0;
    log_msg(NULL, AAPI_LOG_DEBUG, "%s %s initialised", FILES_PLUGIN_NAME, FILES_PLUGIN_VERSION);
    return AAPI_EOK;
}

int aapi_pgn_claim(const char *workload_type)
{
    static const char fn[] = "aapi_pgn_claim";
    if (!state_initialized()) /* LIFE-1 */
        return fail(AAPI_ESEQUENCE, "%s before aapi_pgn_init", fn);
    if (workload_type == NULL || workload_type[0] == '\0')
        return fail(AAPI_EINVAL, "%s: workload_type must be a non-empty string", fn);
    /* LOAD-6: exactly the types listed in workload_types, case-sensitive. */
    if (strcmp(workload_type, FILES_WORKLOAD_TYPE) != 0)
        return fail(AAPI_ENOTCLAIMED, "%s: workload type \"%s\" is not handled (only \"%s\")", fn,
                    workload_type, FILES_WORKLOAD_TYPE);
    state_set_claimed();
    return AAPI_EOK;
}

/* ------------------------------------------------------------------------------------------ */
/* Session configuration (sample-plugin/README.md, "Configuration")                            */
/* ------------------------------------------------------------------------------------------ */

/* files.snapshot_dir=`dir`, normalized. The directory is checked and used by this very path: a
 * ".." would be checked where the walk leads but kept in every snapshot path, which object paths
 * may not hold. */
static int set_snapshot_dir(const char *fn, files_config *cfg, const char *dir)
{
    int dotdot;
    char *norm;
    if (!path_is_absolute(dir))
        return fail(AAPI_EINVAL, "%s: files.snapshot_dir=\"%s\" is not an absolute path", fn, dir);
    norm = path_normalize(dir, &dotdot);
    if (norm == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    if (dotdot) {
        free(norm);
        return fail(AAPI_EINVAL,
                    "%s: files.snapshot_dir=\"%s\" contains a \"..\" component, which snapshot "
                    "paths may not hold; set files.snapshot_dir to the path of the directory "
                    "without \"..\"",
                    fn, dir);
    }
    free(cfg->snapshot_dir);
    cfg->snapshot_dir = norm;
    return AAPI_EOK;
}

/* The default files.snapshot_dir: "aapi-files-snapshots" in the temporary directory for root,
 * "aapi-files-snapshots-<uid>" for any other user (so that no user's directory stands in the way
 * of another's). The temporary directory is $TMPDIR when it is an absolute path without a ".."
 * component (POSIX requires an absolute one), else /tmp: the directory checked is then the one
 * every snapshot path names. NULL when out of memory. */
static char *default_snapshot_dir(void)
{
    const char *tmpdir = getenv("TMPDIR");
    char name[64], *tmp = NULL, *dir, *norm;
    int dotdot = 1;
    unsigned long uid = (unsigned long)geteuid();
    if (tmpdir != NULL && path_is_absolute(tmpdir)) {
        tmp = path_normalize(tmpdir, &dotdot);
        if (tmp == NULL)
            return NULL;
    }
    if (uid == 0)
        snprintf(name, sizeof name, "aapi-files-snapshots");
    else
        snprintf(name, sizeof name, "aapi-files-snapshots-%lu", uid);
    dir = path_join(tmp != NULL && !dotdot ? tmp : "/tmp", name);
    free(tmp);
    if (dir == NULL)
        return NULL;
    norm = path_normalize(dir, &dotdot);
    free(dir);
    return norm;
}

static int parse_time(const char *fn, const char *key, const char *value, int *has, int64_t *out)
{
    uint64_t v;
    if (parse_decimal(value, (uint64_t)INT64_MAX, &v) != 0)
        return fail(AAPI_EINVAL, "%s: property %s=\"%s\" is not a decimal number of seconds", fn,
                    key, value);
    *has = 1;
    *out = (int64_t)v;
    return AAPI_EOK;
}

static int parse_config(const char *fn, files_server *srv)
{
    const aapi_session_def_t *s = srv->session;
    files_config *cfg = &srv->cfg;
    size_t i;
    int rc;

    cfg->snapshot = SNAP_NONE;
    cfg->reflink_fallback_copy = 0;
    cfg->min_free_bytes = 0;
    free(cfg->snapshot_dir);
    cfg->snapshot_dir = default_snapshot_dir();
    if (cfg->snapshot_dir == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);

    for (i = 0; i < s->sd_property_count; i++) {
        const char *key = s->sd_properties[i].key, *value = s->sd_properties[i].value;
        if (strcmp(key, "files.snapshot") == 0) {
            if (strcmp(value, "none") == 0)
                cfg->snapshot = SNAP_NONE;
            else if (strcmp(value, "copy") == 0)
                cfg->snapshot = SNAP_COPY;
            else if (strcmp(value, "reflink") == 0)
                cfg->snapshot = SNAP_REFLINK;
            else
                return fail(AAPI_EINVAL,
                            "%s: files.snapshot=\"%s\" is not one of none, copy, reflink", fn,
                            value);
        } else if (strcmp(key, "files.snapshot_dir") == 0) {
            rc = set_snapshot_dir(fn, cfg, value);
            if (rc != AAPI_EOK)
                return rc;
        } else if (strcmp(key, "files.reflink_fallback") == 0) {
            if (strcmp(value, "error") == 0)
                cfg->reflink_fallback_copy = 0;
            else if (strcmp(value, "copy") == 0)
                cfg->reflink_fallback_copy = 1;
            else
                return fail(AAPI_EINVAL,
                            "%s: files.reflink_fallback=\"%s\" is not one of error, copy", fn,
                            value);
        } else if (strcmp(key, "files.min_free_bytes") == 0) {
            if (parse_decimal(value, UINT64_MAX, &cfg->min_free_bytes) != 0)
                return fail(AAPI_EINVAL,
                            "%s: files.min_free_bytes=\"%s\" is not a decimal number of bytes", fn,
                            value);
        } else if (strcmp(key, AAPI_PROP_LAST_BACKUP_TIME) == 0) {
            rc = parse_time(fn, key, value, &cfg->has_last_backup, &cfg->last_backup_time);
            if (rc != AAPI_EOK)
                return rc;
        } else if (strcmp(key, AAPI_PROP_LAST_FULL_TIME) == 0) {
            rc = parse_time(fn, key, value, &cfg->has_last_full, &cfg->last_full_time);
            if (rc != AAPI_EOK)
                return rc;
        } else if (strncmp(key, "files.", 6) == 0) {
            log_msg(srv, AAPI_LOG_WARNING, "%s: unknown property %s ignored", FILES_PLUGIN_NAME,
                    key);
        }
    }
    return AAPI_EOK;
}

void server_free(files_server *srv)
{
    if (srv == NULL)
        return;
    free(srv->cfg.snapshot_dir);
    free(srv->target_root);
    if (srv->top_fd >= 0)
        close(srv->top_fd);
    strvec_free(&srv->created);
    free(srv->aside);
    free(srv->dirmodes);
    free(srv->dirs);
    free(srv->ids);
    free(srv->written);
    free(srv);
}

int aapi_open_server(const char *server, const aapi_session_def_t *session,
                     aapi_server_t *server_handle)
{
    static const char fn[] = "aapi_open_server";
    files_server *srv;
    size_t i;
    int rc = require_claimed(fn); /* LIFE-1, LIFE-3 */
    if (rc != AAPI_EOK)
        return rc;
    if (server == NULL || session == NULL || server_handle == NULL)
        return fail(AAPI_EINVAL, "%s: server, session and server_handle must not be NULL", fn);
    if (session->struct_size < sizeof(aapi_session_def_t)) /* ABI-4 */
        return fail(AAPI_EABI, "%s: session->struct_size %u is smaller than the ABI 1.0 size %u",
                    fn, (unsigned)session->struct_size, (unsigned)sizeof(aapi_session_def_t));
    if (server[0] == '\0' || !utf8_valid(server))
        return fail(AAPI_EINVAL, "%s: the server name is empty or not UTF-8", fn);
    if (session->abi_major != AAPI_ABI_MAJOR)
        return fail(AAPI_EABI, "%s: session ABI major %u differs from this plugin's %u", fn,
                    (unsigned)session->abi_major, (unsigned)AAPI_ABI_MAJOR);
    /* RC-3: out-of-range enumerations, NULL strings and callbacks, a zero budget. */
    if (session->sd_operation < AAPI_OP_DISCOVERY || session->sd_operation > AAPI_OP_RESTORE)
        return fail(AAPI_EINVAL, "%s: session->sd_operation %u is unknown", fn,
                    (unsigned)session->sd_operation);
    if (session->sd_schedtype < AAPI_SCHED_FULL || session->sd_schedtype > AAPI_SCHED_CINC)
        return fail(AAPI_EINVAL, "%s: session->sd_schedtype %u is unknown", fn,
                    (unsigned)session->sd_schedtype);
    if (session->sd_job_id == NULL || session->sd_backup_host == NULL ||
        session->sd_snapid == NULL || !utf8_valid(session->sd_job_id) ||
        !utf8_valid(session->sd_backup_host) || !utf8_valid(session->sd_snapid))
        return fail(AAPI_EINVAL, "%s: sd_job_id, sd_backup_host and sd_snapid must be UTF-8 "
                                 "strings",
                    fn);
    if (session->sd_properties == NULL && session->sd_property_count > 0)
        return fail(AAPI_EINVAL, "%s: session->sd_properties is NULL", fn);
    for (i = 0; i < session->sd_property_count; i++) {
        const aapi_property_t *p = &session->sd_properties[i];
        if (p->key == NULL || p->value == NULL || !utf8_valid(p->key) || !utf8_valid(p->value))
            return fail(AAPI_EINVAL, "%s: property %zu has a NULL or non-UTF-8 key or value", fn,
                        i);
    }
    if (session->sd_call_budget_ms == 0)
        return fail(AAPI_EINVAL, "%s: session->sd_call_budget_ms is 0", fn);
    if (session->sd_log_callback == NULL || session->sd_keepalive_callback == NULL ||
        session->sd_credential_callback == NULL)
        return fail(AAPI_EINVAL, "%s: the session's callbacks must not be NULL", fn);

    srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    /* MEM-1: the session and everything it points to stay valid until close_server returns, so
     * keeping the pointer is allowed; nothing else the framework passes is kept. */
    srv->session = session;
    srv->op = session->sd_operation;
    srv->top_fd = -1;
    rc = parse_config(fn, srv);
    if (rc == AAPI_EOK)
        rc = server_register(srv);
    if (rc != AAPI_EOK) {
        server_free(srv);
        return rc;
    }
    *server_handle = srv->handle; /* RC-5: written on success only */
    return AAPI_EOK;
}

/* Close every object of the session, then the session (LIFE-6, RES-1). */
static int close_session(const char *fn, files_server *srv)
{
    files_object *obj;
    int rc = AAPI_EOK;
    while ((obj = object_take_one(srv)) != NULL) {
        int r = obj->mode == OBJ_READ ? backup_close(obj) : restore_close(fn, obj, 0);
        if (r != AAPI_EOK && rc == AAPI_EOK)
            rc = r;
    }
    if (srv->op == AAPI_OP_RESTORE && srv->preprocess_done && !srv->restore_done)
        restore_abandon(srv);
    server_free(srv);
    return rc == AAPI_EOK ? rc : fail(AAPI_EIO, "%s: the session was closed, but an open object "
                                                "could not be discarded cleanly",
                                      fn);
}

int aapi_close_server(aapi_server_t server)
{
    static const char fn[] = "aapi_close_server";
    files_server *srv;
    int rc = require_claimed(fn);
    if (rc == AAPI_EOK)
        rc = server_unregister(fn, server, &srv); /* LIFE-6: the handle is dead from here on */
    if (rc != AAPI_EOK)
        return rc;
    return close_session(fn, srv);
}

int aapi_get_server_prop(aapi_server_t server, aapi_server_info_t *server_info)
{
    static const char fn[] = "aapi_get_server_prop";
    files_server *srv;
    int rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (server_info == NULL)
        return fail(AAPI_EINVAL, "%s: server_info must not be NULL", fn);
    rc = server_lookup(fn, server, &srv); /* legal in every operation */
    if (rc != AAPI_EOK)
        return rc;
    if (server_info->struct_size < sizeof(aapi_server_info_t))
        return fail(AAPI_EABI, "%s: server_info->struct_size %u is smaller than the ABI 1.0 size %u",
                    fn, (unsigned)server_info->struct_size, (unsigned)sizeof(aapi_server_info_t));
    /* RC-8: exactly the schedules aapi_discovery accepts. */
    server_info->reserved = 0;
    server_info->srv_flags =
        AAPI_SRVC_FULL_BACKUP_SUPPORT | AAPI_SRVC_INCR_BACKUP_SUPPORT | AAPI_SRVC_CINC_BACKUP_SUPPORT;
    return AAPI_EOK;
}

int aapi_terminate(void)
{
    files_server *srv;
    /* LIFE-7: before init, or a second time, it does nothing. */
    if (!state_initialized())
        return AAPI_EOK;
    /* RES-2: every server and object still open is closed, every descriptor released. */
    while ((srv = server_take_one()) != NULL)
        (void)close_session("aapi_terminate", srv);
    log_msg(NULL, AAPI_LOG_DEBUG, "%s terminated", FILES_PLUGIN_NAME);
    state_end_cycle();
    return AAPI_EOK;
}

int aapi_get_last_error(char *buf, size_t *buf_size)
{
    /* Legal at any time, from any thread (RC-9); it never replaces the message it reports. */
    return last_error_copy(buf, buf_size);
}
