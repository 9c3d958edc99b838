//! Automatic prefix caching: prompt prefixes that many requests share (a system
//! prompt, few-shot exemplars, an earlier turn of a conversation) are prefilled once.
//!
//! After a request's prompt has been prefilled, the scheduler keeps a fork of its
//! whole blocks (a fork shares the blocks, so keeping it copies nothing). A later
//! request whose prompt starts with the same tokens forks that entry at the longest
//! common prefix and prefills only the rest, as vLLM's automatic prefix caching and
//! llama.cpp's `cache_prompt` do. Only whole blocks are kept, and a full block is never
//! written again, so what an entry holds never changes.
//!
//! A cached position holds exactly the keys and values a fresh prefill would write
//! (each token's computation does not depend on what else is in its pass), so a
//! request gives the same tokens whether its prefix came from the cache or not.
//! Entries are evicted least recently used first whenever admission needs their blocks.

use crate::engine::{Engine, EngineError};
use crate::kv_cache::{SeqId, BLOCK_TOKENS};

struct Entry {
    tokens: Vec<u32>,
    seq: SeqId,
    last_used: u64,
}

/// Retained prompt prefixes; see the module documentation.
#[derive(Default)]
pub struct PrefixCache {
    entries: Vec<Entry>,
    clock: u64,
}

/// Where a new request's prompt can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixHit {
    pub seq: SeqId,
    /// Positions of the entry the prompt shares (the fork point).
    pub len: usize,
}

impl PrefixCache {
    /// Blocks the entries hold, counting shared blocks once per entry (an upper bound
    /// of what evicting all of them would free).
    pub fn held_blocks(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.tokens.len() / BLOCK_TOKENS)
            .sum()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry sharing the longest prefix with `prompt`, if it shares at least one
    /// block. At least the prompt's last token is always left to compute, since its
    /// logits are needed.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<PrefixHit> {
        let limit = prompt.len().saturating_sub(1);
        let (index, len) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(limit)))
            .max_by_key(|&(i, len)| (len, std::cmp::Reverse(i)))?;
        if len < BLOCK_TOKENS {
            return None;
        }
        self.clock += 1;
        let entry = &mut self.entries[index];
        entry.last_used = self.clock;
        Some(PrefixHit {
            seq: entry.seq,
            len,
        })
    }

    /// Keeps the whole blocks of `prompt`, which `seq` has just prefilled. Entries the
    /// new one extends are dropped; nothing is kept when an entry already covers it.
    pub fn insert(
        &mut self,
        engine: &mut Engine,
        seq: SeqId,
        prompt: &[u32],
    ) -> Result<(), EngineError> {
        let keep = prompt.len() / BLOCK_TOKENS * BLOCK_TOKENS;
        if keep == 0 {
            return Ok(());
        }
        let kept = &prompt[..keep];
        if self.entries.iter().any(|e| e.tokens.starts_with(kept)) {
            return Ok(());
        }
        let fork = engine.fork(seq, keep)?;
        let mut i = 0;
        while i < self.entries.len() {
            if kept.starts_with(&self.entries[i].tokens) {
                let old = self.entries.swap_remove(i);
                engine.free(old.seq)?;
            } else {
                i += 1;
            }
        }
        self.clock += 1;
        self.entries.push(Entry {
            tokens: kept.to_vec(),
            seq: fork,
            last_used: self.clock,
        });
        Ok(())
    }

    /// Frees the least recently used entry; false when there is none.
    pub fn evict_one(&mut self, engine: &mut Engine) -> Result<bool, EngineError> {
        let Some(index) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(i, _)| i)
        else {
            return Ok(false);
        };
        let entry = self.entries.swap_remove(index);
        engine.free(entry.seq)?;
        Ok(true)
    }

    /// Frees every entry.
    pub fn clear(&mut self, engine: &mut Engine) -> Result<(), EngineError> {
        while self.evict_one(engine)? {}
        Ok(())
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_equal_leading_tokens() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
