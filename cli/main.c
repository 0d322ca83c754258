/* main.c -- the chainrule command: dispatches to the subcommands. */
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("chainrule 0.1.0\n");
        return 0;
    }
    for (const command *c = commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0)
            return c->run(argc - 1, argv + 1);
    fprintf(stderr, "chainrule: unknown command '%s' (see 'chainrule --help')\n", argv[1]);
    return 2;
}
