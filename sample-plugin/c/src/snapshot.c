/*
 * snapshot.c: the `copy` and `reflink` snapshots, aapi_get_snappath_from_realpath and
 * aapi_postprocess (DISC-5, DISC-6, DISC-7, SEC-2).
 *
 * A snapshot is a proxy copy of the changed objects under <snapshot_dir>/<snapshot id>/<real path
 * without its leading '/'>, keeping modes and times (and owners when running as root). Directories
 * are created 0700 and get their own mode and times only once everything below them is copied.
 * A snapshot id ends in a tag of the snapshot directory it was made in, and is used only by a
 * session whose snapshot directory has that tag.
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

/* The length of the tag that ends every snapshot id (after a '-'). */
#define TAG_LEN 16

/* The tag of snapshot directory `dir` (absolute, normalized) into out: the 64-bit FNV-1a hash of
 * its path's bytes, as 16 lowercase hex digits and a NUL. It only tells one directory from
 * another (an identifier, not a security measure: the directory's own checks are that). */
static void dir_tag(const char *dir, char out[TAG_LEN + 1])
{
    uint64_t hash = UINT64_C(0xcbf29ce484222325);
    const unsigned char *p;
    for (p = (const unsigned char *)dir; *p != '\0'; p++) {
        hash ^= *p;
        hash *= UINT64_C(0x100000001b3);
    }
    snprintf(out, TAG_LEN + 1, "%016llx", (unsigned long long)hash);
}

int snapshot_id(const char *fn, const char *job_id, const char *dir, char out[AAPI_SNAPID_MAX])
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
        if (o + 1 + 1 + TAG_LEN >= AAPI_SNAPID_MAX)
            return fail(AAPI_EINVAL, "%s: job id \"%s\" makes a snapshot id longer than %d bytes",
                        fn, job_id, AAPI_SNAPID_MAX - 1);
        out[o++] = allowed_id_byte(*p) ? (char)*p : '_';
    }
    out[o++] = '-';
    dir_tag(dir, out + o);
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

/* The tag at the end of `id` ('-' and 16 lowercase hex digits), or NULL when it has none. */
static const char *id_tag(const char *id)
{
    size_t i, n = strlen(id);
    if (n < 6 + 1 + TAG_LEN || strncmp(id, "files-", 6) != 0 || id[n - TAG_LEN - 1] != '-')
        return NULL;
    for (i = n - TAG_LEN; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return NULL;
    return id + n - TAG_LEN;
}

int snapshot_check_made_here(const char *fn, const files_server *srv, const char *id)
{
    const char *tag = id_tag(id);
    char here[TAG_LEN + 1];
    dir_tag(srv->cfg.snapshot_dir, here);
    if (tag != NULL && strcmp(tag, here) == 0)
        return AAPI_EOK;
    /* The reason and the fix before the path, which may be long. */
    return fail(AAPI_ESNAPSHOT,
                "%s: snapshot %s %s the one of this session; run every step of the job as the "
                "same user, with the same TMPDIR and files.snapshot_dir, as the discovery (the "
                "snapshot directory of this session is %s)",
                fn, id,
                tag != NULL ? "was made in another snapshot directory than"
                            : "carries no tag of the snapshot directory it was made in (the ids "
                              "of this plugin end in one), so it is not looked for in",
                srv->cfg.snapshot_dir);
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

/* SEC-2: the snapshot directory is opened only when no other local user can replace it, nor any
 * directory or symbolic link on the way to it. The path is walked as the kernel walks it: one
 * component at a time from "/", each directory held by a descriptor and opened with O_NOFOLLOW.
 * A symbolic link on the way is followed by reading its target and walking that (from "/" when it
 * is absolute), so the directories checked are exactly the ones a later open of the path goes
 * through: those of its canonical path and each one that holds a link. The snapshot directory
 * itself is never a link. */

/* Most symbolic links followed on the way (the kernel's MAXSYMLINKS). */
#define SNAPDIR_MAX_LINKS 40

/* The fix every refused ancestor shares. */
#define ANCESTORS_FIX                                                                              \
    "set files.snapshot_dir to a directory whose ancestors only root or the running user may "   \
    "change"

/* AAPI_EOK when no user other than root and the running user may change `at`, a directory or
 * symbolic link on the way to the snapshot directory `dir`; else AAPI_ESNAPSHOT naming it and the
 * fix. A directory must be owned by root or the running user, and writable by neither its group
 * nor others unless it has the sticky bit (/tmp): there only root, the directory's owner and an
 * entry's owner may rename that entry. A link must be owned by root or the running user (in a
 * sticky directory its owner may replace it). */
static int check_ancestor(const char *fn, const char *dir, const char *at, const struct stat *st)
{
    unsigned long uid = (unsigned long)st->st_uid, me = (unsigned long)geteuid();
    unsigned mode = (unsigned)(st->st_mode & 07777);
    int trusted = uid == 0 || uid == me;
    if (S_ISLNK(st->st_mode)) {
        if (!trusted)
            return fail(AAPI_ESNAPSHOT,
                        "%s: the snapshot directory %s is refused: its ancestor %s is a symbolic "
                        "link owned by uid %lu, neither root nor the running user (uid %lu), so "
                        "that user could point it to a directory of their own; replace it by a "
                        "link of root or of the running user, or " ANCESTORS_FIX,
                        fn, dir, at, uid, me);
    } else if (!trusted) {
        return fail(AAPI_ESNAPSHOT,
                    "%s: the snapshot directory %s is refused: its ancestor %s is owned by uid "
                    "%lu (mode %04o), neither root nor the running user (uid %lu), so that user "
                    "could put a directory of their own in place of the snapshot directory; give "
                    "%s to root or to the running user, or " ANCESTORS_FIX,
                    fn, dir, at, uid, mode, me, at);
    } else if ((mode & 022) != 0 && (mode & S_ISVTX) == 0) {
        return fail(AAPI_ESNAPSHOT,
                    "%s: the snapshot directory %s is refused: its ancestor %s (owner uid %lu, "
                    "mode %04o) may be written by its group or others and lacks the sticky bit "
                    "(as /tmp has, mode 1777), so another user could put a directory of their "
                    "own in place of the snapshot directory; run chmod go-w %s, "
                    "or " ANCESTORS_FIX,
                    fn, dir, at, uid, mode, at);
    }
    return AAPI_EOK;
}

/* The fix every ancestor the running user may not search shares. */
#define SEARCH_FIX                                                                                 \
    "set files.snapshot_dir to a directory whose ancestors the running user may search"

/* AAPI_ESNAPSHOT naming `at`, the ancestor of the snapshot directory `dir` held by `cur`, when
 * `err`, the failure to open the entry `name` of `cur`, is that the running user may not search
 * `at`; AAPI_EOK for any other failure (the caller says what it was). A lookup of `name` needs
 * nothing but that permission, so it is denied too only then. */
static int check_searchable(const char *fn, const char *dir, int cur, const char *at,
                            const char *name, int err)
{
    struct stat st;
    unsigned long uid, me = (unsigned long)geteuid();
    if (err != EACCES || fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != EACCES ||
        fstat(cur, &st) != 0)
        return AAPI_EOK;
    uid = (unsigned long)st.st_uid;
    return fail(AAPI_ESNAPSHOT,
                "%s: the snapshot directory %s is refused: its ancestor %s (owner uid %lu, mode "
                "%04o) may not be searched by the running user (uid %lu); %s %s, or " SEARCH_FIX,
                fn, dir, at, uid, (unsigned)(st.st_mode & 07777), me,
                uid == me ? "run chmod u+x" : "have its owner run chmod a+x", at);
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

/* AAPI_ESNAPSHOT (AAPI_ENOMEM kept) for a failure with errno `err` to `what` `at`. */
static int cannot(const char *fn, const char *dir, const char *what, const char *at, int err)
{
    int rc = fail_errno(err, "%s: cannot open the snapshot directory %s: cannot %s %s", fn, dir,
                        what, at);
    return rc == AAPI_ENOMEM ? rc : AAPI_ESNAPSHOT;
}

/* Make the missing directory `name` of `cur` (`at`) 0700, unless another process just did. */
static int make_dir(const char *fn, const char *dir, int cur, const char *name, const char *at)
{
    int rc;
    if (mkdirat(cur, name, 0700) == 0 || errno == EEXIST)
        return AAPI_EOK;
    rc = fail_errno(errno,
                    "%s: cannot create the snapshot directory %s: cannot create directory %s", fn,
                    dir, at);
    return rc == AAPI_ENOMEM ? rc : AAPI_ESNAPSHOT;
}

/* "/" into *cur (closing the one it holds) and *at, checked as an ancestor when `ancestor`. */
static int open_root(const char *fn, const char *dir, int ancestor, int *cur, char **at)
{
    struct stat st;
    if (*cur >= 0)
        close(*cur);
    *cur = open("/", DIR_ONLY | O_DIRECTORY | O_CLOEXEC);
    if (*cur < 0)
        return cannot(fn, dir, "open its ancestor", "/", errno);
    free(*at);
    *at = strdup("/");
    if (*at == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    if (!ancestor)
        return AAPI_EOK;
    if (fstat(*cur, &st) != 0)
        return cannot(fn, dir, "inspect its ancestor", "/", errno);
    return check_ancestor(fn, dir, "/", &st);
}

/* The snapshot directory itself, the entry `name` of `cur` (`at`): opened into *fd, never
 * through a link, private to the running user, who may write into it and search it. It is opened
 * only to name it (DIR_ONLY) and checked through that descriptor, so that one the running user
 * may not read is refused for its owner or mode, not for the permission its open would lack. *fd
 * stays -1 when it is missing and not made. */
static int open_last(const char *fn, const char *dir, int cur, const char *at, const char *name,
                     int create, int *fd)
{
    const int flags = DIR_ONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    char why[128];
    struct stat st;
    int rc;
    *fd = openat(cur, name, flags);
    if (*fd < 0 && errno == ENOENT && create) {
        rc = make_dir(fn, dir, cur, name, dir);
        if (rc != AAPI_EOK)
            return rc;
        *fd = openat(cur, name, flags);
    }
    if (*fd < 0) {
        int err = errno;
        if (err == ENOENT && !create)
            return AAPI_EOK;
        if (err == ELOOP || err == ENOTDIR)
            return refuse_base(fn, dir, "it is a symbolic link or not a directory");
        if (check_searchable(fn, dir, cur, at, name, err) == AAPI_EOK)
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
    } else if (geteuid() != 0 && (st.st_mode & 0300) != 0300) {
        /* Root may write into and search any directory. */
        fail(AAPI_ESNAPSHOT,
             "%s: the snapshot directory %s is refused: the running user (uid %lu), its owner, "
             "lacks write or search permission on it (mode %04o); run chmod 700 %s, or set "
             "files.snapshot_dir to another directory of the running user that neither its "
             "group nor others may write into",
             fn, dir, (unsigned long)geteuid(), (unsigned)(st.st_mode & 07777), dir);
    } else {
        return AAPI_EOK;
    }
    close(*fd);
    *fd = -1;
    return AAPI_ESNAPSHOT;
}

/* Whether `p` holds a component that leads somewhere: neither empty nor ".". */
static int has_component(const char *p)
{
    for (;;) {
        size_t len;
        p += strspn(p, "/");
        if (*p == '\0')
            return 0;
        len = strcspn(p, "/");
        if (!(len == 1 && p[0] == '.'))
            return 1;
        p += len;
    }
}

/* The first component of `p` that leads somewhere, NUL-terminated in place; *rest is what
 * follows it. NULL when none is left. */
static char *next_component(char *p, char **rest)
{
    for (;;) {
        size_t len;
        p += strspn(p, "/");
        if (*p == '\0')
            return NULL;
        len = strcspn(p, "/");
        *rest = p + len;
        if (p[len] != '\0') {
            p[len] = '\0';
            (*rest)++;
        }
        if (!(len == 1 && p[0] == '.'))
            return p;
        p = *rest;
    }
}

/* The target of the symbolic link `name` of `cur` (st: its lstat), then "/" and `rest`,
 * allocated; NULL with errno set when it cannot be read (ENOENT for an empty target). */
static char *link_then(int cur, const char *name, const struct stat *st, const char *rest)
{
    size_t cap = (size_t)st->st_size + 1, rl = strlen(rest);
    for (;;) {
        char *buf = malloc(cap + 1 + rl + 1);
        ssize_t n;
        int err;
        if (buf == NULL)
            return NULL;
        n = readlinkat(cur, name, buf, cap);
        if (n > 0 && (size_t)n < cap) {
            buf[n] = '/';
            memcpy(buf + n + 1, rest, rl + 1);
            return buf;
        }
        err = n == 0 ? ENOENT : errno;
        free(buf);
        if (n <= 0) {
            errno = err;
            return NULL;
        }
        cap *= 2; /* the link grew since fstatat: try again with room to spare */
    }
}

/* `at` + "/" + `name`, or the parent of `at` for "..", allocated; NULL when out of memory. */
static char *walked(const char *at, const char *name)
{
    const char *slash;
    char *p;
    if (strcmp(name, "..") != 0)
        return path_join(at, name);
    slash = strrchr(at, '/');
    if (slash == NULL || slash == at)
        return strdup("/");
    p = malloc((size_t)(slash - at) + 1);
    if (p != NULL) {
        memcpy(p, at, (size_t)(slash - at));
        p[slash - at] = '\0';
    }
    return p;
}

/* SEC-2: the snapshot directory, opened into *fd, when no other user can rename or replace a
 * snapshot in it: it is a real directory (not a symbolic link: opened with
 * O_NOFOLLOW|O_DIRECTORY), owned by the running user and writable by neither its group nor
 * others, and every directory and link on the way to it passes check_ancestor(). One the running
 * user may not write into or search, or reach for an ancestor it may not search, is refused with
 * the fix. With create, missing directories on the way (the snapshot directory included) are made
 * 0700, each in its checked parent; without, *fd is -1 when one is missing. Snapshots are made,
 * looked up and removed through the descriptor returned, never by a path. */
static int private_base(const char *fn, const files_server *srv, int create, int *fd)
{
    const int step_flags = DIR_ONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    const char *dir = srv->cfg.snapshot_dir;
    char *todo = strdup(dir), *p = todo, *at = NULL;
    int cur = -1, links = 0, rc;
    *fd = -1;
    if (todo == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    /* "/" as the snapshot directory has no ancestor: it is its own entry ".". */
    rc = open_root(fn, dir, has_component(todo), &cur, &at);
    while (rc == AAPI_EOK) {
        char *rest = NULL, *name = next_component(p, &rest), *next, *joined;
        struct stat st;
        int sub;
        if (name == NULL || !has_component(rest)) {
            rc = open_last(fn, dir, cur, at, name != NULL ? name : ".", create, fd);
            break;
        }
        next = walked(at, name);
        if (next == NULL) {
            rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
            break;
        }
        sub = openat(cur, name, step_flags);
        if (sub < 0 && errno == ENOENT && create) {
            rc = make_dir(fn, dir, cur, name, next);
            if (rc == AAPI_EOK)
                sub = openat(cur, name, step_flags);
        }
        if (rc != AAPI_EOK) {
            /* the message is set */
        } else if (sub >= 0) {
            if (fstat(sub, &st) != 0)
                rc = cannot(fn, dir, "inspect its ancestor", next, errno);
            else
                rc = check_ancestor(fn, dir, next, &st);
            close(cur);
            cur = sub;
            free(at);
            at = next;
            next = NULL;
            p = rest;
        } else if (errno == ENOENT && !create) {
            free(next);
            break; /* missing: *fd stays -1 */
        } else if (errno != ENOTDIR && errno != ELOOP) {
            int err = errno;
            rc = check_searchable(fn, dir, cur, at, name, err);
            if (rc == AAPI_EOK)
                rc = cannot(fn, dir, "open its ancestor", next, err);
        } else if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = cannot(fn, dir, "open its ancestor", next, errno);
        } else if (!S_ISLNK(st.st_mode)) {
            rc = fail(AAPI_ESNAPSHOT,
                      "%s: cannot open the snapshot directory %s: %s is not a directory", fn, dir,
                      next);
        } else if (++links > SNAPDIR_MAX_LINKS) {
            rc = cannot(fn, dir, "open its ancestor", next, ELOOP);
        } else if ((rc = check_ancestor(fn, dir, next, &st)) != AAPI_EOK) {
            /* the message is set */
        } else if ((joined = link_then(cur, name, &st, rest)) == NULL) {
            rc = errno == ENOMEM ? fail(AAPI_ENOMEM, "%s: out of memory", fn)
                                 : cannot(fn, dir, "read the link", next, errno);
        } else {
            /* The target takes the link's place; an absolute one is walked from "/". */
            free(todo);
            todo = p = joined;
            if (joined[0] == '/')
                rc = open_root(fn, dir, 1, &cur, &at);
        }
        free(next);
    }
    if (cur >= 0)
        close(cur);
    free(at);
    free(todo);
    return rc;
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


/* AAPI_ESNAPSHOT when the copy of one of `items` in snapshot `id` would have a path too long for
 * the calls that make and read it by path, before anything is made. The reason and the fix come
 * before the paths, which may be long. */
static int check_lengths(const char *fn, const files_server *srv, const char *id,
                         const files_snap_item *items, size_t n)
{
    /* <root>/<path without its leading '/'>: the length of the root and of the path. */
    size_t root = strlen(srv->cfg.snapshot_dir) + 1 + strlen(id), longest = 0, i, at = 0;
    if (strcmp(srv->cfg.snapshot_dir, "/") == 0)
        root--;
    for (i = 0; i < n; i++) {
        size_t len = root + strlen(items[i].path);
        if (len > longest) {
            longest = len;
            at = i;
        }
    }
    if (longest <= FILES_PATH_MAX)
        return AAPI_EOK;
    return fail(AAPI_ESNAPSHOT,
                "%s: snapshot: a path in snapshot %s would be %zu bytes long, more than the %d "
                "bytes a path may have; set files.snapshot_dir to a shorter directory (it is %s; "
                "the longest path is the copy of %s)",
                fn, id, longest, FILES_PATH_MAX, srv->cfg.snapshot_dir, items[at].path);
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
    rc = check_lengths(fn, srv, id, items, n);
    if (rc != AAPI_EOK)
        return rc;
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
        /* DISC-5, TIME-4: no partial snapshot is left behind (removed through the checked
         * descriptor, whatever the length of its path); the first message is kept. */
        char saved[1024];
        size_t len = sizeof saved;
        (void)last_error_copy(saved, &len);
        (void)remove_tree_at(fn, base, id, root, NULL);
        (void)fail(rc, "%s", saved);
        if (rc != AAPI_ECANCELLED && rc != AAPI_ENOMEM)
            rc = AAPI_ESNAPSHOT;
    } else {
        log_msg(srv, AAPI_LOG_INFO, "%s: snapshot %s: %zu objects copied", FILES_PLUGIN_NAME, id,
                n);
    }
    close(base);
    free(root);
    return rc;
}

int snapshot_remove(const char *fn, const files_server *srv, const char *id, files_keepalive *ka,
                    int *removed)
{
    struct stat st;
    char *root;
    int rc, base;
    if (removed != NULL)
        *removed = 0;
    rc = private_base(fn, srv, 0, &base);
    if (rc != AAPI_EOK || base < 0)
        return rc; /* a missing snapshot directory holds no snapshot: success */
    root = path_join(srv->cfg.snapshot_dir, id);
    if (root == NULL) {
        close(base);
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    }
    if (fstatat(base, id, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        close(base);
        rc = err == ENOENT ? AAPI_EOK : fail_errno(err, "%s: cannot inspect %s", fn, root);
        free(root);
        return rc == AAPI_EOK || rc == AAPI_ENOMEM ? rc : AAPI_ESNAPSHOT;
    }
    if (removed != NULL)
        *removed = 1;
    /* Through the checked descriptor, whatever the length of the snapshot's path. */
    rc = remove_tree_at(fn, base, id, root, ka);
    close(base);
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
    int removed = 0, rc = require_claimed(fn);
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
        /* One made in another snapshot directory is not missing, only looked for in the wrong
         * place. */
        rc = snapshot_check_made_here(fn, srv, snapid->id);
        if (rc != AAPI_EOK)
            return rc;
        keepalive_start(&ka, srv);
        /* DISC-7: already gone is success. */
        rc = snapshot_remove(fn, srv, snapid->id, &ka, &removed);
        if (rc != AAPI_EOK)
            return rc;
        if (removed)
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
        rc = snapshot_check_made_here(fn, srv, snapname);
        if (rc != AAPI_EOK)
            return rc;
        /* A snapshot is read only from a private snapshot directory, where no other user can
         * have put something else in its place since discovery. */
        rc = private_base(fn, srv, 0, &base);
        if (rc != AAPI_EOK)
            return rc;
        root = path_join(srv->cfg.snapshot_dir, snapname);
        if (root == NULL) {
            if (base >= 0)
                close(base);
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
        }
        rc = base >= 0 && fstatat(base, snapname, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                     S_ISDIR(st.st_mode)
                 ? AAPI_EOK
                 : fail(AAPI_ESNAPSHOT, "%s: snapshot %s does not exist", fn, root);
        if (base >= 0)
            close(base);
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
