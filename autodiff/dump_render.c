/* dump_render.c -- pictures through Graphviz: the DOT of ad_dump_dot handed
 * to `dot`, started with posix_spawnp (no shell; PATH searched by the C
 * library) and waited for. The only place the library starts a program. */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chainrule/dump.h"
#include "dump_impl.h"
#include "graph_impl.h"

extern char **environ; /* POSIX: the environment, passed on to dot */

/* fn: the public function reporting, for its messages; opts as for
   ad_dump_dot_opts. */
int ad_dump_render_with(ad_graph *g, ad_node *output, const char *format, const char *path,
                        const ad_dump_opts *opts, const char *fn)
{
    if (!g)
        return -1;
    if (!format || !path || !*format || strlen(format) > 16) {
        ad_fail(g, "%s: %s", fn, !path ? "no output path" : "no output format");
        return -1;
    }
    const char *tmpdir = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/chainrule-dot-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        ad_fail(g, "%s: cannot create a temporary file in %s: %s", fn,
                tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return -1;
    }
    int rc = ad_dump_dot_opts(g, output, f, opts);
    if (fclose(f) != 0 && rc == 0) {
        ad_fail(g, "%s: writing '%s' failed: %s", fn, tmp, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        unlink(tmp);
        return -1;
    }
    char type[24];
    snprintf(type, sizeof type, "-T%s", format);
    char *args[] = {"dot", type, "-o", (char *)path, tmp, NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "dot", NULL, NULL, args, environ);
    int status = 0;
    if (err == ENOENT) {
        ad_fail(g,
                "%s: Graphviz 'dot' is not installed (not found on PATH); install Graphviz "
                "(apt-get install graphviz), or write the DOT text (ad_dump_dot, chainrule grad "
                "--dot FILE) and render it elsewhere",
                fn);
        rc = -1;
    } else if (err != 0) {
        ad_fail(g, "%s: cannot start Graphviz 'dot': %s", fn, strerror(err));
        rc = -1;
    } else {
        pid_t w;
        while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
            ;
        if (w < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ad_fail(g, "%s: 'dot -T%s' failed to render '%s'", fn, format, path);
            rc = -1;
        }
    }
    unlink(tmp);
    return rc;
}

int ad_dump_render_as(ad_graph *g, ad_node *output, const char *format, const char *path,
                      unsigned flags, const char *fn)
{
    ad_dump_opts o = {flags, 0, 0};
    return ad_dump_render_with(g, output, format, path, &o, fn);
}

int ad_dump_render(ad_graph *g, ad_node *output, const char *format, const char *path,
                   unsigned flags)
{
    return ad_dump_render_as(g, output, format, path, flags, "ad_dump_render");
}

int ad_dump_render_opts(ad_graph *g, ad_node *output, const char *format, const char *path,
                        const ad_dump_opts *opts)
{
    ad_dump_opts o = opts ? *opts : (ad_dump_opts){0, 0, 0};
    return ad_dump_render_with(g, output, format, path, &o, "ad_dump_render");
}
