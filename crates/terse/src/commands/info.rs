//! `terse info`: what is in a model file and what running it costs.

use super::ModelArgs;
use anyhow::Result;
use clap::Args;
use std::collections::BTreeMap;
use terse_engine::model::Model;
use terse_gguf::{GgufFile, MetaValue};

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Also list every tensor.
    #[arg(long)]
    pub tensors: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let path = args.model.resolve()?;
    let gguf = GgufFile::open(&path)?;
    println!("file: {}", path.display());
    println!(
        "size: {} ({} bytes), GGUF v{}",
        human_bytes(gguf.file_size()),
        gguf.file_size(),
        gguf.version()
    );
    println!("\nmetadata:");
    for (key, value) in gguf.metadata() {
        let shown = match value {
            MetaValue::String(s) if s.len() > 80 => {
                // The last char boundary at or before byte 77 (0 always is one).
                let cut = (0..=77).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                format!("{:?}… ({} chars)", &s[..cut], s.len())
            }
            other => other.to_string(),
        };
        println!("  {key} = {shown}");
    }

    let mut by_type: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for t in gguf.tensors() {
        let e = by_type.entry(t.ggml_type.name()).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.size_bytes;
    }
    println!("\ntensors by type:");
    println!(
        "  {:<6} {:>7} {:>14} {:>12}",
        "type", "count", "elements", "bytes"
    );
    for (ty, (count, elements, bytes)) in &by_type {
        println!(
            "  {ty:<6} {count:>7} {elements:>14} {:>12}",
            human_bytes(*bytes)
        );
    }
    if args.tensors {
        println!("\ntensors:");
        for t in gguf.tensors() {
            println!(
                "  {:<40} {:<6} {:?} {}",
                t.name,
                t.ggml_type.name(),
                t.dims,
                human_bytes(t.size_bytes)
            );
        }
    }
    match Model::load(&gguf) {
        Ok(model) => {
            let hp = model.hparams();
            println!(
                "\narchitecture: {} — {} layers, n_embd {}, {} heads ({} kv), head dim {}, ffn {}, vocab {}",
                hp.architecture, hp.n_layers, hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.n_ff, hp.n_vocab
            );
            let per_token = model.weight_bytes_per_token();
            println!(
                "weights read per generated token: {} ({per_token} bytes)",
                human_bytes(per_token as u64)
            );
            let kv_per_token = 2 * hp.n_layers * hp.n_head_kv * (hp.head_dim_k + hp.head_dim_v);
            println!(
                "KV cache per token (f16): {}",
                human_bytes(kv_per_token as u64)
            );
        }
        Err(e) => println!("\nthis engine cannot run it: {e}"),
    }
    let level = terse_kernels::level();
    let supported: Vec<&str> = terse_kernels::Level::supported()
        .into_iter()
        .map(|l| l.name())
        .collect();
    println!(
        "kernels: {level} (CPU features used: {}; this CPU runs {})",
        level.features(),
        supported.join(", ")
    );
    Ok(())
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
