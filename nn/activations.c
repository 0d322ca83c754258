/* activations.c -- the activation functions phi of the lecture, each a
 * composition of engine ops (no derivative is written here: the gradient of
 * every activation is the engine's chain rule through these ops). */
#include <string.h>

#include "nn_impl.h"

static const char *const act_names[NN_ACT_COUNT] = {
    [NN_ACT_IDENTITY] = "identity",
    [NN_ACT_STEP] = "step",
    [NN_ACT_SIGN] = "sign",
    [NN_ACT_STEP_ST] = "step_st",
    [NN_ACT_SIGN_ST] = "sign_st",
    [NN_ACT_SIGMOID] = "sigmoid",
    [NN_ACT_TANH] = "tanh",
    [NN_ACT_RELU] = "relu",
    [NN_ACT_LEAKY_RELU] = "leaky_relu",
    [NN_ACT_ELU] = "elu",
    [NN_ACT_SELU] = "selu",
    [NN_ACT_SOFTPLUS] = "softplus",
    [NN_ACT_SOFTMAX] = "softmax",
    [NN_ACT_LOG_SOFTMAX] = "log_softmax",
};

const char *nn_activation_name(nn_activation act)
{
    if ((int)act < 0 || act >= NN_ACT_COUNT)
        return NULL;
    return act_names[act];
}

int nn_activation_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < NN_ACT_COUNT; i++)
        if (strcmp(name, act_names[i]) == 0)
            return i;
    static const struct {
        const char *alias;
        nn_activation act;
    } aliases[] = {
        {"linear", NN_ACT_IDENTITY},  {"none", NN_ACT_IDENTITY},
        {"heaviside", NN_ACT_STEP},   {"logistic", NN_ACT_SIGMOID},
        {"lrelu", NN_ACT_LEAKY_RELU}, {"logsoftmax", NN_ACT_LOG_SOFTMAX},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (strcmp(name, aliases[i].alias) == 0)
            return (int)aliases[i].act;
    return -1;
}

ad_node *nn_step(ad_node *z, int straight_through)
{
    if (!z)
        return NULL;
    ad_node *h = ad_step(z);
    return straight_through ? ad_straight_through(z, h) : h;
}

ad_node *nn_sign(ad_node *z, int straight_through)
{
    if (!z)
        return NULL;
    ad_node *h = ad_sign(z);
    return straight_through ? ad_straight_through(z, h) : h;
}

ad_node *nn_activate_alpha(ad_node *x, nn_activation act, double alpha)
{
    if (!x)
        return NULL;
    switch (act) {
    case NN_ACT_IDENTITY:
        return x;
    case NN_ACT_STEP:
        return nn_step(x, 0);
    case NN_ACT_SIGN:
        return nn_sign(x, 0);
    case NN_ACT_STEP_ST:
        return nn_step(x, 1);
    case NN_ACT_SIGN_ST:
        return nn_sign(x, 1);
    case NN_ACT_SIGMOID:
        return ad_sigmoid(x);
    case NN_ACT_TANH:
        return ad_tanh(x);
    case NN_ACT_RELU:
        return ad_relu(x);
    case NN_ACT_LEAKY_RELU:
        return ad_leaky_relu(x, alpha);
    case NN_ACT_ELU:
        return ad_elu(x, alpha);
    case NN_ACT_SELU:
        return ad_scale(ad_elu(x, NN_SELU_ALPHA), NN_SELU_SCALE);
    case NN_ACT_SOFTPLUS:
        return ad_softplus(x);
    case NN_ACT_SOFTMAX:
        return ad_softmax(x, -1);
    case NN_ACT_LOG_SOFTMAX:
        return ad_log_softmax(x, -1);
    case NN_ACT_COUNT:
        break;
    }
    return nn_graph_fail(x, "nn_activate: unknown activation %d", (int)act);
}

ad_node *nn_activate(ad_node *x, nn_activation act)
{
    double alpha = act == NN_ACT_LEAKY_RELU ? NN_LEAKY_RELU_ALPHA : NN_ELU_ALPHA;
    return nn_activate_alpha(x, act, alpha);
}
