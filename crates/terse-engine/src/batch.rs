//! Continuous batching: many generations share every forward pass, and each may be
//! steered token by token.
//!
//! Decoding one token reads every weight once, so one sequence per pass leaves the
//! CPU waiting on memory; packing the next token of many sequences into one pass
//! reads the weights once for all of them. The [`BatchScheduler`] keeps up to
//! `max_sequences` generations running: each [`step`](BatchScheduler::step) is one
//! forward pass holding the prompt of every newly admitted request, the last sampled
//! (or injected) tokens of every running one, and the tokens of every live probe. A
//! request finishes on its own stop condition and a waiting one takes its place on the
//! next step.
//!
//! A request may carry a [`Steering`] object (see [`crate::steer`]): the scheduler
//! shows it every token, lets it change the logits, feeds the text it injects, forks
//! and runs the probes it asks for, and stops the sequence when it says so.
//!
//! Prompts go through the [`PrefixCache`]: a prefix another request already prefilled
//! is forked instead of computed again.
//!
//! Siblings ([`BatchScheduler::submit_siblings`]: several generations of one prompt,
//! as self-consistency and `n > 1` draw them) are admitted together; the first
//! prefills the prompt, and right after that pass each other one forks its KV cache
//! one position short of the end, so it computes only the prompt's last token (whose
//! logits it needs) and then decodes on its own. The prompt is prefilled once for
//! the whole group.
//!
//! Results do not depend on the batch: every kernel computes each (row, token) pair
//! alone, attention never crosses sequences, and every steering decision depends only
//! on the request's own tokens, so a request's tokens are the same as from
//! [`Engine::generate`] with the same sampler (and the same as alone when steered).

use crate::engine::{Engine, EngineError, GenerationStats, Outputs, Span, StopReason};
use crate::kv_cache::{SeqId, BLOCK_TOKENS};
use crate::prefix_cache::PrefixCache;
use crate::sampler::{argmax, log_partition_and_entropy, top_logprobs, SampledToken, Sampler};
use crate::steer::{
    Action, ProbeEnd, ProbeRequest, ProbeResult, Steering, SteeringReserve, TokenEvent, TopLogprob,
};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use terse_tokenizer::{StreamDecoder, Tokenizer};

/// One generation to run.
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    pub sampler: Sampler,
    /// Most tokens sampled on the sequence (injected tokens are not sampled).
    pub max_tokens: usize,
    pub steering: Option<Box<dyn Steering>>,
}

impl GenerationRequest {
    /// An unsteered request.
    pub fn new(prompt: Vec<u32>, sampler: Sampler, max_tokens: usize) -> Self {
        GenerationRequest {
            prompt,
            sampler,
            max_tokens,
            steering: None,
        }
    }
}

impl std::fmt::Debug for GenerationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationRequest")
            .field("prompt_tokens", &self.prompt.len())
            .field("max_tokens", &self.max_tokens)
            .field("steered", &self.steering.is_some())
            .finish()
    }
}

/// A request that left the scheduler: its id and what became of it.
pub type Finished = (RequestId, Result<Generation, EngineError>);

/// Handle of a submitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Every token the engine processed for one request, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub prompt: usize,
    /// Of those, how many came from the prefix cache instead of being computed.
    pub prompt_cached: usize,
    /// Tokens sampled on the request's sequence (a replaced or final
    /// end-of-generation token included).
    pub sampled: usize,
    /// Tokens injected into the sequence and prefilled.
    pub injected: usize,
    /// Probes forked.
    pub probes: usize,
    /// Probe text tokens prefilled on the forks.
    pub probe_prefill: usize,
    /// Tokens the probes decoded.
    pub probe_decoded: usize,
}

impl TokenUsage {
    /// Everything processed beyond the prompt: sampled + injected + probe tokens.
    pub fn cost_tokens(&self) -> usize {
        self.sampled + self.injected + self.probe_prefill + self.probe_decoded
    }
}

/// A finished generation: the tokens the sequence holds after its prompt (sampled and
/// injected, in order; a final end-of-generation token included), why it stopped,
/// timings measured from its admission, its token usage, and its steering object back
/// (whose state is the strategy's result).
pub struct Generation {
    pub tokens: Vec<u32>,
    pub reason: StopReason,
    pub stats: GenerationStats,
    pub usage: TokenUsage,
    pub steering: Option<Box<dyn Steering>>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("tokens", &self.tokens)
            .field("reason", &self.reason)
            .field("stats", &self.stats)
            .field("usage", &self.usage)
            .field("steered", &self.steering.is_some())
            .finish()
    }
}

/// A request waiting for a slot, with the siblings admitted with it.
struct Waiting {
    id: RequestId,
    request: GenerationRequest,
    siblings: Vec<(RequestId, GenerationRequest)>,
}

struct Running {
    id: RequestId,
    seq: SeqId,
    /// Positions the sequence holds in the KV cache.
    pos: usize,
    prompt: Vec<u32>,
    /// The prompt has been prefilled (hidden state delivered, prefix kept).
    prompt_done: bool,
    sampler: Sampler,
    max_tokens: usize,
    /// Tokens to feed on the next step: the rest of the prompt, then each sampled
    /// token and any injected text.
    input: Vec<u32>,
    /// Tokens after the prompt, sampled and injected.
    tokens: Vec<u32>,
    steering: Option<Box<dyn Steering>>,
    reserve: SteeringReserve,
    decoder: StreamDecoder,
    /// Probes asked for on the last step, forked after this step's pass.
    pending_probes: Vec<ProbeRequest>,
    live_probes: usize,
    /// Blocks of KV cache set aside for this request's longest possible sequence.
    reserved_blocks: usize,
    stats: GenerationStats,
    usage: TokenUsage,
    admitted: Instant,
    /// Siblings admitted with this request, forked once its prompt is prefilled.
    siblings: Vec<(RequestId, GenerationRequest, usize)>,
}

impl Running {
    /// A request admitted on `seq`, which already holds the prompt's first `pos`
    /// positions.
    fn start(
        id: RequestId,
        request: GenerationRequest,
        seq: SeqId,
        pos: usize,
        reserved_blocks: usize,
        ctx_size: usize,
    ) -> Running {
        let reserve = request
            .steering
            .as_ref()
            .map(|s| s.reserve())
            .unwrap_or_default();
        Running {
            id,
            seq,
            pos,
            prompt_done: false,
            sampler: request.sampler,
            // A generation also stops where the next token would not fit in the
            // context; it reports MaxTokens then, as the limit it hit.
            max_tokens: request.max_tokens.min(ctx_size - request.prompt.len()),
            stats: GenerationStats {
                prompt_tokens: request.prompt.len(),
                ..GenerationStats::default()
            },
            input: request.prompt[pos..].to_vec(),
            usage: TokenUsage {
                prompt: request.prompt.len(),
                prompt_cached: pos,
                ..TokenUsage::default()
            },
            prompt: request.prompt,
            tokens: Vec::new(),
            steering: request.steering,
            reserve,
            decoder: StreamDecoder::new(),
            pending_probes: Vec::new(),
            live_probes: 0,
            reserved_blocks,
            admitted: Instant::now(),
            siblings: Vec::new(),
        }
    }
}

/// The answer to a request that may not sample a single token.
fn empty_generation(request: GenerationRequest) -> Generation {
    Generation {
        tokens: Vec::new(),
        reason: StopReason::MaxTokens,
        stats: GenerationStats {
            prompt_tokens: request.prompt.len(),
            ..GenerationStats::default()
        },
        usage: TokenUsage {
            prompt: request.prompt.len(),
            ..TokenUsage::default()
        },
        steering: request.steering,
    }
}

struct Probe {
    parent: RequestId,
    seq: SeqId,
    pos: usize,
    input: Vec<u32>,
    request: ProbeRequest,
    fork_position: usize,
    prefill_tokens: usize,
    decoder: StreamDecoder,
    text: String,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
}

/// Runs many generations together; see the module documentation.
pub struct BatchScheduler {
    max_sequences: usize,
    waiting: VecDeque<Waiting>,
    running: Vec<Running>,
    probes: Vec<Probe>,
    reserved_blocks: usize,
    prefix_cache: PrefixCache,
    next_id: u64,
    /// Scratch for steered logits and pending actions, reused between tokens.
    logits: Vec<f32>,
    actions: Vec<Action>,
}

/// What a step decided for one running request.
enum Outcome {
    Continue,
    Finished(StopReason),
}

impl BatchScheduler {
    /// A scheduler running at most `max_sequences` generations at once (at least 1).
    pub fn new(max_sequences: usize) -> Self {
        BatchScheduler {
            max_sequences: max_sequences.max(1),
            waiting: VecDeque::new(),
            running: Vec::new(),
            probes: Vec::new(),
            reserved_blocks: 0,
            prefix_cache: PrefixCache::default(),
            next_id: 0,
            logits: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// Queues a request; it starts on a later step.
    pub fn submit(&mut self, request: GenerationRequest) -> RequestId {
        let id = self.next_request_id();
        self.waiting.push_back(Waiting {
            id,
            request,
            siblings: Vec::new(),
        });
        id
    }

    /// Queues generations of one prompt (each with its own sampler, budget and
    /// steering) that share the prompt's prefill: see the module documentation.
    /// Requests whose prompt differs from the first one's are queued on their own.
    /// Returns their ids in order.
    pub fn submit_siblings(&mut self, requests: Vec<GenerationRequest>) -> Vec<RequestId> {
        let ids: Vec<RequestId> = requests.iter().map(|_| self.next_request_id()).collect();
        let mut requests = ids.iter().copied().zip(requests);
        let Some((id, first)) = requests.next() else {
            return ids;
        };
        let (siblings, loners): (Vec<_>, Vec<_>) =
            requests.partition(|(_, r)| r.prompt == first.prompt);
        self.waiting.push_back(Waiting {
            id,
            request: first,
            siblings,
        });
        for (id, request) in loners {
            self.waiting.push_back(Waiting {
                id,
                request,
                siblings: Vec::new(),
            });
        }
        ids
    }

    fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    /// True when nothing is running or waiting.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Number of generations running now (probes not counted).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Number of requests waiting for a slot (siblings included).
    pub fn waiting(&self) -> usize {
        self.waiting.iter().map(|w| 1 + w.siblings.len()).sum()
    }

    /// Number of probes alive now.
    pub fn live_probes(&self) -> usize {
        self.probes.len()
    }

    /// Prompt prefixes kept by the prefix cache.
    pub fn cached_prefixes(&self) -> usize {
        self.prefix_cache.len()
    }

    /// Ends a waiting or running request now (its client went away), freeing its
    /// sequence and probes. Returns whether the request was known.
    pub fn cancel(&mut self, engine: &mut Engine, id: RequestId) -> Result<bool, EngineError> {
        for w in self.waiting.iter_mut() {
            if let Some(i) = w.siblings.iter().position(|(s, _)| *s == id) {
                w.siblings.remove(i);
                return Ok(true);
            }
        }
        if let Some(i) = self.waiting.iter().position(|w| w.id == id) {
            if let Some(w) = self.waiting.remove(i) {
                // Its siblings still run: the first of them prefills the prompt.
                let mut siblings = w.siblings.into_iter();
                if let Some((id, request)) = siblings.next() {
                    self.waiting.insert(
                        i,
                        Waiting {
                            id,
                            request,
                            siblings: siblings.collect(),
                        },
                    );
                }
            }
            return Ok(true);
        }
        let Some(i) = self.running.iter().position(|r| r.id == id) else {
            return Ok(false);
        };
        let r = self.running.swap_remove(i);
        self.release(engine, &r)?;
        Ok(true)
    }

    /// Frees every cached prefix (the cache is rebuilt as requests come).
    pub fn clear_prefix_cache(&mut self, engine: &mut Engine) -> Result<(), EngineError> {
        self.prefix_cache.clear(engine)
    }

    /// Admits waiting requests, runs one forward pass over every running generation
    /// and probe, and samples one token for each. Returns the requests that finished,
    /// each with its own result: a request that cannot run (a prompt longer than the
    /// context, a bad token id) fails alone. An error of the whole step (which the
    /// reservations should prevent) is returned after every running request was freed.
    pub fn step(&mut self, engine: &mut Engine) -> Result<Vec<Finished>, EngineError> {
        let mut finished = Vec::new();
        if let Err(err) = self.admit(engine, &mut finished) {
            self.abort_running(engine);
            return Err(err);
        }
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
                hidden: !r.prompt_done
                    && r.steering.as_ref().is_some_and(|s| s.wants_prompt_hidden()),
            })
            .chain(self.probes.iter().map(|p| Span {
                seq: p.seq,
                tokens: &p.input,
                start_pos: p.pos,
                outputs: Outputs::Last,
                hidden: false,
            }))
            .collect();
        let tokenizer = engine.tokenizer().clone();
        let ctx_size = engine.ctx_size();
        let rows: usize = spans.iter().map(|s| s.tokens.len()).sum();
        let pass_start = Instant::now();
        if let Err(err) = engine.forward(&spans) {
            self.abort_running(engine);
            return Err(err);
        }
        drop(spans);
        self.attribute_pass_time(pass_start.elapsed(), rows);
        let n_running = self.running.len();

        // Requests first: each samples a token and its steering may act.
        let mut outcomes = Vec::with_capacity(n_running);
        let mut new_prompts = Vec::new();
        let mut to_fork = Vec::new();
        for i in 0..n_running {
            let out = engine.last_output();
            let r = &mut self.running[i];
            r.pos += r.input.len();
            r.input.clear();
            // Probes asked for after the token this pass has just written: forked
            // below, so they see it.
            if !r.pending_probes.is_empty() {
                to_fork.push((i, std::mem::take(&mut r.pending_probes)));
            }
            if !r.prompt_done {
                r.prompt_done = true;
                new_prompts.push(i);
                if let Some(steering) = r.steering.as_mut() {
                    if steering.wants_prompt_hidden() {
                        steering.on_prompt_hidden(out.hidden(i));
                    }
                }
            }
            let logits = out.last_logits(i).unwrap_or(&[]);
            let outcome = sample_request(
                r,
                logits,
                &tokenizer,
                ctx_size,
                &mut self.logits,
                &mut self.actions,
            );
            outcomes.push(outcome);
        }

        // Then probes: each decodes a token; finished ones report to their parent.
        let mut ended = Vec::new();
        for p in 0..self.probes.len() {
            let out = engine.last_output();
            let probe = &mut self.probes[p];
            probe.pos += probe.input.len();
            probe.input.clear();
            let logits = out.last_logits(n_running + p).unwrap_or(&[]);
            let end = decode_probe(probe, logits, &tokenizer, ctx_size);
            let parent = probe.parent;
            if let Some(r) = self.running.iter_mut().find(|r| r.id == parent) {
                r.usage.probe_decoded += 1;
            }
            if let Some(end) = end {
                ended.push((p, end));
            }
        }
        let mut probe_results = Vec::with_capacity(ended.len());
        // Highest index first, so each removal leaves the lower indices in place;
        // results are then delivered in probe order.
        for &(p, end) in ended.iter().rev() {
            let probe = self.probes.remove(p);
            engine.free(probe.seq)?;
            probe_results.push((probe.parent, finish_probe(probe, end)));
        }
        probe_results.reverse();
        for (parent, result) in probe_results {
            let Some(i) = self.running.iter().position(|r| r.id == parent) else {
                continue;
            };
            let r = &mut self.running[i];
            r.live_probes -= 1;
            if matches!(outcomes[i], Outcome::Finished(_)) {
                continue;
            }
            if let Some(reason) = deliver_probe(r, &result, &tokenizer, ctx_size, &mut self.actions)
            {
                outcomes[i] = Outcome::Finished(reason);
            }
        }

        // Keep the prefixes just prefilled, fork the probes asked for last step, and
        // retire what finished.
        let mut forked = Vec::new();
        for &i in &new_prompts {
            let r = &self.running[i];
            self.prefix_cache.insert(engine, r.seq, &r.prompt)?;
            self.fork_siblings(engine, i, &mut forked)?;
        }
        for (i, requests) in to_fork {
            if matches!(outcomes[i], Outcome::Finished(_)) {
                continue;
            }
            let r = &mut self.running[i];
            for request in requests {
                match fork_probe(engine, r, request, &tokenizer, ctx_size)? {
                    Ok(probe) => self.probes.push(probe),
                    Err(result) => {
                        if let Some(reason) =
                            deliver_probe(r, &result, &tokenizer, ctx_size, &mut self.actions)
                        {
                            outcomes[i] = Outcome::Finished(reason);
                        }
                    }
                }
            }
        }
        for i in (0..n_running).rev() {
            if let Outcome::Finished(reason) = outcomes[i] {
                let mut r = self.running.swap_remove(i);
                self.release(engine, &r)?;
                r.stats.generated_tokens = r.usage.sampled;
                r.stats.decode_time = r.admitted.elapsed().saturating_sub(r.stats.prefill_time);
                finished.push((
                    r.id,
                    Ok(Generation {
                        tokens: r.tokens,
                        reason,
                        stats: r.stats,
                        usage: r.usage,
                        steering: r.steering,
                    }),
                ));
            }
        }
        self.running.extend(forked);
        Ok(finished)
    }

    /// Splits one forward pass's time between the running requests by the rows each
    /// (with its probes) fed it; called before the inputs are cleared.
    fn attribute_pass_time(&mut self, elapsed: Duration, rows: usize) {
        if rows == 0 {
            return;
        }
        let per_row = elapsed.as_secs_f64() / rows as f64;
        for r in &mut self.running {
            let probe_rows: usize = self
                .probes
                .iter()
                .filter(|p| p.parent == r.id)
                .map(|p| p.input.len())
                .sum();
            let own = Duration::from_secs_f64(per_row * r.input.len() as f64);
            let probes = Duration::from_secs_f64(per_row * probe_rows as f64);
            r.stats.forward_time += own + probes;
            r.stats.probe_forward_time += probes;
        }
    }

    /// Frees a request's sequence, its live probes and its reservation.
    fn release(&mut self, engine: &mut Engine, r: &Running) -> Result<(), EngineError> {
        self.reserved_blocks -= r.reserved_blocks;
        engine.free(r.seq)?;
        let mut p = 0;
        while p < self.probes.len() {
            if self.probes[p].parent == r.id {
                let probe = self.probes.swap_remove(p);
                engine.free(probe.seq)?;
            } else {
                p += 1;
            }
        }
        Ok(())
    }

    /// Starts waiting requests while there are free slots and KV cache blocks for
    /// their longest possible sequences (prompt + max_tokens + what their steering
    /// reserves, capped at the context size), so a running generation never finds the
    /// cache full. Cached prefixes are evicted when their blocks are needed.
    fn admit(
        &mut self,
        engine: &mut Engine,
        finished: &mut Vec<Finished>,
    ) -> Result<(), EngineError> {
        loop {
            let occupied: usize = self.running.iter().map(|r| 1 + r.siblings.len()).sum();
            if occupied >= self.max_sequences {
                break;
            }
            let Some(w) = self.waiting.front() else {
                break;
            };
            let blocks = reserved_blocks(engine.ctx_size(), &w.request);
            let alone = self.running.is_empty();
            if !self.make_room(engine, blocks, alone)? {
                break;
            }
            let Some(Waiting {
                id,
                request,
                siblings,
            }) = self.waiting.pop_front()
            else {
                break;
            };
            if let Some(err) = check_request(engine, &request) {
                finished.push((id, Err(err)));
                // They share the prompt, and so its fault.
                for (sibling, request) in siblings {
                    if let Some(err) = check_request(engine, &request) {
                        finished.push((sibling, Err(err)));
                    }
                }
                continue;
            }
            if request.max_tokens == 0 {
                finished.push((id, Ok(empty_generation(request))));
                self.requeue_front(siblings);
                continue;
            }
            let (seq, pos) = match self.prefix_cache.lookup(&request.prompt) {
                Some(hit) => (engine.fork(hit.seq, hit.len)?, hit.len),
                None => (engine.new_sequence(), 0),
            };
            self.reserved_blocks += blocks;
            let mut leader = Running::start(id, request, seq, pos, blocks, engine.ctx_size());
            // Siblings come along while there are slots and blocks for them; the
            // rest wait as a group of their own.
            let mut rest = siblings.into_iter();
            for (sibling, request) in rest.by_ref() {
                if request.max_tokens == 0 {
                    finished.push((sibling, Ok(empty_generation(request))));
                    continue;
                }
                let slots: usize = self
                    .running
                    .iter()
                    .chain(std::iter::once(&leader))
                    .map(|r| 1 + r.siblings.len())
                    .sum();
                let blocks = reserved_blocks(engine.ctx_size(), &request);
                if slots >= self.max_sequences || !self.make_room(engine, blocks, false)? {
                    self.requeue_front(std::iter::once((sibling, request)).chain(rest).collect());
                    break;
                }
                self.reserved_blocks += blocks;
                leader.siblings.push((sibling, request, blocks));
            }
            self.running.push(leader);
        }
        Ok(())
    }

    /// Whether a reservation of `blocks` fits (evicting cached prefixes for it); a
    /// request `alone` in the batch always fits, as the context caps it.
    fn make_room(
        &mut self,
        engine: &mut Engine,
        blocks: usize,
        alone: bool,
    ) -> Result<bool, EngineError> {
        let total_blocks = engine.kv_cache().shape().capacity_tokens / BLOCK_TOKENS;
        while self.reserved_blocks + blocks + self.prefix_cache.held_blocks() > total_blocks
            && self.prefix_cache.evict_one(engine)?
        {}
        Ok(alone || self.reserved_blocks + blocks <= total_blocks)
    }

    /// Puts siblings back at the head of the queue, the first of them prefilling.
    fn requeue_front(&mut self, siblings: Vec<(RequestId, GenerationRequest)>) {
        let mut siblings = siblings.into_iter();
        if let Some((id, request)) = siblings.next() {
            self.waiting.push_front(Waiting {
                id,
                request,
                siblings: siblings.collect(),
            });
        }
    }

    /// Forks the siblings of `running[i]`, whose prompt has just been prefilled, one
    /// position short of its end: each computes the last prompt token itself.
    fn fork_siblings(
        &mut self,
        engine: &mut Engine,
        i: usize,
        forked: &mut Vec<Running>,
    ) -> Result<(), EngineError> {
        let leader = &mut self.running[i];
        let at = leader.prompt.len() - 1;
        for (id, request, blocks) in std::mem::take(&mut leader.siblings) {
            let seq = engine.fork(leader.seq, at)?;
            forked.push(Running::start(
                id,
                request,
                seq,
                at,
                blocks,
                engine.ctx_size(),
            ));
        }
        Ok(())
    }

    fn abort_running(&mut self, engine: &mut Engine) {
        // The sequences exist (we created them); freeing cannot fail.
        for r in self.running.drain(..) {
            let _ = engine.free(r.seq);
        }
        for p in self.probes.drain(..) {
            let _ = engine.free(p.seq);
        }
        let _ = self.prefix_cache.clear(engine);
        self.reserved_blocks = 0;
    }
}

/// Blocks set aside for `request`: its longest sequence, plus its steering's injected
/// text and live probes (each may hold a copy of its parent's last, shared block).
fn reserved_blocks(ctx_size: usize, request: &GenerationRequest) -> usize {
    let reserve = request
        .steering
        .as_ref()
        .map(|s| s.reserve())
        .unwrap_or_default();
    let longest =
        (request.prompt.len() + request.max_tokens + reserve.injected_tokens).min(ctx_size);
    let per_probe = reserve.probe_tokens.div_ceil(BLOCK_TOKENS) + 1;
    longest.div_ceil(BLOCK_TOKENS) + reserve.live_probes * per_probe
}

/// Samples the next token of a running request, lets its steering act, and sets up
/// its next input.
fn sample_request(
    r: &mut Running,
    logits: &[f32],
    tokenizer: &Tokenizer,
    ctx_size: usize,
    scratch: &mut Vec<f32>,
    actions: &mut Vec<Action>,
) -> Outcome {
    let history = &r.tokens;
    let token = match r.steering.as_mut() {
        None => r.sampler.sample(logits, history),
        Some(steering) => {
            scratch.clear();
            scratch.extend_from_slice(logits);
            steering.adjust_logits(scratch);
            let mut token = r.sampler.sample(scratch, history);
            if scratch.as_slice() != logits {
                // Report what the model itself thought of the token.
                let (max, log_z, entropy) = log_partition_and_entropy(logits);
                token.logprob = logits
                    .get(token.id as usize)
                    .map_or(f32::NEG_INFINITY, |&l| l - max - log_z);
                token.entropy = entropy;
            }
            token
        }
    };
    if r.usage.sampled == 0 {
        r.stats.prefill_time = r.admitted.elapsed();
    }
    r.usage.sampled += 1;
    let is_eog = tokenizer.is_eog(token.id);

    let Some(steering) = r.steering.as_mut() else {
        r.tokens.push(token.id);
        r.decoder.push(tokenizer, token.id);
        return if is_eog {
            Outcome::Finished(StopReason::EndOfGeneration)
        } else if r.usage.sampled >= r.max_tokens {
            Outcome::Finished(StopReason::MaxTokens)
        } else {
            r.input.push(token.id);
            Outcome::Continue
        };
    };

    let before = r.decoder.clone();
    let piece = if is_eog {
        String::new()
    } else {
        r.decoder.push(tokenizer, token.id)
    };
    let top: Vec<TopLogprob> = match steering.top_logprobs() {
        0 => Vec::new(),
        n => top_logprobs(logits, n)
            .into_iter()
            .map(|(token, logprob)| TopLogprob { token, logprob })
            .collect(),
    };
    actions.clear();
    steering.on_token(
        &TokenEvent {
            token: token.id,
            piece: &piece,
            logprob: token.logprob,
            entropy: token.entropy,
            top_logprobs: &top,
            position: r.pos,
            sampled: r.usage.sampled,
            is_end_of_generation: is_eog,
        },
        actions,
    );
    let replaced = actions.iter().any(|a| {
        matches!(
            a,
            Action::Inject {
                replace_token: true,
                ..
            }
        )
    });
    if replaced {
        r.decoder = before;
    } else {
        r.tokens.push(token.id);
        r.input.push(token.id);
    }
    if let Some(reason) = apply_actions(r, tokenizer, ctx_size, actions) {
        return Outcome::Finished(reason);
    }
    if is_eog && !replaced {
        Outcome::Finished(StopReason::EndOfGeneration)
    } else if r.usage.sampled >= r.max_tokens || r.pos + r.input.len() >= ctx_size {
        Outcome::Finished(StopReason::MaxTokens)
    } else {
        Outcome::Continue
    }
}

/// Carries out a steering object's actions on its request; returns why it stops, if
/// it does. Injected text goes to the next input; probes wait for the next pass.
fn apply_actions(
    r: &mut Running,
    tokenizer: &Tokenizer,
    ctx_size: usize,
    actions: &mut Vec<Action>,
) -> Option<StopReason> {
    for action in actions.drain(..) {
        match action {
            Action::Stop(_) => return Some(StopReason::Steered),
            Action::Inject { text, .. } => {
                let tokens = tokenizer.encode(&text, false, true);
                let over_budget = r.usage.injected + tokens.len() > r.reserve.injected_tokens;
                if over_budget || r.pos + r.input.len() + tokens.len() > ctx_size {
                    return Some(StopReason::MaxTokens);
                }
                for &t in &tokens {
                    r.decoder.push(tokenizer, t);
                }
                r.usage.injected += tokens.len();
                r.tokens.extend_from_slice(&tokens);
                r.input.extend_from_slice(&tokens);
                if let Some(steering) = r.steering.as_mut() {
                    steering.on_injected(&tokens);
                }
            }
            Action::Probe(request) => r.pending_probes.push(request),
        }
    }
    None
}

/// Hands a finished probe's result to its parent's steering and carries out what it
/// answers.
fn deliver_probe(
    r: &mut Running,
    result: &ProbeResult,
    tokenizer: &Tokenizer,
    ctx_size: usize,
    actions: &mut Vec<Action>,
) -> Option<StopReason> {
    actions.clear();
    if let Some(steering) = r.steering.as_mut() {
        steering.on_probe(result, actions);
    }
    // The parent's last token is already queued to be fed: nothing can replace it now.
    for action in actions.iter_mut() {
        if let Action::Inject { replace_token, .. } = action {
            *replace_token = false;
        }
    }
    apply_actions(r, tokenizer, ctx_size, actions)
}

/// Forks a probe at the current end of `r`, or says why it cannot run.
fn fork_probe(
    engine: &mut Engine,
    r: &mut Running,
    request: ProbeRequest,
    tokenizer: &Tokenizer,
    ctx_size: usize,
) -> Result<Result<Probe, ProbeResult>, EngineError> {
    let tokens = tokenizer.encode(&request.text, false, true);
    let needed = tokens.len() + request.max_tokens;
    let no_room = tokens.is_empty()
        || r.live_probes >= r.reserve.live_probes
        || needed > r.reserve.probe_tokens
        || r.pos + needed > ctx_size;
    if no_room {
        return Ok(Err(ProbeResult {
            tag: request.tag,
            fork_position: r.pos,
            text: String::new(),
            tokens: Vec::new(),
            logprobs: Vec::new(),
            prefill_tokens: 0,
            end: ProbeEnd::NoRoom,
        }));
    }
    let seq = engine.fork(r.seq, r.pos)?;
    r.live_probes += 1;
    r.usage.probes += 1;
    r.usage.probe_prefill += tokens.len();
    Ok(Ok(Probe {
        parent: r.id,
        seq,
        pos: r.pos,
        fork_position: r.pos,
        prefill_tokens: tokens.len(),
        input: tokens,
        request,
        decoder: StreamDecoder::new(),
        text: String::new(),
        tokens: Vec::new(),
        logprobs: Vec::new(),
    }))
}

/// Decodes one greedy token of a probe; returns how it ended, if it did.
fn decode_probe(
    probe: &mut Probe,
    logits: &[f32],
    tokenizer: &Tokenizer,
    ctx_size: usize,
) -> Option<ProbeEnd> {
    let token = greedy(logits);
    probe.tokens.push(token.id);
    probe.logprobs.push(token.logprob);
    if tokenizer.is_eog(token.id) {
        return Some(ProbeEnd::EndOfGeneration);
    }
    probe
        .text
        .push_str(&probe.decoder.push(tokenizer, token.id));
    if probe
        .request
        .stop
        .iter()
        .any(|s| !s.is_empty() && probe.text.contains(s.as_str()))
    {
        return Some(ProbeEnd::StopString);
    }
    if probe.tokens.len() >= probe.request.max_tokens || probe.pos + 1 >= ctx_size {
        return Some(ProbeEnd::MaxTokens);
    }
    probe.input.push(token.id);
    None
}

fn finish_probe(mut probe: Probe, end: ProbeEnd) -> ProbeResult {
    probe.text.push_str(&probe.decoder.flush());
    ProbeResult {
        tag: probe.request.tag,
        fork_position: probe.fork_position,
        text: probe.text,
        tokens: probe.tokens,
        logprobs: probe.logprobs,
        prefill_tokens: probe.prefill_tokens,
        end,
    }
}

fn greedy(logits: &[f32]) -> SampledToken {
    let id = argmax(logits);
    let (max, log_z, entropy) = log_partition_and_entropy(logits);
    SampledToken {
        id,
        logprob: logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&l| l - max - log_z),
        entropy,
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
        scheduler.clear_prefix_cache(self)?;
        // The scheduler answers every request it was given exactly once.
        Ok(results.into_iter().flatten().collect())
    }
}
