/* atomic_write.c -- temporary file, fsync, rename, fsync of the directory;
 * opening a file to read without blocking on a FIFO. */
#define _DEFAULT_SOURCE /* flock */
#define _POSIX_C_SOURCE 200809L

#include "io_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_SUFFIX ".tmp-"
#define TMP_RANDOM 6 /* the XXXXXX of mkstemp */

static char *copy_dir(const char *path, const ad_allocator *mem, size_t *size)
{
    const char *slash = strrchr(path, '/');
    const char *from = slash ? path : ".";
    size_t len = !slash ? 1 : (slash == path ? 1 : (size_t)(slash - path));
    char *dir = ad_alloc(mem, len + 1);
    if (!dir)
        return NULL;
    memcpy(dir, from, len);
    dir[len] = '\0';
    *size = len + 1;
    return dir;
}

/* Whether name is base.tmp-XXXXXX, a temporary file of io_write_atomic for base. */
static bool is_temp_of(const char *name, const char *base, size_t blen)
{
    return strncmp(name, base, blen) == 0 &&
           strncmp(name + blen, TMP_SUFFIX, sizeof TMP_SUFFIX - 1) == 0 &&
           strlen(name + blen + sizeof TMP_SUFFIX - 1) == TMP_RANDOM;
}

/*
 * Removes the temporary files of path in dir that a killed writer left: a
 * live writer holds an flock on its file, so one we can lock is abandoned.
 * Only regular files of this user, never through a symbolic link, and only
 * when the name still refers to the file we locked. Best effort: errors are
 * ignored (the save itself does not depend on it).
 */
static void remove_stale_temps(const char *dir, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    if (!d)
        return;
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_temp_of(e->d_name, base, blen))
            continue;
        int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat fs, ls;
        if (fstat(fd, &fs) == 0 && S_ISREG(fs.st_mode) && fs.st_uid == geteuid() &&
            flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            fstatat(dfd, e->d_name, &ls, AT_SYMLINK_NOFOLLOW) == 0 && ls.st_dev == fs.st_dev &&
            ls.st_ino == fs.st_ino)
            unlinkat(dfd, e->d_name, 0);
        close(fd);
    }
    closedir(d);
}

/* mkstemp, then an flock that marks the file as being written; retried when a
 * concurrent cleaner removed the name between the two (the locked file is then
 * no longer the one at tmp). The descriptor, or -1 with errno set. */
static int create_locked_temp(char *tmp, size_t tmp_size, const char *path)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        snprintf(tmp, tmp_size, "%s" TMP_SUFFIX "XXXXXX", path);
        int fd = mkstemp(tmp);
        if (fd < 0)
            return -1;
        struct stat fs, ls;
        if (flock(fd, LOCK_EX) != 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e;
            return -1;
        }
        if (fstat(fd, &fs) == 0 && lstat(tmp, &ls) == 0 && fs.st_dev == ls.st_dev &&
            fs.st_ino == ls.st_ino)
            return fd;
        close(fd);
    }
    errno = EAGAIN;
    return -1;
}

int io_write_atomic_with(const char *path, io_writer write, void *ctx, ad_alloc_fn alloc, void *ud,
                         ad_error *err)
{
    ad_allocator m = ad_allocator_of(alloc, ud);
    const ad_allocator *mem = &m;
    ad_errcode st = AD_EIO;
    char msg[sizeof err->message] = "";
    const size_t msglen = sizeof msg;
    if (!path || !write)
        return ad_error_set(err, AD_EINVAL, "io_write_atomic: NULL argument");
    size_t tmp_size = strlen(path) + sizeof TMP_SUFFIX + TMP_RANDOM, dir_size = 0;
    char *tmp = ad_alloc(mem, tmp_size), *dir = tmp ? copy_dir(path, mem, &dir_size) : NULL;
    int fd = -1;
    FILE *fp = NULL;
    bool created = false;
    msg[0] = '\0';
    if (!tmp || !dir) {
        snprintf(msg, msglen, "out of memory writing %s", path);
        st = AD_ENOMEM;
        goto done;
    }
    remove_stale_temps(dir, path);
    fd = create_locked_temp(tmp, tmp_size, path);
    if (fd < 0) {
        snprintf(msg, msglen, "cannot create a temporary file in %s for %s: %s", dir, path,
                 strerror(errno));
        goto done;
    }
    created = true;
    if (fchmod(fd, 0644) != 0 || !(fp = fdopen(fd, "wb"))) {
        snprintf(msg, msglen, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1; /* fp owns it now */
    errno = 0;
    if (!write(fp, ctx) || fflush(fp) != 0) {
        snprintf(msg, msglen, "writing %s failed: %s; %s is unchanged", tmp,
                 errno ? strerror(errno) : "short write", path);
        goto done;
    }
    if (fsync(fileno(fp)) != 0) {
        snprintf(msg, msglen, "syncing %s to disk failed: %s; %s is unchanged", tmp,
                 strerror(errno), path);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        snprintf(msg, msglen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    created = false;     /* it is path now */
    int rc = fclose(fp); /* (releases the lock) */
    fp = NULL;
    if (rc != 0) {
        snprintf(msg, msglen, "closing %s failed: %s", path, strerror(errno));
        goto done;
    }
    st = AD_OK;
    /* Make the rename durable. Some file systems cannot sync a directory
       (EINVAL); the data is then as safe as they allow. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL)) {
        snprintf(msg, msglen, "%s was written but syncing directory %s failed: %s", path, dir,
                 strerror(errno));
        st = AD_EIO;
    }
    if (dfd >= 0)
        close(dfd);
done:
    if (created)
        unlink(tmp); /* before closing: still locked, so no cleaner races us */
    if (fp)
        fclose(fp);
    if (fd >= 0)
        close(fd);
    if (tmp)
        ad_free(mem, tmp, tmp_size);
    if (dir)
        ad_free(mem, dir, dir_size);
    return st == AD_OK ? ad_error_ok(err) : ad_error_set(err, st, "%s", msg);
}

int io_write_atomic(const char *path, io_writer write, void *ctx, ad_error *err)
{
    return io_write_atomic_with(path, write, ctx, NULL, NULL, err);
}

FILE *io_fopen_regular(const char *path, ad_error *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        ad_error_set(err, AD_EIO, "cannot open %s: %s", path, strerror(e));
        errno = e;
        return NULL;
    }
    struct stat sb;
    const char *what = NULL;
    int e = 0;
    if (fstat(fd, &sb) != 0) {
        e = errno;
        what = strerror(e);
    } else if (S_ISDIR(sb.st_mode)) {
        e = EISDIR;
        what = strerror(e);
    } else if (S_ISFIFO(sb.st_mode)) {
        e = EINVAL;
        what = "a FIFO (named pipe), not a regular file";
    } else if (S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode)) {
        e = EINVAL;
        what = "a device, not a regular file";
    } else if (!S_ISREG(sb.st_mode)) {
        e = EINVAL;
        what = "not a regular file";
    }
    int flags = what ? 0 : fcntl(fd, F_GETFL);
    if (!what && (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)) {
        e = errno;
        what = strerror(e);
    }
    FILE *fp = what ? NULL : fdopen(fd, "rb");
    if (!what && !fp) {
        e = errno;
        what = strerror(e);
    }
    if (what) {
        ad_error_set(err, AD_EIO, "cannot read %s: %s", path, what);
        close(fd);
        errno = e;
        return NULL;
    }
    return fp;
}
