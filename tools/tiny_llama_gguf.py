#!/usr/bin/env python3
"""Write a tiny random-weight Llama GGUF for energyllm's real-server tests.

Usage: tiny_llama_gguf.py VOCAB_GGUF OUT_GGUF

The tokenizer comes from VOCAB_GGUF (llama.cpp's vocab-only `models/ggml-vocab-llama-spm.gguf`);
the weights are random (numpy seed 0), so the model generates nonsense quickly: 2 layers, hidden
size 64, 4 heads, context 2048. The output is the same bytes for the same vocab file.
Needs the `gguf` and `numpy` PyPI packages (`cargo xtask llama-server` installs them).
"""
import sys

import numpy as np
import gguf

N_LAYER = 2
N_EMBD = 64
N_HEAD = 4
N_FF = 128
N_CTX = 2048


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    vocab_path, out_path = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(vocab_path)
    tokens = [bytes(p) for p in (reader.fields["tokenizer.ggml.tokens"].parts[i]
                                 for i in reader.fields["tokenizer.ggml.tokens"].data)]
    scores = reader.fields["tokenizer.ggml.scores"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(out_path, "llama")
    w.add_name("energyllm-tiny-random-llama")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model(reader.fields["tokenizer.ggml.model"].contents())
    w.add_tokenizer_pre(reader.fields["tokenizer.ggml.pre"].contents())
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(reader.fields["tokenizer.ggml.bos_token_id"].contents())
    w.add_eos_token_id(reader.fields["tokenizer.ggml.eos_token_id"].contents())
    w.add_unk_token_id(reader.fields["tokenizer.ggml.unknown_token_id"].contents())
    w.add_add_bos_token(reader.fields["tokenizer.ggml.add_bos_token"].contents())
    w.add_add_eos_token(reader.fields["tokenizer.ggml.add_eos_token"].contents())

    rng = np.random.default_rng(0)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    # numpy shapes are ggml's ne reversed: (rows, cols) = (out, in).
    w.add_tensor("token_embd.weight", rand(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + name + ".weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.weight", rand(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down.weight", rand(N_EMBD, N_FF))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("output.weight", rand(n_vocab, N_EMBD))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
