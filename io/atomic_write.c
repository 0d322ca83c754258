/* atomic_write.c -- temporary file, fsync, rename, fsync of the directory. */
#define _POSIX_C_SOURCE 200809L

#include "atomic_write_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *copy_dir(const char *path, void *(*alloc)(size_t), size_t *size)
{
    const char *slash = strrchr(path, '/');
    const char *from = slash ? path : ".";
    size_t len = !slash ? 1 : (slash == path ? 1 : (size_t)(slash - path));
    char *dir = alloc(len + 1);
    if (!dir)
        return NULL;
    memcpy(dir, from, len);
    dir[len] = '\0';
    *size = len + 1;
    return dir;
}

cr_write_status cr_write_atomic(const char *path, cr_file_writer write, void *ctx,
                                void *(*alloc)(size_t), void (*dealloc)(void *, size_t), char *msg,
                                size_t msglen)
{
    cr_write_status st = CR_WRITE_EIO;
    size_t tmp_size = strlen(path) + sizeof ".tmp-XXXXXX", dir_size = 0;
    char *tmp = alloc(tmp_size), *dir = tmp ? copy_dir(path, alloc, &dir_size) : NULL;
    int fd = -1;
    FILE *fp = NULL;
    bool created = false;
    msg[0] = '\0';
    if (!tmp || !dir) {
        snprintf(msg, msglen, "out of memory writing %s", path);
        st = CR_WRITE_ENOMEM;
        goto done;
    }
    snprintf(tmp, tmp_size, "%s.tmp-XXXXXX", path);
    fd = mkstemp(tmp);
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
    int rc = fclose(fp);
    fp = NULL;
    if (rc != 0) {
        snprintf(msg, msglen, "writing %s failed: %s; %s is unchanged", tmp, strerror(errno), path);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        snprintf(msg, msglen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    created = false; /* it is path now */
    st = CR_WRITE_OK;
    /* Make the rename durable. Some file systems cannot sync a directory
       (EINVAL); the data is then as safe as they allow. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL)) {
        snprintf(msg, msglen, "%s was written but syncing directory %s failed: %s", path, dir,
                 strerror(errno));
        st = CR_WRITE_EIO;
    }
    if (dfd >= 0)
        close(dfd);
done:
    if (fp)
        fclose(fp);
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    if (tmp)
        dealloc(tmp, tmp_size);
    if (dir)
        dealloc(dir, dir_size);
    return st;
}
