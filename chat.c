// chat.c: see chat.h. Each format reproduces its Jinja template character for
// character (Llama-3's lives in tokenizer.c as chat_render_llama3).
#include "chat.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

// SmolLM2-Instruct's, Qwen2-Instruct's and Qwen2.5's templates open with a
// system turn of their own when the conversation has none.
#define SMOLLM2_SYSTEM "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
#define QWEN2_SYSTEM "You are a helpful assistant."
#define QWEN25_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

static const struct { const char *name, *eot, *default_system; } FORMATS[CHAT_N_FORMATS] = {
    [CHAT_LLAMA3] = {"llama3", "<|eot_id|>", NULL},
    [CHAT_CHATML] = {"chatml", "<|im_end|>", NULL},
    [CHAT_SMOLLM2] = {"smollm2", "<|im_end|>", SMOLLM2_SYSTEM},
    [CHAT_QWEN2] = {"qwen2", "<|im_end|>", QWEN2_SYSTEM},
    [CHAT_QWEN25] = {"qwen2.5", "<|im_end|>", QWEN25_SYSTEM},
    [CHAT_RAW] = {"raw", NULL, NULL},
};

ChatFormat chat_detect(const Tokenizer *t) {
    return tok_find(t, "<|im_start|>") >= 0 && tok_find(t, "<|im_end|>") >= 0 ? CHAT_CHATML : CHAT_LLAMA3;
}

int chat_detect_template(const char *tmpl, ChatFormat *f) {
    if (!tmpl) return -1;
    if (strstr(tmpl, "<|start_header_id|>") && strstr(tmpl, "<|eot_id|>")) *f = CHAT_LLAMA3;
    else if (strstr(tmpl, "<|im_start|>") && strstr(tmpl, SMOLLM2_SYSTEM)) *f = CHAT_SMOLLM2;
    else if (strstr(tmpl, "<|im_start|>") && strstr(tmpl, QWEN25_SYSTEM)) *f = CHAT_QWEN25;   // it holds Qwen2's text too
    else if (strstr(tmpl, "<|im_start|>system\\n" QWEN2_SYSTEM)) *f = CHAT_QWEN2;   // as the Jinja string spells it: a backslash and n
    else if (strstr(tmpl, "<|im_start|>") && strstr(tmpl, "<|im_end|>")) *f = CHAT_CHATML;
    else return -1;
    return 0;
}

void chat_detect_config(const char *path, ChatFormat *f) {
    char *json = read_file(path, NULL, NULL);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(t)) chat_detect_template(t->valuestring, f);
    cJSON_Delete(root);
    free(json);
}

int chat_format_parse(const char *name, ChatFormat *f, char *err) {
    for (int i = 0; i < CHAT_N_FORMATS; i++)
        if (name && !strcmp(name, FORMATS[i].name)) { *f = (ChatFormat)i; return 0; }
    return errf(err, "--chat-format: \"%s\" is not a chat format (expected llama3, chatml, smollm2, qwen2, qwen2.5 or raw)", name ? name : "");
}

const char *chat_format_name(ChatFormat f) { return f >= 0 && f < CHAT_N_FORMATS ? FORMATS[f].name : "?"; }

const char *chat_eot(ChatFormat f) { return f >= 0 && f < CHAT_N_FORMATS ? FORMATS[f].eot : NULL; }

// {% for m in messages %}<|im_start|>{{role}}\n{{content}}<|im_end|>\n{% endfor %}
// (content untrimmed), SmolLM2 and Qwen first adding their system turn when the
// first message is not one.
static char *render_chatml(const ChatMsg *msgs, int n, int add_generation_prompt, const char *default_system) {
    StrBuf b = {0};
    if (default_system && !(n > 0 && msgs[0].role && !strcmp(msgs[0].role, "system"))) {
        sb_str(&b, "<|im_start|>system\n");
        sb_str(&b, default_system);
        sb_str(&b, "<|im_end|>\n");
    }
    for (int i = 0; i < n; i++) {
        sb_str(&b, "<|im_start|>");
        sb_str(&b, msgs[i].role ? msgs[i].role : "");
        sb_str(&b, "\n");
        sb_str(&b, msgs[i].content ? msgs[i].content : "");
        sb_str(&b, "<|im_end|>\n");
    }
    if (add_generation_prompt) sb_str(&b, "<|im_start|>assistant\n");
    return sb_done(&b);
}

// SEAL's base-model prompts (make_squad_data.py, utils.py) are sent as they are.
static char *render_raw(const ChatMsg *msgs, int n) {
    StrBuf b = {0};
    sb_str(&b, "");
    for (int i = 0; i < n; i++) {
        if (i) sb_str(&b, "\n\n");
        sb_str(&b, msgs[i].content ? msgs[i].content : "");
    }
    return sb_done(&b);
}

char *chat_render(ChatFormat f, const ChatMsg *msgs, int n, int add_generation_prompt) {
    switch (f) {
    case CHAT_RAW: return render_raw(msgs, n);
    case CHAT_LLAMA3: return chat_render_llama3(msgs, n, add_generation_prompt);
    default: return render_chatml(msgs, n, add_generation_prompt, f >= 0 && f < CHAT_N_FORMATS ? FORMATS[f].default_system : NULL);
    }
}
