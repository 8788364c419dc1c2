//! Embeds DataHub Connections in a Rust program: the default SQLite store, a key file, the first
//! admin, two connections, a viewer with a `view` grant on one of them, lists as each user, and a
//! credential reveal that prints nothing secret. See `datahub_examples::run` for the steps.
//!
//! Run: `cargo run -p datahub-examples --example embed [-- --data-dir PATH]`. Without
//! `--data-dir` it works in a temporary folder that is deleted at the end; a given folder must be
//! new or empty, and keeps the store and its key file afterwards.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = data_dir_arg()?;
    // Held until the end, so the temporary folder outlives the run.
    let temp = match data_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("could not create a temporary folder")?),
    };
    let dir = match (&data_dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_path_buf(),
        (None, None) => bail!("no data folder"),
    };
    let mut out = std::io::stdout().lock();
    let summary = datahub_examples::run(&dir, &mut out).await?;
    writeln!(
        out,
        "\ndone: the admin sees {} connections, the viewer {}",
        summary.admin_total, summary.viewer_total
    )?;
    if temp.is_some() {
        writeln!(out, "(the temporary folder is deleted now)")?;
    }
    Ok(())
}

/// The folder given with `--data-dir PATH` or `--data-dir=PATH`, if any.
fn data_dir_arg() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args_os().skip(1);
    let mut dir = None;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--data-dir" {
            let value = args.next().context("--data-dir needs a folder")?;
            dir = Some(PathBuf::from(value));
        } else if let Some(value) = text.strip_prefix("--data-dir=") {
            dir = Some(PathBuf::from(value));
        } else if text == "--help" || text == "-h" {
            println!("usage: embed [--data-dir PATH]");
            std::process::exit(0);
        } else {
            bail!("unknown argument {text:?}; usage: embed [--data-dir PATH]");
        }
    }
    Ok(dir)
}
