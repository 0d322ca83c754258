/* test_files.h -- helpers shared by the file-format tests: a private
 * temporary directory per test, paths inside it, and message checks. */
#ifndef CHAINRULE_TEST_FILES_H
#define CHAINRULE_TEST_FILES_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define assert_contains(haystack, needle)                                                          \
    cr_assert(strstr((haystack), (needle)) != NULL, "message \"%s\" lacks \"%s\"", (haystack),     \
              (needle))

static char tmpdir[256];

/* Creates /tmp/chainrule-TAG-XXXXXX as the current test's directory. */
static inline void make_tmpdir_tagged(const char *tag)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/chainrule-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(tmpdir));
}

/* Removes the directory and what the test left in it (one level deep). */
static inline void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        chmod(p, 0700);
        if (rmdir(p) != 0)
            unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* tmpdir/name; the result stays valid for the next 7 calls. */
static inline const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

#endif
