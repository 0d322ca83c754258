/* A model trained in PyTorch, run and fine-tuned in chainrule, and handed
 * back to PyTorch (docs/interop.md):
 *
 *   cd DIR && python3 examples/pytorch_export.py  # mlp.npz, probe.npy, torch_pred.npy
 *   build/examples/from_pytorch DIR               # checks torch's predictions, fine-tunes,
 *                                                 # writes mlp_chainrule.npz, chainrule_pred.npy
 *   cd DIR && python3 examples/pytorch_import.py  # the fine-tuned model back in PyTorch
 *
 * Without DIR/mlp.npz (no PyTorch at hand) it first saves a freshly
 * initialized model there as a stand-in, so it also runs on its own. */
#include <math.h>
#include <stdio.h>

#include <chainrule/io.h>
#include <chainrule/nn.h>

static const char *in(const char *dir, const char *file)
{
    static char buf[4][1024];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, file);
    return p;
}

static int exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    ad_error err;
    io_array *probe = NULL, *torch_pred = NULL;
    int status = 1;

    /* PyTorch's Sequential(Linear(2, 16), Tanh(), Linear(16, 1)) */
    int64_t widths[] = {2, 16, 1};
    nn_activation acts[] = {NN_ACT_TANH, NN_ACT_IDENTITY};
    nn_model *m = nn_mlp_new(AD_F32, 3, widths, acts, NN_LOSS_MSE, 32, 1, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (!exists(in(dir, "mlp.npz")) && nn_model_save_npz(m, in(dir, "mlp.npz")) != 0)
        goto model_error;

    /* 1. the trained weights: names and shapes are checked */
    if (nn_model_load_npz(m, in(dir, "mlp.npz"), 0) != 0)
        goto model_error;

    /* 2. predictions on the probe inputs, compared with PyTorch's */
    float x[10];
    double pred[5];
    int64_t xshape[2] = {5, 2}, yshape[2] = {5, 1};
    for (int i = 0; i < 10; i++)
        x[i] = (float)(-1.0 + 2.0 * i / 9); /* np.linspace(-1, 1, 10) */
    if (exists(in(dir, "probe.npy")) && (!(probe = io_npy_read(in(dir, "probe.npy"), &err)) ||
                                         io_array_copy(probe, AD_F32, 2, xshape, x, &err) != 0))
        goto file_error;
    if (nn_model_predict_f32(m, x, 5, 2, pred) != 0)
        goto model_error;
    if (exists(in(dir, "torch_pred.npy"))) {
        float want[5];
        double worst = 0;
        if (!(torch_pred = io_npy_read(in(dir, "torch_pred.npy"), &err)) ||
            io_array_copy(torch_pred, AD_F32, 2, yshape, want, &err) != 0)
            goto file_error;
        for (int i = 0; i < 5; i++)
            worst = fmax(worst, fabs(pred[i] - want[i]));
        printf("largest difference from PyTorch: %.3g\n", worst);
        if (worst > 1e-6) {
            fprintf(stderr, "chainrule and PyTorch disagree\n");
            goto done;
        }
    }

    /* 3. fine-tune in chainrule: Adam on y = sin(3 x0) x1^2 */
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_ADAM);
    nn_optimizer *opt = nn_optimizer_new(m, &cfg, &err);
    if (!opt) {
        fprintf(stderr, "%s\n", err.message);
        goto done;
    }
    nn_rng rng;
    nn_rng_seed(&rng, 7);
    double loss = 0;
    for (int step = 0; step < 200; step++) {
        double bx[64], by[32];
        for (int i = 0; i < 32; i++) {
            bx[2 * i] = 2 * nn_rng_uniform(&rng) - 1;
            bx[2 * i + 1] = 2 * nn_rng_uniform(&rng) - 1;
            by[i] = sin(3 * bx[2 * i]) * bx[2 * i + 1] * bx[2 * i + 1];
        }
        if (nn_model_set_input(m, bx, 32, 2) || nn_model_set_targets(m, by, 32, 1) ||
            nn_model_train_step(m, opt, &loss)) {
            nn_optimizer_free(opt);
            goto model_error;
        }
    }
    nn_optimizer_free(opt);
    printf("fine-tuned in chainrule: last batch loss %.4f\n", loss);

    /* 4. back to PyTorch: the weights and chainrule's predictions */
    float out[5];
    if (nn_model_predict_f32(m, x, 5, 2, pred) != 0)
        goto model_error;
    for (int i = 0; i < 5; i++)
        out[i] = (float)pred[i];
    io_array probe_out = {"probe", AD_F32, 2, {5, 2}, x};
    io_array pred_out = {"pred", AD_F32, 2, {5, 1}, out};
    if (nn_model_save_npz(m, in(dir, "mlp_chainrule.npz")) != 0 ||
        nn_model_save_safetensors(m, in(dir, "mlp_chainrule.safetensors")) != 0)
        goto model_error;
    if (io_npy_write(in(dir, "probe.npy"), &probe_out, &err) != 0 ||
        io_npy_write(in(dir, "chainrule_pred.npy"), &pred_out, &err) != 0)
        goto file_error;
    printf("wrote %s\n", in(dir, "mlp_chainrule.npz"));
    status = 0;
    goto done;
file_error:
    fprintf(stderr, "%s\n", err.message);
    goto done;
model_error:
    fprintf(stderr, "%s\n", nn_model_error(m));
done:
    io_array_free(probe);
    io_array_free(torch_pred);
    nn_model_free(m);
    return status;
}
