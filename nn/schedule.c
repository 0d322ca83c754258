/* schedule.c -- learning-rate schedules as pure functions of the epoch, in
 * closed form (PyTorch's StepLR, ExponentialLR and CosineAnnealingLR give
 * the same values; their recursive forms differ only by rounding). */
#include <math.h>
#include <string.h>

#include "nn_impl.h"

static const char *const sched_names[NN_SCHED_COUNT] = {
    [NN_SCHED_CONSTANT] = "constant",
    [NN_SCHED_STEP] = "step",
    [NN_SCHED_EXPONENTIAL] = "exponential",
    [NN_SCHED_COSINE] = "cosine",
};

const char *nn_schedule_name(nn_schedule_kind kind)
{
    if ((int)kind < 0 || kind >= NN_SCHED_COUNT)
        return NULL;
    return sched_names[kind];
}

int nn_schedule_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < NN_SCHED_COUNT; i++)
        if (strcmp(name, sched_names[i]) == 0)
            return i;
    if (strcmp(name, "none") == 0)
        return NN_SCHED_CONSTANT;
    if (strcmp(name, "exp") == 0)
        return NN_SCHED_EXPONENTIAL;
    return -1;
}

static nn_schedule make(nn_schedule_kind kind, double lr)
{
    nn_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.base_lr = lr;
    s.gamma = 1.0;
    s.step_size = 1;
    s.t_max = 1;
    return s;
}

nn_schedule nn_schedule_constant(double lr) { return make(NN_SCHED_CONSTANT, lr); }

nn_schedule nn_schedule_step(double lr, int64_t step_size, double gamma)
{
    nn_schedule s = make(NN_SCHED_STEP, lr);
    s.step_size = step_size;
    s.gamma = gamma;
    return s;
}

nn_schedule nn_schedule_exponential(double lr, double gamma)
{
    nn_schedule s = make(NN_SCHED_EXPONENTIAL, lr);
    s.gamma = gamma;
    return s;
}

nn_schedule nn_schedule_cosine(double lr, int64_t t_max, double min_lr)
{
    nn_schedule s = make(NN_SCHED_COSINE, lr);
    s.t_max = t_max;
    s.min_lr = min_lr;
    return s;
}

double nn_schedule_lr(const nn_schedule *s, int64_t epoch)
{
    if (!s || epoch < 0)
        return NAN;
    switch (s->kind) {
    case NN_SCHED_CONSTANT:
        return s->base_lr;
    case NN_SCHED_STEP:
        if (s->step_size < 1)
            break;
        return s->base_lr * pow(s->gamma, (double)(epoch / s->step_size));
    case NN_SCHED_EXPONENTIAL:
        return s->base_lr * pow(s->gamma, (double)epoch);
    case NN_SCHED_COSINE: {
        if (s->t_max < 1)
            break;
        const double pi = 3.14159265358979323846;
        /* beyond t_max the cosine continues (rises again), as in PyTorch */
        return s->min_lr +
               (s->base_lr - s->min_lr) * (1 + cos(pi * (double)epoch / (double)s->t_max)) / 2;
    }
    case NN_SCHED_COUNT:
        break;
    }
    return NAN;
}
