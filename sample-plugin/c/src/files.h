/*
 * files.h: internal declarations of the `files` sample plugin in C.
 *
 * The plugin is split by concern:
 *   lifecycle.c  init, claim, server sessions, terminate, last error      (LIFE, ABI, RC-9)
 *   handles.c    64-bit handle tables behind one mutex                     (RC-4, THR-1, THR-2)
 *   discovery.c  walk, incremental selection, split across backup hosts   (DISC-1..9)
 *   snapshot.c   copy/reflink snapshots, snapshot paths, postprocess      (DISC-5..7)
 *   backup.c     open, read, properties of objects                        (OBJ-1..4, OBJ-7)
 *   restore.c    pre/postprocess, create, write, flush, utimes, delete    (RST-1..7, OBJ-5, OBJ-6)
 *   workload.c   the workload file writer with its CRC-32                 (DISC-3, DISC-4)
 *   util.c       last-error message, logging, keepalive, paths, errno     (RC-10, TIME-2, TIME-4)
 *
 * Every .c file includes this header first: the feature macro below must precede all system
 * headers so that the POSIX.1-2008 functions (openat, utimensat, strdup...) are declared under
 * -std=c99.
 */
#ifndef FILES_H
#define FILES_H

#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "aapi.h"

/* The longest path the system calls take (PATH_MAX less its NUL): objects are read by path. */
#define FILES_PATH_MAX (PATH_MAX - 1)

/* A descriptor that only names a directory, for the *at calls (no read permission needed):
 * O_SEARCH where the C library names it, glibc's O_PATH (which <fcntl.h> names O_PATH only under
 * _GNU_SOURCE), else O_RDONLY. */
#if defined(O_SEARCH)
#define DIR_ONLY O_SEARCH
#elif defined(__O_PATH)
#define DIR_ONLY __O_PATH
#else
#define DIR_ONLY O_RDONLY
#endif

/* Identity (LOAD-5): static strings, valid for the life of the process (MEM-2). */
#define FILES_PLUGIN_NAME "files-c"
#define FILES_PLUGIN_VERSION "0.1.0"
#define FILES_PLUGIN_VENDOR "aapi project"
#define FILES_WORKLOAD_TYPE "files"
#define FILES_MAX_CONCURRENT 8
#define FILES_NAME_MAX 255 /* the longest name of a directory entry (NAME_MAX of Linux) */

/* ------------------------------------------------------------------------------------------ */
/* Small growable containers                                                                   */
/* ------------------------------------------------------------------------------------------ */

/** The array `v` of `*cap` elements of `size` bytes with room for `need` (> 0) of them: `v` itself
 *  when it has it, else `v` reallocated with its capacity (when 0: `first`, or 1 when `first` is
 *  0) doubled until it does, and `*cap` updated. NULL when out of memory; `v` and `*cap` are then
 *  unchanged. */
void *grow_array(void *v, size_t *cap, size_t need, size_t size, size_t first);

/** A growable byte buffer; `p` is always NUL-terminated when not NULL. */
typedef struct files_buf {
    char *p;
    size_t len;
    size_t cap;
} files_buf;

/** Append `n` bytes; returns AAPI_EOK or AAPI_ENOMEM. */
int buf_append(files_buf *b, const void *data, size_t n);
/** Append a NUL-terminated string. */
int buf_append_str(files_buf *b, const char *s);
/** Append a little-endian integer of 4 or 8 bytes. */
int buf_append_u32(files_buf *b, uint32_t v);
int buf_append_u64(files_buf *b, uint64_t v);
void buf_free(files_buf *b);

/** A growable array of owned strings. */
typedef struct files_strvec {
    char **v;
    size_t n;
    size_t cap;
} files_strvec;

/** Push a copy of `s`; returns AAPI_EOK or AAPI_ENOMEM. */
int strvec_push(files_strvec *sv, const char *s);
void strvec_free(files_strvec *sv);

/* ------------------------------------------------------------------------------------------ */
/* Configuration and state                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef enum files_snap_mode { SNAP_NONE, SNAP_COPY, SNAP_REFLINK } files_snap_mode;

/** The session properties of sample-plugin/README.md, parsed at aapi_open_server. */
typedef struct files_config {
    files_snap_mode snapshot;
    char *snapshot_dir;      /* absolute, without a trailing '/' (except for "/") */
    int reflink_fallback_copy;
    uint64_t min_free_bytes;
    int has_last_backup;
    int64_t last_backup_time;
    int has_last_full;
    int64_t last_full_time;
} files_config;

/** An object renamed aside under AAPI_CREATE_OVERWRITE, until restore_postprocess decides. */
typedef struct files_aside {
    char *path;
    char *aside;
    int own; /* an object this restore created: a failed restore removes it, not puts it back */
} files_aside;

/** A restored directory whose mode denies its owner write access (non-root restores). */
typedef struct files_dirmode {
    char *path;
    mode_t mode;
    int opened; /* given u+rwx for contents restored later; mode comes back at postprocess */
} files_dirmode;

/** What a restore did to a directory it changed or changed an entry of. */
typedef enum files_dir_kind {
    DIR_MADE = 1, /* made by this restore: a rollback removes it, nothing to put back */
    DIR_BEFORE,   /* existed before: a rollback puts back its owner, mode and times */
    DIR_DELETED   /* existed before, and aapi_delete_object removed an entry: its times stay,
                   * its owner and mode are put back */
} files_dir_kind;

/** What a directory that existed had before the restore's first change, and which directory it
 * is (device and inode). */
typedef struct files_saved {
    struct timespec atime, mtime;
    mode_t mode; /* permission bits (07777) */
    uid_t uid;
    gid_t gid;
    dev_t dev;
    ino_t ino;
} files_saved;

/** One slot of the table of changed directories (open addressing; `path` NULL when free). */
typedef struct files_dirstate {
    char *path;
    files_dir_kind kind;
    files_saved saved; /* DIR_BEFORE, DIR_DELETED */
} files_dirstate;

/** One slot of the table of recorded directories by device and inode (open addressing; `used`
 * 0 when free): a directory reached by two paths (through a link, at the original location) is
 * recorded as it was before the first. */
typedef struct files_dirid {
    int used;
    files_saved saved;
} files_dirid;

/** A file system a restore wrote to (RST-9): a descriptor of a directory on it, and its path. */
typedef struct files_written {
    dev_t dev;
    int fd;
    char *path;
} files_written;

/** One server session (one handle of kind SERVER). */
typedef struct files_server {
    aapi_server_t handle;
    /* Framework-owned; valid until aapi_close_server of this handle returns (MEM-1). */
    const aapi_session_def_t *session;
    uint32_t op;
    files_config cfg;
    /* Once-per-session calls (LIFE-4); written by calls that are never concurrent. */
    int discovery_done;
    int postprocess_done;
    int preprocess_done;
    int restore_done;
    /* Restore bookkeeping; mutated by concurrent object calls, so only under the table lock. */
    char *target_root;
    int top_fd;             /* where every walk starts: the alternate root opened at preprocess
                             * (it stays that directory, RST-10), or "/"; -1 before and after */
    files_strvec created;   /* paths this restore created, in creation order (RST-6) */
    files_aside *aside;     /* objects set aside under AAPI_CREATE_OVERWRITE (RST-7) */
    size_t aside_n, aside_cap;
    files_dirmode *dirmodes;
    size_t dirmodes_n, dirmodes_cap;
    files_dirstate *dirs;   /* directories this restore changed; dirs_cap is a power of two */
    size_t dirs_n, dirs_cap;
    files_dirid *ids;       /* the same directories by identity; ids_cap is a power of two */
    size_t ids_n, ids_cap;
    files_written *written; /* file systems written to, one directory each */
    size_t written_n, written_cap;
} files_server;

/** What an object handle was issued for: LIFE-5 keeps reads and writes apart. */
typedef enum files_obj_mode { OBJ_READ, OBJ_WRITE } files_obj_mode;

/** Read state of an opened object. */
typedef enum files_read_state { READ_DATA, READ_END, READ_CHANGED } files_read_state;

/** One open object (one handle of kind OBJECT). */
typedef struct files_object {
    aapi_object_t handle;
    files_server *server;
    files_obj_mode mode;
    int busy;             /* a call is using it: a second concurrent one is refused (THR-1) */
    uint32_t type;        /* AAPI_OBJ_* */
    char *path;
    int fd;               /* regular files: the open descriptor; -1 otherwise */
    /* OBJ_READ */
    struct stat at_open;  /* size, mtime and ctime at open, for the torn-read check (OBJ-4) */
    char *link;           /* symlink target read at open */
    size_t link_len;
    uint64_t bytes_read;
    files_read_state state;
    /* OBJ_WRITE */
    aapi_object_prop_t prop; /* the ABI 1.0 part of what create was given */
    int overwrite;
    char *tmp;            /* hidden temporary file, renamed into place at close */
    files_buf data;       /* symlink target being written */
    uint64_t written;
    int dirfd;            /* the parent directory (the alternate root itself for the root's
                           * path): every change is made relative to it (RST-10) */
} files_object;

/* ------------------------------------------------------------------------------------------ */
/* handles.c                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Global state of the plugin cycle (LIFE-1..3, LIFE-7). Guarded by the table lock. */
void state_lock(void);
void state_unlock(void);
int state_initialized(void);

/* Cycle transitions, called only from the non-concurrent lifecycle entry points. */
int state_begin_cycle(aapi_log_fn log, void *ctx); /* AAPI_ESEQUENCE when already initialised */
void state_set_claimed(void);
/** AAPI_ESEQUENCE before init or before a successful claim (LIFE-1, LIFE-3). */
int require_claimed(const char *fn);
void state_host_log(uint32_t level, const char *message);
void state_end_cycle(void);

/** Look a server handle up (RC-4). */
int server_lookup(const char *fn, aapi_server_t h, files_server **out);
/** Register a new server; writes its handle into srv->handle. */
int server_register(files_server *srv);
/** Remove a server from the table and return it (the handle is dead from now on). */
int server_unregister(const char *fn, aapi_server_t h, files_server **out);
/** Remove one server from the table and return it, NULL when none is left (terminate). */
files_server *server_take_one(void);

/** Register a new object; writes its handle into obj->handle. */
int object_register(files_object *obj);
/** Look an object handle up and mark it busy for the duration of one call. */
int object_acquire(const char *fn, aapi_object_t h, files_object **out);
/** End the call that acquired `obj`. */
void object_release(files_object *obj);
/** Remove an object from the table (close) and return it. */
int object_unregister(const char *fn, aapi_object_t h, files_object **out);
/** Remove one object of `srv` from the table and return it, NULL when none is left
 *  (close_server, restore_postprocess). */
files_object *object_take_one(const files_server *srv);

/* ------------------------------------------------------------------------------------------ */
/* util.c                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** Record the calling thread's last-error message and return `code` (RC-9, RC-10). */
int fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/** Like fail(), with ": <strerror(err)>" appended and the code derived from `err`; a text too
 *  long for the message is cut before the reason, which is always kept. */
int fail_errno(int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/** Copy the calling thread's last-error message into a caller buffer (RC-6, RC-9). */
int last_error_copy(char *buf, size_t *buf_size);

/** Log through the session's callback (SEC-3); NULL `srv` logs through the host_info callback. */
void log_msg(const files_server *srv, uint32_t level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/** The AAPI code for an errno value. */
int code_from_errno(int err);

/** Keepalive pacing for one call (TIME-2, TIME-4). */
typedef struct files_keepalive {
    const files_server *srv;
    uint64_t last_ms;
    uint64_t interval_ms;
} files_keepalive;

void keepalive_start(files_keepalive *ka, const files_server *srv);
/** Send a keepalive when due; returns AAPI_ECANCELLED (with the message set) when cancelled. */
int keepalive_tick(files_keepalive *ka, const char *fn);

/** `dir` + "/" + `name`, without doubling the slash after "/". NULL when out of memory. */
char *path_join(const char *dir, const char *name);
/** Non-zero when `p` starts with '/'. */
int path_is_absolute(const char *p);
/** RC-3: AAPI_EOK when `path` (an object path, selection or real path, named `what` in the
 *  message) is absolute and has no ".." component, so that it names exactly one place and cannot
 *  reach outside a root it is checked against; AAPI_EINVAL with the message set otherwise. */
int check_object_path(const char *fn, const char *what, const char *path);
/** Copy of `p` with repeated slashes collapsed, "." components dropped and trailing slashes
 *  removed; NULL when out of memory. Sets *has_dotdot when a ".." component is present. */
char *path_normalize(const char *p, int *has_dotdot);
/** The directory part and the name part of a normalized absolute path (both allocated). */
int path_split(const char *p, char **dir, char **name);
/** mkdir -p with mode 0700; appends each directory it creates to `made` when not NULL. */
int mkdirs(const char *fn, const char *dir, files_strvec *made);
/** Append the names of the directory stream `d` ("." and ".." aside) to `names`, reading it to its
 *  end; the caller closes it. AAPI_EOK, or a code with the message set (`path` names the
 *  directory in it). */
int read_dir_names(const char *fn, DIR *d, const char *path, files_strvec *names);
/** Remove a tree (files, symlinks, directories, deepest first), never following a symbolic link,
 *  making directories writable as needed. A missing tree is success. `ka` may be NULL. */
int remove_tree(const char *fn, const char *path, files_keepalive *ka);
/** remove_tree() of the entry `name` of the directory `dirfd`; `path` names it in messages. */
int remove_tree_at(const char *fn, int dirfd, const char *name, const char *path,
                   files_keepalive *ka);
/** Give the directory `name` of the directory `dirfd` (never a symbolic link) the mode `mode`,
 *  through a descriptor of it opened without following a link. Where the caller may not open it
 *  for reading: fchmodat(AT_SYMLINK_NOFOLLOW) where the C library supports it, else after
 *  checking that the entry is not a link. 0, or -1 with errno set. */
int chmod_at(int dirfd, const char *name, mode_t mode);
/** Write the whole buffer, retrying short writes and EINTR; returns 0 or an errno value. */
int write_all(int fd, const void *p, size_t n);
/** Non-zero when `s` is valid UTF-8 (the framework's strings must be, RC-3). */
int utf8_valid(const char *s);
/** Parse a decimal unsigned number that fits in `max`; returns 0 on success. */
int parse_decimal(const char *s, uint64_t max, uint64_t *out);

/* ------------------------------------------------------------------------------------------ */
/* workload.c, snapshot.c, backup.c, restore.c                                                  */
/* ------------------------------------------------------------------------------------------ */

/** One record of a workload file. */
typedef struct files_record {
    const char *path;
    uint64_t size_hint;
    uint32_t flags;
    /* The record's stamp: the times aapi_get_object_prop reports and the inode number; the
     * framework compares it with its base image's (DISC-10). */
    struct timespec mtime, ctime;
    uint64_t id;
} files_record;

/** Check the parameters discovery and postprocess share: selections, backup hosts, the
 *  workload directory and the file suffix (RC-3). */
int check_job(const char *fn, const char *const *sel, const char *const *hosts, const char *dir,
              const char *suffix);

/** Write a workload file atomically with mode 0600 (DISC-3, DISC-4). */
int workload_write(const char *fn, const char *path, const char *snapshot, const char *host,
                   const files_record *records, size_t n);
/** The CRC-32 (IEEE 802.3, as zlib) of `n` bytes, continuing from `crc` (start with 0). */
uint32_t crc32_update(uint32_t crc, const void *data, size_t n);

/** The snapshot id of a job whose snapshot is made in `dir`: "files-" + the job id with bytes
 * outside [A-Za-z0-9._-] as '_' + "-" + the tag of `dir` (16 hex digits of its FNV-1a hash). */
int snapshot_id(const char *fn, const char *job_id, const char *dir, char out[AAPI_SNAPID_MAX]);
/** Non-zero when `id` could have been made by snapshot_id (so it is safe to use in a path). */
int snapshot_id_valid(const char *id);
/** AAPI_ESNAPSHOT unless the valid id `id` ends in the tag of the session's snapshot directory:
 * a snapshot made elsewhere (another user, TMPDIR or files.snapshot_dir) is not looked for. */
int snapshot_check_made_here(const char *fn, const files_server *srv, const char *id);
/** One object a snapshot copies. */
typedef struct files_snap_item {
    const char *path;
    const struct stat *st;
} files_snap_item;
/** Create snapshot `id` holding a copy of `items` (sorted by path); removes it on failure. */
int snapshot_create(const char *fn, const files_server *srv, const char *id,
                    const files_snap_item *items, size_t n, files_keepalive *ka);
/** Remove snapshot `id` (missing is success); *removed (when not NULL): whether it was there. */
int snapshot_remove(const char *fn, const files_server *srv, const char *id, files_keepalive *ka,
                    int *removed);

/** Close an object opened for reading (backup.c) or created for writing (restore.c). Both free
 *  the object; `commit` says whether a created object is completed (1) or discarded (0). */
int backup_close(files_object *obj);
int restore_close(const char *fn, files_object *obj, int commit);
/** Fill `prop` (ABI 1.0 part) from a stat result. */
void prop_from_stat(const struct stat *st, aapi_object_prop_t *prop);
/** Copy `src` into the caller's `dst` without touching dst->struct_size (ABI-5, RC-5). */
void prop_copy_out(aapi_object_prop_t *dst, const aapi_object_prop_t *src);
/** aapi_get_object_prop_byname in a restore session: *st of the object at `path`, reached as the
 * restore's other calls reach it (RST-11); AAPI_EOK or the failure's code, set with fail(). */
int restore_stat(const char *fn, files_server *srv, const char *path, struct stat *st);
/** Release the restore bookkeeping of a server whose session ends without postprocess. */
void restore_abandon(files_server *srv);
/** Free a server and its configuration. */
void server_free(files_server *srv);

#endif /* FILES_H */
