// chat.h: the chat formats a model may have been tuned with, as a small table:
// how a conversation is rendered into text, and the token that ends a turn.
#pragma once
#include "tokenizer.h"

typedef enum {
    CHAT_LLAMA3,    // Llama-3.x: <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
    CHAT_CHATML,    // ChatML (Qwen, SmolLM2, ...): <|im_start|>role\n...<|im_end|>\n
    CHAT_SMOLLM2,   // ChatML with SmolLM2's default system message when none is given
    CHAT_QWEN2,     // ChatML with Qwen2's default system message ("You are a helpful assistant.")
    CHAT_QWEN25,    // ChatML with Qwen2.5's ("You are Qwen, created by Alibaba Cloud. ...")
    CHAT_RAW,       // no template: the messages' text as it is (how SEAL prompts a base model); no end-of-turn token
    CHAT_N_FORMATS
} ChatFormat;

// By the special tokens the tokenizer has: <|im_start|> and <|im_end|> give
// ChatML, anything else Llama-3.
ChatFormat chat_detect(const Tokenizer *t);
// The format a Jinja chat template (tokenizer_config.json's "chat_template" or
// GGUF's tokenizer.chat_template) renders, into *f; -1 (and *f untouched) when
// it is none of these.
int chat_detect_template(const char *tmpl, ChatFormat *f);
// The same from a Hugging Face folder's tokenizer_config.json ("chat_template"
// as one string). An absent or unreadable file, or another template, leaves *f.
void chat_detect_config(const char *tokenizer_config_path, ChatFormat *f);
// "llama3", "chatml", "smollm2", "qwen2", "qwen2.5" or "raw" (what --chat-format takes); errors list them.
int chat_format_parse(const char *name, ChatFormat *f, char *err);
const char *chat_format_name(ChatFormat f);
// The text of the special token that ends a turn: "<|eot_id|>", "<|im_end|>"; NULL for raw.
const char *chat_eot(ChatFormat f);
// The conversation as the format's template renders it, with the opening of an
// assistant turn when add_generation_prompt is set. Raw: the messages' contents
// joined by blank lines, nothing added. malloc'd; NULL when out of memory.
char *chat_render(ChatFormat f, const ChatMsg *msgs, int n, int add_generation_prompt);
