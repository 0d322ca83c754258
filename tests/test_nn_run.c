/* test_nn_run.c -- training checkpoints (nn_checkpoint_save/_load): a model
 * file that nn_model_load reads, plus the optimizer, the graph generator
 * and the run; a resumed model continues bit for bit, diverged values are
 * neither saved nor loaded unless asked, crafted fields are refused. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainrule/checkpoint.h"
#include "chainrule/nn.h"

#define SPEC "conv2d(3,3,pad=1),relu,maxpool2d(2),flatten,dropout(0.5),dense(4)"

static char path[64];

static void make_path(void)
{
    snprintf(path, sizeof path, "/tmp/cr_run_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
}

static void remove_path(void) { unlink(path); }

TestSuite(nn_run, .init = make_path, .fini = remove_path);

static nn_model *model(void)
{
    nn_spec_options o = {.dtype = AD_F32,
                         .ndim = 3,
                         .shape = {1, 6, 6},
                         .outputs = 4,
                         .loss = NN_LOSS_CROSS_ENTROPY,
                         .batch = 4,
                         .seed = 3};
    ad_error err;
    nn_model *m = nn_model_from_spec(SPEC, &o, &err, NULL);
    cr_assert_not_null(m, "%s", err.message);
    return m;
}

/* Some steps on fixed data (dropout draws from the graph's generator). */
static void steps(nn_model *m, nn_optimizer *opt, int n)
{
    float x[4 * 36];
    int y[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4 * 36; i++)
        x[i] = (float)((i * 13) % 17) / 17.0f;
    for (int k = 0; k < n; k++) {
        double loss;
        cr_assert_eq(nn_model_set_input_f32(m, x, 4, 36), 0);
        cr_assert_eq(nn_model_set_labels(m, y, 4), 0);
        cr_assert_eq(nn_model_train_step(m, opt, &loss), 0, "%s", nn_model_error(m));
    }
}

static nn_optimizer *adam(nn_model *m)
{
    nn_optim_config c = nn_optim_defaults(NN_OPT_ADAM);
    nn_optimizer *o = nn_optimizer_new(m, &c, NULL);
    cr_assert_not_null(o);
    return o;
}

static void fill_run(nn_run *r)
{
    nn_run_init(r);
    snprintf(r->optimizer, sizeof r->optimizer, "adam");
    r->lr = 1e-3;
    r->batch = 4;
    r->seed = 3;
    r->val = 7;
    r->subset = 11;
    r->input_scale = 255;
    r->epochs = 5;
    r->epochs_done = 2;
    ad_error err;
    cr_assert_eq(nn_run_set_class_names(r, "a,b,c,d", &err), 0, "%s", err.message);
    nn_epoch_record e1 = {2.5, 0.25, NAN, NAN, 0.125}, e2 = {1.25, 0.5, 1.5, 0.75, 0.1};
    cr_assert_eq(nn_run_add_epoch(r, &e1, &err), 0);
    cr_assert_eq(nn_run_add_epoch(r, &e2, &err), 0);
}

Test(nn_run, resumed_training_continues_bit_for_bit)
{
    nn_model *a = model();
    nn_optimizer *oa = adam(a);
    steps(a, oa, 3);
    nn_run run;
    fill_run(&run);
    ad_error err;
    cr_assert_eq(nn_checkpoint_save(path, a, oa, &run, &err), 0, "%s", err.message);
    nn_run back;
    nn_optimizer *ob = NULL;
    nn_model *b = nn_checkpoint_load(path, 0, 0, &ob, &back, &err);
    cr_assert_not_null(b, "%s", err.message);
    cr_assert_not_null(ob);
    /* the run */
    cr_expect_str_eq(back.optimizer, "adam");
    cr_expect(back.lr == 1e-3 && back.batch == 4 && back.seed == 3 && back.val == 7 &&
              back.subset == 11 && back.input_scale == 255 && back.epochs == 5 &&
              back.epochs_done == 2);
    cr_assert_eq(back.nclasses, 4);
    cr_expect_str_eq(back.class_names[3], "d");
    cr_assert_eq(back.nhistory, 2);
    cr_expect(isnan(back.history[0].val_loss) && back.history[1].val_accuracy == 0.75 &&
              back.history[0].seconds == 0.125);
    cr_expect_eq(nn_optimizer_steps(ob), 3);
    /* the same next steps: weights, optimizer state and dropout masks */
    steps(a, oa, 2);
    steps(b, ob, 2);
    size_t bytes = (size_t)nn_model_param_count(a) * sizeof(float);
    cr_expect(memcmp(nn_model_params(a), nn_model_params(b), bytes) == 0,
              "a resumed model trains differently");
    cr_expect(memcmp(nn_optimizer_state(oa), nn_optimizer_state(ob),
                     (size_t)nn_optimizer_state_count(oa) * sizeof(float)) == 0);
    /* and the file is a model file */
    nn_model *c = nn_model_load(path, 0, &err);
    cr_assert_not_null(c, "%s", err.message);
    char spec[256];
    cr_assert_eq(nn_model_spec(c, spec, sizeof spec), 0);
    cr_expect_str_eq(spec, SPEC);
    nn_model_free(c);
    nn_run_finish(&run);
    nn_run_finish(&back);
    nn_optimizer_free(oa);
    nn_optimizer_free(ob);
    nn_model_free(a);
    nn_model_free(b);
}

/* Rewrites path with metadata key set to value (a valid checksum). */
static void craft(const char *key, const char *value)
{
    ad_error err;
    io_checkpoint *ck = io_checkpoint_read(path, &err);
    cr_assert_not_null(ck, "%s", err.message);
    size_t nt = io_checkpoint_count(ck), nm = io_checkpoint_meta_count(ck);
    io_array *t = calloc(nt, sizeof *t);
    io_ckpt_meta *m = calloc(nm, sizeof *m);
    for (size_t i = 0; i < nt; i++)
        t[i] = *io_checkpoint_tensor_at(ck, i);
    for (size_t i = 0; i < nm; i++) {
        m[i] = *io_checkpoint_meta_at(ck, i);
        if (strcmp(m[i].key, key) == 0)
            m[i].value = value;
    }
    cr_assert_eq(io_checkpoint_write(path, t, nt, m, nm, &err), 0, "%s", err.message);
    free(t);
    free(m);
    io_checkpoint_free(ck);
}

static void expect_load_error(ad_errcode code, const char *needle)
{
    ad_error err;
    nn_run run;
    nn_optimizer *o = NULL;
    nn_model *m = nn_checkpoint_load(path, 0, 0, &o, &run, &err);
    cr_expect_null(m);
    cr_expect_null(o);
    cr_expect_eq(err.code, code, "%s", err.message);
    cr_expect(strstr(err.message, needle), "'%s' lacks '%s'", err.message, needle);
    cr_expect_eq(run.nclasses, 0);
    cr_expect_null(run.history);
    nn_model_free(m);
}

Test(nn_run, crafted_and_diverged_files_are_refused)
{
    nn_model *a = model();
    nn_optimizer *oa = adam(a);
    steps(a, oa, 1);
    nn_run run;
    fill_run(&run);
    ad_error err;
    cr_assert_eq(nn_checkpoint_save(path, a, oa, &run, &err), 0, "%s", err.message);
    craft("chainrule.batch", "0");
    expect_load_error(AD_EFORMAT, "metadata chainrule.batch '0' is not valid");
    cr_assert_eq(nn_checkpoint_save(path, a, oa, &run, &err), 0);
    craft("chainrule.rng", "00zz");
    expect_load_error(AD_EFORMAT, "metadata chainrule.rng '00zz' is not valid");
    cr_assert_eq(nn_checkpoint_save(path, a, oa, &run, &err), 0);
    craft("chainrule.format", "chainrule-mlp/1");
    expect_load_error(AD_EUNSUPPORTED,
                      "format 'chainrule-mlp/1', this chainrule reads 'chainrule-train/2'");
    cr_assert_eq(nn_checkpoint_save(path, a, oa, &run, &err), 0);
    craft("chainrule.class_names", "a,b\x1b,c,d");
    expect_load_error(AD_EFORMAT, "name 2 has a control character (byte 0x1b)");
    cr_assert_eq(nn_checkpoint_save(path, a, oa, &run, &err), 0);
    craft("chainrule.class_names", "a,b,c");
    expect_load_error(AD_EFORMAT, "3 class names for 4 outputs");

    /* a NaN weight: not saved, and not loaded unless asked */
    float *p = nn_model_params(a);
    p[5] = NAN;
    cr_expect_eq(nn_checkpoint_save(path, a, oa, &run, &err), -1);
    cr_expect_eq(err.code, AD_ESTATE);
    cr_expect(strstr(err.message, "training diverged: 1 of 142 weights and 0 of 284 optimizer "
                                  "state values are NaN or infinite; "),
              "%s", err.message);
    cr_assert_eq(nn_model_save_safetensors(a, path), 0); /* the model file alone */
    expect_load_error(AD_EFORMAT, "a model without a training run (its metadata has no "
                                  "chainrule.format): nn_model_load reads it");
    nn_run_finish(&run);
    nn_optimizer_free(oa);
    nn_model_free(a);
}
