/*
 * snapshot.c: the `copy` and `reflink` snapshots, aapi_get_snappath_from_realpath and
 * aapi_postprocess (DISC-5, DISC-6, DISC-7, SEC-2).
 *
 * A snapshot is a proxy copy of the changed objects under <snapshot_dir>/<snapshot id>/<real path
 * without its leading '/'>, keeping modes and times (and owners when running as root). Directories
 * are created 0700 and get their own mode and times only once everything below them is copied.
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/ioctl.h>
/* FICLONE from <linux/fs.h>: clone a whole file copy-on-write (btrfs, XFS, bcachefs...). */
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif
#endif

#define COPY_CHUNK (1024u * 1024u) /* keepalive checked after every MiB copied (TIME-2) */

static int allowed_id_byte(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int snapshot_id(const char *fn, const char *job_id, char out[AAPI_SNAPID_MAX])
{
    size_t o = 0;
    const unsigned char *p;
    memcpy(out, "files-", 6);
    o = 6;
    for (p = (const unsigned char *)job_id; *p != '\0'; p++) {
        /* One '_' per character outside [A-Za-z0-9._-]: the continuation bytes of a UTF-8
         * sequence (10xxxxxx) belong to the character of their lead byte. */
        if ((*p & 0xC0u) == 0x80u)
            continue;
        if (o + 1 >= AAPI_SNAPID_MAX)
            return fail(AAPI_EINVAL, "%s: job id \"%s\" makes a snapshot id longer than %d bytes",
                        fn, job_id, AAPI_SNAPID_MAX - 1);
        out[o++] = allowed_id_byte(*p) ? (char)*p : '_';
    }
    out[o] = '\0';
    return AAPI_EOK;
}

int snapshot_id_valid(const char *id)
{
    size_t i, n = strlen(id);
    if (n < 6 || n >= AAPI_SNAPID_MAX || strncmp(id, "files-", 6) != 0)
        return 0;
    for (i = 6; i < n; i++)
        if (!allowed_id_byte((unsigned char)id[i]))
            return 0;
    return 1;
}

/* <snapshot_dir>/<id>/<realpath without its leading '/'>. */
static char *snap_path(const files_server *srv, const char *id, const char *realpath)
{
    char *dir = path_join(srv->cfg.snapshot_dir, id), *p;
    if (dir == NULL)
        return NULL;
    p = path_join(dir, realpath + 1);
    free(dir);
    return p;
}

/* How a snapshot directory that is not private is refused, and what to do about it. */
static int refuse_base(const char *fn, const char *dir, const char *why)
{
    return fail(AAPI_ESNAPSHOT,
                "%s: the snapshot directory %s is refused: %s; it must be a directory of the "
                "running user that neither its group nor others may write into: remove it, or set "
                "files.snapshot_dir to such a directory",
                fn, dir, why);
}

/* SEC-2: the snapshot directory, opened into *fd, when it is private: a real directory (not a
 * symbolic link: opened with O_NOFOLLOW|O_DIRECTORY), owned by the running user, not writable by
 * its group or others, so that no other user can rename or replace a snapshot in it. With create,
 * a missing one (and its missing parents) is made 0700 first; without, *fd is -1 when it is
 * missing. */
static int private_base(const char *fn, const files_server *srv, int create, int *fd)
{
    const char *dir = srv->cfg.snapshot_dir;
    char why[128];
    struct stat st;
    *fd = -1;
    if (create && mkdirs(fn, dir, NULL) != AAPI_EOK) {
        char saved[1024];
        size_t len = sizeof saved;
        (void)last_error_copy(saved, &len);
        return fail(AAPI_ESNAPSHOT, "%s: cannot create the snapshot directory %s: %s", fn, dir,
                    saved);
    }
    *fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0) {
        int err = errno;
        if (err == ENOENT && !create)
            return AAPI_EOK;
        if (err == ELOOP || err == ENOTDIR)
            return refuse_base(fn, dir, "it is a symbolic link or not a directory");
        fail_errno(err, "%s: cannot open the snapshot directory %s", fn, dir);
        return AAPI_ESNAPSHOT;
    }
    if (fstat(*fd, &st) != 0) {
        fail_errno(errno, "%s: cannot inspect %s", fn, dir);
    } else if (st.st_uid != geteuid()) {
        snprintf(why, sizeof why, "it is owned by uid %lu, not by the running user (uid %lu)",
                 (unsigned long)st.st_uid, (unsigned long)geteuid());
        refuse_base(fn, dir, why);
    } else if ((st.st_mode & 022) != 0) {
        snprintf(why, sizeof why, "its group or others may write into it (mode %04o)",
                 (unsigned)(st.st_mode & 07777));
        refuse_base(fn, dir, why);
    } else {
        return AAPI_EOK;
    }
    close(*fd);
    *fd = -1;
    return AAPI_ESNAPSHOT;
}

/* State of one snapshot creation. */
typedef struct snap_ctx {
    const char *fn;
    const files_server *srv;
    files_keepalive *ka;
    char *chunk;
    int warned_fallback;
} snap_ctx;

static int copy_times(int fd, const char *path, const struct stat *st)
{
    struct timespec ts[2];
    ts[0] = st->st_atim;
    ts[1] = st->st_mtim;
    if (fd >= 0)
        return futimens(fd, ts);
    return utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

static int clone_unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == EXDEV || err == EINVAL || err == ENOTTY ||
           err == ENOSYS || err == EBADF;
}

static int copy_file(snap_ctx *c, const char *src, const char *dst, const struct stat *st)
{
    int in, out, rc = AAPI_EOK, cloned = 0;
    in = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (in < 0)
        return fail_errno(errno, "%s: snapshot: cannot open %s", c->fn, src);
    /* SEC-2: created private, opened up to the source's mode only once complete. */
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = fail_errno(errno, "%s: snapshot: cannot create %s", c->fn, dst);
        close(in);
        return rc;
    }
    if (c->srv->cfg.snapshot == SNAP_REFLINK) {
#if defined(__linux__)
        if (ioctl(out, FICLONE, in) == 0)
            cloned = 1;
        else if (!clone_unsupported(errno))
            rc = fail_errno(errno, "%s: snapshot: cannot clone %s", c->fn, src);
        else
#endif
        if (!c->srv->cfg.reflink_fallback_copy)
            rc = fail(AAPI_ESNAPSHOT,
                      "%s: snapshot: the file system cannot clone %s "
                      "(files.reflink_fallback=error)",
                      c->fn, src);
        else if (!c->warned_fallback) {
            c->warned_fallback = 1;
            log_msg(c->srv, AAPI_LOG_WARNING,
                    "%s: the file system cannot clone %s; copying instead "
                    "(files.reflink_fallback=copy)",
                    FILES_PLUGIN_NAME, src);
        }
    }
    while (rc == AAPI_EOK && !cloned) {
        ssize_t n = read(in, c->chunk, COPY_CHUNK);
        int err;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = fail_errno(errno, "%s: snapshot: cannot read %s", c->fn, src);
        } else if (n == 0) {
            break;
        } else if ((err = write_all(out, c->chunk, (size_t)n)) != 0) {
            rc = fail_errno(err, "%s: snapshot: cannot write %s", c->fn, dst);
        } else {
            rc = keepalive_tick(c->ka, c->fn);
        }
    }
    if (rc == AAPI_EOK && geteuid() == 0 && fchown(out, st->st_uid, st->st_gid) != 0)
        rc = fail_errno(errno, "%s: snapshot: cannot set the owner of %s", c->fn, dst);
    if (rc == AAPI_EOK && fchmod(out, st->st_mode & 07777) != 0)
        rc = fail_errno(errno, "%s: snapshot: cannot set the mode of %s", c->fn, dst);
    if (rc == AAPI_EOK && copy_times(out, dst, st) != 0)
        rc = fail_errno(errno, "%s: snapshot: cannot set the times of %s", c->fn, dst);
    if (close(out) != 0 && rc == AAPI_EOK)
        rc = fail_errno(errno, "%s: snapshot: cannot write %s", c->fn, dst);
    close(in);
    return rc;
}

static int copy_symlink(snap_ctx *c, const char *src, const char *dst, const struct stat *st)
{
    size_t cap = (size_t)st->st_size + 1;
    char *target;
    ssize_t n;
    int rc = AAPI_EOK;
    for (;;) {
        target = malloc(cap);
        if (target == NULL)
            return fail(AAPI_ENOMEM, "%s: out of memory", c->fn);
        n = readlink(src, target, cap);
        if (n < 0 || (size_t)n < cap)
            break;
        free(target); /* the link grew since lstat: try again with room to spare */
        cap *= 2;
    }
    if (n < 0) {
        rc = fail_errno(errno, "%s: snapshot: cannot read symlink %s", c->fn, src);
    } else {
        target[n] = '\0';
        if (symlink(target, dst) != 0)
            rc = fail_errno(errno, "%s: snapshot: cannot create symlink %s", c->fn, dst);
        else if (geteuid() == 0 && lchown(dst, st->st_uid, st->st_gid) != 0)
            rc = fail_errno(errno, "%s: snapshot: cannot set the owner of %s", c->fn, dst);
        else if (copy_times(-1, dst, st) != 0)
            rc = fail_errno(errno, "%s: snapshot: cannot set the times of %s", c->fn, dst);
    }
    free(target);
    return rc;
}

/* Give copied directories their mode, owner and times, deepest first (reverse path order), once
 * nothing more is written into them. */
static int fix_dirs(snap_ctx *c, const files_snap_item *items, size_t n, const char *id)
{
    size_t i = n;
    while (i-- > 0) {
        const struct stat *st = items[i].st;
        char *dst;
        int rc = AAPI_EOK;
        if (!S_ISDIR(st->st_mode))
            continue;
        dst = snap_path(c->srv, id, items[i].path);
        if (dst == NULL)
            return fail(AAPI_ENOMEM, "%s: out of memory", c->fn);
        if (geteuid() == 0 && lchown(dst, st->st_uid, st->st_gid) != 0)
            rc = fail_errno(errno, "%s: snapshot: cannot set the owner of %s", c->fn, dst);
        else if (chmod(dst, st->st_mode & 07777) != 0)
            rc = fail_errno(errno, "%s: snapshot: cannot set the mode of %s", c->fn, dst);
        else if (copy_times(-1, dst, st) != 0)
            rc = fail_errno(errno, "%s: snapshot: cannot set the times of %s", c->fn, dst);
        free(dst);
        if (rc != AAPI_EOK)
            return rc;
    }
    return AAPI_EOK;
}

static int copy_item(snap_ctx *c, const char *id, const files_snap_item *it)
{
    char *dst = snap_path(c->srv, id, it->path), *parent = NULL, *name = NULL;
    int rc;
    if (dst == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", c->fn);
    rc = path_split(dst, &parent, &name);
    if (rc == AAPI_EOK)
        rc = mkdirs(c->fn, parent, NULL);
    else
        rc = fail(rc, "%s: out of memory", c->fn);
    if (rc == AAPI_EOK) {
        if (S_ISDIR(it->st->st_mode)) {
            struct stat st;
            if (mkdir(dst, 0700) != 0 &&
                !(errno == EEXIST && lstat(dst, &st) == 0 && S_ISDIR(st.st_mode)))
                rc = fail_errno(errno, "%s: snapshot: cannot create directory %s", c->fn, dst);
        } else if (S_ISLNK(it->st->st_mode)) {
            rc = copy_symlink(c, it->path, dst, it->st);
        } else {
            rc = copy_file(c, it->path, dst, it->st);
        }
    }
    free(dst);
    free(parent);
    free(name);
    return rc;
}

int snapshot_create(const char *fn, const files_server *srv, const char *id,
                    const files_snap_item *items, size_t n, files_keepalive *ka)
{
    snap_ctx c;
    char *root;
    size_t i;
    int rc, base;

    c.fn = fn;
    c.srv = srv;
    c.ka = ka;
    c.warned_fallback = 0;
    rc = private_base(fn, srv, 1, &base);
    if (rc != AAPI_EOK)
        return rc;
    root = path_join(srv->cfg.snapshot_dir, id);
    if (root == NULL) {
        close(base);
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    }
    /* Made in the directory just checked, through its descriptor. */
    if (mkdirat(base, id, 0700) != 0) {
        rc = errno == EEXIST ? fail(AAPI_ESNAPSHOT, "%s: snapshot %s already exists", fn, root)
                             : fail_errno(errno, "%s: cannot create snapshot %s", fn, root);
        free(root);
        close(base);
        return rc == AAPI_ECANCELLED || rc == AAPI_ENOMEM ? rc : AAPI_ESNAPSHOT;
    }
    close(base);
    c.chunk = malloc(COPY_CHUNK);
    if (c.chunk == NULL)
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
    for (i = 0; i < n && rc == AAPI_EOK; i++) {
        rc = keepalive_tick(ka, fn);
        if (rc == AAPI_EOK)
            rc = copy_item(&c, id, &items[i]);
    }
    if (rc == AAPI_EOK)
        rc = fix_dirs(&c, items, n, id);
    free(c.chunk);
    if (rc != AAPI_EOK) {
        /* DISC-5, TIME-4: no partial snapshot is left behind; the first message is kept. */
        char saved[1024];
        size_t len = sizeof saved;
        (void)last_error_copy(saved, &len);
        (void)remove_tree(fn, root, NULL);
        (void)fail(rc, "%s", saved);
        if (rc != AAPI_ECANCELLED && rc != AAPI_ENOMEM)
            rc = AAPI_ESNAPSHOT;
    } else {
        log_msg(srv, AAPI_LOG_INFO, "%s: snapshot %s: %zu objects copied", FILES_PLUGIN_NAME, id,
                n);
    }
    free(root);
    return rc;
}

int snapshot_remove(const char *fn, const files_server *srv, const char *id, files_keepalive *ka)
{
    char *root;
    int rc, base;
    rc = private_base(fn, srv, 0, &base);
    if (rc != AAPI_EOK || base < 0)
        return rc; /* a missing snapshot directory holds no snapshot: success */
    close(base);
    root = path_join(srv->cfg.snapshot_dir, id);
    if (root == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    rc = remove_tree(fn, root, ka);
    free(root);
    if (rc != AAPI_EOK && rc != AAPI_ECANCELLED && rc != AAPI_ENOMEM)
        rc = AAPI_ESNAPSHOT;
    return rc;
}

int aapi_postprocess(aapi_server_t server, const char *const *selections,
                     const char *const *backuphosts, const char *wkldoutdir,
                     const char *wkldfilesuffix, uint32_t schedtype, const aapi_snapid_t *snapid)
{
    static const char fn[] = "aapi_postprocess";
    files_server *srv;
    files_keepalive ka;
    int rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (selections == NULL || backuphosts == NULL || wkldoutdir == NULL ||
        wkldfilesuffix == NULL || snapid == NULL)
        return fail(AAPI_EINVAL, "%s: selections, backuphosts, wkldoutdir, wkldfilesuffix and "
                                 "snapid must not be NULL",
                    fn);
    rc = server_lookup(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if (srv->op != AAPI_OP_POSTPROCESS) /* LIFE-4 */
        return fail(AAPI_ESEQUENCE, "%s is legal only in a postprocess session", fn);
    if (srv->postprocess_done)
        return fail(AAPI_ESEQUENCE, "%s called twice in one session", fn);
    if (schedtype < AAPI_SCHED_FULL || schedtype > AAPI_SCHED_CINC)
        return fail(AAPI_EINVAL, "%s: schedule type %u is unknown", fn, (unsigned)schedtype);
    rc = check_job(fn, selections, backuphosts, wkldoutdir, wkldfilesuffix);
    if (rc != AAPI_EOK)
        return rc;
    if (memchr(snapid->id, '\0', sizeof snapid->id) == NULL || !utf8_valid(snapid->id))
        return fail(AAPI_EINVAL, "%s: snapid->id is not a NUL-terminated UTF-8 string", fn);
    /* LIFE-4: the one postprocess of this session starts here, whatever its outcome. */
    srv->postprocess_done = 1;
    if (snapid->id[0] != '\0') {
        /* Only ids this plugin makes: nothing outside <snapshot_dir> can ever be deleted. */
        if (!snapshot_id_valid(snapid->id))
            return fail(AAPI_EINVAL, "%s: \"%s\" is not a snapshot id of this plugin", fn,
                        snapid->id);
        keepalive_start(&ka, srv);
        rc = snapshot_remove(fn, srv, snapid->id, &ka); /* DISC-7: already gone is success */
        if (rc != AAPI_EOK)
            return rc;
        log_msg(srv, AAPI_LOG_INFO, "%s: snapshot %s deleted", FILES_PLUGIN_NAME, snapid->id);
    }
    return AAPI_EOK;
}

int aapi_get_snappath_from_realpath(aapi_server_t server, const char *snapname,
                                    const char *realpath, char *snappath, size_t *snappath_size)
{
    static const char fn[] = "aapi_get_snappath_from_realpath";
    files_server *srv;
    char *path = NULL;
    const char *result;
    size_t need;
    int rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (snapname == NULL || realpath == NULL || snappath_size == NULL)
        return fail(AAPI_EINVAL, "%s: snapname, realpath and snappath_size must not be NULL", fn);
    if (snappath == NULL && *snappath_size != 0)
        return fail(AAPI_EINVAL, "%s: snappath is NULL but *snappath_size is %zu", fn,
                    *snappath_size);
    rc = server_lookup(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if (srv->op != AAPI_OP_BACKUP) /* LIFE-4 */
        return fail(AAPI_ESEQUENCE, "%s is legal only in a backup session", fn);
    if (!utf8_valid(snapname))
        return fail(AAPI_EINVAL, "%s: snapname is not UTF-8", fn);
    /* Without "..": the snapshot path stays inside the snapshot. */
    rc = check_object_path(fn, "realpath", realpath);
    if (rc != AAPI_EOK)
        return rc;
    if (snapname[0] == '\0') {
        result = realpath; /* DISC-6: no snapshot, the object is read in place */
    } else {
        struct stat st;
        char *root;
        int base;
        if (!snapshot_id_valid(snapname))
            return fail(AAPI_EINVAL, "%s: \"%s\" is not a snapshot id of this plugin", fn,
                        snapname);
        /* A snapshot is read only from a private snapshot directory, where no other user can
         * have put something else in its place since discovery. */
        rc = private_base(fn, srv, 0, &base);
        if (rc != AAPI_EOK)
            return rc;
        if (base >= 0)
            close(base);
        root = path_join(srv->cfg.snapshot_dir, snapname);
        if (root == NULL)
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
        rc = base >= 0 && stat(root, &st) == 0 && S_ISDIR(st.st_mode)
                 ? AAPI_EOK
                 : fail(AAPI_ESNAPSHOT, "%s: snapshot %s does not exist", fn, root);
        free(root);
        if (rc != AAPI_EOK)
            return rc;
        path = snap_path(srv, snapname, realpath);
        if (path == NULL)
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
        result = path;
    }
    need = strlen(result) + 1;
    if (*snappath_size < need || snappath == NULL) {
        /* RC-6: the size needed, and not one byte of the buffer. */
        rc = fail(AAPI_EBUFSIZE, "%s: the buffer holds %zu bytes, the path needs %zu", fn,
                  *snappath_size, need);
        *snappath_size = need;
    } else {
        memcpy(snappath, result, need);
        *snappath_size = need;
    }
    free(path);
    return rc;
}
