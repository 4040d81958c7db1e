/*
 * backup.c: objects opened for reading (aapi_open_object, aapi_read_object), object properties,
 * and aapi_close_object for both kinds of object (OBJ-1..OBJ-4, OBJ-7, OBJ-8).
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static aapi_time_t time_of(struct timespec ts)
{
    aapi_time_t t;
    t.sec = (int64_t)ts.tv_sec;
    t.nsec = (uint32_t)ts.tv_nsec;
    t.reserved = 0;
    return t;
}

void prop_from_stat(const struct stat *st, aapi_object_prop_t *prop)
{
    memset(prop, 0, sizeof *prop);
    prop->struct_size = sizeof *prop;
    prop->obj_type = S_ISDIR(st->st_mode) ? AAPI_OBJ_DIR
                     : S_ISLNK(st->st_mode) ? AAPI_OBJ_SYMLINK
                                            : AAPI_OBJ_FILE;
    /* OBJ-2: size is what reading to the end yields: no data for a directory. */
    prop->size = S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size;
    prop->mode = (uint32_t)(st->st_mode & 07777);
    prop->uid = (uint32_t)st->st_uid;
    prop->gid = (uint32_t)st->st_gid;
    prop->atime = time_of(st->st_atim);
    prop->mtime = time_of(st->st_mtim);
    prop->ctime = time_of(st->st_ctim);
    /* OBJ-7: every field carries a true value. */
    prop->valid = AAPI_PROP_SIZE | AAPI_PROP_MODE | AAPI_PROP_OWNER | AAPI_PROP_ATIME |
                  AAPI_PROP_MTIME | AAPI_PROP_CTIME;
}

void prop_copy_out(aapi_object_prop_t *dst, const aapi_object_prop_t *src)
{
    /* ABI-5: the ABI 1.0 fields only (the caller's struct_size is at least that big, checked
     * before), and the caller's struct_size is kept as it is. */
    uint32_t size = dst->struct_size;
    *dst = *src;
    dst->struct_size = size;
}

static int is_object_type(mode_t m) { return S_ISREG(m) || S_ISDIR(m) || S_ISLNK(m); }

static void object_free(files_object *obj)
{
    if (obj->fd >= 0)
        close(obj->fd);
    free(obj->link);
    free(obj->path);
    free(obj->tmp);
    buf_free(&obj->data);
    free(obj);
}

int backup_close(files_object *obj)
{
    object_free(obj); /* RES-1: the descriptor is closed with the handle */
    return AAPI_EOK;
}

static int read_link(const char *fn, files_object *obj, const struct stat *st)
{
    size_t cap = (size_t)st->st_size + 1;
    for (;;) {
        ssize_t n;
        obj->link = malloc(cap);
        if (obj->link == NULL)
            return fail(AAPI_ENOMEM, "%s: out of memory", fn);
        n = readlink(obj->path, obj->link, cap);
        if (n < 0)
            return fail_errno(errno, "%s: cannot read symlink %s", fn, obj->path);
        if ((size_t)n < cap) {
            obj->link_len = (size_t)n;
            return AAPI_EOK;
        }
        free(obj->link); /* changed since lstat: the end-of-data check will say so */
        obj->link = NULL;
        cap *= 2;
    }
}

/* A directory object opens only when the running user may list its contents (read and search
 * permission): otherwise discovery listed it without them, and it must not be recorded as
 * complete. AAPI_EACCES saying so, AAPI_ENOENT when it vanished. */
static int check_listable(const char *fn, const char *path)
{
    struct stat st;
    int rc = AAPI_EOK, fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    /* Looking up "." in it needs search permission, as listing its entries does. */
    if (fd < 0 || fstatat(fd, ".", &st, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        if (err == EACCES)
            rc = fail_errno(err, "%s: the contents of directory %s cannot be listed (not backed up)",
                            fn, path);
        else if (err == ENOENT || err == ENOTDIR)
            rc = fail(AAPI_ENOENT, "%s: %s does not exist (vanished since discovery?)", fn, path);
        else
            rc = fail_errno(err, "%s: cannot open %s", fn, path);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int aapi_open_object(aapi_server_t server, const char *path, uint32_t flags,
                     aapi_object_t *object)
{
    static const char fn[] = "aapi_open_object";
    files_server *srv;
    files_object *obj;
    struct stat st;
    int rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (path == NULL || object == NULL)
        return fail(AAPI_EINVAL, "%s: path and object must not be NULL", fn);
    rc = server_lookup(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    if (srv->op != AAPI_OP_BACKUP) /* LIFE-4 */
        return fail(AAPI_ESEQUENCE, "%s is legal only in a backup session", fn);
    if (flags != AAPI_OPEN_READ)
        return fail(AAPI_EINVAL, "%s: flags 0x%x: AAPI_OPEN_READ is required and the only flag",
                    fn, (unsigned)flags);
    rc = check_object_path(fn, "path", path);
    if (rc != AAPI_EOK)
        return rc;
    /* The final component is never followed: a symlink is an object of its own. */
    if (lstat(path, &st) != 0)
        return errno == ENOENT || errno == ENOTDIR
                   ? fail(AAPI_ENOENT, "%s: %s does not exist (vanished since discovery?)", fn,
                          path)
                   : fail_errno(errno, "%s: cannot inspect %s", fn, path);
    if (!is_object_type(st.st_mode))
        return fail(AAPI_ENOTSUP, "%s: %s is not a file, directory or symlink", fn, path);

    obj = calloc(1, sizeof *obj);
    if (obj == NULL)
        return fail(AAPI_ENOMEM, "%s: out of memory", fn);
    obj->fd = -1;
    obj->server = srv;
    obj->mode = OBJ_READ;
    obj->state = READ_DATA;
    obj->path = strdup(path);
    if (obj->path == NULL) {
        rc = fail(AAPI_ENOMEM, "%s: out of memory", fn);
    } else if (S_ISREG(st.st_mode)) {
        obj->type = AAPI_OBJ_FILE;
        obj->fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (obj->fd < 0)
            rc = errno == ENOENT ? fail(AAPI_ENOENT, "%s: %s vanished", fn, path)
                                 : fail_errno(errno, "%s: cannot open %s", fn, path);
        else if (fstat(obj->fd, &obj->at_open) != 0)
            rc = fail_errno(errno, "%s: cannot inspect %s", fn, path);
        else if (!S_ISREG(obj->at_open.st_mode))
            rc = fail(AAPI_EIO, "%s: %s was replaced by another type of object while opened", fn,
                      path);
    } else if (S_ISLNK(st.st_mode)) {
        obj->type = AAPI_OBJ_SYMLINK;
        obj->at_open = st;
        rc = read_link(fn, obj, &st);
    } else {
        obj->type = AAPI_OBJ_DIR;
        obj->at_open = st;
        rc = check_listable(fn, path);
    }
    if (rc == AAPI_EOK)
        rc = object_register(obj);
    if (rc != AAPI_EOK) {
        object_free(obj); /* RC-11: no handle issued */
        return rc;
    }
    *object = obj->handle;
    return AAPI_EOK;
}

static int same_times(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* OBJ-4: at the end of the data, the object must still be what it was at open, and the bytes
 * read must be its size; otherwise the copy may be torn and the end is reported as a change. */
static int end_of_data(const char *fn, files_object *obj, size_t *bytes_read)
{
    struct stat now;
    int ok;
    if (obj->type == AAPI_OBJ_FILE)
        ok = fstat(obj->fd, &now) == 0;
    else
        ok = lstat(obj->path, &now) == 0 && S_ISLNK(now.st_mode);
    ok = ok && now.st_size == obj->at_open.st_size &&
         same_times(now.st_mtim, obj->at_open.st_mtim) &&
         same_times(now.st_ctim, obj->at_open.st_ctim) &&
         obj->bytes_read == (uint64_t)obj->at_open.st_size;
    if (!ok) {
        obj->state = READ_CHANGED;
        return fail(AAPI_ECHANGED, "%s: %s changed while it was read (size, mtime or ctime)", fn,
                    obj->path);
    }
    obj->state = READ_END;
    *bytes_read = 0;
    return AAPI_EOK;
}

static int read_some(const char *fn, files_object *obj, void *buf, size_t buf_size,
                     size_t *bytes_read)
{
    ssize_t n;
    if (obj->state == READ_END) { /* OBJ-1: every read after the end gives 0 bytes */
        *bytes_read = 0;
        return AAPI_EOK;
    }
    if (obj->state == READ_CHANGED)
        return fail(AAPI_ECHANGED, "%s: %s changed while it was read", fn, obj->path);
    switch (obj->type) {
    case AAPI_OBJ_DIR: /* OBJ-3: a directory has no data */
        obj->state = READ_END;
        *bytes_read = 0;
        return AAPI_EOK;
    case AAPI_OBJ_SYMLINK: /* OBJ-3: a symlink's data is its target */
        if (obj->bytes_read < obj->link_len) {
            size_t left = obj->link_len - (size_t)obj->bytes_read;
            size_t n2 = left < buf_size ? left : buf_size;
            memcpy(buf, obj->link + obj->bytes_read, n2);
            obj->bytes_read += n2;
            *bytes_read = n2;
            return AAPI_EOK;
        }
        return end_of_data(fn, obj, bytes_read);
    default:
        do
            n = read(obj->fd, buf, buf_size); /* never more than buf_size bytes (MEM-4) */
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return fail_errno(errno, "%s: cannot read %s", fn, obj->path) == AAPI_ENOMEM
                       ? AAPI_ENOMEM
                       : AAPI_EIO;
        if (n == 0)
            return end_of_data(fn, obj, bytes_read);
        obj->bytes_read += (uint64_t)n;
        if (obj->bytes_read > (uint64_t)obj->at_open.st_size) {
            /* The file grew: it cannot match its size at open any more (OBJ-4). */
            obj->state = READ_CHANGED;
            return fail(AAPI_ECHANGED, "%s: %s grew while it was read", fn, obj->path);
        }
        *bytes_read = (size_t)n;
        return AAPI_EOK;
    }
}

int aapi_read_object(aapi_object_t object, void *buf, size_t buf_size, size_t *bytes_read)
{
    static const char fn[] = "aapi_read_object";
    files_object *obj;
    int rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (buf == NULL || bytes_read == NULL)
        return fail(AAPI_EINVAL, "%s: buf and bytes_read must not be NULL", fn);
    rc = object_acquire(fn, object, &obj);
    if (rc != AAPI_EOK)
        return rc;
    if (obj->mode != OBJ_READ) /* LIFE-5 */
        rc = fail(AAPI_ESEQUENCE, "%s: %s was created for writing, not opened for reading", fn,
                  obj->path);
    else if (buf_size == 0) /* OBJ-1 */
        rc = fail(AAPI_EINVAL, "%s: buf_size is 0", fn);
    else
        rc = read_some(fn, obj, buf, buf_size, bytes_read);
    object_release(obj);
    return rc;
}

int aapi_get_object_prop(aapi_object_t object, aapi_object_prop_t *prop)
{
    static const char fn[] = "aapi_get_object_prop";
    files_object *obj;
    aapi_object_prop_t p;
    int rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (prop == NULL)
        return fail(AAPI_EINVAL, "%s: prop must not be NULL", fn);
    rc = object_acquire(fn, object, &obj);
    if (rc != AAPI_EOK)
        return rc;
    if (prop->struct_size < sizeof(aapi_object_prop_t)) { /* ABI-4 */
        rc = fail(AAPI_EABI, "%s: prop->struct_size %u is smaller than the ABI 1.0 size %u", fn,
                  (unsigned)prop->struct_size, (unsigned)sizeof(aapi_object_prop_t));
    } else if (obj->mode == OBJ_WRITE) {
        /* A created object reports the properties it was created with (those create was
         * given as valid, OBJ-7). */
        const aapi_object_prop_t *c = &obj->prop;
        memset(&p, 0, sizeof p);
        p.obj_type = obj->type;
        p.valid = c->valid & (AAPI_PROP_SIZE | AAPI_PROP_MODE | AAPI_PROP_OWNER |
                              AAPI_PROP_ATIME | AAPI_PROP_MTIME | AAPI_PROP_CTIME);
        if (p.valid & AAPI_PROP_SIZE)
            p.size = c->size;
        if (p.valid & AAPI_PROP_MODE)
            p.mode = c->mode & 07777;
        if (p.valid & AAPI_PROP_OWNER) {
            p.uid = c->uid;
            p.gid = c->gid;
        }
        if (p.valid & AAPI_PROP_ATIME)
            p.atime = c->atime;
        if (p.valid & AAPI_PROP_MTIME)
            p.mtime = c->mtime;
        if (p.valid & AAPI_PROP_CTIME)
            p.ctime = c->ctime;
        prop_copy_out(prop, &p);
    } else {
        /* OBJ-7: true values as of the open, the state the data read must match (OBJ-4). */
        prop_from_stat(&obj->at_open, &p);
        prop_copy_out(prop, &p);
    }
    object_release(obj);
    return rc;
}

int aapi_get_object_prop_byname(aapi_server_t server, const char *path, aapi_object_prop_t *prop)
{
    static const char fn[] = "aapi_get_object_prop_byname";
    files_server *srv;
    aapi_object_prop_t p;
    struct stat st;
    int restoring, rc = require_claimed(fn);
    if (rc != AAPI_EOK)
        return rc;
    if (path == NULL || prop == NULL)
        return fail(AAPI_EINVAL, "%s: path and prop must not be NULL", fn);
    rc = server_lookup(fn, server, &srv);
    if (rc != AAPI_EOK)
        return rc;
    state_lock();
    restoring = srv->preprocess_done && !srv->restore_done;
    state_unlock();
    /* LIFE-4: backup sessions, and restore sessions between pre- and postprocess. */
    if (srv->op != AAPI_OP_BACKUP && !(srv->op == AAPI_OP_RESTORE && restoring))
        return fail(AAPI_ESEQUENCE, "%s is legal in a backup session, or in a restore session "
                                    "between restore_preprocess and restore_postprocess",
                    fn);
    if (prop->struct_size < sizeof(aapi_object_prop_t))
        return fail(AAPI_EABI, "%s: prop->struct_size %u is smaller than the ABI 1.0 size %u", fn,
                    (unsigned)prop->struct_size, (unsigned)sizeof(aapi_object_prop_t));
    if (srv->op == AAPI_OP_RESTORE) {
        /* RST-11: reached as the restore's other calls reach it. */
        rc = restore_stat(fn, srv, path, &st);
        if (rc != AAPI_EOK)
            return rc;
    } else {
        rc = check_object_path(fn, "path", path);
        if (rc != AAPI_EOK)
            return rc;
        if (lstat(path, &st) != 0) /* RC-7 */
            return errno == ENOENT || errno == ENOTDIR
                       ? fail(AAPI_ENOENT, "%s: %s does not exist", fn, path)
                       : fail_errno(errno, "%s: cannot inspect %s", fn, path);
    }
    if (!is_object_type(st.st_mode))
        return fail(AAPI_ENOTSUP, "%s: %s is not a file, directory or symlink", fn, path);
    prop_from_stat(&st, &p);
    prop_copy_out(prop, &p);
    return AAPI_EOK;
}

int aapi_close_object(aapi_object_t object)
{
    static const char fn[] = "aapi_close_object";
    files_object *obj;
    int rc = require_claimed(fn);
    /* OBJ-8: the handle leaves the table first, so it is invalid whatever happens next. */
    if (rc == AAPI_EOK)
        rc = object_unregister(fn, object, &obj);
    if (rc != AAPI_EOK)
        return rc;
    if (obj->mode == OBJ_READ)
        return backup_close(obj);
    return restore_close(fn, obj, 1);
}
