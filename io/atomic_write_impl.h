/* atomic_write_impl.h -- the library's one way to write a file the user named
 * (temporary file, fsync, rename) and to open one it reads (refusing FIFOs
 * and devices without blocking). Internal, shared by checkpoints, .npy/.npz
 * and the data readers; io_write_file_atomic (chainrule/io.h) exports the
 * writer. */
#ifndef CHAINRULE_ATOMIC_WRITE_IMPL_H
#define CHAINRULE_ATOMIC_WRITE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/** Writes the whole content to fp; false on a write error (errno set). */
typedef bool (*cr_file_writer)(FILE *fp, void *ctx);

typedef enum { CR_WRITE_OK = 0, CR_WRITE_ENOMEM, CR_WRITE_EIO } cr_write_status;

/*
 * Writes path atomically: a temporary file next to it with an unpredictable
 * name (path.tmp-XXXXXX, created with O_EXCL, mode 0644, locked with flock
 * while it is written), write(fp, ctx), fflush, fsync, rename over path,
 * fsync of the directory. On failure path is unchanged, the temporary file is
 * removed and msg (msglen bytes) says what failed (a file-size limit is
 * EFBIG, "File too large", when the process ignores SIGXFSZ). After a
 * successful rename, temporary files of path left by writers that died
 * (path.tmp-XXXXXX, owned by this user, not locked by a live writer) are
 * removed. The small buffers it needs come from alloc/dealloc, so the
 * caller's allocator hook sees them.
 */
cr_write_status cr_write_atomic(const char *path, cr_file_writer write, void *ctx,
                                void *(*alloc)(size_t), void (*dealloc)(void *, size_t), char *msg,
                                size_t msglen);

/*
 * fopen(path, "rb") for a file that must be a regular file (readers seek or
 * size it): opened with O_NONBLOCK so that a FIFO without a writer cannot
 * block, checked with fstat, then switched back to blocking reads. NULL with
 * msg ("cannot open P: ...", "cannot read P: Is a directory", "cannot
 * read P: a FIFO, not a regular file") and errno set.
 */
FILE *cr_fopen_regular(const char *path, char *msg, size_t msglen);

#endif
