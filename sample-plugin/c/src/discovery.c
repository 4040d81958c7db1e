/*
 * discovery.c: aapi_discovery. Walks the selections, marks unchanged objects of incrementals,
 * splits the objects across the backup hosts balancing bytes, takes the snapshot and writes one
 * workload file per host (DISC-1..DISC-9).
 */
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One object found by the walk. */
typedef struct wobj {
    char *path;
    struct stat st;
    uint32_t flags;   /* AAPI_WKLD_* */
    uint64_t size;    /* file size, link target length, 0 for a directory */
    uint64_t weight;  /* size for balancing: 0 for unchanged objects */
    size_t host;      /* index in backuphosts */
} wobj;

typedef struct wlist {
    wobj *v;
    size_t n, cap;
} wlist;

static void wlist_free(wlist *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i].path);
    free(l->v);
}

static int wlist_push(wlist *l, const char *path, const struct stat *st)
{
    wobj *nv = grow_array(l->v, &l->cap, l->n + 1, sizeof *nv, 256);
    if (nv == NULL)
        return AAPI_ENOMEM;
    l->v = nv;
    memset(&l->v[l->n], 0, sizeof l->v[l->n]);
    l->v[l->n].path = strdup(path);
    if (l->v[l->n].path == NULL)
        return AAPI_ENOMEM;
    l->v[l->n].st = *st;
    l->n++;
    return AAPI_EOK;
}

static int is_object_type(mode_t m) { return S_ISREG(m) || S_ISDIR(m) || S_ISLNK(m); }

/* Add `path` and, for a directory, everything below it. Symlinks are never followed: lstat only. */
/* A directory whose contents the running user may not list stays an object (its open fails at
 * backup, so the image names it) and the walk goes on with the rest. */
static void unlisted(const files_server *srv, const char *dir, int err)
{
    char text[256];
    if (strerror_r(err, text, sizeof text) != 0)
        snprintf(text, sizeof text, "errno %d", err);
    log_msg(srv, AAPI_LOG_WARNING,
            "%s: cannot list the contents of %s: %s; the directory is listed without them",
            FILES_PLUGIN_NAME, dir, text);
}

/* The names of the directory `path`, "." and ".." aside, read before anything below it is
 * walked, so that the walk holds no descriptor per directory level. AAPI_EOK, with *denied set
 * when the caller may not list it; else a code with the message set. */
static int list_names(const char *fn, const char *path, files_strvec *names, int *denied)
{
    int rc;
    DIR *d = opendir(path);
    *denied = d == NULL && errno == EACCES;
    if (*denied)
        return AAPI_EOK;
    if (d == NULL)
        return fail_errno(errno, "%s: cannot read directory %s", fn, path);
    rc = read_dir_names(fn, d, path, names);
    closedir(d);
    return rc;
}

static int walk(const char *fn, const files_server *srv, const char *path, const struct stat *st,
                wlist *out, files_keepalive *ka)
{
    files_strvec names = {0};
    size_t i;
    int rc, denied;
    if (wlist_push(out, path, st) != AAPI_EOK)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    if (!S_ISDIR(st->st_mode))
        return AAPI_EOK;
    rc = list_names(fn, path, &names, &denied);
    if (rc == AAPI_EOK && denied)
        unlisted(srv, path, EACCES);
    for (i = 0; i < names.n && rc == AAPI_EOK; i++) {
        struct stat cst;
        char *child;
        /* TIME-2: keepalive checked at every directory entry; TIME-4: stop when cancelled. */
        rc = keepalive_tick(ka, fn);
        if (rc != AAPI_EOK)
            break;
        child = path_join(path, names.v[i]);
        if (child == NULL) {
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
            break;
        }
        if (strlen(child) > FILES_PATH_MAX) {
            /* DISC-2: no object is dropped; one that cannot be read by its path fails the job. */
            rc = fail(AAPI_ENOTSUP,
                      "%s: a path of the selection is %zu bytes long, more than the %d bytes a "
                      "path may have; this plugin reads objects by their paths: %s",
                      fn, strlen(child), FILES_PATH_MAX, child);
        } else if (lstat(child, &cst) != 0) {
            if (errno == EACCES) {
                /* Names but no search permission: none of its entries can be inspected. */
                unlisted(srv, path, errno);
                free(child);
                break;
            }
            if (errno != ENOENT) /* an entry removed during the walk is simply not there */
                rc = fail_errno(errno, "%s: cannot inspect %s", fn, child);
        } else if (!is_object_type(cst.st_mode)) {
            log_msg(srv, AAPI_LOG_WARNING, "%s: skipped %s: not a file, directory or symlink",
                    FILES_PLUGIN_NAME, child);
        } else {
            rc = walk(fn, srv, child, &cst, out, ka);
        }
        free(child);
    }
    strvec_free(&names);
    return rc;
}

static int by_path(const void *a, const void *b)
{
    /* strcmp compares as unsigned char: ascending path-byte order. */
    return strcmp(((const wobj *)a)->path, ((const wobj *)b)->path);
}

/* Split order: largest weight first, ties by path bytes ascending. */
static int by_weight(const void *a, const void *b)
{
    const wobj *x = *(const wobj *const *)a, *y = *(const wobj *const *)b;
    if (x->weight != y->weight)
        return x->weight > y->weight ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* RC-3: a NULL-terminated array with at least one entry, none empty. */
static int check_array(const char *fn, const char *what, const char *const *a)
{
    size_t i;
    for (i = 0; a[i] != NULL; i++)
        if (a[i][0] == '\0')
            return fail(AAPI_EINVAL, "%s: %s[%zu] is empty", fn, what, i);
    if (i == 0)
        return fail(AAPI_EINVAL, "%s: %s has no entry", fn, what);
    return AAPI_EOK;
}

int check_job(const char *fn, const char *const *sel, const char *const *hosts,
                     const char *dir, const char *suffix)
{
    struct stat st;
    size_t i, j;
    int rc = check_array(fn, "selections", sel);
    if (rc == AAPI_EOK)
        rc = check_array(fn, "backuphosts", hosts);
    if (rc != AAPI_EOK)
        return rc;
    for (i = 0; hosts[i] != NULL; i++) {
        const char *h = hosts[i];
        /* A host name becomes a file name in wkldoutdir: no path separators, no "." or "..". */
        if (!utf8_valid(h) || strchr(h, '/') != NULL || strcmp(h, ".") == 0 ||
            strcmp(h, "..") == 0 || strlen(h) > 1024)
            return fail(AAPI_EINVAL,
                        "%s: backuphosts[%zu] \"%s\" cannot be part of a file name (not UTF-8, "
                        "\"/\", \".\", \"..\" or over 1024 bytes)",
                        fn, i, h);
        for (j = 0; j < i; j++)
            if (strcmp(hosts[j], h) == 0)
                return fail(AAPI_EINVAL, "%s: backup host \"%s\" is listed twice", fn, h);
    }
    if (dir[0] == '\0' || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail(AAPI_EINVAL, "%s: wkldoutdir \"%s\" is not an existing directory", fn, dir);
    if (!utf8_valid(suffix) || strchr(suffix, '/') != NULL)
        return fail(AAPI_EINVAL, "%s: wkldfilesuffix \"%s\" is not UTF-8 or contains '/'", fn,
                    suffix);
    return AAPI_EOK;
}

/* Normalized copies of the selections; every one absolute, without ".." (RC-3). */
static int check_selections(const char *fn, const char *const *sel, files_strvec *out)
{
    size_t i;
    for (i = 0; sel[i] != NULL; i++) {
        int dotdot, rc = check_object_path(fn, "selection", sel[i]);
        char *norm;
        if (rc != AAPI_EOK)
            return rc;
        norm = path_normalize(sel[i], &dotdot);
        if (norm == NULL)
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
        rc = strvec_push(out, norm);
        free(norm);
        if (rc != AAPI_EOK)
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    }
    return AAPI_EOK;
}

/* Assign every object to a host: largest first, each to the host with the fewest bytes so far
 * (ties: fewest objects, then the earlier host). DISC-9. */
static int split(const char *fn, wlist *objs, size_t nhosts, uint64_t *bytes, size_t *counts)
{
    wobj **order = malloc((objs->n ? objs->n : 1) * sizeof *order);
    size_t i, h;
    if (order == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    for (i = 0; i < objs->n; i++)
        order[i] = &objs->v[i];
    if (objs->n > 1)
        qsort(order, objs->n, sizeof *order, by_weight);
    for (i = 0; i < objs->n; i++) {
        size_t best = 0;
        for (h = 1; h < nhosts; h++)
            if (bytes[h] < bytes[best] || (bytes[h] == bytes[best] && counts[h] < counts[best]))
                best = h;
        order[i]->host = best;
        bytes[best] += order[i]->weight;
        counts[best]++;
    }
    free(order);
    return AAPI_EOK;
}

int aapi_discovery(aapi_server_t server, const char *const *selections,
                   const char *const *backuphosts, const char *wkldoutdir,
                   const char *wkldfilesuffix, uint32_t schedtype, aapi_snapid_t *snapid)
{
    static const char fn[] = "aapi_discovery";
    files_server *srv;
    files_keepalive ka;
    files_strvec sels = {0}, written = {0};
    wlist objs = {0};
    files_record *records = NULL;
    files_snap_item *items = NULL;
    uint64_t *bytes = NULL;
    size_t *counts = NULL;
    size_t nhosts = 0, i, j, nitems = 0;
    char snap[AAPI_SNAPID_MAX] = "";
    int has_since = 0, snapshot_made = 0;
    int64_t since = 0;
    struct stat st;
    int rc;

    rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (selections == NULL || backuphosts == NULL || wkldoutdir == NULL ||
        wkldfilesuffix == NULL || snapid == NULL) /* RC-3 */
        return fail(AAPI_EINVAL, "%s: selections, backuphosts, wkldoutdir, wkldfilesuffix and "
                                 "snapid must not be NULL",
                    fn);
    rc = server_lookup(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if (srv->op != AAPI_OP_DISCOVERY) /* LIFE-4 */
        return fail(AAPI_ESEQUENCE, "%s is legal only in a discovery session", fn);
    if (srv->discovery_done)
        return fail(AAPI_ESEQUENCE, "%s called twice in one session", fn);
    rc = check_job(fn, selections, backuphosts, wkldoutdir, wkldfilesuffix);
    if (rc != AAPI_EOK)
        return rc;
    /* RC-8: an unknown schedule is refused before anything is written. */
    if (schedtype != AAPI_SCHED_FULL && schedtype != AAPI_SCHED_INCR &&
        schedtype != AAPI_SCHED_CINC)
        return fail(AAPI_ESCHED_NOT_SUPPORTED,
                    "%s: schedule type %u is not supported by this server", fn,
                    (unsigned)schedtype);
    /* LIFE-4: the one discovery of this session starts here, whatever its outcome. */
    srv->discovery_done = 1;
    rc = check_selections(fn, selections, &sels);
    if (rc != AAPI_EOK)
        goto out;
    for (nhosts = 0; backuphosts[nhosts] != NULL; nhosts++)
        ;
    if (srv->cfg.snapshot != SNAP_NONE) {
        rc = snapshot_id(fn, srv->session->sd_job_id, srv->cfg.snapshot_dir, snap);
        if (rc != AAPI_EOK)
            goto out;
    }
    /* DISC-8: the reference time of an incremental, when the framework gave one. */
    if (schedtype == AAPI_SCHED_INCR && srv->cfg.has_last_backup) {
        has_since = 1;
        since = srv->cfg.last_backup_time;
    } else if (schedtype == AAPI_SCHED_CINC && srv->cfg.has_last_full) {
        has_since = 1;
        since = srv->cfg.last_full_time;
    }

    /* Every selection must exist before anything is walked or written (RC-7). */
    for (i = 0; i < sels.n; i++) {
        if (lstat(sels.v[i], &st) != 0) {
            rc = errno == ENOENT || errno == ENOTDIR
                     ? fail(AAPI_ENOENT, "%s: selection %s does not exist", fn, sels.v[i])
                     : fail_errno(errno, "%s: cannot inspect selection %s", fn, sels.v[i]);
            goto out;
        }
    }
    keepalive_start(&ka, srv);
    for (i = 0; i < sels.n; i++) {
        if (lstat(sels.v[i], &st) != 0) {
            rc = fail_errno(errno, "%s: selection %s vanished", fn, sels.v[i]);
            goto out;
        }
        if (!is_object_type(st.st_mode)) {
            log_msg(srv, AAPI_LOG_WARNING, "%s: skipped %s: not a file, directory or symlink",
                    FILES_PLUGIN_NAME, sels.v[i]);
            continue;
        }
        rc = walk(fn, srv, sels.v[i], &st, &objs, &ka);
        if (rc != AAPI_EOK)
            goto out;
    }

    /* DISC-2: overlapping selections give each object once. */
    if (objs.n > 1)
        qsort(objs.v, objs.n, sizeof *objs.v, by_path);
    for (i = 0, j = 0; i < objs.n; i++) {
        if (j > 0 && strcmp(objs.v[j - 1].path, objs.v[i].path) == 0) {
            free(objs.v[i].path);
            continue;
        }
        objs.v[j++] = objs.v[i];
    }
    objs.n = j;
    /* TIME-2: every phase after the walk checks the keepalive too (sorting, splitting and
     * writing the files of a large tree take a while). */
    rc = keepalive_tick(&ka, fn);
    if (rc != AAPI_EOK)
        goto out;

    for (i = 0; i < objs.n; i++) {
        wobj *o = &objs.v[i];
        int changed = !has_since || (int64_t)o->st.st_mtim.tv_sec >= since ||
                      (int64_t)o->st.st_ctim.tv_sec >= since;
        o->size = S_ISDIR(o->st.st_mode) ? 0 : (uint64_t)o->st.st_size;
        o->flags = S_ISDIR(o->st.st_mode) ? AAPI_WKLD_DIR
                   : S_ISLNK(o->st.st_mode) ? AAPI_WKLD_SYMLINK
                                            : 0;
        if (!changed)
            o->flags |= AAPI_WKLD_UNCHANGED;
        o->weight = changed ? o->size : 0;
    }

    bytes = calloc(nhosts, sizeof *bytes);
    counts = calloc(nhosts, sizeof *counts);
    records = malloc((objs.n ? objs.n : 1) * sizeof *records);
    items = malloc((objs.n ? objs.n : 1) * sizeof *items);
    if (bytes == NULL || counts == NULL || records == NULL || items == NULL) {
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
        goto out;
    }
    rc = split(fn, &objs, nhosts, bytes, counts);
    if (rc != AAPI_EOK)
        goto out;
    rc = keepalive_tick(&ka, fn);
    if (rc != AAPI_EOK)
        goto out;

    /* The snapshot holds the changed objects; unchanged ones are never read (DISC-10). */
    if (srv->cfg.snapshot != SNAP_NONE) {
        for (i = 0; i < objs.n; i++) {
            if (objs.v[i].flags & AAPI_WKLD_UNCHANGED)
                continue;
            items[nitems].path = objs.v[i].path;
            items[nitems].st = &objs.v[i].st;
            nitems++;
        }
        rc = snapshot_create(fn, srv, snap, items, nitems, &ka);
        if (rc != AAPI_EOK)
            goto out;
        snapshot_made = 1;
    }

    /* DISC-1, DISC-3: one file per host, even an empty one, records in path order. */
    for (j = 0; j < nhosts; j++) {
        size_t n = 0;
        char *name, *file;
        rc = keepalive_tick(&ka, fn);
        if (rc != AAPI_EOK)
            goto out;
        for (i = 0; i < objs.n; i++) {
            if (objs.v[i].host != j)
                continue;
            records[n].path = objs.v[i].path;
            records[n].size_hint = objs.v[i].size;
            records[n].flags = objs.v[i].flags;
            records[n].mtime = objs.v[i].st.st_mtim;
            records[n].ctime = objs.v[i].st.st_ctim;
            records[n].id = (uint64_t)objs.v[i].st.st_ino;
            n++;
        }
        name = malloc(strlen(backuphosts[j]) + strlen(wkldfilesuffix) + 1);
        if (name == NULL) {
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
            goto out;
        }
        strcpy(name, backuphosts[j]);
        strcat(name, wkldfilesuffix);
        file = path_join(wkldoutdir, name);
        free(name);
        if (file == NULL) {
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
            goto out;
        }
        rc = workload_write(fn, file, snap, backuphosts[j], records, n);
        if (rc == AAPI_EOK && strvec_push(&written, file) != AAPI_EOK) {
            (void)unlink(file);
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
        }
        free(file);
        if (rc != AAPI_EOK)
            goto out;
    }
    for (j = 0; j < nhosts; j++)
        log_msg(srv, AAPI_LOG_INFO, "%s: backup host %s: %zu objects, %llu bytes",
                FILES_PLUGIN_NAME, backuphosts[j], counts[j], (unsigned long long)bytes[j]);

    memcpy(snapid->id, snap, strlen(snap) + 1); /* DISC-5, RC-5: on success only */

out:
    if (rc != AAPI_EOK) {
        /* DISC-5, TIME-4: a failed or cancelled discovery leaves no workload file or snapshot. */
        for (i = 0; i < written.n; i++)
            (void)unlink(written.v[i]);
        if (snapshot_made) {
            char saved[1024];
            size_t len = sizeof saved;
            (void)last_error_copy(saved, &len);
            (void)snapshot_remove(fn, srv, snap, NULL, NULL);
            (void)fail(rc, "%s", saved); /* keep the message of the first failure */
        }
    }
    free(bytes);
    free(counts);
    free(records);
    free(items);
    wlist_free(&objs);
    strvec_free(&sels);
    strvec_free(&written);
    return rc;
}
