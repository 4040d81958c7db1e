/*
 * restore.c: aapi_restore_preprocess, aapi_create_object, aapi_write_object, aapi_flush, the
 * completion of created objects at close, aapi_set_object_utimes, aapi_delete_object and
 * aapi_restore_postprocess (RST-1..RST-7, OBJ-5, OBJ-6, RC-11).
 *
 * Nothing a restore writes is visible before it is complete: file data goes to a hidden temporary
 * file beside its target (".<name>.aapi-tmp-<n>") that is renamed into place at close; symlinks
 * and directories are made at close. An object replaced under AAPI_CREATE_OVERWRITE is renamed
 * aside (".<name>.aapi-old-<n>") until aapi_restore_postprocess either deletes it (success) or puts
 * it back (failure), so a failed restore loses nothing. Every object the restore creates, missing
 * parent directories included, is recorded so a failed restore removes exactly those. The
 * directories that existed before the restore get back, at a rollback, the owner, mode, atime and
 * mtime they had before its first change (recorded once per directory), as far as the running
 * user may set them: what it may not is a warning, not a failed rollback.
 *
 * Every path is walked as walk_dir() says: under an alternate root, from a descriptor of the root,
 * one directory at a time, never following a symbolic link below the root (RST-10); each change
 * is then made relative to the descriptor of the object's parent directory (the *at calls).
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MAX_LINK_TARGET 65536u

#if defined(__linux__)
/* syncfs(2): <unistd.h> declares it only under _GNU_SOURCE, which this portable code avoids. */
int syncfs(int fd);
#endif

/* ------------------------------------------------------------------------------------------ */
/* Bookkeeping: mutated by concurrent object calls (THR-1), so only under the table lock       */
/* ------------------------------------------------------------------------------------------ */

static unsigned long g_counter;

static unsigned long next_counter(void)
{
    unsigned long n;
    state_lock();
    n = ++g_counter;
    state_unlock();
    return n;
}

static int record_created(files_server *srv, const char *path)
{
    int rc;
    state_lock();
    rc = strvec_push(&srv->created, path);
    state_unlock();
    return rc;
}

/* Whether this restore created `path` (RST-6). */
static int was_created(files_server *srv, const char *path)
{
    size_t i;
    int found = 0;
    state_lock();
    for (i = 0; i < srv->created.n && !found; i++)
        found = strcmp(srv->created.v[i], path) == 0;
    state_unlock();
    return found;
}

static int record_aside(files_server *srv, const char *path, const char *aside, int own)
{
    char *p = strdup(path), *a = strdup(aside);
    files_aside *nv = NULL;
    state_lock();
    if (p != NULL && a != NULL)
        nv = grow_array(srv->aside, &srv->aside_cap, srv->aside_n + 1, sizeof *nv, 16);
    if (nv != NULL) {
        srv->aside = nv;
        srv->aside[srv->aside_n].path = p;
        srv->aside[srv->aside_n].aside = a;
        srv->aside[srv->aside_n].own = own;
        srv->aside_n++;
    }
    state_unlock();
    if (nv == NULL) {
        free(p);
        free(a);
        return AAPI_ENOMEM;
    }
    return AAPI_EOK;
}

static int record_dirmode(files_server *srv, const char *path, mode_t mode)
{
    char *p = strdup(path);
    files_dirmode *nv = NULL;
    state_lock();
    if (p != NULL)
        nv = grow_array(srv->dirmodes, &srv->dirmodes_cap, srv->dirmodes_n + 1, sizeof *nv, 16);
    if (nv != NULL) {
        srv->dirmodes = nv;
        srv->dirmodes[srv->dirmodes_n].path = p;
        srv->dirmodes[srv->dirmodes_n].mode = mode;
        srv->dirmodes[srv->dirmodes_n].opened = 0;
        srv->dirmodes_n++;
    }
    state_unlock();
    if (nv == NULL) {
        free(p);
        return AAPI_ENOMEM;
    }
    return AAPI_EOK;
}

/* ------------------------------------------------------------------------------------------ */
/* Walking paths (RST-2, RST-10)                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Why a walk stopped. */
typedef enum walk_stop {
    WALK_OK,
    WALK_MISSING, /* a component does not exist */
    WALK_NOTDIR,  /* a component is not a directory (nor, below the root, a symbolic link) */
    WALK_LINK,    /* a component below the alternate root is a symbolic link */
    WALK_ERROR    /* another failure (errno in `err`), looking a component up or making it */
} walk_stop;

typedef struct files_walk {
    walk_stop stop;
    int err;
    size_t at; /* the component where it stopped: the first `at` bytes of the path walked */
} files_walk;

/* The alternate root that bounds the paths, or NULL (original location, or the root "/", which
 * holds every path and follows parent links as the original location does). */
static const char *confining_root(const files_server *srv)
{
    const char *root = srv->target_root;
    return root != NULL && strcmp(root, "/") != 0 ? root : NULL;
}

/* Non-zero when the normalized `path` is where every walk starts: the alternate root, or "/". */
static int is_top(const files_server *srv, const char *path)
{
    const char *root = confining_root(srv);
    return strcmp(path, root != NULL ? root : "/") == 0;
}

/* The name of the normalized absolute `path` in the directory walk_parent() gives for it: "."
 * for the alternate root or "/", which are that directory itself. */
static const char *leaf_of(const files_server *srv, const char *path)
{
    return is_top(srv, path) ? "." : strrchr(path, '/') + 1;
}

static void walk_classify(int dirfd, const char *name, int err, int confined, files_walk *w)
{
    struct stat st;
    if (err == ENOENT) {
        w->stop = WALK_MISSING;
    } else if (err == ENOTDIR || err == ELOOP) {
        w->stop = confined && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                          S_ISLNK(st.st_mode)
                      ? WALK_LINK
                      : WALK_NOTDIR;
    } else {
        w->stop = WALK_ERROR;
        w->err = err;
    }
}

/* A descriptor of the directory made of the first `len` bytes of the normalized absolute `path`,
 * or -1 with *w saying why. Every walk starts at srv->top_fd: the alternate root, opened once at
 * restore_preprocess (following links), or "/". Below the alternate root no symbolic link is
 * followed; at the original location (or under the root "/") links are followed. With `made`,
 * missing directories are made (mode 0700) and appended to it, top first. */
static int walk_dir(const files_server *srv, const char *path, size_t len, files_strvec *made,
                    files_walk *w)
{
    const char *root = confining_root(srv), *top = root != NULL ? root : "/";
    size_t tl = strlen(top), i = tl;
    int fd = srv->top_fd, owned = 0, confined = root != NULL;
    char *buf;
    w->stop = WALK_OK;
    w->err = 0;
    w->at = tl;
    /* Every path of the restore lies under the top (check_restore_path). */
    if (len < tl || strncmp(path, top, tl) != 0 ||
        (len > tl && path[tl] != '/' && strcmp(top, "/") != 0)) {
        w->stop = WALK_ERROR;
        w->err = EINVAL;
        return -1;
    }
    buf = malloc(len + 1);
    if (buf == NULL) {
        w->stop = WALK_ERROR;
        w->err = ENOMEM;
        return -1;
    }
    memcpy(buf, path, len);
    buf[len] = '\0';
    while (i < len) {
        size_t start;
        int next;
        char saved;
        while (i < len && buf[i] == '/')
            i++;
        if (i == len)
            break;
        start = i;
        while (i < len && buf[i] != '/')
            i++;
        saved = buf[i];
        buf[i] = '\0';
        w->at = i;
        next = openat(fd, buf + start, DIR_ONLY | O_DIRECTORY | O_CLOEXEC |
                                           (confined ? O_NOFOLLOW : 0));
        if (next < 0 && errno == ENOENT && made != NULL) {
            if (mkdirat(fd, buf + start, 0700) == 0) {
                if (strvec_push(made, buf) != AAPI_EOK) {
                    errno = ENOMEM;
                    goto stop;
                }
            } else if (errno != EEXIST) {
                goto stop;
            }
            /* Made, or something is there (a dangling link, say, or a directory made at the same
             * moment): used only if it is a directory. */
            next = openat(fd, buf + start, DIR_ONLY | O_DIRECTORY | O_CLOEXEC |
                                               (confined ? O_NOFOLLOW : 0));
            if (next < 0 && errno == ENOENT)
                errno = ENOTDIR;
        }
        if (next < 0) {
            walk_classify(fd, buf + start, errno, confined, w);
            if (owned)
                close(fd);
            free(buf);
            return -1;
        }
        buf[i] = saved;
        if (owned)
            close(fd);
        fd = next;
        owned = 1;
    }
    free(buf);
    /* The top itself: a descriptor of its own for the caller, still that directory. */
    if (!owned && (fd = fcntl(srv->top_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        w->stop = WALK_ERROR;
        w->err = errno;
    }
    return fd;
stop:
    w->stop = WALK_ERROR;
    w->err = errno;
    if (owned)
        close(fd);
    free(buf);
    return -1;
}

/* A descriptor of the directory that holds the normalized absolute `path`, in which leaf_of()
 * names it (the alternate root, or "/", is "." of itself), walked as walk_dir() does, or -1 with
 * *w saying why. */
static int walk_parent(const files_server *srv, const char *path, files_strvec *made,
                       files_walk *w)
{
    const char *slash = strrchr(path, '/');
    size_t len = is_top(srv, path) ? strlen(path) : slash == path ? 1 : (size_t)(slash - path);
    return walk_dir(srv, path, len, made, w);
}

/* The error of a call on `path` (as given; `norm` is what was walked) whose walk stopped:
 * AAPI_EINVAL naming the path and the link for a symbolic link below the alternate root (RST-10),
 * AAPI_ENOENT when a component is missing or not a directory, the errno's code otherwise. */
static int walk_fail(const char *fn, const files_server *srv, const char *path, const char *norm,
                     const files_walk *w)
{
    switch (w->stop) {
    case WALK_LINK:
        return fail(AAPI_EINVAL,
                    "%s: %s is refused: %.*s is a symbolic link, and a restore to the alternate "
                    "root %s follows none below it",
                    fn, path, (int)w->at, norm, confining_root(srv));
    case WALK_MISSING:
    case WALK_NOTDIR:
        return fail(AAPI_ENOENT, "%s: %s does not exist", fn, path);
    default:
        return fail_errno(w->err, "%s: cannot inspect %s", fn, path);
    }
}

/* Why a walk of `norm` stopped, for the log. */
static const char *walk_reason(const files_server *srv, const char *norm, const files_walk *w,
                               char *buf, size_t size)
{
    char err[128];
    switch (w->stop) {
    case WALK_MISSING:
        snprintf(buf, size, "%.*s does not exist", (int)w->at, norm);
        break;
    case WALK_NOTDIR:
        snprintf(buf, size, "%.*s is not a directory", (int)w->at, norm);
        break;
    case WALK_LINK:
        snprintf(buf, size, "%.*s is a symbolic link below the alternate root %s", (int)w->at,
                 norm, confining_root(srv));
        break;
    default:
        if (strerror_r(w->err, err, sizeof err) != 0)
            snprintf(err, sizeof err, "errno %d", w->err);
        snprintf(buf, size, "%.*s: %s", (int)w->at, norm, err);
    }
    return buf;
}

/* What the normalized `path` itself is, reached as walk_dir() reaches it: 0 and *st when it
 * exists; ENOENT when it or a parent is missing; another errno value otherwise (ENOTDIR for a
 * parent that is not a directory, ELOOP for a symbolic link below the alternate root). */
static int scope_stat(const files_server *srv, const char *path, struct stat *st)
{
    files_walk w;
    int rc = 0, fd = walk_parent(srv, path, NULL, &w);
    if (fd < 0)
        return w.stop == WALK_MISSING ? ENOENT
               : w.stop == WALK_NOTDIR ? ENOTDIR
               : w.stop == WALK_LINK   ? ELOOP
                                       : w.err;
    if (fstatat(fd, leaf_of(srv, path), st, AT_SYMLINK_NOFOLLOW) != 0)
        rc = errno;
    close(fd);
    return rc;
}

/* chmod_at() of the normalized `path`, reached as walk_dir() reaches it: 0 or an errno value. */
static int scope_chmod(const files_server *srv, const char *path, mode_t mode)
{
    files_walk w;
    int rc = 0, fd = walk_parent(srv, path, NULL, &w);
    if (fd < 0)
        return w.stop == WALK_ERROR ? w.err : w.stop == WALK_LINK ? ELOOP : ENOENT;
    if (chmod_at(fd, leaf_of(srv, path), mode) != 0)
        rc = errno;
    close(fd);
    return rc;
}

/* A directory itself, to change its own owner, mode and times through a descriptor: `rd` opened
 * for reading where the caller may, else "." of `fd`, its descriptor (which never leads anywhere
 * else either). */
typedef struct dir_self {
    int fd;
    int rd;
} dir_self;

static dir_self dir_self_of(int fd)
{
    dir_self d;
    d.fd = fd;
    d.rd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return d;
}

static void dir_self_close(dir_self *d)
{
    if (d->rd >= 0)
        close(d->rd);
    close(d->fd);
}

static int self_chown(const dir_self *d, uid_t uid, gid_t gid)
{
    return d->rd >= 0 ? fchown(d->rd, uid, gid) : fchownat(d->fd, ".", uid, gid, 0);
}

static int self_chmod(const dir_self *d, mode_t mode)
{
    return d->rd >= 0 ? fchmod(d->rd, mode) : fchmodat(d->fd, ".", mode, 0);
}

static int self_set_times(const dir_self *d, const struct timespec ts[2])
{
    return d->rd >= 0 ? futimens(d->rd, ts) : utimensat(d->fd, ".", ts, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Changed directories: a hash table of paths (FNV-1a, linear probing), under the table lock    */
/* ------------------------------------------------------------------------------------------ */

static size_t path_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    while (*s != '\0') {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return (size_t)h;
}

/* The slot of `path`: its entry, or the free slot where it goes (the table is never full). */
static files_dirstate *dir_slot(files_server *srv, const char *path)
{
    size_t mask = srv->dirs_cap - 1, i = path_hash(path) & mask;
    while (srv->dirs[i].path != NULL && strcmp(srv->dirs[i].path, path) != 0)
        i = (i + 1) & mask;
    return &srv->dirs[i];
}

static files_dirstate *dir_find(files_server *srv, const char *path)
{
    files_dirstate *d;
    if (srv->dirs_cap == 0)
        return NULL;
    d = dir_slot(srv, path);
    return d->path != NULL ? d : NULL;
}

/* Give `path` the state `kind` (with `saved` for DIR_BEFORE), adding it when new. AAPI_EOK or
 * AAPI_ENOMEM. */
static int dir_set(files_server *srv, const char *path, files_dir_kind kind,
                   const files_saved *saved)
{
    files_dirstate *d;
    if ((srv->dirs_n + 1) * 2 > srv->dirs_cap) { /* at most half full */
        size_t i, ocap = srv->dirs_cap, ncap = ocap ? ocap * 2 : 64;
        files_dirstate *old = srv->dirs, *nv = calloc(ncap, sizeof *nv);
        if (nv == NULL)
            return AAPI_ENOMEM;
        srv->dirs = nv;
        srv->dirs_cap = ncap;
        for (i = 0; i < ocap; i++)
            if (old[i].path != NULL)
                *dir_slot(srv, old[i].path) = old[i];
        free(old);
    }
    d = dir_slot(srv, path);
    if (d->path == NULL) {
        d->path = strdup(path);
        if (d->path == NULL)
            return AAPI_ENOMEM;
        srv->dirs_n++;
    }
    d->kind = kind;
    if (saved != NULL)
        d->saved = *saved;
    return AAPI_EOK;
}

/* The slot of the directory `dev`/`ino` in the identity table: its entry, or the free slot where
 * it goes (the table is never full). */
static files_dirid *id_slot(files_server *srv, dev_t dev, ino_t ino)
{
    size_t mask = srv->ids_cap - 1;
    size_t i = (size_t)(((uint64_t)dev * 1099511628211ull) ^ (uint64_t)ino) & mask;
    while (srv->ids[i].used && (srv->ids[i].saved.dev != dev || srv->ids[i].saved.ino != ino))
        i = (i + 1) & mask;
    return &srv->ids[i];
}

/* What the directory `st` had when it was first recorded, recording it now when it is new: a
 * directory reached by two paths keeps what it had before the first. NULL when out of memory. */
static const files_saved *id_saved(files_server *srv, const struct stat *st)
{
    files_dirid *d;
    if ((srv->ids_n + 1) * 2 > srv->ids_cap) { /* at most half full */
        size_t i, ocap = srv->ids_cap, ncap = ocap ? ocap * 2 : 64;
        files_dirid *old = srv->ids, *nv = calloc(ncap, sizeof *nv);
        if (nv == NULL)
            return NULL;
        srv->ids = nv;
        srv->ids_cap = ncap;
        for (i = 0; i < ocap; i++)
            if (old[i].used)
                *id_slot(srv, old[i].saved.dev, old[i].saved.ino) = old[i];
        free(old);
    }
    d = id_slot(srv, st->st_dev, st->st_ino);
    if (!d->used) {
        d->used = 1;
        d->saved.atime = st->st_atim;
        d->saved.mtime = st->st_mtim;
        d->saved.mode = st->st_mode & 07777;
        d->saved.uid = st->st_uid;
        d->saved.gid = st->st_gid;
        d->saved.dev = st->st_dev;
        d->saved.ino = st->st_ino;
        srv->ids_n++;
    }
    return &d->saved;
}

/* Record the owner, mode and times of the directory `dir` (normalized) before the restore changes
 * it or one of its entries, once per directory; `opened` is a descriptor of that directory when
 * the caller has one, else -1. The directory is the one a walk of `dir` reaches (through the links
 * of parent directories at the original location), recorded through its descriptor. A missing
 * `dir` is about to be made: its nearest existing ancestor is the directory that changes.
 * Directories this restore made are skipped. Under the table lock, so that concurrent objects
 * record a directory before either changes it. */
static int touch_dir(const char *fn, files_server *srv, const char *dir, int opened)
{
    char *d = strdup(dir);
    int rc = AAPI_EOK;
    if (d == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    state_lock();
    while (dir_find(srv, d) == NULL) {
        struct stat st;
        files_walk w;
        char *slash;
        int fd = opened >= 0 ? opened : walk_dir(srv, d, strlen(d), NULL, &w);
        if (fd >= 0) {
            if (fstat(fd, &st) == 0) {
                const files_saved *saved = id_saved(srv, &st);
                rc = saved == NULL ? AAPI_ENOMEM : dir_set(srv, d, DIR_BEFORE, saved);
            }
            if (fd != opened)
                close(fd);
            break; /* not readable: the change itself fails */
        }
        slash = strrchr(d, '/');
        /* Not a directory, or through a link: the change itself fails. */
        if (w.stop != WALK_MISSING || is_top(srv, d) || slash == NULL)
            break;
        slash[slash == d ? 1 : 0] = '\0'; /* the parent; "/" for "/x" */
    }
    state_unlock();
    free(d);
    return rc == AAPI_EOK ? rc : fail(AAPI_ENOMEM, "%s: out of memory", fn);
}

/* A directory this restore made: removed by a rollback (RST-6), nothing to put back. */
static int record_made_dir(files_server *srv, const char *path)
{
    int rc;
    state_lock();
    rc = strvec_push(&srv->created, path);
    if (rc == AAPI_EOK)
        rc = dir_set(srv, path, DIR_MADE, NULL);
    state_unlock();
    return rc;
}

/* RST-9: note the file system of the directory `dirfd`, where the restored object `path` now is,
 * for the syncfs of a successful restore_postprocess. AAPI_EOK or AAPI_ENOMEM. */
static int note_written(files_server *srv, int dirfd, const char *path)
{
    struct stat st;
    size_t i;
    int rc = AAPI_EOK;
    if (fstat(dirfd, &st) != 0)
        return AAPI_EOK; /* the sync finds what it can */
    state_lock();
    for (i = 0; i < srv->written_n && srv->written[i].dev != st.st_dev; i++)
        ;
    if (i == srv->written_n) {
        files_written *nv = grow_array(srv->written, &srv->written_cap, srv->written_n + 1,
                                       sizeof *nv, 4);
        /* The directory's path, for messages: the object's parent, or the top itself. */
        const char *slash = strrchr(path, '/');
        size_t len = is_top(srv, path) ? strlen(path) : slash == path ? 1 : (size_t)(slash - path);
        char *p = malloc(len + 1);
        int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (nv != NULL)
            srv->written = nv;
        if (p != NULL) {
            memcpy(p, path, len);
            p[len] = '\0';
        }
        if (nv == NULL || p == NULL || fd < 0) {
            free(p);
            if (fd >= 0)
                close(fd);
            rc = AAPI_ENOMEM;
        } else {
            srv->written[srv->written_n].dev = st.st_dev;
            srv->written[srv->written_n].fd = fd;
            srv->written[srv->written_n].path = p;
            srv->written_n++;
        }
    }
    state_unlock();
    return rc;
}

static void free_bookkeeping(files_server *srv)
{
    size_t i;
    for (i = 0; i < srv->dirs_cap; i++)
        free(srv->dirs[i].path);
    free(srv->dirs);
    srv->dirs = NULL;
    srv->dirs_n = srv->dirs_cap = 0;
    free(srv->ids);
    srv->ids = NULL;
    srv->ids_n = srv->ids_cap = 0;
    for (i = 0; i < srv->aside_n; i++) {
        free(srv->aside[i].path);
        free(srv->aside[i].aside);
    }
    srv->aside_n = 0;
    for (i = 0; i < srv->dirmodes_n; i++)
        free(srv->dirmodes[i].path);
    srv->dirmodes_n = 0;
    for (i = 0; i < srv->written_n; i++) {
        close(srv->written[i].fd);
        free(srv->written[i].path);
    }
    srv->written_n = 0;
    strvec_free(&srv->created);
    if (srv->top_fd >= 0)
        close(srv->top_fd);
    srv->top_fd = -1;
}

/* The server of a restore object call, once the handle, the operation and the restore window
 * are checked (RC-4, LIFE-4: only between restore_preprocess and restore_postprocess). */
static int restore_server(const char *fn, aapi_server_t server, files_server **out)
{
    files_server *srv;
    int before, after, rc = server_lookup(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if (srv->op != AAPI_OP_RESTORE)
        return fail(AAPI_ESEQUENCE, "%s is legal only in a restore session", fn);
    state_lock();
    before = !srv->preprocess_done;
    after = srv->restore_done;
    state_unlock();
    if (before)
        return fail(AAPI_ESEQUENCE, "%s before aapi_restore_preprocess", fn);
    if (after)
        return fail(AAPI_ESEQUENCE, "%s after aapi_restore_postprocess", fn);
    *out = srv;
    return AAPI_EOK;
}

static int bad_time(const aapi_time_t *t) { return t->nsec > 999999999u; }

/* How many hidden names beside an object are tried before giving up. */
#define HIDDEN_NAME_TRIES 1000

/* Rename the entry `from` of `dirfd` to `to` in it without replacing anything: -1 with errno
 * EEXIST when `to` exists. POSIX has no such rename: a directory takes the place of an empty
 * directory made for it (mkdir fails when the name exists); anything else gets a second link
 * `to` (link fails when the name exists) and loses `from`. On a file system without hard
 * links, `to` is looked up first (a name made between the two is replaced). */
static int rename_noreplace(int dirfd, const char *from, const char *to)
{
    struct stat st;
    int err;
    if (fstatat(dirfd, from, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    if (S_ISDIR(st.st_mode)) {
        if (mkdirat(dirfd, to, 0700) != 0)
            return -1;
        if (renameat(dirfd, from, dirfd, to) == 0)
            return 0;
        err = errno;
        (void)unlinkat(dirfd, to, AT_REMOVEDIR);
        errno = err;
        return -1;
    }
    if (linkat(dirfd, from, dirfd, to, 0) == 0) {
        if (unlinkat(dirfd, from, 0) == 0)
            return 0;
        err = errno;
        (void)unlinkat(dirfd, to, 0);
        errno = err;
        return -1;
    }
    if (errno != EPERM && errno != EOPNOTSUPP && errno != EXDEV && errno != EMLINK)
        return -1;
    if (fstatat(dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        errno = EEXIST;
        return -1;
    }
    return renameat(dirfd, from, dirfd, to);
}

/* "<dir>/.<name>.aapi-<what>-<n>" beside `path`. The name is cut short where needed (at a byte)
 * so that the whole stays within NAME_MAX (255) bytes: an object whose name is as long as a file
 * system allows gets one too. */
static char *hidden_sibling(const char *path, const char *what)
{
    char *dir, *name, *p = NULL;
    char suffix[64], leaf[FILES_NAME_MAX + 1];
    size_t keep;
    if (path_split(path, &dir, &name) != AAPI_EOK)
        return NULL;
    snprintf(suffix, sizeof suffix, ".aapi-%s-%lu", what, next_counter());
    keep = strlen(name);
    if (keep > FILES_NAME_MAX - 1 - strlen(suffix))
        keep = FILES_NAME_MAX - 1 - strlen(suffix);
    leaf[0] = '.';
    memcpy(leaf + 1, name, keep);
    memcpy(leaf + 1 + keep, suffix, strlen(suffix) + 1);
    p = path_join(dir, leaf);
    free(dir);
    free(name);
    return p;
}

static int is_root(void) { return geteuid() == 0; }

/* ------------------------------------------------------------------------------------------ */
/* Pre- and postprocess                                                                         */
/* ------------------------------------------------------------------------------------------ */

int aapi_restore_preprocess(aapi_server_t server, const aapi_restore_info_t *restore_info)
{
    static const char fn[] = "aapi_restore_preprocess";
    files_server *srv;
    struct statvfs vfs;
    const char *where;
    uint64_t need, avail;
    char *root = NULL;
    int top, rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (restore_info == NULL)
        return fail(AAPI_EINVAL, "%s: restore_info must not be NULL", fn);
    rc = server_lookup(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if (srv->op != AAPI_OP_RESTORE)
        return fail(AAPI_ESEQUENCE, "%s is legal only in a restore session", fn);
    if (srv->restore_done) /* LIFE-4: once, first */
        return fail(AAPI_ESEQUENCE, "%s after aapi_restore_postprocess", fn);
    if (srv->preprocess_done)
        return fail(AAPI_ESEQUENCE, "%s called twice", fn);
    if (restore_info->struct_size < sizeof(aapi_restore_info_t))
        return fail(AAPI_EABI,
                    "%s: restore_info->struct_size %u is smaller than the ABI 1.0 size %u", fn,
                    (unsigned)restore_info->struct_size, (unsigned)sizeof(aapi_restore_info_t));
    if (restore_info->target_root == NULL)
        return fail(AAPI_EINVAL, "%s: target_root must not be NULL (\"\" is the original place)",
                    fn);
    where = "/";
    if (restore_info->target_root[0] != '\0') {
        int dotdot;
        /* It bounds every object path of the restore, which is never resolved: absolute,
         * without a ".." component. */
        rc = check_object_path(fn, "target_root", restore_info->target_root);
        if (rc != AAPI_EOK)
            return rc;
        root = path_normalize(restore_info->target_root, &dotdot);
        if (root == NULL)
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
        where = root;
    }
    /* RST-1: an alternate root must be an existing directory. RST-10: it is opened once,
     * following links, and stays this directory for the whole restore. */
    top = open(root != NULL && strcmp(root, "/") != 0 ? root : "/",
               DIR_ONLY | O_DIRECTORY | O_CLOEXEC);
    if (top < 0) {
        rc = errno == ENOENT || errno == ENOTDIR
                 ? fail(AAPI_ENOENT, "%s: target_root %s is not an existing directory", fn, where)
                 : fail_errno(errno, "%s: cannot open target_root %s", fn, where);
        free(root);
        return rc;
    }
    /* RST-1: room for total_bytes plus files.min_free_bytes, before anything is written. */
    if (fstatvfs(top, &vfs) != 0) {
        rc = fail_errno(errno, "%s: cannot query the file system of %s", fn, where);
        close(top);
        free(root);
        return rc;
    }
    avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    need = restore_info->total_bytes + srv->cfg.min_free_bytes;
    if (need < restore_info->total_bytes)
        need = UINT64_MAX;
    if (avail < need) {
        rc = fail(AAPI_ENOSPC,
                  "%s: the file system of %s has %llu bytes available, the restore needs %llu "
                  "(%llu to write + files.min_free_bytes %llu)",
                  fn, where, (unsigned long long)avail, (unsigned long long)need,
                  (unsigned long long)restore_info->total_bytes,
                  (unsigned long long)srv->cfg.min_free_bytes);
        close(top);
        free(root);
        return rc;
    }
    state_lock();
    srv->target_root = root;
    srv->top_fd = top;
    srv->preprocess_done = 1;
    state_unlock();
    log_msg(srv, AAPI_LOG_INFO, "%s: restoring %llu objects, %llu bytes, to %s", FILES_PLUGIN_NAME,
            (unsigned long long)restore_info->object_count,
            (unsigned long long)restore_info->total_bytes,
            root != NULL ? root : "the original location");
    return AAPI_EOK;
}

static int by_path_desc(const void *a, const void *b)
{
    return -strcmp(((const files_dirmode *)a)->path, ((const files_dirmode *)b)->path);
}

/* A directory restored with a mode that denies its owner write access (0555, say) gets that
 * mode at its close (RST-4). When a later object of the restore goes inside it, a restore that
 * does not run as root could not create it: the directory gets u+rwx for the rest of the restore,
 * and its exact mode back at restore_postprocess. Under the table lock, so that concurrent creates
 * in one directory open it once and before either writes. */
static void open_restrictive_parents(files_server *srv, const char *path)
{
    size_t i;
    state_lock();
    for (i = 0; i < srv->dirmodes_n; i++) {
        files_dirmode *d = &srv->dirmodes[i];
        size_t n = strlen(d->path);
        if (!d->opened && strncmp(path, d->path, n) == 0 && path[n] == '/') {
            d->opened = 1;
            (void)scope_chmod(srv, d->path, d->mode | 0700);
        }
    }
    state_unlock();
}

/* The text of `err` in `buf`. */
static const char *errno_text(int err, char *buf, size_t size)
{
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "errno %d", err);
    return buf;
}

/* Give the opened directories their exact modes back, deepest first. */
static int close_restrictive_dirs(files_server *srv)
{
    size_t i;
    int rc = AAPI_EOK;
    if (srv->dirmodes_n > 1) /* qsort's base must not be NULL, even for 0 elements */
        qsort(srv->dirmodes, srv->dirmodes_n, sizeof *srv->dirmodes, by_path_desc);
    for (i = 0; i < srv->dirmodes_n; i++) {
        struct stat st;
        char reason[256];
        int err;
        if (!srv->dirmodes[i].opened || scope_stat(srv, srv->dirmodes[i].path, &st) != 0 ||
            !S_ISDIR(st.st_mode))
            continue; /* untouched, or removed by a rollback */
        err = scope_chmod(srv, srv->dirmodes[i].path, srv->dirmodes[i].mode);
        if (err != 0) {
            log_msg(srv, AAPI_LOG_ERROR, "%s: cannot set the mode of %s: %s", FILES_PLUGIN_NAME,
                    srv->dirmodes[i].path, errno_text(err, reason, sizeof reason));
            rc = AAPI_EIO;
        }
    }
    return rc;
}

/* Success: delete what was set aside. Removing it changes its directory's times, which the
 * framework has already set (RST-5, containers after their contents): they are put back. */
static int commit_restore(const char *fn, files_server *srv)
{
    size_t i;
    int rc = AAPI_EOK;
    for (i = 0; i < srv->aside_n; i++) {
        const char *aside = srv->aside[i].aside;
        char reason[1024];
        struct stat st;
        files_walk w;
        int removed = AAPI_EOK;
        /* RST-10: reached through no symbolic link below the alternate root. */
        int fd = walk_parent(srv, aside, NULL, &w);
        if (fd >= 0) {
            int have_times = fstat(fd, &st) == 0;
            removed = remove_tree_at(fn, fd, leaf_of(srv, aside), aside, NULL);
            if (have_times) {
                struct timespec ts[2];
                dir_self d = dir_self_of(fd);
                ts[0] = st.st_atim;
                ts[1] = st.st_mtim;
                (void)self_set_times(&d, ts);
                dir_self_close(&d);
            } else {
                close(fd);
            }
        } else if (w.stop != WALK_MISSING) {
            removed = fail(AAPI_EIO, "%s", walk_reason(srv, aside, &w, reason, sizeof reason));
        }
        if (removed != AAPI_EOK) {
            size_t len = sizeof reason;
            (void)last_error_copy(reason, &len);
            log_msg(srv, AAPI_LOG_ERROR, "%s: cannot delete the replaced object %s kept as %s: %s",
                    FILES_PLUGIN_NAME, srv->aside[i].path, aside, reason);
            rc = AAPI_EIO;
        }
    }
    return rc;
}

/* RST-9: make what this restore wrote durable: one syncfs per file system it wrote to (noted as
 * each object was completed); sync() where syncfs does not exist. */
static int sync_written(files_server *srv)
{
    size_t i;
    int rc = AAPI_EOK;
#if !defined(__linux__)
    (void)i;
    if (srv->written_n > 0)
        sync();
#else
    for (i = 0; i < srv->written_n; i++) {
        char reason[256];
        int fd = openat(srv->written[i].fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || syncfs(fd) != 0) {
            log_msg(srv, AAPI_LOG_ERROR, "%s: cannot sync the file system of %s: %s",
                    FILES_PLUGIN_NAME, srv->written[i].path,
                    errno_text(errno, reason, sizeof reason));
            rc = AAPI_EIO;
        }
        if (fd >= 0)
            (void)close(fd);
    }
#endif
    return rc;
}

static int by_dir_path_desc(const void *a, const void *b)
{
    return -strcmp((*(files_dirstate *const *)a)->path, (*(files_dirstate *const *)b)->path);
}

/* What a rollback could not put back of directory `dir`, as a warning: `reason`, and `rest`
 * after it. */
static void rollback_warning(files_server *srv, const char *reason, const char *what,
                             const char *dir, const char *rest)
{
    log_msg(srv, AAPI_LOG_WARNING, "%s: rollback: cannot put back the %s of %s: %s%s",
            FILES_PLUGIN_NAME, what, dir, reason, rest);
}

/* After a rollback, give the directories that existed before the restore what they had before its
 * first change, deepest first: owner (as root; a restore changes it only then), mode, and, unless
 * aapi_delete_object removed an entry, atime and mtime. Their ctime cannot be set back. Only what
 * differs is changed, through a descriptor of the directory a walk of its path reaches. What
 * cannot be put back (the times of a directory the running user does not own, say) is a warning
 * naming the directory and what stays: RST-6 and RST-7 are about objects, and those are already
 * removed or back, so the rollback goes on. */
static void put_back_dirs(files_server *srv)
{
    files_dirstate **v;
    size_t i, n = 0;
    int root = is_root();
    if (srv->dirs_n == 0)
        return;
    v = malloc(srv->dirs_n * sizeof *v);
    if (v == NULL) {
        log_msg(srv, AAPI_LOG_WARNING,
                "%s: rollback: out of memory: the owners, modes and times of the directories "
                "that existed are not put back",
                FILES_PLUGIN_NAME);
        return;
    }
    for (i = 0; i < srv->dirs_cap; i++)
        if (srv->dirs[i].path != NULL && srv->dirs[i].kind != DIR_MADE)
            v[n++] = &srv->dirs[i];
    if (n > 1)
        qsort(v, n, sizeof *v, by_dir_path_desc);
    for (i = 0; i < n; i++) {
        const files_dirstate *d = v[i];
        const files_saved *saved = &d->saved;
        char what[64], reason[512];
        struct stat st;
        struct timespec ts[2];
        files_walk w;
        dir_self self;
        int chowned;
        /* RST-10: reached through no symbolic link below the alternate root. Gone (removed by
         * aapi_delete_object) or no longer a directory (not put back, reported already):
         * nothing to give back. */
        int fd = walk_dir(srv, d->path, strlen(d->path), NULL, &w);
        if (fd < 0) {
            if (w.stop != WALK_MISSING && w.stop != WALK_NOTDIR)
                rollback_warning(srv, walk_reason(srv, d->path, &w, reason, sizeof reason),
                                 "owner, mode and times", d->path, "");
            continue;
        }
        self = dir_self_of(fd);
        if (fstat(fd, &st) != 0) {
            rollback_warning(srv, errno_text(errno, reason, sizeof reason),
                             "owner, mode and times", d->path, "");
            dir_self_close(&self);
            continue;
        }
        /* Another directory at that path now (another process moved the one that was there):
         * it gets nothing of the other's. */
        if (st.st_dev != saved->dev || st.st_ino != saved->ino) {
            rollback_warning(srv, "another directory is there now", "owner, mode and times",
                             d->path, "");
            dir_self_close(&self);
            continue;
        }
        /* The owner first: changing it clears the setuid/setgid bits. The mode belongs to the
         * owner: a directory whose owner could not be put back keeps the mode it has. */
        chowned = root && (st.st_uid != saved->uid || st.st_gid != saved->gid);
        if (chowned && self_chown(&self, saved->uid, saved->gid) != 0) {
            snprintf(what, sizeof what, "owner %lu:%lu", (unsigned long)saved->uid,
                     (unsigned long)saved->gid);
            rollback_warning(srv, errno_text(errno, reason, sizeof reason), what, d->path,
                             "; its mode is left as it is too");
        } else if ((chowned || (st.st_mode & 07777) != saved->mode) &&
                   self_chmod(&self, saved->mode) != 0) {
            snprintf(what, sizeof what, "mode %04o", (unsigned)saved->mode);
            rollback_warning(srv, errno_text(errno, reason, sizeof reason), what, d->path, "");
        }
        ts[0] = saved->atime;
        ts[1] = saved->mtime;
        if (d->kind == DIR_BEFORE && self_set_times(&self, ts) != 0)
            rollback_warning(srv, errno_text(errno, reason, sizeof reason), "atime and mtime",
                             d->path, "");
        dir_self_close(&self);
    }
    free(v);
}

static int by_string_desc(const void *a, const void *b)
{
    return -strcmp(*(char *const *)a, *(char *const *)b);
}

/* Failure (RST-6, RST-7): remove what this restore created, deepest first (sorted by path,
 * descending: children before their parents, whatever order concurrent creates recorded them
 * in), put the replaced objects back, then the owners, modes and times of the directories that
 * existed. */
static int roll_back(files_server *srv)
{
    size_t i;
    int rc = AAPI_EOK;
    if (srv->created.n > 1) /* qsort's base must not be NULL, even for 0 elements */
        qsort(srv->created.v, srv->created.n, sizeof *srv->created.v, by_string_desc);
    for (i = 0; i < srv->created.n; i++) {
        const char *p = srv->created.v[i];
        char reason[512];
        struct stat st;
        files_walk w;
        int err, fd;
        if (i > 0 && strcmp(p, srv->created.v[i - 1]) == 0)
            continue; /* recorded twice */
        /* RST-10: reached through no symbolic link below the alternate root, even one this
         * restore made. */
        fd = walk_parent(srv, p, NULL, &w);
        if (fd < 0) {
            if (w.stop != WALK_MISSING) {
                log_msg(srv, AAPI_LOG_ERROR, "%s: cannot remove %s: %s", FILES_PLUGIN_NAME, p,
                        walk_reason(srv, p, &w, reason, sizeof reason));
                rc = AAPI_EIO;
            }
            continue;
        }
        if (fstatat(fd, leaf_of(srv, p), &st, AT_SYMLINK_NOFOLLOW) != 0)
            err = errno == ENOENT ? 0 : errno;
        else
            err = unlinkat(fd, leaf_of(srv, p), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0
                      ? errno
                      : 0;
        if (err != 0) {
            log_msg(srv, AAPI_LOG_ERROR, "%s: cannot remove %s: %s", FILES_PLUGIN_NAME, p,
                    errno_text(err, reason, sizeof reason));
            rc = AAPI_EIO;
        }
        close(fd);
    }
    i = srv->aside_n;
    while (i-- > 0) {
        const char *path = srv->aside[i].path, *aside = srv->aside[i].aside;
        char reason[512];
        files_walk w;
        int fd = walk_parent(srv, path, NULL, &w);
        if (fd >= 0 && srv->aside[i].own) {
            /* Made by this restore and replaced by it: removed, not put back. */
            if (remove_tree_at(FILES_PLUGIN_NAME, fd, leaf_of(srv, aside), aside, NULL) != AAPI_EOK) {
                size_t len = sizeof reason;
                (void)last_error_copy(reason, &len);
                log_msg(srv, AAPI_LOG_ERROR, "%s: cannot remove %s: %s", FILES_PLUGIN_NAME, aside,
                        reason);
                rc = AAPI_EIO;
            }
        } else if (fd < 0 || renameat(fd, leaf_of(srv, aside), fd, leaf_of(srv, path)) != 0) {
            log_msg(srv, AAPI_LOG_ERROR, "%s: cannot put %s back; it is kept as %s: %s",
                    FILES_PLUGIN_NAME, path, aside,
                    fd < 0 ? walk_reason(srv, path, &w, reason, sizeof reason)
                           : errno_text(errno, reason, sizeof reason));
            rc = AAPI_EIO;
        }
        if (fd >= 0)
            close(fd);
    }
    /* The directories this restore made and could not remove get their exact modes; those that
     * existed get all they had back, deepest first. */
    for (i = 0; i < srv->dirmodes_n; i++) {
        files_dirstate *d = dir_find(srv, srv->dirmodes[i].path);
        if (d != NULL && d->kind != DIR_MADE)
            srv->dirmodes[i].opened = 0;
    }
    if (close_restrictive_dirs(srv) != AAPI_EOK)
        rc = AAPI_EIO;
    put_back_dirs(srv);
    return rc;
}

int aapi_restore_postprocess(aapi_server_t server, int status)
{
    static const char fn[] = "aapi_restore_postprocess";
    files_server *srv;
    files_object *obj;
    char first[1024] = "";
    int closed = AAPI_EOK, before, after, rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    rc = server_lookup(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if (srv->op != AAPI_OP_RESTORE)
        return fail(AAPI_ESEQUENCE, "%s is legal only in a restore session", fn);
    state_lock();
    before = !srv->preprocess_done;
    after = srv->restore_done;
    if (!before && !after)
        srv->restore_done = 1; /* from now on, restore object calls give AAPI_ESEQUENCE */
    state_unlock();
    if (before)
        return fail(AAPI_ESEQUENCE, "%s before aapi_restore_preprocess", fn);
    if (after)
        return fail(AAPI_ESEQUENCE, "%s called twice", fn);

    /* Objects still open are closed first: completed when the restore succeeded, discarded
     * when it failed. One that cannot be completed fails the restore, which is then rolled
     * back like any failed restore, and its error is the result. */
    while ((obj = object_take_one(srv)) != NULL) {
        int r;
        log_msg(srv, AAPI_LOG_WARNING, "%s: %s was still open at restore_postprocess",
                FILES_PLUGIN_NAME, obj->path);
        r = restore_close(fn, obj, status == AAPI_EOK && closed == AAPI_EOK);
        if (r != AAPI_EOK && closed == AAPI_EOK) {
            size_t len = sizeof first;
            closed = r;
            (void)last_error_copy(first, &len);
            log_msg(srv, AAPI_LOG_ERROR, "%s: %s; rolling the restore back", FILES_PLUGIN_NAME,
                    first);
        }
    }
    if (status == AAPI_EOK && closed == AAPI_EOK) {
        rc = commit_restore(fn, srv);
        if (close_restrictive_dirs(srv) != AAPI_EOK)
            rc = AAPI_EIO;
    } else {
        rc = roll_back(srv);
    }
    if (status == AAPI_EOK && closed == AAPI_EOK && rc == AAPI_EOK)
        rc = sync_written(srv);
    free_bookkeeping(srv);
    if (closed != AAPI_EOK)
        return fail(closed, "%s", first);
    if (rc != AAPI_EOK)
        return fail(AAPI_EIO, "%s: the restore %s, but some objects could not be %s (see the log)",
                    fn, status == AAPI_EOK ? "succeeded" : "failed",
                    status == AAPI_EOK ? "completed" : "rolled back");
    return AAPI_EOK;
}

void restore_abandon(files_server *srv)
{
    size_t i;
    /* The session ends without restore_postprocess: nothing is deleted, so nothing is lost. */
    for (i = 0; i < srv->aside_n; i++)
        log_msg(srv, AAPI_LOG_WARNING,
                "%s: restore ended without restore_postprocess; the replaced %s is kept as %s",
                FILES_PLUGIN_NAME, srv->aside[i].path, srv->aside[i].aside);
    (void)close_restrictive_dirs(srv);
    free_bookkeeping(srv);
}

/* ------------------------------------------------------------------------------------------ */
/* Created objects                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* RST-2: an object path of this restore is absolute, has no ".." component and, with an
 * alternate root, lies under it. On AAPI_EOK, *norm is the normalized path (the caller frees
 * it); otherwise AAPI_EINVAL (or AAPI_ENOMEM) with a message naming `path`. */
/* No component of `path` is longer than a name may be: AAPI_EINVAL naming it, before anything is
 * looked at (the file system would give ENAMETOOLONG, which is no input/output error). */
static int check_name_lengths(const char *fn, const char *path)
{
    const char *p = path;
    while (*p != '\0') {
        size_t len = strcspn(p, "/");
        if (len > FILES_NAME_MAX)
            return fail(AAPI_EINVAL, "%s: %s has a name of %zu bytes; a name has at most %d", fn,
                        path, len, FILES_NAME_MAX);
        p += len;
        p += strspn(p, "/");
    }
    return AAPI_EOK;
}

static int check_restore_path(const char *fn, files_server *srv, const char *path, char **norm)
{
    int dotdot, rc = check_object_path(fn, "path", path);
    if (rc != AAPI_EOK)
        return rc;
    rc = check_name_lengths(fn, path);
    if (rc != AAPI_EOK)
        return rc;
    *norm = path_normalize(path, &dotdot);
    if (*norm == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    /* The root "/" holds every path; any other holds itself and what is below it. */
    if (srv->target_root != NULL && strcmp(srv->target_root, "/") != 0) {
        size_t rl = strlen(srv->target_root);
        if (strncmp(*norm, srv->target_root, rl) != 0 ||
            ((*norm)[rl] != '/' && (*norm)[rl] != '\0')) {
            free(*norm);
            *norm = NULL;
            return fail(AAPI_EINVAL, "%s: %s is outside the alternate root %s", fn, path,
                        srv->target_root);
        }
    }
    return AAPI_EOK;
}

/* Remove the parents a failed create made (RC-11), newest first. */
static void remove_parents(const files_server *srv, files_strvec *made)
{
    size_t i = made->n;
    while (i-- > 0) {
        files_walk w;
        int fd = walk_parent(srv, made->v[i], NULL, &w);
        if (fd >= 0) {
            (void)unlinkat(fd, leaf_of(srv, made->v[i]), AT_REMOVEDIR);
            close(fd);
        }
    }
}

/* 1 when the directory `name` in `dirfd` holds any entry, 0 when it is empty, -1 with errno set
 * when it cannot be listed. A symbolic link there is not followed. */
static int dir_has_entries(int dirfd, const char *name)
{
    struct dirent *e;
    int found = 0, err;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        err = errno;
        if (fd >= 0)
            close(fd);
        errno = err;
        return -1;
    }
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            found = 1;
            break;
        }
    }
    err = errno;
    closedir(d);
    if (e == NULL && err != 0) {
        errno = err;
        return -1;
    }
    return found;
}

int aapi_create_object(aapi_server_t server, const char *path, const aapi_object_prop_t *prop,
                       uint32_t flags, aapi_object_t *object)
{
    static const char fn[] = "aapi_create_object";
    files_server *srv;
    files_object *obj = NULL;
    files_strvec made = {0};
    char *norm = NULL, *parent = NULL, *name = NULL;
    struct stat st;
    files_walk w;
    int exists = 0, top, fd = -1, rc = require_claimed(fn);
    size_t i;
    if (rc != AAPI_EOK)
        return rc;
    if (path == NULL || prop == NULL || object == NULL)
        return fail(AAPI_EINVAL, "%s: path, prop and object must not be NULL", fn);
    rc = restore_server(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if (prop->struct_size < sizeof(aapi_object_prop_t))
        return fail(AAPI_EABI, "%s: prop->struct_size %u is smaller than the ABI 1.0 size %u", fn,
                    (unsigned)prop->struct_size, (unsigned)sizeof(aapi_object_prop_t));
    if (flags & ~(uint32_t)AAPI_CREATE_OVERWRITE)
        return fail(AAPI_EINVAL, "%s: unknown flags 0x%x", fn, (unsigned)flags);
    if (path[0] == '\0')
        return fail(AAPI_EINVAL, "%s: path is empty", fn);
    if (prop->obj_type != AAPI_OBJ_FILE && prop->obj_type != AAPI_OBJ_DIR &&
        prop->obj_type != AAPI_OBJ_SYMLINK)
        return fail(AAPI_EINVAL, "%s: unknown object type %u", fn, (unsigned)prop->obj_type);
    if ((prop->valid & AAPI_PROP_MODE) && prop->mode > 07777)
        return fail(AAPI_EINVAL, "%s: mode %#o has bits outside 07777", fn, (unsigned)prop->mode);
    if (((prop->valid & AAPI_PROP_ATIME) && bad_time(&prop->atime)) ||
        ((prop->valid & AAPI_PROP_MTIME) && bad_time(&prop->mtime)) ||
        ((prop->valid & AAPI_PROP_CTIME) && bad_time(&prop->ctime)))
        return fail(AAPI_EINVAL, "%s: a time has 1000000000 or more nanoseconds", fn);
    /* RST-2: exactly at `path`, nothing outside the alternate root. */
    rc = check_restore_path(fn, srv, path, &norm);
    if (rc != AAPI_EOK)
        return rc;
    /* RST-10: the root stays the directory it was at preprocess: a directory object there reuses
     * it, nothing else replaces it (not even with AAPI_CREATE_OVERWRITE). */
    top = is_top(srv, norm);
    if (top && prop->obj_type != AAPI_OBJ_DIR) {
        rc = fail(AAPI_EEXIST,
                  "%s: %s exists and is %s: only a directory object can be restored there", fn,
                  norm, confining_root(srv) != NULL ? "the alternate root of this restore"
                                                    : "a directory");
        goto out;
    }
    if (!top)
        open_restrictive_parents(srv, norm);
    /* RST-10: through no symbolic link below the alternate root. The parent found here is the one
     * the object is made in, unless it is missing. */
    fd = walk_parent(srv, norm, NULL, &w);
    if (fd >= 0) {
        exists = fstatat(fd, leaf_of(srv, norm), &st, AT_SYMLINK_NOFOLLOW) == 0;
        rc = !exists && errno != ENOENT ? fail_errno(errno, "%s: cannot inspect %s", fn, norm)
                                        : AAPI_EOK;
    } else if (w.stop == WALK_NOTDIR) {
        rc = fail(AAPI_EEXIST, "%s: %.*s exists and is not a directory", fn, (int)w.at, norm);
    } else if (w.stop != WALK_MISSING) {
        rc = walk_fail(fn, srv, norm, norm, &w);
    }
    if (rc != AAPI_EOK)
        goto out;
    /* RST-3: an existing directory is reused; anything else needs AAPI_CREATE_OVERWRITE, and is
     * replaced only at a successful close. */
    if (exists && !(prop->obj_type == AAPI_OBJ_DIR && S_ISDIR(st.st_mode)) &&
        !(flags & AAPI_CREATE_OVERWRITE)) {
        rc = fail(AAPI_EEXIST, "%s: %s already exists (AAPI_CREATE_OVERWRITE not given)", fn,
                  norm);
        goto out;
    }
    /* A file or link never takes the place of a directory with contents: replacing it would
     * delete what it holds, newer data included. */
    if (exists && S_ISDIR(st.st_mode) && prop->obj_type != AAPI_OBJ_DIR) {
        int full = dir_has_entries(fd, leaf_of(srv, norm));
        if (full != 0) {
            rc = full < 0 ? fail_errno(errno, "%s: cannot list %s", fn, norm)
                          : fail(AAPI_EEXIST,
                                 "%s: %s is a directory that is not empty: a %s restored there "
                                 "would delete what it holds; move it away first, or restore "
                                 "under an alternate root",
                                 fn, norm,
                                 prop->obj_type == AAPI_OBJ_FILE ? "file" : "symbolic link");
            goto out;
        }
    }

    obj = calloc(1, sizeof *obj);
    if (obj == NULL) {
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
        goto out;
    }
    obj->fd = -1;
    obj->dirfd = -1;
    obj->server = srv;
    obj->mode = OBJ_WRITE;
    obj->type = prop->obj_type;
    obj->prop = *prop; /* the ABI 1.0 part only (ABI-5) */
    obj->overwrite = (flags & AAPI_CREATE_OVERWRITE) != 0;
    obj->path = norm;
    norm = NULL;
    if (!top) {
        if (path_split(obj->path, &parent, &name) != AAPI_EOK) {
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
            goto out;
        }
        /* The parent gets the temporary file, or the object at close. */
        rc = touch_dir(fn, srv, parent, fd);
        if (rc != AAPI_EOK)
            goto out;
    }
    obj->dirfd = fd;
    fd = -1;
    if (obj->dirfd < 0) {
        /* RST-2: missing parents are created, 0700 until their own object sets the mode. */
        obj->dirfd = walk_parent(srv, obj->path, &made, &w);
        if (obj->dirfd < 0) {
            if (w.stop == WALK_NOTDIR)
                rc = fail(AAPI_EEXIST, "%s: %.*s exists and is not a directory", fn, (int)w.at,
                          obj->path);
            else if (w.stop == WALK_ERROR)
                rc = fail_errno(w.err, "%s: cannot create directory %.*s", fn, (int)w.at,
                                obj->path);
            else
                rc = walk_fail(fn, srv, obj->path, obj->path, &w);
            goto out;
        }
    }
    if (obj->type == AAPI_OBJ_FILE) {
        /* OBJ-6: the data goes to a hidden temporary file until close, under a name nothing
         * has: the names are unique only in this process, so one that exists (left by an
         * earlier restore, or a user's) is skipped, never reused. */
        for (i = 0; i < HIDDEN_NAME_TRIES; i++) {
            free(obj->tmp);
            obj->tmp = hidden_sibling(obj->path, "tmp");
            if (obj->tmp == NULL) {
                rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
                goto out;
            }
            obj->fd = openat(obj->dirfd, leaf_of(obj->server, obj->tmp),
                             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (obj->fd >= 0 || errno != EEXIST)
                break;
        }
        if (obj->fd < 0) {
            rc = fail_errno(errno, "%s: cannot create %s", fn, obj->tmp);
            goto out;
        }
    }
    rc = object_register(obj);
    for (i = 0; i < made.n && rc == AAPI_EOK; i++)
        if (record_made_dir(srv, made.v[i]) != AAPI_EOK)
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
out:
    if (rc != AAPI_EOK) {
        /* RC-11: no handle, and nothing new left visible. */
        if (obj != NULL) {
            if (obj->handle != 0) {
                files_object *same;
                (void)object_unregister(fn, obj->handle, &same);
            }
            if (obj->fd >= 0) {
                close(obj->fd);
                (void)unlinkat(obj->dirfd, leaf_of(srv, obj->tmp), 0);
            }
            if (obj->dirfd >= 0)
                close(obj->dirfd);
            free(obj->tmp);
            free(obj->path);
            free(obj);
        }
        remove_parents(srv, &made);
    } else {
        *object = obj->handle;
    }
    if (fd >= 0)
        close(fd);
    strvec_free(&made);
    free(norm);
    free(parent);
    free(name);
    return rc;
}

int aapi_write_object(aapi_object_t object, const void *buf, size_t len)
{
    static const char fn[] = "aapi_write_object";
    files_object *obj;
    int rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (buf == NULL && len > 0)
        return fail(AAPI_EINVAL, "%s: buf must not be NULL", fn);
    rc = object_acquire(fn, object, &obj);
    if (rc != AAPI_EOK)
        return rc;
    if (obj->mode != OBJ_WRITE) { /* LIFE-5 */
        rc = fail(AAPI_ESEQUENCE, "%s: %s was opened for reading, not created", fn, obj->path);
    } else if (len == 0) {
        rc = AAPI_EOK; /* OBJ-5 */
    } else if (obj->type == AAPI_OBJ_DIR) {
        rc = fail(AAPI_EINVAL, "%s: %s is a directory; directories have no data", fn, obj->path);
    } else if (obj->type == AAPI_OBJ_SYMLINK) {
        if (memchr(buf, '\0', len) != NULL)
            rc = fail(AAPI_EINVAL, "%s: a symlink target cannot hold a NUL byte (%s)", fn,
                      obj->path);
        else if (obj->data.len + len > MAX_LINK_TARGET)
            rc = fail(AAPI_EINVAL, "%s: symlink target of %s is longer than %u bytes", fn,
                      obj->path, MAX_LINK_TARGET);
        else if (buf_append(&obj->data, buf, len) != AAPI_EOK)
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
    } else {
        int err = write_all(obj->fd, buf, len);
        if (err != 0) {
            /* OBJ-5: all or nothing: cut back what part of this call reached the file. */
            if (ftruncate(obj->fd, (off_t)obj->written) != 0 ||
                lseek(obj->fd, (off_t)obj->written, SEEK_SET) < 0)
                err = errno;
            rc = fail_errno(err, "%s: cannot write %s", fn, obj->tmp);
            if (rc != AAPI_ENOSPC)
                rc = AAPI_EIO;
        } else {
            obj->written += len;
        }
    }
    object_release(obj);
    return rc;
}

int aapi_flush(aapi_object_t object)
{
    static const char fn[] = "aapi_flush";
    files_object *obj;
    int rc = require_claimed(fn);
    if (rc == AAPI_EOK)
        rc = object_acquire(fn, object, &obj);
    if (rc != AAPI_EOK)
        return rc;
    if (obj->mode != OBJ_WRITE) { /* LIFE-5 */
        rc = fail(AAPI_ESEQUENCE, "%s: %s was opened for reading, not created", fn, obj->path);
    }
    /* OBJ-6: every write already went to the file, nothing is held here. The restore becomes
     * durable as a whole in aapi_restore_postprocess (RST-9), not one fsync per object. */
    object_release(obj);
    return rc;
}

/* Set an existing object aside so that the new one can take its place (RST-3, RST-7). */
static int set_aside(const char *fn, files_object *obj, char **aside)
{
    struct stat st;
    *aside = NULL;
    if (fstatat(obj->dirfd, leaf_of(obj->server, obj->path), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? AAPI_EOK
                               : fail_errno(errno, "%s: cannot inspect %s", fn, obj->path);
    if (!obj->overwrite)
        return fail(AAPI_EEXIST, "%s: %s appeared while it was being restored", fn, obj->path);
    /* A name of the form is unique only in this process: one that exists (a user's file, an
     * object kept aside by an earlier restore) is never replaced; the next is tried. */
    for (int i = 0; i < HIDDEN_NAME_TRIES; i++) {
        int err;
        *aside = hidden_sibling(obj->path, "old");
        if (*aside == NULL)
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
        if (rename_noreplace(obj->dirfd, leaf_of(obj->server, obj->path),
                             leaf_of(obj->server, *aside)) == 0)
            return AAPI_EOK;
        err = errno;
        free(*aside);
        *aside = NULL;
        if (err != EEXIST || i + 1 == HIDDEN_NAME_TRIES)
            return fail_errno(err, "%s: cannot move %s aside", fn, obj->path);
    }
    return AAPI_EOK; /* not reached */
}

/* Undo set_aside after the new object could not be placed. */
static void put_back(files_object *obj, char *aside)
{
    if (aside != NULL && renameat(obj->dirfd, leaf_of(obj->server, aside), obj->dirfd, leaf_of(obj->server, obj->path)) != 0)
        log_msg(obj->server, AAPI_LOG_ERROR, "%s: cannot put %s back; it is kept as %s",
                FILES_PLUGIN_NAME, obj->path, aside);
}

static int place_file(const char *fn, files_object *obj, char **aside)
{
    int rc;
    if (!obj->overwrite) {
        /* link() fails when something appeared at the path since create: nothing is replaced
         * without AAPI_CREATE_OVERWRITE. */
        if (linkat(obj->dirfd, leaf_of(obj->server, obj->tmp), obj->dirfd, leaf_of(obj->server, obj->path), 0) == 0) {
            (void)unlinkat(obj->dirfd, leaf_of(obj->server, obj->tmp), 0);
            return AAPI_EOK;
        }
        if (errno == EEXIST)
            return fail(AAPI_EEXIST, "%s: %s appeared while it was being restored", fn,
                        obj->path);
        if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP && errno != EXDEV &&
            errno != EMLINK)
            return fail_errno(errno, "%s: cannot move %s into place", fn, obj->path);
        /* A file system without hard links: check, then rename. */
    }
    rc = set_aside(fn, obj, aside);
    if (rc != AAPI_EOK)
        return rc;
    if (renameat(obj->dirfd, leaf_of(obj->server, obj->tmp), obj->dirfd, leaf_of(obj->server, obj->path)) != 0)
        return fail_errno(errno, "%s: cannot move %s into place", fn, obj->path);
    return AAPI_EOK;
}

static int complete(const char *fn, files_object *obj)
{
    files_server *srv = obj->server;
    const aapi_object_prop_t *p = &obj->prop;
    int root = is_root(), rc = AAPI_EOK, has_mode = (p->valid & AAPI_PROP_MODE) != 0;
    int chown_it = root && (p->valid & AAPI_PROP_OWNER);
    /* setuid/setgid only as root (a file of the running user must not gain them). */
    mode_t mode = (mode_t)(p->mode & (root ? 07777u : 01777u));
    char *aside = NULL;
    int own;
    struct stat st;

    /* Owner first, then mode: changing the owner clears setuid and setgid, even for root. */
    if (obj->type == AAPI_OBJ_FILE) {
        if (chown_it && fchown(obj->fd, (uid_t)p->uid, (gid_t)p->gid) != 0)
            rc = fail_errno(errno, "%s: cannot set the owner of %s", fn, obj->path);
        else if (has_mode && fchmod(obj->fd, mode) != 0)
            rc = fail_errno(errno, "%s: cannot set the mode of %s", fn, obj->path);
        if (close(obj->fd) != 0 && rc == AAPI_EOK)
            rc = fail_errno(errno, "%s: cannot write %s", fn, obj->tmp);
        obj->fd = -1;
        if (rc == AAPI_EOK)
            rc = place_file(fn, obj, &aside);
        if (rc != AAPI_EOK) {
            put_back(obj, aside);
            free(aside);
            (void)unlinkat(obj->dirfd, leaf_of(obj->server, obj->tmp), 0);
            return rc;
        }
    } else if (obj->type == AAPI_OBJ_SYMLINK) {
        rc = set_aside(fn, obj, &aside);
        if (rc == AAPI_EOK && symlinkat(obj->data.p != NULL ? obj->data.p : "", obj->dirfd,
                                        leaf_of(obj->server, obj->path)) != 0)
            rc = fail_errno(errno, "%s: cannot create symlink %s", fn, obj->path);
        if (rc == AAPI_EOK && chown_it &&
            fchownat(obj->dirfd, leaf_of(obj->server, obj->path), (uid_t)p->uid, (gid_t)p->gid,
                     AT_SYMLINK_NOFOLLOW) != 0) {
            rc = fail_errno(errno, "%s: cannot set the owner of %s", fn, obj->path);
            (void)unlinkat(obj->dirfd, leaf_of(obj->server, obj->path), 0);
        }
        if (rc != AAPI_EOK) {
            put_back(obj, aside);
            free(aside);
            return rc;
        }
    } else {
        const char *name = leaf_of(obj->server, obj->path);
        int reused = fstatat(obj->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISDIR(st.st_mode);
        if (reused) {
            /* Its owner and mode change now: recorded first, put back by a rollback. */
            rc = touch_dir(fn, srv, obj->path, -1);
            if (rc != AAPI_EOK)
                return rc;
        } else {
            rc = set_aside(fn, obj, &aside);
            if (rc == AAPI_EOK && mkdirat(obj->dirfd, name, 0700) != 0)
                rc = fail_errno(errno, "%s: cannot create directory %s", fn, obj->path);
            if (rc != AAPI_EOK) {
                put_back(obj, aside);
                free(aside);
                return rc;
            }
        }
        if (chown_it &&
            fchownat(obj->dirfd, name, (uid_t)p->uid, (gid_t)p->gid, AT_SYMLINK_NOFOLLOW) != 0)
            rc = fail_errno(errno, "%s: cannot set the owner of %s", fn, obj->path);
        else if (has_mode && chmod_at(obj->dirfd, name, mode) != 0)
            rc = fail_errno(errno, "%s: cannot set the mode of %s", fn, obj->path);
        else if (has_mode && !root && (mode & 0300) != 0300 &&
                 record_dirmode(srv, obj->path, mode) != AAPI_EOK)
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
        if (rc == AAPI_EOK && note_written(srv, obj->dirfd, obj->path) != AAPI_EOK)
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
        if (reused) {
            free(aside);
            return rc;
        }
    }
    if (obj->type != AAPI_OBJ_DIR && note_written(srv, obj->dirfd, obj->path) != AAPI_EOK)
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
    /* RST-6: the new object is this restore's; RST-7: the old one waits for postprocess (and
     * is this restore's too when it replaced one this restore created). */
    own = aside != NULL && was_created(srv, obj->path);
    if ((obj->type == AAPI_OBJ_DIR ? record_made_dir(srv, obj->path)
                                   : record_created(srv, obj->path)) != AAPI_EOK &&
        rc == AAPI_EOK)
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
    if (aside != NULL && record_aside(srv, obj->path, aside, own) != AAPI_EOK && rc == AAPI_EOK)
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
    free(aside);
    return rc;
}

int restore_close(const char *fn, files_object *obj, int commit)
{
    int rc = AAPI_EOK;
    if (commit) {
        rc = complete(fn, obj);
        if (rc != AAPI_EOK && rc != AAPI_ENOSPC && rc != AAPI_EEXIST && rc != AAPI_ENOMEM)
            rc = AAPI_EIO;
    } else if (obj->fd >= 0) {
        close(obj->fd);
        obj->fd = -1;
        if (unlinkat(obj->dirfd, leaf_of(obj->server, obj->tmp), 0) != 0 && errno != ENOENT)
            rc = fail_errno(errno, "%s: cannot remove %s", fn, obj->tmp) == AAPI_ENOMEM
                     ? AAPI_ENOMEM
                     : AAPI_EIO;
    }
    if (obj->fd >= 0)
        close(obj->fd);
    if (obj->dirfd >= 0)
        close(obj->dirfd);
    free(obj->tmp);
    free(obj->path);
    buf_free(&obj->data);
    free(obj);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Times and deletion                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* The parent directory of the existing object `norm` (as given: `path`), reached through no
 * symbolic link below the alternate root (RST-10), and the object's own lstat in `st`. On failure
 * returns -1 with the code in `*rc` (a missing object: AAPI_ENOENT, RC-7). */
static int open_object_parent(const char *fn, files_server *srv, const char *path, const char *norm,
                              struct stat *st, int *rc)
{
    files_walk w;
    int fd = walk_parent(srv, norm, NULL, &w);
    if (fd < 0) {
        *rc = walk_fail(fn, srv, path, norm, &w);
        return -1;
    }
    if (fstatat(fd, leaf_of(srv, norm), st, AT_SYMLINK_NOFOLLOW) != 0) {
        *rc = errno == ENOENT || errno == ENOTDIR
                  ? fail(AAPI_ENOENT, "%s: %s does not exist", fn, path)
                  : fail_errno(errno, "%s: cannot inspect %s", fn, path);
        close(fd);
        return -1;
    }
    *rc = AAPI_EOK;
    return fd;
}

int restore_stat(const char *fn, files_server *srv, const char *path, struct stat *st)
{
    char *norm = NULL;
    int fd, rc = check_restore_path(fn, srv, path, &norm);
    if (rc != AAPI_EOK)
        return rc;
    fd = open_object_parent(fn, srv, path, norm, st, &rc);
    if (fd >= 0)
        close(fd);
    free(norm);
    return rc;
}

int aapi_set_object_utimes(aapi_server_t server, const char *path, const aapi_time_t *atime,
                           const aapi_time_t *mtime)
{
    static const char fn[] = "aapi_set_object_utimes";
    files_server *srv;
    struct timespec ts[2];
    struct stat st;
    char *norm = NULL;
    int fd, rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (path == NULL)
        return fail(AAPI_EINVAL, "%s: path must not be NULL", fn);
    rc = restore_server(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if ((atime != NULL && bad_time(atime)) || (mtime != NULL && bad_time(mtime)))
        return fail(AAPI_EINVAL, "%s: a time has 1000000000 or more nanoseconds", fn);
    rc = check_restore_path(fn, srv, path, &norm);
    if (rc != AAPI_EOK)
        return rc;
    fd = open_object_parent(fn, srv, path, norm, &st, &rc);
    if (fd < 0) {
        free(norm);
        return rc;
    }
    if (S_ISDIR(st.st_mode))
        rc = touch_dir(fn, srv, norm, -1);
    if (rc != AAPI_EOK) {
        close(fd);
        free(norm);
        return rc;
    }
    ts[0].tv_sec = atime != NULL ? (time_t)atime->sec : 0;
    ts[0].tv_nsec = atime != NULL ? (long)atime->nsec : UTIME_OMIT; /* NULL: left unchanged */
    ts[1].tv_sec = mtime != NULL ? (time_t)mtime->sec : 0;
    ts[1].tv_nsec = mtime != NULL ? (long)mtime->nsec : UTIME_OMIT;
    /* RST-5: a symlink gets its own times, never its target's. */
    if (utimensat(fd, leaf_of(srv, norm), ts, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == EOPNOTSUPP || errno == ENOTSUP)
            rc = fail(AAPI_ENOTSUP, "%s: the file system cannot set the times of %s", fn, path);
        else
            rc = fail_errno(errno, "%s: cannot set the times of %s", fn, path);
    }
    close(fd);
    free(norm);
    return rc;
}

/* A rollback does not bring a deleted object back: the directory `dir` it was in keeps the times
 * the removal gave it (its owner and mode are still put back). */
static void mark_deleted_in(files_server *srv, const char *dir)
{
    files_dirstate *d;
    state_lock();
    d = dir_find(srv, dir);
    if (d != NULL && d->kind == DIR_BEFORE)
        d->kind = DIR_DELETED;
    state_unlock();
}

int aapi_delete_object(aapi_server_t server, const char *path)
{
    static const char fn[] = "aapi_delete_object";
    files_server *srv;
    struct stat st;
    char *norm = NULL, *dir = NULL, *name = NULL;
    int fd, rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (path == NULL)
        return fail(AAPI_EINVAL, "%s: path must not be NULL", fn);
    rc = restore_server(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    rc = check_restore_path(fn, srv, path, &norm);
    if (rc != AAPI_EOK)
        return rc;
    /* RST-10: the root stays the directory it was at preprocess. */
    if (is_top(srv, norm)) {
        rc = fail(AAPI_EINVAL, "%s: %s is the root of this restore; it cannot be deleted", fn,
                  path);
        free(norm);
        return rc;
    }
    fd = open_object_parent(fn, srv, path, norm, &st, &rc);
    if (fd < 0) {
        free(norm);
        return rc;
    }
    /* The directory of the object is recorded before the removal changes it. */
    if (path_split(norm, &dir, &name) != AAPI_EOK)
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
    else
        rc = touch_dir(fn, srv, dir, fd);
    if (rc == AAPI_EOK && S_ISDIR(st.st_mode) &&
        unlinkat(fd, leaf_of(srv, norm), AT_REMOVEDIR) != 0)
        rc = errno == ENOTEMPTY || errno == EEXIST
                 ? fail(AAPI_EINVAL, "%s: directory %s is not empty", fn, path)
                 : fail_errno(errno, "%s: cannot remove directory %s", fn, path);
    else if (rc == AAPI_EOK && !S_ISDIR(st.st_mode) && unlinkat(fd, leaf_of(srv, norm), 0) != 0)
        rc = fail_errno(errno, "%s: cannot remove %s", fn, path);
    if (rc == AAPI_EOK)
        mark_deleted_in(srv, dir);
    close(fd);
    free(norm);
    free(dir);
    free(name);
    return rc;
}
