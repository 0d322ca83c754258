/* commands.h -- the subcommands of the chainrule CLI (internal). Each returns
 * the process exit status: 0 success, 1 runtime failure, 2 usage error. */
#ifndef CHAINRULE_CLI_COMMANDS_H
#define CHAINRULE_CLI_COMMANDS_H

int cr_cmd_train(int argc, char **argv);   /* cli/train.c */
int cr_cmd_eval(int argc, char **argv);    /* cli/train.c */
int cr_cmd_predict(int argc, char **argv); /* cli/train.c */
int cr_cmd_grad(int argc, char **argv);    /* cli/grad.c */

#endif
