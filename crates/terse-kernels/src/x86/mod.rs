//! The x86-64 levels: `avx2` and `avx512`, each a complete kernel table.

pub(crate) mod avx2;
pub(crate) mod avx512;
