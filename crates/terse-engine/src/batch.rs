//! Continuous batching: many generations share every forward pass.
//!
//! Decoding one token reads every weight once, so one sequence per pass leaves the
//! CPU waiting on memory; packing the next token of many sequences into one pass
//! reads the weights once for all of them. The [`BatchScheduler`] keeps up to
//! `max_sequences` generations running: each [`step`](BatchScheduler::step) is one
//! forward pass holding the whole prompt of every newly admitted request and the last
//! sampled token of every running one. A request finishes on its own stop condition
//! and a waiting one takes its place on the next step.
//!
//! Results do not depend on the batch: every kernel computes each (row, token) pair
//! alone, and attention never crosses sequences, so a request's tokens are the same
//! as from [`Engine::generate`] with the same sampler.

use crate::engine::{Engine, EngineError, GenerationStats, Outputs, Span, StopReason};
use crate::kv_cache::{SeqId, BLOCK_TOKENS};
use crate::sampler::Sampler;
use std::collections::VecDeque;
use std::time::Instant;

/// One generation to run.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    pub sampler: Sampler,
    pub max_tokens: usize,
}

/// A request that left the scheduler: its id and what became of it.
pub type Finished = (RequestId, Result<Generation, EngineError>);

/// Handle of a submitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A finished generation: the generated tokens (a final end-of-generation token
/// included), why it stopped, and timings measured from its admission.
#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub reason: StopReason,
    pub stats: GenerationStats,
}

struct Running {
    id: RequestId,
    seq: SeqId,
    /// Positions the sequence holds in the KV cache.
    pos: usize,
    sampler: Sampler,
    max_tokens: usize,
    /// Tokens to feed on the next step: the prompt, then each sampled token.
    input: Vec<u32>,
    generated: Vec<u32>,
    /// Blocks of KV cache set aside for this request's longest possible sequence.
    reserved_blocks: usize,
    stats: GenerationStats,
    admitted: Instant,
}

/// Runs many generations together; see the module documentation.
pub struct BatchScheduler {
    max_sequences: usize,
    waiting: VecDeque<(RequestId, GenerationRequest)>,
    running: Vec<Running>,
    reserved_blocks: usize,
    next_id: u64,
}

impl BatchScheduler {
    /// A scheduler running at most `max_sequences` generations at once (at least 1).
    pub fn new(max_sequences: usize) -> Self {
        BatchScheduler {
            max_sequences: max_sequences.max(1),
            waiting: VecDeque::new(),
            running: Vec::new(),
            reserved_blocks: 0,
            next_id: 0,
        }
    }

    /// Queues a request; it starts on a later step.
    pub fn submit(&mut self, request: GenerationRequest) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.waiting.push_back((id, request));
        id
    }

    /// True when nothing is running or waiting.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Number of generations running now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Admits waiting requests, runs one forward pass over every running generation
    /// and samples one token for each. Returns the requests that finished, each with
    /// its own result: a request that cannot run (a prompt longer than the context, a
    /// bad token id) fails alone. An error of the whole step (which the reservations
    /// should prevent) is returned after every running request was freed.
    pub fn step(&mut self, engine: &mut Engine) -> Result<Vec<Finished>, EngineError> {
        let mut finished = Vec::new();
        self.admit(engine, &mut finished)?;
        if self.running.is_empty() {
            return Ok(finished);
        }

        let spans: Vec<Span> = self
            .running
            .iter()
            .map(|r| Span {
                seq: r.seq,
                tokens: &r.input,
                start_pos: r.pos,
                outputs: Outputs::Last,
                hidden: false,
            })
            .collect();
        let tokenizer = engine.tokenizer().clone();
        let out = match engine.forward(&spans) {
            Ok(out) => out,
            Err(err) => {
                self.abort_running(engine);
                return Err(err);
            }
        };

        let mut done = Vec::new();
        for (i, r) in self.running.iter_mut().enumerate() {
            let logits = out.last_logits(i).unwrap_or(&[]);
            let token = r.sampler.sample(logits, &r.generated);
            r.pos += r.input.len();
            if r.generated.is_empty() {
                r.stats.prefill_time = r.admitted.elapsed();
            }
            r.generated.push(token.id);
            r.input.clear();
            r.input.push(token.id);
            let reason = if tokenizer.is_eog(token.id) {
                Some(StopReason::EndOfGeneration)
            } else if r.generated.len() >= r.max_tokens {
                Some(StopReason::MaxTokens)
            } else {
                None
            };
            if let Some(reason) = reason {
                done.push((i, reason));
            }
        }
        for &(i, reason) in done.iter().rev() {
            let mut r = self.running.swap_remove(i);
            self.reserved_blocks -= r.reserved_blocks;
            engine.free(r.seq)?;
            r.stats.generated_tokens = r.generated.len();
            r.stats.decode_time = r.admitted.elapsed().saturating_sub(r.stats.prefill_time);
            finished.push((
                r.id,
                Ok(Generation {
                    tokens: r.generated,
                    reason,
                    stats: r.stats,
                }),
            ));
        }
        Ok(finished)
    }

    /// Starts waiting requests while there are free slots and KV cache blocks for
    /// their longest possible sequences (prompt + max_tokens, capped at the context
    /// size), so a running generation never finds the cache full.
    fn admit(
        &mut self,
        engine: &mut Engine,
        finished: &mut Vec<Finished>,
    ) -> Result<(), EngineError> {
        let total_blocks = engine.kv_cache().shape().capacity_tokens / BLOCK_TOKENS;
        while self.running.len() < self.max_sequences {
            let Some((_, request)) = self.waiting.front() else {
                break;
            };
            let longest = (request.prompt.len() + request.max_tokens).min(engine.ctx_size());
            let blocks = longest.div_ceil(BLOCK_TOKENS);
            if !self.running.is_empty() && self.reserved_blocks + blocks > total_blocks {
                break;
            }
            let Some((id, request)) = self.waiting.pop_front() else {
                break;
            };
            if let Some(err) = check_request(engine, &request) {
                finished.push((id, Err(err)));
                continue;
            }
            if request.max_tokens == 0 {
                finished.push((
                    id,
                    Ok(Generation {
                        tokens: Vec::new(),
                        reason: StopReason::MaxTokens,
                        stats: GenerationStats {
                            prompt_tokens: request.prompt.len(),
                            ..GenerationStats::default()
                        },
                    }),
                ));
                continue;
            }
            let seq = engine.new_sequence();
            self.reserved_blocks += blocks;
            self.running.push(Running {
                id,
                seq,
                pos: 0,
                sampler: request.sampler,
                // A generation also stops where the next token would not fit in the
                // context; it reports MaxTokens then, as the limit it hit.
                max_tokens: request
                    .max_tokens
                    .min(engine.ctx_size() - request.prompt.len()),
                stats: GenerationStats {
                    prompt_tokens: request.prompt.len(),
                    ..GenerationStats::default()
                },
                input: request.prompt,
                generated: Vec::new(),
                reserved_blocks: blocks,
                admitted: Instant::now(),
            });
        }
        Ok(())
    }

    fn abort_running(&mut self, engine: &mut Engine) {
        for r in self.running.drain(..) {
            // The sequence exists (we created it); freeing cannot fail.
            let _ = engine.free(r.seq);
        }
        self.reserved_blocks = 0;
    }
}

/// Why `request` cannot run at all, if it cannot.
fn check_request(engine: &Engine, request: &GenerationRequest) -> Option<EngineError> {
    let hp = engine.hparams();
    if request.prompt.is_empty() {
        return Some(EngineError::EmptySpan { span: 0 });
    }
    if let Some(&token) = request.prompt.iter().find(|&&t| t as usize >= hp.n_vocab) {
        return Some(EngineError::TokenOutOfRange {
            token,
            n_vocab: hp.n_vocab,
        });
    }
    if request.prompt.len() >= engine.ctx_size() {
        return Some(EngineError::PromptTooLong {
            tokens: request.prompt.len(),
            ctx_size: engine.ctx_size(),
        });
    }
    None
}

impl Engine {
    /// Runs `requests` with up to `max_sequences` of them sharing each forward pass;
    /// results come back in request order.
    pub fn generate_batch(
        &mut self,
        requests: Vec<GenerationRequest>,
        max_sequences: usize,
    ) -> Result<Vec<Result<Generation, EngineError>>, EngineError> {
        let n = requests.len();
        let mut scheduler = BatchScheduler::new(max_sequences);
        for request in requests {
            scheduler.submit(request);
        }
        let mut results: Vec<Option<Result<Generation, EngineError>>> =
            (0..n).map(|_| None).collect();
        while !scheduler.is_idle() {
            for (id, result) in scheduler.step(self)? {
                results[id.0 as usize] = Some(result);
            }
        }
        // The scheduler answers every request it was given exactly once.
        Ok(results.into_iter().flatten().collect())
    }
}
