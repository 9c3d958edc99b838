//! Opens the real GGUF models kept in the terse model store and checks them
//! against values read with the Python `gguf` package (GGUFReader).
//!
//! The models live in `$TERSE_HOME/models/` (default `~/.cache/terse/models/`).
//! A missing model fails the test with the path it looked at: these tests
//! must never pass vacuously.

use std::path::PathBuf;
use std::time::Instant;

use terse_gguf::{GgmlType, GgufFile};

fn model_path(relative: &str) -> PathBuf {
    let home = std::env::var_os("TERSE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/terse")))
        .expect("neither TERSE_HOME nor HOME is set: cannot locate the model store");
    let path = home.join("models").join(relative);
    assert!(
        path.is_file(),
        "model file {} is missing; fetch it into the terse model store (or set TERSE_HOME) to run this test",
        path.display()
    );
    path
}

fn open(relative: &str) -> GgufFile {
    let path = model_path(relative);
    let start = Instant::now();
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("opened {} in {:?}", path.display(), start.elapsed());
    file
}

#[test]
fn qwen2_5_coder_0_5b_matches_gguf_py() {
    let f = open("qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert_eq!(f.version(), 3);
    assert_eq!(f.file_size(), 491_400_064);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset(), 5_947_776);
    assert_eq!(f.metadata().len(), 26);
    assert_eq!(f.tensors().len(), 291);

    assert_eq!(f.architecture().unwrap(), "qwen2");
    assert_eq!(
        f.get_str("general.name").unwrap(),
        "Qwen2.5 Coder 0.5B Instruct AWQ"
    );
    assert_eq!(f.get_u32("qwen2.block_count").unwrap(), 24);
    assert_eq!(f.get_u32("qwen2.context_length").unwrap(), 32768);
    assert_eq!(f.get_u32("qwen2.embedding_length").unwrap(), 896);
    assert_eq!(f.get_f32("qwen2.rope.freq_base").unwrap(), 1_000_000.0);
    assert_eq!(
        f.get_f32("qwen2.attention.layer_norm_rms_epsilon").unwrap(),
        1e-6
    );
    assert_eq!(f.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 151645);
    assert!(!f.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "qwen2");
    assert_eq!(f.get_str("tokenizer.chat_template").unwrap().len(), 2507);

    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 151936);
    assert_eq!(tokens.get(0), Some("!"));
    assert_eq!(tokens.get(151643), Some("<|endoftext|>"));
    assert_eq!(tokens.get(151935), Some("[PAD151935]"));
    let merges = f.get_str_array("tokenizer.ggml.merges").unwrap();
    assert_eq!(merges.len(), 151387);
    assert_eq!(merges.get(0), Some("Ġ Ġ"));
    let types = f.get_i32_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!((types.len(), types[0], types[151643]), (151936, 1, 3));

    // (index, name, type, dims, absolute offset, bytes) from GGUFReader.
    let expected = [
        (
            0,
            "output.weight",
            GgmlType::Q8_0,
            vec![896, 151936],
            5_947_776,
            144_643_072,
        ),
        (
            1,
            "token_embd.weight",
            GgmlType::Q5_0,
            vec![896, 151936],
            150_590_848,
            93_592_576,
        ),
        (
            2,
            "blk.0.attn_norm.weight",
            GgmlType::F32,
            vec![896],
            244_183_424,
            3584,
        ),
        (
            3,
            "blk.0.ffn_down.weight",
            GgmlType::Q6_K,
            vec![4864, 896],
            244_187_008,
            3_575_040,
        ),
        (
            50,
            "blk.12.attn_norm.weight",
            GgmlType::F32,
            vec![896],
            286_552_192,
            3584,
        ),
        (
            100,
            "blk.16.ffn_gate.weight",
            GgmlType::Q5_0,
            vec![896, 4864],
            330_166_400,
            2_996_224,
        ),
        (
            290,
            "output_norm.weight",
            GgmlType::F32,
            vec![896],
            491_396_480,
            3584,
        ),
    ];
    for (index, name, ggml_type, dims, offset, size) in expected {
        let t = &f.tensors()[index];
        assert_eq!(t.name, name);
        assert_eq!(f.tensor(name), Some(t));
        assert_eq!(t.ggml_type, ggml_type, "{name}");
        assert_eq!(t.dims, dims, "{name}");
        assert_eq!((t.offset, t.size_bytes), (offset, size), "{name}");
        assert_eq!(f.tensor_data(t).len() as u64, size);
    }
    let ffn_down = f.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(
        &f.tensor_data(ffn_down)[..8],
        &[0x52, 0xf2, 0x40, 0x26, 0x24, 0xd2, 0x1b, 0x22]
    );

    let count = |ty| f.tensors().iter().filter(|t| t.ggml_type == ty).count();
    assert_eq!(
        [
            GgmlType::Q5_0,
            GgmlType::F32,
            GgmlType::Q8_0,
            GgmlType::Q6_K,
            GgmlType::Q4_K
        ]
        .map(count),
        [133, 121, 13, 12, 12]
    );
}

#[test]
fn gemma3_270m_matches_gguf_py() {
    let f = open("gemma3-270m/gemma-3-270m-q4_k_m.gguf");
    assert_eq!(f.architecture().unwrap(), "gemma3");
    assert_eq!(f.tensors().len(), 236);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.data_offset(), 6_525_120);
    assert_eq!(f.get_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(f.get_str_array("general.tags").unwrap().len(), 4);
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        262144
    );
    assert_eq!(
        f.get_f32_array("tokenizer.ggml.scores").unwrap().len(),
        262144
    );

    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(embd.dims, [640, 262144]);
    assert_eq!((embd.offset, embd.size_bytes), (6_527_680, 178_257_920));
    let attn_out = f.tensor("blk.0.attn_output.weight").unwrap();
    assert_eq!(attn_out.ggml_type, GgmlType::Q4_K);
    assert_eq!(attn_out.dims, [1024, 640]);
    assert_eq!(
        (attn_out.offset, attn_out.size_bytes),
        (184_901_824, 368_640)
    );
    let last = f.tensors().last().unwrap();
    assert_eq!(last.name, "blk.17.post_ffw_norm.weight");
    assert_eq!((last.offset, last.size_bytes), (253_110_464, 2560));
}
