//! Paged key/value cache shared by all sequences.
//!
//! Keys and values are stored in f16 (as llama.cpp does by default) in fixed-size blocks
//! of `BLOCK_TOKENS` positions. A sequence is a list of block ids; blocks carry reference
//! counts so that [`KvCache::fork`] gives a new sequence its parent's prefix without
//! copying it. A shared block is copied only when one of its owners writes into it
//! (copy-on-write), so a probe that forks a sequence costs only its own tokens.
//!
//! Storage for every block is allocated once at creation (zeroed, so the OS commits
//! pages only as they are written); appending tokens never allocates.

use half::f16;
use std::collections::HashMap;

/// Positions per block.
pub const BLOCK_TOKENS: usize = 16;

/// Identifies one sequence in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u32);

impl std::fmt::Display for SeqId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {}", self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvCacheError {
    #[error("{0} does not exist in the KV cache")]
    UnknownSequence(SeqId),
    #[error("the KV cache is full: {needed} more blocks of {BLOCK_TOKENS} tokens needed, {free} free (capacity {capacity_tokens} tokens); raise --ctx-size")]
    Full {
        needed: usize,
        free: usize,
        capacity_tokens: usize,
    },
    #[error("position {pos} is beyond the length {len} of {seq}")]
    PositionOutOfRange { seq: SeqId, pos: usize, len: usize },
}

#[derive(Debug, Clone, Default)]
struct Sequence {
    blocks: Vec<u32>,
    len: usize,
}

/// Shape of the cache: one K and one V row of `kv_dim` values per layer and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCacheShape {
    pub n_layers: usize,
    /// n_head_kv * head_dim of keys.
    pub k_dim: usize,
    /// n_head_kv * head_dim of values.
    pub v_dim: usize,
    /// Total positions over all sequences (rounded up to whole blocks).
    pub capacity_tokens: usize,
}

pub struct KvCache {
    shape: KvCacheShape,
    n_blocks: usize,
    /// Per layer: [n_blocks, BLOCK_TOKENS, k_dim]
    keys: Vec<Vec<f16>>,
    /// Per layer: [n_blocks, BLOCK_TOKENS, v_dim]
    values: Vec<Vec<f16>>,
    refcount: Vec<u32>,
    free_blocks: Vec<u32>,
    sequences: HashMap<SeqId, Sequence>,
    next_id: u32,
}

impl KvCache {
    pub fn new(shape: KvCacheShape) -> Self {
        let n_blocks = shape.capacity_tokens.div_ceil(BLOCK_TOKENS).max(1);
        let keys = (0..shape.n_layers)
            .map(|_| vec![f16::ZERO; n_blocks * BLOCK_TOKENS * shape.k_dim])
            .collect();
        let values = (0..shape.n_layers)
            .map(|_| vec![f16::ZERO; n_blocks * BLOCK_TOKENS * shape.v_dim])
            .collect();
        KvCache {
            shape: KvCacheShape {
                capacity_tokens: n_blocks * BLOCK_TOKENS,
                ..shape
            },
            n_blocks,
            keys,
            values,
            refcount: vec![0; n_blocks],
            // Pop from the end: hand out low block ids first.
            free_blocks: (0..n_blocks as u32).rev().collect(),
            sequences: HashMap::new(),
            next_id: 0,
        }
    }

    pub fn shape(&self) -> KvCacheShape {
        self.shape
    }

    /// Bytes of K and V storage held by the cache.
    pub fn storage_bytes(&self) -> usize {
        self.n_blocks
            * BLOCK_TOKENS
            * (self.shape.k_dim + self.shape.v_dim)
            * self.shape.n_layers
            * 2
    }

    pub fn free_block_count(&self) -> usize {
        self.free_blocks.len()
    }

    pub fn new_sequence(&mut self) -> SeqId {
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.sequences.insert(id, Sequence::default());
        id
    }

    pub fn contains(&self, seq: SeqId) -> bool {
        self.sequences.contains_key(&seq)
    }

    pub fn len(&self, seq: SeqId) -> Result<usize, KvCacheError> {
        self.seq(seq).map(|s| s.len)
    }

    /// A new sequence holding the first `pos` positions of `parent`, sharing its blocks.
    pub fn fork(&mut self, parent: SeqId, pos: usize) -> Result<SeqId, KvCacheError> {
        let p = self.seq(parent)?;
        if pos > p.len {
            return Err(KvCacheError::PositionOutOfRange {
                seq: parent,
                pos,
                len: p.len,
            });
        }
        let blocks: Vec<u32> = p.blocks[..pos.div_ceil(BLOCK_TOKENS)].to_vec();
        for &b in &blocks {
            self.refcount[b as usize] += 1;
        }
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.sequences.insert(id, Sequence { blocks, len: pos });
        Ok(id)
    }

    /// Forgets every position from `pos` on.
    pub fn truncate(&mut self, seq: SeqId, pos: usize) -> Result<(), KvCacheError> {
        let s = self
            .sequences
            .get_mut(&seq)
            .ok_or(KvCacheError::UnknownSequence(seq))?;
        if pos > s.len {
            return Err(KvCacheError::PositionOutOfRange {
                seq,
                pos,
                len: s.len,
            });
        }
        let keep = pos.div_ceil(BLOCK_TOKENS);
        let dropped: Vec<u32> = s.blocks.drain(keep..).collect();
        s.len = pos;
        for b in dropped {
            self.release(b);
        }
        Ok(())
    }

    pub fn free(&mut self, seq: SeqId) -> Result<(), KvCacheError> {
        let s = self
            .sequences
            .remove(&seq)
            .ok_or(KvCacheError::UnknownSequence(seq))?;
        for b in s.blocks {
            self.release(b);
        }
        Ok(())
    }

    /// Blocks needed to append `n` positions to `seq`, counting a copy of a shared
    /// partially filled last block.
    pub fn blocks_needed(&self, seq: SeqId, n: usize) -> Result<usize, KvCacheError> {
        let s = self.seq(seq)?;
        let new_blocks = (s.len + n).div_ceil(BLOCK_TOKENS) - s.blocks.len();
        let cow = n > 0
            && s.len % BLOCK_TOKENS != 0
            && s.blocks
                .last()
                .is_some_and(|&b| self.refcount[b as usize] > 1);
        Ok(new_blocks + usize::from(cow))
    }

    /// Makes room for `n` more positions of `seq` (positions len..len+n), so that
    /// they can be written; the length advances by `n`.
    pub fn append(&mut self, seq: SeqId, n: usize) -> Result<(), KvCacheError> {
        let needed = self.blocks_needed(seq, n)?;
        if needed > self.free_blocks.len() {
            return Err(KvCacheError::Full {
                needed,
                free: self.free_blocks.len(),
                capacity_tokens: self.shape.capacity_tokens,
            });
        }
        let s = self.seq(seq)?.clone();
        let mut blocks = s.blocks;
        if n > 0 && s.len % BLOCK_TOKENS != 0 {
            if let Some(last) = blocks.last_mut() {
                if self.refcount[*last as usize] > 1 {
                    let copy = self.take_block();
                    self.copy_block(*last, copy);
                    self.release(*last);
                    *last = copy;
                }
            }
        }
        while blocks.len() < (s.len + n).div_ceil(BLOCK_TOKENS) {
            blocks.push(self.take_block());
        }
        if let Some(target) = self.sequences.get_mut(&seq) {
            target.blocks = blocks;
            target.len = s.len + n;
        }
        Ok(())
    }

    /// The block table of `seq`: position p lives in block `blocks[p / BLOCK_TOKENS]`
    /// at slot `p % BLOCK_TOKENS`.
    pub fn blocks(&self, seq: SeqId) -> Result<&[u32], KvCacheError> {
        self.seq(seq).map(|s| s.blocks.as_slice())
    }

    /// Index of the first value of position `slot` of `block` in a layer's K storage.
    #[inline]
    pub fn k_offset(&self, block: u32, slot: usize) -> usize {
        (block as usize * BLOCK_TOKENS + slot) * self.shape.k_dim
    }

    #[inline]
    pub fn v_offset(&self, block: u32, slot: usize) -> usize {
        (block as usize * BLOCK_TOKENS + slot) * self.shape.v_dim
    }

    /// Layer storage: [n_blocks * BLOCK_TOKENS, k_dim] keys and [.., v_dim] values.
    pub fn layer(&self, layer: usize) -> (&[f16], &[f16]) {
        (&self.keys[layer], &self.values[layer])
    }

    pub fn layer_mut(&mut self, layer: usize) -> (&mut [f16], &mut [f16]) {
        (&mut self.keys[layer], &mut self.values[layer])
    }

    fn seq(&self, seq: SeqId) -> Result<&Sequence, KvCacheError> {
        self.sequences
            .get(&seq)
            .ok_or(KvCacheError::UnknownSequence(seq))
    }

    fn take_block(&mut self) -> u32 {
        // Callers check capacity first.
        let b = self.free_blocks.pop().unwrap_or(0);
        self.refcount[b as usize] = 1;
        b
    }

    fn release(&mut self, b: u32) {
        let rc = &mut self.refcount[b as usize];
        *rc = rc.saturating_sub(1);
        if *rc == 0 {
            self.free_blocks.push(b);
        }
    }

    fn copy_block(&mut self, from: u32, to: u32) {
        let (kd, vd) = (self.shape.k_dim, self.shape.v_dim);
        let k_len = BLOCK_TOKENS * kd;
        let v_len = BLOCK_TOKENS * vd;
        for l in 0..self.shape.n_layers {
            let k = &mut self.keys[l];
            k.copy_within(
                from as usize * k_len..(from as usize + 1) * k_len,
                to as usize * k_len,
            );
            let v = &mut self.values[l];
            v.copy_within(
                from as usize * v_len..(from as usize + 1) * v_len,
                to as usize * v_len,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> KvCache {
        KvCache::new(KvCacheShape {
            n_layers: 2,
            k_dim: 4,
            v_dim: 3,
            capacity_tokens: capacity,
        })
    }

    fn write_pos(c: &mut KvCache, seq: SeqId, pos: usize, value: f32) {
        let b = c.blocks(seq).unwrap()[pos / BLOCK_TOKENS];
        let ko = c.k_offset(b, pos % BLOCK_TOKENS);
        let (k, _) = c.layer_mut(1);
        k[ko] = f16::from_f32(value);
    }

    fn read_pos(c: &KvCache, seq: SeqId, pos: usize) -> f32 {
        let b = c.blocks(seq).unwrap()[pos / BLOCK_TOKENS];
        c.layer(1).0[c.k_offset(b, pos % BLOCK_TOKENS)].to_f32()
    }

    #[test]
    fn fork_shares_blocks_without_copying() {
        let mut c = cache(128);
        let a = c.new_sequence();
        c.append(a, 40).unwrap();
        let used = 8 - c.free_block_count();
        let b = c.fork(a, 32).unwrap();
        assert_eq!(
            8 - c.free_block_count(),
            used,
            "fork at a block boundary copies nothing"
        );
        assert_eq!(c.len(b).unwrap(), 32);
        assert_eq!(c.blocks(b).unwrap(), &c.blocks(a).unwrap()[..2]);
    }

    #[test]
    fn writing_into_a_shared_partial_block_copies_it_first() {
        let mut c = cache(128);
        let a = c.new_sequence();
        c.append(a, 20).unwrap();
        for p in 0..20 {
            write_pos(&mut c, a, p, p as f32);
        }
        let b = c.fork(a, 18).unwrap();
        c.append(b, 1).unwrap();
        write_pos(&mut c, b, 18, 100.0);
        assert_eq!(
            read_pos(&c, a, 18),
            18.0,
            "parent unchanged by child's write"
        );
        assert_eq!(read_pos(&c, b, 18), 100.0);
        assert_eq!(
            read_pos(&c, b, 17),
            17.0,
            "copied block keeps the shared prefix"
        );
        assert_eq!(
            c.blocks(a).unwrap()[0],
            c.blocks(b).unwrap()[0],
            "full block still shared"
        );
        assert_ne!(c.blocks(a).unwrap()[1], c.blocks(b).unwrap()[1]);
    }

    #[test]
    fn free_returns_blocks_only_when_last_owner_goes() {
        let mut c = cache(64);
        let a = c.new_sequence();
        c.append(a, 32).unwrap();
        let b = c.fork(a, 32).unwrap();
        c.free(a).unwrap();
        assert_eq!(c.free_block_count(), 2);
        c.free(b).unwrap();
        assert_eq!(c.free_block_count(), 4);
        assert_eq!(c.free(b), Err(KvCacheError::UnknownSequence(b)));
    }

    #[test]
    fn truncate_releases_tail_blocks() {
        let mut c = cache(64);
        let a = c.new_sequence();
        c.append(a, 40).unwrap();
        c.truncate(a, 5).unwrap();
        assert_eq!(c.len(a).unwrap(), 5);
        assert_eq!(c.free_block_count(), 3);
        assert!(matches!(
            c.truncate(a, 6),
            Err(KvCacheError::PositionOutOfRange { .. })
        ));
    }

    #[test]
    fn full_cache_is_an_error_not_a_panic() {
        let mut c = cache(32);
        let a = c.new_sequence();
        c.append(a, 30).unwrap();
        let err = c.append(a, 10).unwrap_err();
        assert!(matches!(
            err,
            KvCacheError::Full {
                needed: 1,
                free: 0,
                ..
            }
        ));
        assert_eq!(c.len(a).unwrap(), 30, "a failed append changes nothing");
    }
}
