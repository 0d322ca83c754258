/*
 * chainrule/data.h -- data sets for training: IDX (MNIST, Fashion-MNIST) and
 * CSV readers, scaling, seeded shuffling, mini-batches and splits.
 *
 * A worked example: Géron's Fashion-MNIST setup (Hands-On ML, chapter 10).
 *
 *     ad_error err;
 *     io_dataset *full = NULL, *test = NULL, *train = NULL, *valid = NULL;
 *     if (io_mnist_load(NULL, &full, &test, &err) != 0) {
 *         fprintf(stderr, "%s\n", err.message);    // names the file and the problem
 *         return 1;
 *     }
 *     io_dataset_scale(full, 255.0f);               // pixels 0..255 -> [0, 1]
 *     io_dataset_scale(test, 255.0f);
 *     io_dataset_split(full, 5000, &valid, &train, &err); // first 5000 validate
 *     io_batcher *b = io_batcher_new(train, 32, true, 42, &err);
 *     for (unsigned epoch = 0; epoch < 20; epoch++) {
 *         io_batch batch;
 *         io_batcher_start_epoch(b, epoch);         // order depends on (seed, epoch)
 *         while (io_batcher_next(b, &batch)) {
 *             // batch.x: (batch.size, train->d), batch.y: (batch.size)
 *         }
 *     }
 *     io_batcher_free(b);
 *     io_dataset_free(train); io_dataset_free(valid);
 *     io_dataset_free(full); io_dataset_free(test);
 *
 * Conventions
 * - docs/errors.md: every function that can fail returns 0 / -1 or a
 *   pointer / NULL and, when err is not NULL, fills the caller's ad_error
 *   with the code and a one-line message naming the file, line, column or
 *   count at fault. Nothing here aborts or prints. On failure every output
 *   pointer is left NULL and nothing is leaked, allocation failure included.
 * - X_new / readers allocate, X_free frees; free functions accept NULL.
 * - Memory comes from malloc, or from the allocator given to an X_with
 *   function (the ad_alloc_fn contract); an object keeps its allocator, and
 *   what is made from it (slices, splits, batchers) uses the same one.
 *   zlib's gzip state uses malloc.
 * - Features are float, row-major (n, d); labels are int in [0, classes).
 */
#ifndef CHAINRULE_DATA_H
#define CHAINRULE_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autodiff.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- dataset */

/** Labels are limited to [0, IO_DATA_MAX_CLASSES). */
#define IO_DATA_MAX_CLASSES 65536

/**
 * A labelled (or unlabelled) table of examples. Everything pointed to is
 * owned by the dataset and freed by io_dataset_free. Fields may be read
 * and the values of x and y changed freely; do not replace the pointers.
 * On Linux, the whole 2 MiB pages of an x from the default allocator are
 * advised for transparent huge pages (madvise): a shuffled batcher reads
 * its rows from all over x, a TLB miss per row with 4 KiB pages.
 */
typedef struct io_dataset {
    int64_t n;          /**< number of examples */
    int64_t d;          /**< features per example */
    float *x;           /**< (n, d) row-major */
    int *y;             /**< (n) labels in [0, classes), NULL when unlabelled */
    int classes;        /**< 1 + the largest label (or the named classes); 0 unlabelled */
    char **class_names; /**< (classes) names from a CSV's text labels, else NULL */
    int64_t height;     /**< image rows when read from IDX images, else 0 */
    int64_t width;      /**< image columns (d == height * width), else 0 */
    /** The allocator the dataset's memory came from (NULL: malloc); slices,
        splits and batchers of the dataset, or of a copy of this struct that
        views some of its rows, use it too. */
    ad_alloc_fn alloc;
    void *alloc_ud; /**< alloc's user data */
} io_dataset;

/**
 * A new dataset of n examples with d zero features each, with a label
 * array of zeros when labelled (classes is then 0 until the caller sets it).
 * The caller's; free it with io_dataset_free. NULL on failure with *err:
 * AD_EINVAL when n or d is negative or n * d overflows, AD_ENOMEM.
 */
AD_API io_dataset *io_dataset_new(int64_t n, int64_t d, bool labelled, ad_error *err);

/** io_dataset_new with the dataset's memory from alloc(ud, ...). */
AD_API io_dataset *io_dataset_new_with(int64_t n, int64_t d, bool labelled, ad_alloc_fn alloc,
                                       void *ud, ad_error *err);

/** Frees a dataset and everything it owns. Accepts NULL. */
AD_API void io_dataset_free(io_dataset *ds);

/**
 * Copies count examples starting at begin into a new dataset (class count,
 * class names and image size are copied too; memory from ds's allocator).
 * The first N examples are io_dataset_slice(ds, 0, N, ...). NULL on failure
 * with *err: AD_EINVAL when begin or count is negative or begin + count >
 * ds->n, AD_ENOMEM.
 */
AD_API io_dataset *io_dataset_slice(const io_dataset *ds, int64_t begin, int64_t count,
                                    ad_error *err);

/**
 * Keeps the first n examples of ds in place (a subset for quick runs);
 * n larger than ds->n keeps everything, a negative n changes nothing.
 * Memory is not given back.
 */
AD_API void io_dataset_truncate(io_dataset *ds, int64_t n);

/**
 * Splits ds into two new datasets: *first holds examples [0, n_first) and
 * *rest the others, as Géron's Fashion-MNIST validation split (the first
 * 5000 training images validate). For a random split call io_dataset_shuffle
 * first. ds is unchanged. Both outputs are the caller's. Returns 0, or -1
 * with both outputs NULL and *err: AD_EINVAL when n_first is negative or
 * larger than ds->n, AD_ENOMEM.
 */
AD_API int io_dataset_split(const io_dataset *ds, int64_t n_first, io_dataset **first,
                            io_dataset **rest, ad_error *err);

/**
 * Reorders the examples of ds in place (features and labels together) with
 * io_data_permutation's order for (seed, 0). Allocates nothing.
 */
AD_API void io_dataset_shuffle(io_dataset *ds, uint64_t seed);

/** Divides every feature by divisor (255 maps 8-bit pixels to [0, 1]). */
AD_API void io_dataset_scale(io_dataset *ds, float divisor);

/* ---------------------------------------------------------------- scaling */

/** How io_scaler_fit maps features. */
typedef enum io_scale_kind {
    IO_SCALE_MINMAX,        /**< per feature: [min, max] -> [0, 1] */
    IO_SCALE_MINMAX_GLOBAL, /**< one min and max over all features (images) */
    IO_SCALE_STANDARD       /**< per feature: zero mean, unit variance */
} io_scale_kind;

/**
 * An affine map fitted on training data and applied to every split:
 * x[i][j] = (x[i][j] - center[j]) / spread[j]. A constant feature gets
 * spread 1, so it maps to 0 and never to NaN. Fields may be read (to save
 * them in a checkpoint) and written (to restore them); owned by the scaler.
 */
typedef struct io_scaler {
    int64_t d;     /**< number of features */
    float *center; /**< (d) subtracted: minimum or mean */
    float *spread; /**< (d) divisor: max - min or standard deviation */
} io_scaler;

/**
 * A new scaler for d features with center 0 and spread 1 (the identity), to
 * be filled by io_scaler_fit or from saved values. The caller's; NULL on
 * failure with *err: AD_EINVAL (negative d), AD_ENOMEM.
 */
AD_API io_scaler *io_scaler_new(int64_t d, ad_error *err);

/** io_scaler_new with the scaler's memory from alloc(ud, ...). */
AD_API io_scaler *io_scaler_new_with(int64_t d, ad_alloc_fn alloc, void *ud, ad_error *err);

/**
 * Fits s on train (statistics in double precision; population standard
 * deviation). Returns 0, or -1 with *err: AD_EINVAL when train has no
 * examples or train->d != s->d, AD_ENOMEM.
 */
AD_API int io_scaler_fit(io_scaler *s, const io_dataset *train, io_scale_kind kind, ad_error *err);

/**
 * Applies s to every example of ds in place. Returns 0, or -1 with *err:
 * AD_EINVAL when ds->d != s->d.
 */
AD_API int io_scaler_apply(const io_scaler *s, io_dataset *ds, ad_error *err);

/** Frees a scaler. Accepts NULL. */
AD_API void io_scaler_free(io_scaler *s);

/* -------------------------------------------------------------------- IDX */

/** The content of an IDX file, data converted to host byte order. */
typedef struct io_idx {
    ad_dtype type; /**< element type of data: the file's 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D
                      f32, 0x0E f64 as AD_U8, AD_I8, AD_I16, AD_I32, AD_F32, AD_F64 */
    int ndim;      /**< 1 .. AD_MAX_DIMS (the most an IDX file may declare here) */
    int64_t dims[AD_MAX_DIMS]; /**< dims[0] is the number of items */
    int64_t count;             /**< product of dims: number of elements */
    void *data;                /**< count elements of type; owned */
} io_idx;

/**
 * Reads an IDX file, plain or gzip-compressed (recognised by its magic bytes,
 * whatever its name). The caller's; free with io_idx_free. NULL on failure
 * with *err: AD_EIO (cannot open or read; the message names the path and
 * the system's reason), AD_EFORMAT (bad magic, unknown element type, no or
 * too many dimensions, truncated header or data, bytes after the data,
 * corrupt gzip stream), AD_ENOMEM, AD_EINVAL (NULL path).
 */
AD_API io_idx *io_idx_read(const char *path, ad_error *err);

/** io_idx_read with the image's memory from alloc(ud, ...). */
AD_API io_idx *io_idx_read_with(const char *path, ad_alloc_fn alloc, void *ud, ad_error *err);

/** Frees an IDX image. Accepts NULL. */
AD_API void io_idx_free(io_idx *idx);

/** Element i of idx as a double (any element type); 0 when i is outside [0, idx->count). */
AD_API double io_idx_value(const io_idx *idx, int64_t i);

/**
 * Builds a dataset from an IDX of examples (dims[0] examples of the product
 * of the other dims features; 3-d images also set height and width) and an
 * optional 1-d IDX of integer labels (NULL: unlabelled). Values are copied
 * unscaled (pixels stay 0..255). The caller's, with memory from the
 * allocator of examples. NULL on failure with *err: AD_EMISMATCH (label
 * count differs from example count), AD_EFORMAT (labels not 1-d integers, a
 * label outside [0, IO_DATA_MAX_CLASSES), an example value that is NaN or
 * infinite, or does not fit a float, like the CSV reader), AD_ENOMEM.
 */
AD_API io_dataset *io_dataset_from_idx(const io_idx *examples, const io_idx *labels, ad_error *err);

/**
 * io_idx_read of both files then io_dataset_from_idx; labels_path may be
 * NULL for unlabelled examples (chainrule predict). Messages name the files.
 */
AD_API io_dataset *io_idx_load_dataset(const char *examples_path, const char *labels_path,
                                       ad_error *err);

/** io_idx_load_dataset with every allocation from alloc(ud, ...). */
AD_API io_dataset *io_idx_load_dataset_with(const char *examples_path, const char *labels_path,
                                            ad_alloc_fn alloc, void *ud, ad_error *err);

/* ------------------------------------------------------------ (Fashion-)MNIST */

/** Where Debian's dataset-fashion-mnist package installs the files. */
#define IO_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/** Number of Fashion-MNIST (and MNIST) classes. */
#define IO_FASHION_MNIST_CLASSES 10

/**
 * Loads the MNIST-layout files of dir (NULL: IO_FASHION_MNIST_DIR):
 * train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte
 * and t10k-labels-idx1-ubyte, each plain or with a .gz suffix (the plain name
 * wins when both exist). train or test may be NULL to skip that half. Pixels
 * stay 0..255 (see io_dataset_scale); height and width are set (28 x 28).
 * Outputs are the caller's. Returns 0, or -1 with the outputs NULL and
 * *err: as io_idx_read and io_dataset_from_idx, with messages naming the
 * directory or file: a missing directory, a missing file (both names tried),
 * images that are not 3-d unsigned bytes, image and label counts that differ.
 */
AD_API int io_mnist_load(const char *dir, io_dataset **train, io_dataset **test, ad_error *err);

/** io_mnist_load with every allocation from alloc(ud, ...). */
AD_API int io_mnist_load_with(const char *dir, io_dataset **train, io_dataset **test,
                              ad_alloc_fn alloc, void *ud, ad_error *err);

/**
 * The name of Fashion-MNIST class k ("T-shirt/top", "Trouser", "Pullover",
 * "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"), a
 * constant string, or NULL when k is outside [0, 10).
 */
AD_API const char *io_fashion_mnist_class_name(int k);

/* -------------------------------------------------------------------- CSV */

/** How io_csv_read reads the label column. */
typedef enum io_csv_label_kind {
    /** The rule: when every label is a number, the labels are class indices
        and each must be an integer in [0, IO_DATA_MAX_CLASSES) (a label
        2.5 or 70000 is an error that states this rule); otherwise they are
        names, as IO_CSV_LABELS_TEXT. */
    IO_CSV_LABELS_AUTO = 0,
    /** Class indices: integers in [0, IO_DATA_MAX_CLASSES), else an error. */
    IO_CSV_LABELS_INTEGER,
    /** Names, even when they look like numbers ("3" and "3.0" are two
        classes); numbered by class_names, or in sorted (strcmp) order. */
    IO_CSV_LABELS_TEXT
} io_csv_label_kind;

/** How io_csv_read finds the label column and parses rows. */
typedef struct io_csv_options {
    /** Header name of the label column; NULL to use label_index. */
    const char *label_name;
    /** 0-based label column when label_name is NULL; negative counts from
        the end (-1 is the last column). */
    int label_index;
    /** Field separator; 0 means ','. */
    char delimiter;
    /** Optional fixed class list (e.g. the training set's class_names) so
        text labels of another file get the same numbers; NULL to infer. */
    const char *const *class_names;
    /** Length of class_names. */
    int n_class_names;
    /** How labels are read (zero: IO_CSV_LABELS_AUTO). With class_names the
        labels are names (IO_CSV_LABELS_INTEGER is then AD_EINVAL). */
    io_csv_label_kind label_kind;
} io_csv_options;

/**
 * Reads a CSV file (plain or gzip) with a header row: one column holds the
 * label, every other column a number. RFC 4180 quoting ("a, b", "" for a
 * quote), CRLF or LF line ends; blank lines are skipped. Labels are read as
 * opt->label_kind says: class indices used as they are (classes = max + 1),
 * or names, each distinct one a class, numbered in sorted (strcmp) order
 * with names in class_names, unless opt->class_names fixes the list. opt
 * NULL means the last column is the label, IO_CSV_LABELS_AUTO. To number a
 * test file like its training file, read it with io_csv_read_like. The
 * dataset is the caller's. NULL on failure with *err: AD_EIO, AD_ENOMEM,
 * AD_EINVAL (no such label column, naming it), AD_EFORMAT, naming line and
 * column: a row with the wrong
 * number of fields, an empty or non-numeric or non-finite feature, an
 * unterminated quote, a label not in opt->class_names, no data rows.
 */
AD_API io_dataset *io_csv_read(const char *path, const io_csv_options *opt, ad_error *err);

/** io_csv_read with every allocation from alloc(ud, ...). */
AD_API io_dataset *io_csv_read_with(const char *path, const io_csv_options *opt, ad_alloc_fn alloc,
                                    void *ud, ad_error *err);

/**
 * Reads a second CSV file (a test or validation set) so that its classes are
 * numbered as in train, a dataset read by io_csv_read: with train's class
 * names as the fixed class list when train has names (a label train lacks is
 * an error naming the line), else as class indices (IO_CSV_LABELS_INTEGER).
 * opt gives the label column and delimiter (NULL: the last column, ',');
 * its class_names and label_kind are ignored. Memory from train's
 * allocator. NULL on failure, as io_csv_read.
 */
AD_API io_dataset *io_csv_read_like(const char *path, const io_dataset *train,
                                    const io_csv_options *opt, ad_error *err);

/* ---------------------------------------------------- random order, batches */

/**
 * splitmix64 (Steele, Lea and Flood, 2014), the portable generator used for
 * every shuffle here: state += 0x9E3779B97F4A7C15; z = state;
 * z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) *
 * 0x94D049BB133111EB; return z ^ (z >> 31). Seeded with 0 its first output
 * is 0xE220A8397B1DCDAF. The state may be read and restored.
 */
typedef struct io_data_rng {
    uint64_t state; /**< advanced by 0x9E3779B97F4A7C15 per draw */
} io_data_rng;

/** Sets the generator's state to seed. */
AD_API void io_data_rng_seed(io_data_rng *rng, uint64_t seed);
/** The next 64 random bits. */
AD_API uint64_t io_data_rng_next(io_data_rng *rng);
/**
 * A uniform integer in [0, bound) without modulo bias: draws r until
 * r >= (2^64 - bound) % bound, then returns r % bound. bound 0 returns 0.
 * The library's one bounded draw (nn_rng_below is the same rule).
 */
AD_API uint64_t io_data_rng_below(io_data_rng *rng, uint64_t bound);

/**
 * Fills perm with a permutation of 0..n-1 that depends only on (seed, epoch):
 * the identity shuffled by Fisher-Yates (for i = n-1 down to 1: swap perm[i]
 * and perm[io_data_rng_below(i + 1)]; the loop of nn_rng_shuffle) with a
 * generator seeded with
 * seed ^ (0x9E3779B97F4A7C15 * epoch). The same on every machine, so a
 * resumed run sees the same order as an uninterrupted one. Does nothing for
 * a NULL perm or n < 1.
 */
AD_API void io_data_permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch);

/** One mini-batch; pointers stay valid until the next call on its batcher. */
typedef struct io_batch {
    int64_t size;   /**< examples in this batch (the last may be smaller) */
    int64_t index;  /**< 0-based number of the batch within the epoch */
    const float *x; /**< (size, d) features */
    const int *y;   /**< (size) labels; NULL for an unlabelled dataset */
} io_batch;

/** Iterates over a dataset in mini-batches. Opaque. */
typedef struct io_batcher io_batcher;

/**
 * A new batcher over ds (borrowed: it must outlive the batcher and keep its
 * size; memory from ds's allocator). With shuffle, each epoch visits the
 * examples in io_data_permutation(seed, epoch) order, gathered into a buffer
 * the batcher owns; without, batches point straight into ds. Starts at
 * epoch 0. The caller's; NULL on failure with *err: AD_EINVAL (batch_size
 * 0, NULL ds), AD_ENOMEM.
 */
AD_API io_batcher *io_batcher_new(const io_dataset *ds, int64_t batch_size, bool shuffle,
                                  uint64_t seed, ad_error *err);

/** Rewinds to the first batch of the given epoch (reshuffling if shuffled). */
AD_API void io_batcher_start_epoch(io_batcher *b, uint64_t epoch);

/**
 * Fills *batch with the next batch of the current epoch and returns true, or
 * returns false when the epoch is over. Allocates nothing.
 */
AD_API bool io_batcher_next(io_batcher *b, io_batch *batch);

/** Batches per epoch: ceil(n / batch_size). */
AD_API int64_t io_batcher_count(const io_batcher *b);

/** Frees a batcher (not its dataset). Accepts NULL. */
AD_API void io_batcher_free(io_batcher *b);

#ifdef __cplusplus
}
#endif

#endif /* CHAINRULE_DATA_H */
