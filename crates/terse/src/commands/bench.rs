//! `terse bench`: prompt processing (ppN) and generation (tgN) speed measured the way
//! llama.cpp's llama-bench measures them, a mixed workload run one sequence at a time and
//! packed into shared forward passes, how close decoding comes to the memory-bandwidth
//! limit, and optionally llama-bench itself on the same file, interleaved with terse.

mod llama_cpp;
mod machine;
mod report;

use super::info::human_bytes;
use super::ModelArgs;
use anyhow::{ensure, Context, Result};
use clap::Args;
use llama_cpp::LlamaBench;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use report::{BenchReport, ModelSummary, Spread, TestResult};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use terse_engine::kv_cache::BLOCK_TOKENS;
use terse_engine::sampler::argmax;
use terse_engine::{Engine, EngineOptions, Outputs, SeqId, Span, StepOutput, PREFILL_CHUNK_TOKENS};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt lengths to time, comma-separated (0 = no prompt test).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to time, comma-separated (0 = no generation test).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Timed runs of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Sequences of the mixed test, run one after another and then packed together
    /// (0 = no mixed test).
    #[arg(long, default_value_t = 0)]
    pub mixed: usize,
    /// Tokens each sequence of the mixed test generates after its prompt.
    #[arg(long, default_value_t = 32)]
    pub mixed_gen: usize,
    /// Untimed runs before the timed runs of each test.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Print only a JSON array of results on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also run llama.cpp's llama-bench at PATH on the same model file, one run after
    /// each terse run, and compare.
    #[arg(long, value_name = "PATH")]
    pub compare_llama_cpp: Option<PathBuf>,
    /// Time each kind of operation of the forward pass and show where the time goes.
    #[arg(long)]
    pub profile: bool,
    /// Kernel level to run (scalar, avx2, avx512; default: $TERSE_KERNELS, else the
    /// best this CPU has), to compare the levels one machine supports.
    #[arg(long, value_name = "LEVEL")]
    pub kernels: Option<terse_kernels::Level>,
}

/// Seeds the prompt tokens, so every run and every build times the same input.
const TOKEN_SEED: u64 = 0x7e55e;
/// Prompt lengths of the mixed test are spread evenly over this range.
const MIXED_PROMPT_LENGTHS: (usize, usize) = (32, 256);

/// One timed test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    /// Prefill of this many tokens into an empty sequence.
    Prompt(usize),
    /// This many single-token forward passes from an empty sequence.
    Generate(usize),
    /// The mixed workload, each sequence alone or all packed into shared passes.
    Mixed { sequences: usize, batched: bool },
}

impl Test {
    fn name(self) -> String {
        match self {
            Test::Prompt(n) => format!("pp{n}"),
            Test::Generate(n) => format!("tg{n}"),
            Test::Mixed {
                sequences,
                batched: false,
            } => format!("mixed{sequences} sequential"),
            Test::Mixed {
                sequences,
                batched: true,
            } => format!("mixed{sequences} batched"),
        }
    }

    /// The same test as llama-bench's `-p` and `-n` values, if it has one.
    fn llama_bench_counterpart(self) -> Option<(usize, usize)> {
        match self {
            Test::Prompt(n) => Some((n, 0)),
            Test::Generate(n) => Some((0, n)),
            Test::Mixed { .. } => None,
        }
    }
}

/// Tests whose repetitions are interleaved: the mixed test's two ways of running the
/// same work alternate, so both see the same machine state.
fn test_groups(args: &BenchArgs) -> Vec<Vec<Test>> {
    let mut groups: Vec<Vec<Test>> = Vec::new();
    groups.extend(
        args.n_prompt
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| vec![Test::Prompt(n)]),
    );
    groups.extend(
        args.n_gen
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| vec![Test::Generate(n)]),
    );
    if args.mixed > 0 {
        groups.push(
            [false, true]
                .map(|batched| Test::Mixed {
                    sequences: args.mixed,
                    batched,
                })
                .to_vec(),
        );
    }
    groups
}

/// Prompt lengths of the mixed test: `sequences` lengths spread evenly over
/// [`MIXED_PROMPT_LENGTHS`], shortest first.
fn mixed_prompt_lengths(sequences: usize) -> Vec<usize> {
    let (shortest, longest) = MIXED_PROMPT_LENGTHS;
    let steps = sequences.saturating_sub(1).max(1);
    (0..sequences)
        .map(|i| shortest + (longest - shortest) * i / steps)
        .collect()
}

/// Context size that fits every test: the longest single sequence, and the mixed
/// test's sequences all at once, each rounded up to whole cache blocks.
fn needed_ctx_size(args: &BenchArgs) -> usize {
    let longest_single = args
        .n_prompt
        .iter()
        .chain(&args.n_gen)
        .copied()
        .max()
        .unwrap_or(0);
    let mixed_total: usize = mixed_prompt_lengths(args.mixed)
        .iter()
        .map(|len| (len + args.mixed_gen).next_multiple_of(BLOCK_TOKENS))
        .sum();
    longest_single.max(mixed_total).max(1)
}

pub fn run(args: BenchArgs) -> Result<()> {
    ensure!(args.repetitions > 0, "--repetitions must be at least 1");
    let groups = test_groups(&args);
    ensure!(
        !groups.is_empty(),
        "nothing to run: give a non-zero -p, -n or --mixed"
    );
    ensure!(
        args.mixed == 0 || args.mixed_gen > 0,
        "--mixed-gen must be at least 1"
    );
    let llama_bench = args
        .compare_llama_cpp
        .as_deref()
        .map(LlamaBench::new)
        .transpose()?;

    let path = args.model.resolve()?;
    let ctx_size = match args.model.ctx_size {
        0 => needed_ctx_size(&args),
        given => given,
    };
    let engine = Engine::load(
        &path,
        &EngineOptions {
            threads: args.model.threads,
            ctx_size,
            kv_capacity_tokens: 0,
        },
    )
    .with_context(|| format!("loading {}", path.display()))?;
    let model = ModelSummary::new(&engine);
    eprintln!(
        "terse bench: {} on {} threads ({} of weights read per token), {} kernels",
        model.name,
        engine.threads(),
        human_bytes(model.bytes_per_token as u64),
        terse_kernels::level()
    );

    let mut bench = Bench::new(engine, args.profile);
    let mut results = Vec::new();
    for group in &groups {
        results.extend(bench.run_group(group, &args, llama_bench.as_ref())?);
    }

    // Read before the bandwidth test, whose buffer would otherwise be the peak.
    let peak_rss_bytes = machine::peak_rss_bytes();
    eprintln!(
        "measuring memory read bandwidth on {} threads…",
        bench.engine.threads()
    );
    let bandwidth = machine::read_bandwidth(bench.engine.threads());
    let report = BenchReport {
        model,
        n_threads: bench.engine.threads(),
        kernels: terse_kernels::level(),
        memory_bandwidth_bytes_per_s: bandwidth,
        peak_rss_bytes,
        kv_cache_bytes: bench.engine.kv_cache().storage_bytes() as u64,
        kv_cache_tokens: bench.engine.kv_cache().shape().capacity_tokens,
        profiled: args.profile,
        results,
    };
    if args.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.markdown());
    }
    Ok(())
}

/// One timed run: tokens processed (prompt and generated) and the time taken.
struct RunTiming {
    tokens: usize,
    elapsed: Duration,
    /// Picking the next tokens, part of `elapsed`.
    argmax: Argmax,
}

impl RunTiming {
    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Greedy choice of the next token, timed so the profile can show it beside the
/// engine's operations.
#[derive(Default)]
struct Argmax {
    time: Duration,
    calls: u64,
}

impl Argmax {
    fn pick(&mut self, logits: Option<&[f32]>) -> u32 {
        let start = Instant::now();
        let token = argmax(logits.unwrap_or(&[]));
        self.time += start.elapsed();
        self.calls += 1;
        token
    }
}

/// The engine under test, with the seeded source of prompt tokens.
struct Bench {
    engine: Engine,
    profile: bool,
    rng: StdRng,
}

impl Bench {
    fn new(mut engine: Engine, profile: bool) -> Self {
        engine.set_profiling(profile);
        Bench {
            engine,
            profile,
            rng: StdRng::seed_from_u64(TOKEN_SEED),
        }
    }

    /// Warm-up runs, then the timed repetitions of every test of `group` in turn, each
    /// followed by one llama-bench run of the same test when comparing.
    fn run_group(
        &mut self,
        group: &[Test],
        args: &BenchArgs,
        llama_bench: Option<&LlamaBench>,
    ) -> Result<Vec<TestResult>> {
        for &test in group {
            for _ in 0..args.warmup {
                eprintln!("{}: warm-up run", test.name());
                self.run_warmup(test)?;
            }
        }
        // The warm-up is not part of any test's profile.
        self.engine.take_profile();
        let mut results: Vec<TestResult> = group
            .iter()
            .map(|&test| TestResult::new(test.name(), matches!(test, Test::Generate(_))))
            .collect();
        for rep in 1..=args.repetitions {
            for (&test, result) in group.iter().zip(&mut results) {
                let timing = self.run(test, args.mixed_gen)?;
                result.n_tokens = timing.tokens;
                result.samples.push(timing.tokens_per_s());
                result.elapsed += timing.elapsed;
                if self.profile {
                    let mut profile = self.engine.take_profile();
                    if timing.argmax.calls > 0 {
                        profile.record("argmax", timing.argmax.time, timing.argmax.calls);
                    }
                    result.profile.merge(&profile);
                }
                eprintln!(
                    "{} run {rep}/{}: {:.2} t/s",
                    result.test,
                    args.repetitions,
                    timing.tokens_per_s()
                );
                if let (Some(llama), Some((n_prompt, n_gen))) =
                    (llama_bench, test.llama_bench_counterpart())
                {
                    let tokens_per_s =
                        llama.run(self.engine.path(), self.engine.threads(), n_prompt, n_gen)?;
                    eprintln!(
                        "{} run {rep}/{} on llama.cpp: {tokens_per_s:.2} t/s",
                        result.test, args.repetitions
                    );
                    result.llama_cpp_samples.push(tokens_per_s);
                }
            }
        }
        if let (
            [Test::Mixed { batched: false, .. }, Test::Mixed { batched: true, .. }],
            [sequential, batched],
        ) = (group, results.as_mut_slice())
        {
            if let (Some(s), Some(b)) = (
                Spread::of(&sequential.samples),
                Spread::of(&batched.samples),
            ) {
                batched.speedup_over_sequential = Some(b.median / s.median);
            }
        }
        Ok(results)
    }

    /// Like llama-bench: a full prefill before prompt tests, one token before
    /// generation tests; the mixed test runs its workload generating one token.
    fn run_warmup(&mut self, test: Test) -> Result<RunTiming> {
        match test {
            Test::Generate(_) => self.run(Test::Generate(1), 1),
            Test::Prompt(_) | Test::Mixed { .. } => self.run(test, 1),
        }
    }

    /// One run of `test`; the mixed test generates `mixed_gen` tokens per sequence.
    fn run(&mut self, test: Test, mixed_gen: usize) -> Result<RunTiming> {
        match test {
            Test::Prompt(n) => {
                let tokens = self.prompt_tokens(n);
                self.with_sequences(1, |engine, seqs| prompt_run(engine, seqs[0], &tokens))
            }
            Test::Generate(n) => {
                let tokenizer = self.engine.tokenizer();
                let first = match tokenizer.bos() {
                    Some(bos) if tokenizer.add_bos() => bos,
                    _ => self.prompt_tokens(1)[0],
                };
                self.with_sequences(1, |engine, seqs| generation_run(engine, seqs[0], first, n))
            }
            Test::Mixed { sequences, batched } => {
                let prompts = self.mixed_prompts(sequences);
                self.with_sequences(sequences, |engine, seqs| {
                    if batched {
                        mixed_batched_run(engine, seqs, &prompts, mixed_gen)
                    } else {
                        mixed_sequential_run(engine, seqs, &prompts, mixed_gen)
                    }
                })
            }
        }
    }

    /// Runs `f` on `n` fresh sequences and frees them, whatever `f` returns.
    fn with_sequences<T>(
        &mut self,
        n: usize,
        f: impl FnOnce(&mut Engine, &[SeqId]) -> Result<T>,
    ) -> Result<T> {
        let seqs: Vec<SeqId> = (0..n).map(|_| self.engine.new_sequence()).collect();
        let result = f(&mut self.engine, &seqs);
        for seq in seqs {
            self.engine.free(seq)?;
        }
        result
    }

    /// `n` prompt tokens as llama-bench makes them: BOS first when the model wants one,
    /// then pseudo-random ids from the middle of the vocabulary, skipping control
    /// tokens (whose embeddings may be untrained).
    fn prompt_tokens(&mut self, n: usize) -> Vec<u32> {
        let tokenizer = self.engine.tokenizer();
        let n_vocab = self.engine.hparams().n_vocab as u32;
        let range = if n_vocab / 2 > 1000 {
            1000..n_vocab / 2
        } else {
            0..n_vocab
        };
        let mut tokens = Vec::with_capacity(n);
        if let (true, Some(bos)) = (tokenizer.add_bos(), tokenizer.bos()) {
            tokens.push(bos);
        }
        while tokens.len() < n {
            let id = self.rng.gen_range(range.clone());
            if !tokenizer.is_control(id) {
                tokens.push(id);
            }
        }
        tokens.truncate(n);
        tokens
    }

    /// The mixed test's prompts, the same on every run so both ways time the same work.
    fn mixed_prompts(&mut self, sequences: usize) -> Vec<Vec<u32>> {
        self.rng = StdRng::seed_from_u64(TOKEN_SEED);
        mixed_prompt_lengths(sequences)
            .into_iter()
            .map(|len| self.prompt_tokens(len))
            .collect()
    }
}

/// pp: one prefill of `tokens` into the empty `seq`.
fn prompt_run(engine: &mut Engine, seq: SeqId, tokens: &[u32]) -> Result<RunTiming> {
    let start = Instant::now();
    prefill(engine, seq, tokens)?;
    Ok(RunTiming {
        tokens: tokens.len(),
        elapsed: start.elapsed(),
        argmax: Argmax::default(),
    })
}

/// tg: `n` single-token forward passes into the empty `seq`, the first on `first`,
/// each feeding the previous one's most likely token (llama-bench feeds random ones;
/// a pass costs the same whichever token it is).
fn generation_run(engine: &mut Engine, seq: SeqId, first: u32, n: usize) -> Result<RunTiming> {
    let mut argmax = Argmax::default();
    let start = Instant::now();
    let mut token = first;
    for pos in 0..n {
        let out = engine.forward(&[decode_span(seq, &token, pos)])?;
        token = argmax.pick(out.last_logits(0));
    }
    Ok(RunTiming {
        tokens: n,
        elapsed: start.elapsed(),
        argmax,
    })
}

/// The mixed workload one sequence at a time: a prompt's prefill and its decode steps
/// run before the next sequence starts, each pass holding one sequence.
fn mixed_sequential_run(
    engine: &mut Engine,
    seqs: &[SeqId],
    prompts: &[Vec<u32>],
    gen: usize,
) -> Result<RunTiming> {
    let mut argmax = Argmax::default();
    let start = Instant::now();
    for (&seq, prompt) in seqs.iter().zip(prompts) {
        let mut token = argmax.pick(prefill(engine, seq, prompt)?.last_logits(0));
        for pos in prompt.len()..prompt.len() + gen - 1 {
            let out = engine.forward(&[decode_span(seq, &token, pos)])?;
            token = argmax.pick(out.last_logits(0));
        }
    }
    Ok(RunTiming {
        tokens: mixed_tokens(prompts, gen),
        elapsed: start.elapsed(),
        argmax,
    })
}

/// The mixed workload packed: one forward pass prefills every prompt, then each decode
/// step is one pass with a one-token span per sequence.
fn mixed_batched_run(
    engine: &mut Engine,
    seqs: &[SeqId],
    prompts: &[Vec<u32>],
    gen: usize,
) -> Result<RunTiming> {
    let mut argmax = Argmax::default();
    let start = Instant::now();
    let prefill_spans: Vec<Span> = seqs
        .iter()
        .zip(prompts)
        .map(|(&seq, prompt)| Span {
            seq,
            tokens: prompt,
            start_pos: 0,
            outputs: Outputs::Last,
            hidden: false,
        })
        .collect();
    let out = engine.forward(&prefill_spans)?;
    let mut next: Vec<u32> = (0..seqs.len())
        .map(|i| argmax.pick(out.last_logits(i)))
        .collect();
    for step in 0..gen - 1 {
        let spans: Vec<Span> = seqs
            .iter()
            .zip(prompts)
            .zip(&next)
            .map(|((&seq, prompt), token)| decode_span(seq, token, prompt.len() + step))
            .collect();
        let out = engine.forward(&spans)?;
        next = (0..seqs.len())
            .map(|i| argmax.pick(out.last_logits(i)))
            .collect();
    }
    Ok(RunTiming {
        tokens: mixed_tokens(prompts, gen),
        elapsed: start.elapsed(),
        argmax,
    })
}

/// One token of `seq` at position `pos`, wanting its logits.
fn decode_span(seq: SeqId, token: &u32, pos: usize) -> Span<'_> {
    Span {
        seq,
        tokens: std::slice::from_ref(token),
        start_pos: pos,
        outputs: Outputs::Last,
        hidden: false,
    }
}

/// Prompt and generated tokens of the mixed workload.
fn mixed_tokens(prompts: &[Vec<u32>], gen: usize) -> usize {
    prompts.iter().map(|p| p.len() + gen).sum()
}

/// Prefills `tokens` into the empty `seq` in micro-batches, asking for the logits of
/// the last token only, as llama-bench does.
fn prefill<'e>(engine: &'e mut Engine, seq: SeqId, tokens: &[u32]) -> Result<&'e StepOutput> {
    let last_start = tokens.len().saturating_sub(1) / PREFILL_CHUNK_TOKENS * PREFILL_CHUNK_TOKENS;
    for (i, chunk) in tokens[..last_start]
        .chunks(PREFILL_CHUNK_TOKENS)
        .enumerate()
    {
        engine.forward(&[Span {
            seq,
            tokens: chunk,
            start_pos: i * PREFILL_CHUNK_TOKENS,
            outputs: Outputs::None,
            hidden: false,
        }])?;
    }
    Ok(engine.forward(&[Span {
        seq,
        tokens: &tokens[last_start..],
        start_pos: last_start,
        outputs: Outputs::Last,
        hidden: false,
    }])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_prompt_lengths_spread_over_the_range() {
        assert_eq!(
            mixed_prompt_lengths(8),
            [32, 64, 96, 128, 160, 192, 224, 256]
        );
        assert_eq!(mixed_prompt_lengths(1), [32]);
        assert!(mixed_prompt_lengths(0).is_empty());
    }

    #[test]
    fn test_names_follow_llama_bench() {
        assert_eq!(Test::Prompt(512).name(), "pp512");
        assert_eq!(Test::Generate(128).name(), "tg128");
        assert_eq!(
            Test::Mixed {
                sequences: 8,
                batched: true
            }
            .name(),
            "mixed8 batched"
        );
    }
}
