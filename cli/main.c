/* main.c -- the chainrule command: dispatches to the subcommands. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", cr_cmd_train, "train a network (default: Fashion-MNIST MLP 784-300-100-10)"},
    {"eval", cr_cmd_eval, "test accuracy and confusion matrix of a saved model"},
    {"predict", cr_cmd_predict, "classify the images of an IDX file with a saved model"},
    {"grad", cr_cmd_grad, "value and gradient of a scalar expression, with trace and pictures"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: chainrule COMMAND [OPTIONS]\n\n"
                 "chainrule: reverse-mode automatic differentiation and neural networks.\n\n"
                 "commands:\n");
    for (const command *c = commands; c->name; c++)
        fprintf(out, "  %-9s %s\n", c->name, c->summary);
    fprintf(out, "\n'chainrule COMMAND --help' explains a command's options.\n");
}

/*
 * Everything the command printed must have reached standard output: a full
 * disk or a closed pipe (`chainrule eval m > /dev/full`) is an error with a
 * message and exit status 1, never a silent success. status: the command's.
 */
static int finish_stdout(const char *cmd, int status)
{
    int bad = fflush(stdout) != 0 || ferror(stdout);
    int e = errno;
    if (fclose(stdout) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad)
        return status;
    fprintf(stderr, "chainrule%s%s: cannot write standard output: %s\n", cmd ? " " : "",
            cmd ? cmd : "", e ? strerror(e) : "write error");
    return status ? status : 1;
}

int main(int argc, char **argv)
{
    /* a file-size limit (ulimit -f) makes writes fail with EFBIG and a
       closed pipe with EPIPE, reported like any other write error (status
       1 and a message), instead of killing the process */
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return finish_stdout(NULL, 0);
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("chainrule %s\n", CR_VERSION);
        return finish_stdout(NULL, 0);
    }
    for (const command *c = commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0)
            return finish_stdout(c->name, c->run(argc - 1, argv + 1));
    fprintf(stderr, "chainrule: unknown command '%s' (see 'chainrule --help')\n", argv[1]);
    return 2;
}
