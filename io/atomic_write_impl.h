/* atomic_write_impl.h -- writing a file so that a crash leaves either the old
 * or the new version (internal, shared by checkpoints and .npy/.npz). */
#ifndef CHAINRULE_ATOMIC_WRITE_IMPL_H
#define CHAINRULE_ATOMIC_WRITE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/** Writes the whole content to fp; false on a write error (errno set). */
typedef bool (*cr_file_writer)(FILE *fp, void *ctx);

typedef enum { CR_WRITE_OK = 0, CR_WRITE_ENOMEM, CR_WRITE_EIO } cr_write_status;

/*
 * Writes path atomically: a temporary file next to it (mode 0644), write(fp,
 * ctx), fflush, fsync, rename over path, fsync of the directory. On failure
 * path is unchanged, the temporary file is removed and msg (msglen bytes)
 * says what failed. The two small buffers it needs come from alloc/dealloc,
 * so the caller's allocator hook sees them.
 */
cr_write_status cr_write_atomic(const char *path, cr_file_writer write, void *ctx,
                                void *(*alloc)(size_t), void (*dealloc)(void *, size_t), char *msg,
                                size_t msglen);

#endif
