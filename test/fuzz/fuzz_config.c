// test/fuzz/fuzz_config.c: a Hugging Face config.json. What config_parse
// accepts must survive config_save and config_load unchanged.
#include "fuzz.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = fuzz_text(data, size), err[ERR_MAX];
    Config c, back;
    if (config_parse(&c, json, "config.json", err) == 0) {
        const char *path = fuzz_file("config.json", "", 0);
        FUZZ_CHECK(config_save(&c, path, err) == 0, "%s", err);
        FUZZ_CHECK(config_load(&back, path, err) == 0, "%s", err);
        FUZZ_CHECK(memcmp(&c, &back, sizeof c) == 0, "config.json does not read back as it was written");
    }
    free(json);
    return 0;
}
