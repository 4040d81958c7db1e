/*
 * util.c: the per-thread last-error message, logging, keepalive pacing, errno mapping and the
 * path and buffer helpers the other files share.
 */
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Last error (RC-9, RC-10)                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* One message per thread: aapi_get_last_error reports the last failing call of the calling
 * thread, and concurrent object calls (THR-1) must not overwrite each other's message. Thread-local
 * storage needs no allocation, so nothing leaks when a framework thread exits. */
static __thread char t_last_error[1024];

/* The message `fmt` makes. One too long for its buffer keeps its start and its end (where the
 * reason is) and loses the middle, marked "...", each cut at a character boundary. */
static void set_last_error(const char *fmt, va_list ap)
{
    const size_t size = sizeof t_last_error;
    size_t head, tail;
    char *whole;
    va_list again;
    int n;
    va_copy(again, ap);
    n = vsnprintf(t_last_error, size, fmt, ap);
    if (n < 0 || (size_t)n < size || (whole = malloc((size_t)n + 1)) == NULL) {
        va_end(again);
        return; /* whole, or cut at its end when memory is short */
    }
    vsnprintf(whole, (size_t)n + 1, fmt, again);
    va_end(again);
    head = (size - 1 - 3) / 2;
    while (head > 0 && ((unsigned char)whole[head] & 0xC0) == 0x80)
        head--;
    tail = (size_t)n - (size - 1 - 3 - head);
    while (whole[tail] != '\0' && ((unsigned char)whole[tail] & 0xC0) == 0x80)
        tail++;
    memcpy(t_last_error, whole, head);
    memcpy(t_last_error + head, "...", 3);
    memcpy(t_last_error + head + 3, whole + tail, (size_t)n - tail + 1);
    free(whole);
}

int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_last_error(fmt, ap);
    va_end(ap);
    return code;
}

int fail_errno(int err, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    size_t len, room;
    /* strerror_r, not strerror: object calls run on several threads at once. */
    if (strerror_r(err, reason, sizeof reason) != 0)
        snprintf(reason, sizeof reason, "errno %d", err);
    va_start(ap, fmt);
    set_last_error(fmt, ap);
    va_end(ap);
    len = strlen(t_last_error);
    /* The reason is kept whole: a text too long for the message is cut before it instead, at a
     * character boundary, and marked "...". */
    room = sizeof t_last_error - 1 - 2 - strlen(reason);
    if (len > room) {
        len = room - 3;
        while (len > 0 && ((unsigned char)t_last_error[len] & 0xC0) == 0x80)
            len--;
        memcpy(t_last_error + len, "...", 3);
        len += 3;
    }
    snprintf(t_last_error + len, sizeof t_last_error - len, ": %s", reason);
    return code_from_errno(err);
}

int last_error_copy(char *buf, size_t *buf_size)
{
    size_t need;
    /* The message itself is kept: this call reports failures, it never records its own. */
    if (buf_size == NULL)
        return AAPI_EINVAL;
    if (buf == NULL && *buf_size != 0)
        return AAPI_EINVAL; /* a NULL buffer is allowed only as a size query (size 0) */
    need = strlen(t_last_error) + 1;
    if (*buf_size < need || buf == NULL) {
        *buf_size = need; /* RC-6: only the size, never a byte of the buffer */
        return AAPI_EBUFSIZE;
    }
    memcpy(buf, t_last_error, need);
    *buf_size = need;
    return AAPI_EOK;
}

int code_from_errno(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return AAPI_ENOENT;
    case EACCES:
    case EPERM:
    case EROFS:
        return AAPI_EACCES;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return AAPI_ENOSPC;
    case ENOMEM:
        return AAPI_ENOMEM;
    case EEXIST:
        return AAPI_EEXIST;
    case ENAMETOOLONG: /* a name or path longer than the file system takes: the caller's */
        return AAPI_EINVAL;
    case EOPNOTSUPP:
#if ENOTSUP != EOPNOTSUPP
    case ENOTSUP:
#endif
        return AAPI_ENOTSUP;
    default:
        return AAPI_EIO;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Logging (SEC-3): through the framework, never to our own files or stdout/stderr             */
/* ------------------------------------------------------------------------------------------ */

void log_msg(const files_server *srv, uint32_t level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (srv != NULL)
        srv->session->sd_log_callback(srv->session->sd_callback_ctx, level, line);
    else
        state_host_log(level, line);
}

/* ------------------------------------------------------------------------------------------ */
/* Keepalive (TIME-2, TIME-4)                                                                   */
/* ------------------------------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A keepalive goes out whenever min(1 s, budget / 4) has passed since the last one (or since the
 * call began), so the framework hears from a long call well within its budget (TIME-1). */
void keepalive_start(files_keepalive *ka, const files_server *srv)
{
    uint64_t quarter = srv->session->sd_call_budget_ms / 4u;
    ka->srv = srv;
    ka->last_ms = now_ms();
    ka->interval_ms = quarter < 1000u ? quarter : 1000u;
}

int keepalive_tick(files_keepalive *ka, const char *fn)
{
    uint64_t now;
    int rc;
    if (ka == NULL)
        return AAPI_EOK;
    now = now_ms();
    if (now - ka->last_ms < ka->interval_ms)
        return AAPI_EOK;
    ka->last_ms = now;
    rc = ka->srv->session->sd_keepalive_callback(ka->srv->session->sd_callback_ctx);
    if (rc != AAPI_EOK)
        return fail(AAPI_ECANCELLED, "%s: the job was cancelled (keepalive answered %s)", fn,
                    aapi_code_name(rc));
    return AAPI_EOK;
}

/* ------------------------------------------------------------------------------------------ */
/* Buffers                                                                                      */
/* ------------------------------------------------------------------------------------------ */

void *grow_array(void *v, size_t *cap, size_t need, size_t size, size_t first)
{
    size_t ncap = *cap ? *cap : first ? first : 1;
    if (need <= *cap)
        return v;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return NULL;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / size)
        return NULL;
    v = realloc(v, ncap * size);
    if (v != NULL)
        *cap = ncap;
    return v;
}

int buf_append(files_buf *b, const void *data, size_t n)
{
    char *np = grow_array(b->p, &b->cap, b->len + n + 1, 1, 64);
    if (np == NULL)
        return AAPI_ENOMEM;
    b->p = np;
    if (n > 0)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return AAPI_EOK;
}

int buf_append_str(files_buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_append_u32(files_buf *b, uint32_t v)
{
    unsigned char le[4];
    int i;
    for (i = 0; i < 4; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    return buf_append(b, le, sizeof le);
}

int buf_append_u64(files_buf *b, uint64_t v)
{
    unsigned char le[8];
    int i;
    for (i = 0; i < 8; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    return buf_append(b, le, sizeof le);
}

void buf_free(files_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int strvec_push(files_strvec *sv, const char *s)
{
    char *copy, **nv = grow_array(sv->v, &sv->cap, sv->n + 1, sizeof *nv, 16);
    if (nv == NULL)
        return AAPI_ENOMEM;
    sv->v = nv;
    copy = strdup(s);
    if (copy == NULL)
        return AAPI_ENOMEM;
    sv->v[sv->n++] = copy;
    return AAPI_EOK;
}

void strvec_free(files_strvec *sv)
{
    size_t i;
    for (i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    sv->v = NULL;
    sv->n = sv->cap = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Paths                                                                                        */
/* ------------------------------------------------------------------------------------------ */

int path_is_absolute(const char *p) { return p[0] == '/'; }

int check_object_path(const char *fn, const char *what, const char *path)
{
    const char *p = path;
    if (!path_is_absolute(path))
        return fail(AAPI_EINVAL, "%s: %s \"%s\" is not an absolute path", fn, what, path);
    while (*p != '\0') {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return fail(AAPI_EINVAL, "%s: %s \"%s\" contains a \"..\" component", fn, what,
                        path);
        p += len;
        p += strspn(p, "/");
    }
    return AAPI_EOK;
}

char *path_join(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    int slash = !(dl > 0 && dir[dl - 1] == '/');
    char *p = malloc(dl + (size_t)slash + nl + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + (size_t)slash, name, nl + 1);
    return p;
}

char *path_normalize(const char *p, int *has_dotdot)
{
    size_t n = strlen(p), i = 0, o = 0;
    char *out = malloc(n + 2);
    if (out == NULL)
        return NULL;
    *has_dotdot = 0;
    if (p[0] == '/')
        out[o++] = '/';
    while (i < n) {
        size_t start, len;
        while (i < n && p[i] == '/')
            i++;
        start = i;
        while (i < n && p[i] != '/')
            i++;
        len = i - start;
        if (len == 0 || (len == 1 && p[start] == '.'))
            continue;
        if (len == 2 && p[start] == '.' && p[start + 1] == '.')
            *has_dotdot = 1;
        if (o > 0 && out[o - 1] != '/')
            out[o++] = '/';
        memcpy(out + o, p + start, len);
        o += len;
    }
    out[o] = '\0';
    return out;
}

int path_split(const char *p, char **dir, char **name)
{
    const char *slash = strrchr(p, '/');
    size_t dl;
    if (slash == NULL)
        return AAPI_EINVAL;
    dl = slash == p ? 1 : (size_t)(slash - p);
    *dir = malloc(dl + 1);
    *name = strdup(slash + 1);
    if (*dir == NULL || *name == NULL) {
        free(*dir);
        free(*name);
        *dir = *name = NULL; /* the caller may free them */
        return AAPI_ENOMEM;
    }
    memcpy(*dir, p, dl);
    (*dir)[dl] = '\0';
    return AAPI_EOK;
}

int mkdirs(const char *fn, const char *dir, files_strvec *made)
{
    char *p = strdup(dir);
    size_t i, n;
    int rc = AAPI_EOK;
    if (p == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    n = strlen(p);
    for (i = 1; i <= n && rc == AAPI_EOK; i++) {
        struct stat st;
        char saved;
        if (i < n && p[i] != '/')
            continue;
        saved = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) == 0) {
            if (made != NULL && strvec_push(made, p) != AAPI_EOK)
                rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
        } else if (errno != EEXIST) {
            rc = fail_errno(errno, "%s: cannot create directory %s", fn, p);
        } else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = fail(AAPI_EEXIST, "%s: %s exists and is not a directory", fn, p);
        }
        p[i] = saved;
    }
    free(p);
    return rc;
}

int chmod_at(int dirfd, const char *name, mode_t mode)
{
    struct stat st;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        int rc = fchmod(fd, mode), err = errno;
        close(fd);
        errno = err;
        return rc;
    }
    if (errno != EACCES)
        return -1;
    /* Not readable by the caller: the C library changes the mode without following a link where
     * it can. */
    if (fchmodat(dirfd, name, mode, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOTSUP)
        return -1;
    /* The C library cannot change a mode without following a link: check there is none. */
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -1;
    if (S_ISLNK(st.st_mode)) {
        errno = ELOOP;
        return -1;
    }
    return fchmodat(dirfd, name, mode, 0);
}

int read_dir_names(const char *fn, DIR *d, const char *path, files_strvec *names)
{
    struct dirent *e;
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strvec_push(names, e->d_name) != AAPI_EOK)
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    }
    if (errno != 0)
        return fail_errno(errno, "%s: cannot read directory %s", fn, path);
    return AAPI_EOK;
}

/* The names in the directory `fd` (opened for reading), "." and ".." aside, into `names`. The
 * stream reads through a duplicate it closes: `fd` stays open for the calls on the entries.
 * AAPI_EOK, or a code with the message set. */
static int read_names(const char *fn, int fd, const char *path, files_strvec *names)
{
    int rc, dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
    if (d == NULL) {
        rc = fail_errno(errno, "%s: cannot open directory %s", fn, path);
        if (dup >= 0)
            close(dup);
        return rc;
    }
    rc = read_dir_names(fn, d, path, names);
    closedir(d);
    return rc;
}

/* Directory levels remove_tree_at holds open at most, whatever the depth of the tree: deeper down,
 * the outer ones are closed and, once their child is empty, reopened through the child's "..",
 * which must be the very directory (device and inode) left there. */
#define REMOVE_OPEN_LEVELS 64

/* One directory being emptied by remove_tree_at. */
typedef struct rm_level {
    char *name;         /* its name in its parent */
    char *path;         /* its path, for messages */
    dev_t dev;          /* device and inode, to know it again through ".." */
    ino_t ino;
    int fd;             /* open for reading; -1 while closed to bound the open descriptors */
    files_strvec names; /* its entries */
    size_t next;        /* the next entry to remove */
} rm_level;

static void rm_level_free(rm_level *lv)
{
    if (lv->fd >= 0)
        close(lv->fd);
    lv->fd = -1;
    free(lv->name);
    free(lv->path);
    strvec_free(&lv->names);
}

/* Start the removal of the entry `name` of `dirfd`: anything but a directory is removed at once
 * (*entered = 0, as for a missing entry); a directory is opened up (u+rwx), opened and listed into
 * *lv (*entered = 1). AAPI_EOK, or a code with the message set. */
static int rm_enter(const char *fn, int dirfd, const char *name, const char *path, rm_level *lv,
                    int *entered)
{
    struct stat st;
    int rc;
    *entered = 0;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? AAPI_EOK : fail_errno(errno, "%s: cannot inspect %s", fn, path);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT)
            return fail_errno(errno, "%s: cannot remove %s", fn, path);
        return AAPI_EOK;
    }
    /* A copied directory may be read-only: make it ours to empty. */
    if ((st.st_mode & 0700) != 0700)
        (void)chmod_at(dirfd, name, (st.st_mode & 07777) | 0700);
    memset(lv, 0, sizeof *lv);
    lv->fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (lv->fd < 0)
        return fail_errno(errno, "%s: cannot open directory %s", fn, path);
    lv->name = strdup(name);
    lv->path = strdup(path);
    if (lv->name == NULL || lv->path == NULL)
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
    else if (fstat(lv->fd, &st) != 0)
        rc = fail_errno(errno, "%s: cannot inspect %s", fn, path);
    else
        rc = read_names(fn, lv->fd, path, &lv->names);
    if (rc != AAPI_EOK) {
        rm_level_free(lv);
        return rc;
    }
    lv->dev = st.st_dev;
    lv->ino = st.st_ino;
    *entered = 1;
    return AAPI_EOK;
}

/* Reopen `up`, closed meanwhile, as the ".." of its open child `lv`: it must still be the same
 * directory, or the tree was moved during the removal and it stops. */
static int rm_reopen(const char *fn, const rm_level *lv, rm_level *up)
{
    struct stat st;
    int fd = openat(lv->fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fail_errno(errno, "%s: cannot reopen directory %s", fn, up->path);
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return fail_errno(err, "%s: cannot inspect %s", fn, up->path);
    }
    if (st.st_dev != up->dev || st.st_ino != up->ino) {
        close(fd);
        return fail(AAPI_EIO, "%s: cannot remove %s: %s was moved out of it during the removal",
                    fn, up->path, lv->path);
    }
    up->fd = fd;
    return AAPI_EOK;
}

int remove_tree_at(const char *fn, int dirfd, const char *name, const char *path,
                   files_keepalive *ka)
{
    size_t n = 0, cap = 0;
    int rc, entered;
    rm_level *stack = grow_array(NULL, &cap, 1, sizeof *stack, 16);
    if (stack == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    rc = rm_enter(fn, dirfd, name, path, &stack[0], &entered);
    if (rc == AAPI_EOK && entered)
        n = 1;
    while (n > 0 && rc == AAPI_EOK) {
        rm_level *top = &stack[n - 1], *nv;
        int parent = dirfd;
        if (top->next < top->names.n) {
            char *child;
            rc = keepalive_tick(ka, fn);
            if (rc != AAPI_EOK)
                break;
            nv = grow_array(stack, &cap, n + 1, sizeof *stack, 16);
            if (nv == NULL) {
                rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
                break;
            }
            stack = nv;
            top = &stack[n - 1];
            child = path_join(top->path, top->names.v[top->next]);
            if (child == NULL) {
                rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
                break;
            }
            rc = rm_enter(fn, top->fd, top->names.v[top->next], child, &stack[n], &entered);
            free(child);
            top->next++;
            if (rc == AAPI_EOK && entered && ++n > REMOVE_OPEN_LEVELS) {
                rm_level *outer = &stack[n - 1 - REMOVE_OPEN_LEVELS];
                if (outer->fd >= 0) {
                    close(outer->fd);
                    outer->fd = -1;
                }
            }
            continue;
        }
        /* Emptied: remove it from its parent, reopening that one first when it was closed. */
        if (n >= 2) {
            rm_level *up = &stack[n - 2];
            if (up->fd < 0 && (rc = rm_reopen(fn, top, up)) != AAPI_EOK)
                break;
            parent = up->fd;
        }
        close(top->fd);
        top->fd = -1;
        if (unlinkat(parent, top->name, AT_REMOVEDIR) != 0 && errno != ENOENT)
            rc = fail_errno(errno, "%s: cannot remove directory %s", fn, top->path);
        rm_level_free(top);
        n--;
    }
    while (n > 0)
        rm_level_free(&stack[--n]);
    free(stack);
    return rc;
}

int remove_tree(const char *fn, const char *path, files_keepalive *ka)
{
    char *dir = NULL, *name = NULL;
    int fd, rc = path_split(path, &dir, &name);
    if (rc != AAPI_EOK)
        return fail(rc, "%s: cannot remove %s", fn, path);
    fd = open(dir, DIR_ONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        rc = errno == ENOENT ? AAPI_EOK : fail_errno(errno, "%s: cannot inspect %s", fn, path);
    else
        rc = remove_tree_at(fn, fd, name, path, ka);
    if (fd >= 0)
        close(fd);
    free(dir);
    free(name);
    return rc;
}

int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int parse_decimal(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        unsigned d;
        if (*s < '0' || *s > '9')
            return -1;
        d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        uint32_t cp;
        int n, i;
        if (*p < 0x80) {
            p++;
            continue;
        }
        if ((*p & 0xE0) == 0xC0) {
            n = 1;
            cp = *p & 0x1Fu;
        } else if ((*p & 0xF0) == 0xE0) {
            n = 2;
            cp = *p & 0x0Fu;
        } else if ((*p & 0xF8) == 0xF0) {
            n = 3;
            cp = *p & 0x07u;
        } else {
            return 0;
        }
        for (i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3Fu);
        }
        /* No overlong forms, no surrogates, nothing past U+10FFFF. */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
        p += n + 1;
    }
    return 1;
}
