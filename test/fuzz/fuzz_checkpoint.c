// test/fuzz/fuzz_checkpoint.c: model.safetensors.index.json, the shard list
// of a Hugging Face checkpoint folder, loaded with model_load beside a fixed
// config.json and one shard holding every tensor (shard.safetensors).
#include "fuzz.h"
#include "rundir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[300];
    char err[ERR_MAX], a[400], b[400];
    Model m;
    if (!dir[0]) {   // a tiny model saved, its weights renamed to a shard
        Config c = rundir_model_config();
        snprintf(dir, sizeof dir, "%s/ckpt", fuzz_dir());
        if (model_init(&m, &c, err) || model_save(&m, dir, err)) { fprintf(stderr, "%s\n", err); abort(); }
        model_free(&m);
        snprintf(a, sizeof a, "%s/model.safetensors", dir);
        snprintf(b, sizeof b, "%s/shard.safetensors", dir);
        if (rename(a, b)) abort();
    }
    fuzz_file("ckpt/model.safetensors.index.json", data, size);
    if (model_load(&m, dir, err) == 0) model_free(&m);
    return 0;
}
