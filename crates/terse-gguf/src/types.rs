//! ggml tensor element types and their block layouts.
//!
//! Quantized types store elements in fixed-size blocks (e.g. Q4_K packs 256
//! weights into 144 bytes). The reader needs the exact layout of every type
//! that can appear in a file to compute tensor byte sizes and bounds-check
//! them, so the table here mirrors ggml's `type_traits` (ids, block sizes and
//! bytes per block) rather than only the types the engine can compute with.

use std::fmt;

/// A ggml tensor element type, numbered as in ggml's `enum ggml_type`.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// Per-type facts: ggml id, name, elements per block, bytes per block.
struct Traits {
    id: u32,
    name: &'static str,
    block_size: usize,
    type_size: usize,
}

impl GgmlType {
    /// Every type this crate knows, in ggml id order.
    pub const ALL: [GgmlType; 32] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
    ];

    fn traits(self) -> Traits {
        // (id, name, elements per block, bytes per block) as in ggml's type_traits.
        let (id, name, block_size, type_size) = match self {
            GgmlType::F32 => (0, "F32", 1, 4),
            GgmlType::F16 => (1, "F16", 1, 2),
            GgmlType::Q4_0 => (2, "Q4_0", 32, 18),
            GgmlType::Q4_1 => (3, "Q4_1", 32, 20),
            GgmlType::Q5_0 => (6, "Q5_0", 32, 22),
            GgmlType::Q5_1 => (7, "Q5_1", 32, 24),
            GgmlType::Q8_0 => (8, "Q8_0", 32, 34),
            GgmlType::Q8_1 => (9, "Q8_1", 32, 36),
            GgmlType::Q2_K => (10, "Q2_K", 256, 84),
            GgmlType::Q3_K => (11, "Q3_K", 256, 110),
            GgmlType::Q4_K => (12, "Q4_K", 256, 144),
            GgmlType::Q5_K => (13, "Q5_K", 256, 176),
            GgmlType::Q6_K => (14, "Q6_K", 256, 210),
            GgmlType::Q8_K => (15, "Q8_K", 256, 292),
            GgmlType::IQ2_XXS => (16, "IQ2_XXS", 256, 66),
            GgmlType::IQ2_XS => (17, "IQ2_XS", 256, 74),
            GgmlType::IQ3_XXS => (18, "IQ3_XXS", 256, 98),
            GgmlType::IQ1_S => (19, "IQ1_S", 256, 50),
            GgmlType::IQ4_NL => (20, "IQ4_NL", 32, 18),
            GgmlType::IQ3_S => (21, "IQ3_S", 256, 110),
            GgmlType::IQ2_S => (22, "IQ2_S", 256, 82),
            GgmlType::IQ4_XS => (23, "IQ4_XS", 256, 136),
            GgmlType::I8 => (24, "I8", 1, 1),
            GgmlType::I16 => (25, "I16", 1, 2),
            GgmlType::I32 => (26, "I32", 1, 4),
            GgmlType::I64 => (27, "I64", 1, 8),
            GgmlType::F64 => (28, "F64", 1, 8),
            GgmlType::IQ1_M => (29, "IQ1_M", 256, 56),
            GgmlType::BF16 => (30, "BF16", 1, 2),
            GgmlType::TQ1_0 => (34, "TQ1_0", 256, 54),
            GgmlType::TQ2_0 => (35, "TQ2_0", 256, 66),
            GgmlType::MXFP4 => (39, "MXFP4", 32, 17),
        };
        Traits {
            id,
            name,
            block_size,
            type_size,
        }
    }

    /// The type with ggml id `id`; `None` for unknown or removed ids (4, 5, 31–33, 36–38, ≥ 40).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The ggml id of this type.
    pub fn id(self) -> u32 {
        self.traits().id
    }

    /// The ggml name, e.g. `"Q4_K"`.
    pub fn name(self) -> &'static str {
        self.traits().name
    }

    /// Elements per block (1 for plain scalar types).
    pub fn block_size(self) -> usize {
        self.traits().block_size
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.traits().type_size
    }

    /// Whether elements are stored in multi-element quantized blocks.
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n_elements` consecutive elements; `None` when
    /// `n_elements` is not a whole number of blocks or the size overflows `u64`.
    pub fn row_bytes(self, n_elements: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(self.type_size() as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t), "{t}");
        }
        let mut ids: Vec<u32> = GgmlType::ALL.iter().map(|t| t.id()).collect();
        ids.dedup();
        assert_eq!(
            ids.len(),
            GgmlType::ALL.len(),
            "ALL must be in strictly increasing id order"
        );
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn removed_and_unknown_ids_are_none() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 40, 1000, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), None, "id {id}");
        }
    }

    #[test]
    fn block_layouts_match_ggml() {
        assert_eq!(
            (GgmlType::F32.block_size(), GgmlType::F32.type_size()),
            (1, 4)
        );
        assert_eq!(
            (GgmlType::Q8_0.block_size(), GgmlType::Q8_0.type_size()),
            (32, 34)
        );
        assert_eq!(
            (GgmlType::Q5_0.block_size(), GgmlType::Q5_0.type_size()),
            (32, 22)
        );
        assert_eq!(
            (GgmlType::Q4_K.block_size(), GgmlType::Q4_K.type_size()),
            (256, 144)
        );
        assert_eq!(
            (GgmlType::Q6_K.block_size(), GgmlType::Q6_K.type_size()),
            (256, 210)
        );
        assert_eq!(
            (GgmlType::MXFP4.block_size(), GgmlType::MXFP4.type_size()),
            (32, 17)
        );
        assert_eq!(GgmlType::BF16.id(), 30);
        assert_eq!(GgmlType::TQ1_0.id(), 34);
        assert_eq!(GgmlType::MXFP4.id(), 39);
        assert_eq!(GgmlType::Q6_K.to_string(), "Q6_K");
    }

    #[test]
    fn row_bytes_rejects_partial_blocks_and_overflow() {
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
        assert_eq!(GgmlType::F32.row_bytes(896), Some(3584));
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
        assert_eq!(GgmlType::Q8_0.row_bytes(0), Some(0));
    }
}
