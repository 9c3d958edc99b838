//! `terse chat`: an interactive conversation. The conversation stays in one KV-cache
//! sequence; each turn re-renders the template and prefills only what changed.

use super::{ModelArgs, SamplingArgs};
use anyhow::{Context, Result};
use clap::Args;
use std::io::{BufRead, Write};
use terse_engine::{ChatMessage, Sampler, StreamDecoder};

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System message that opens the conversation.
    #[arg(long)]
    pub system: Option<String>,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let mut sampler = Sampler::new(args.sampling.config()?);
    let mut engine = args.model.load()?;
    if engine.chat_template().is_none() {
        eprintln!("warning: the model has no chat template; using ChatML");
    }
    let tokenizer = engine.tokenizer().clone();
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(system) = &args.system {
        history.push(ChatMessage::new("system", system.clone()));
    }
    let seq = engine.new_sequence();
    // Tokens currently held by the sequence's cache.
    let mut cached: Vec<u32> = Vec::new();
    eprintln!(
        "terse chat — {} (empty line or Ctrl-D to quit)",
        engine.path().display()
    );
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("reading stdin")? == 0
            || line.trim().is_empty()
        {
            break;
        }
        history.push(ChatMessage::new(
            "user",
            line.trim_end_matches(['\r', '\n']).to_string(),
        ));
        let text = engine.render_chat(&history, true)?;
        let tokens = tokenizer.encode(&text, false, true);
        // Keep the cached prefix the new prompt shares; prefill only the rest.
        let common = cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count();
        engine.truncate(seq, common)?;
        cached.truncate(common);
        let mut decoder = StreamDecoder::new();
        let mut reply = String::new();
        let (generated, _, stats) = engine.generate_on(
            seq,
            &tokens[common..],
            &mut sampler,
            args.sampling.max_tokens,
            &mut |t| {
                let piece = decoder.push(&tokenizer, t.id);
                reply.push_str(&piece);
                print!("{piece}");
                stdout.flush().is_ok()
            },
        )?;
        let rest = decoder.flush();
        reply.push_str(&rest);
        println!("{rest}");
        cached.extend_from_slice(&tokens[common..]);
        // The sequence holds every generated token except a final end-of-generation one.
        let kept = engine.seq_len(seq)? - cached.len();
        cached.extend_from_slice(&generated[..kept]);
        eprintln!(
            "[{} new prompt tokens, {} generated, {:.1} tok/s]",
            stats.prompt_tokens,
            stats.generated_tokens,
            stats.decode_tokens_per_s()
        );
        history.push(ChatMessage::new("assistant", reply));
    }
    Ok(())
}
