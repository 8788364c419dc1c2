//! `keys generate|status|rotate|retire`: the master keys (KEKs) that wrap every connection's
//! data key.
//!
//! The usual rotation: `keys generate --write` puts a new key first in the key file (the active
//! one), `keys rotate` re-wraps every data key under it (resumable, safe to repeat), `keys
//! retire OLD --write` checks the old key wraps nothing any more and removes it from the file.
//! Restart the servers after a key file change so they load the new keyring.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Subcommand;
use datahub_core::crypto::{KekId, Keyring, MASTER_KEY_ENV, read_key_file};
use datahub_core::keys::{DEFAULT_ROTATION_BATCH, KeyStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use secrecy::zeroize::Zeroizing;
use serde::Serialize;

use super::{CliError, CliResult, Output, OutputArgs};
use crate::config::Settings;

/// `datahub-server keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new random key and print its key file entry (`ID:BASE64`), or with --write put
    /// it first (active) in the key file, which stays mode 0600.
    Generate {
        /// The new key's id (1-32 of A-Z a-z 0-9 _ -). Default: k-<UTC date>-<8 random hex
        /// digits>, unique.
        #[arg(long)]
        id: Option<String>,
        /// Write the key into the key file as the active key instead of printing it.
        #[arg(long)]
        write: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Each key and how many stored data keys it wraps.
    Status {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Re-wrap every data key under the active key, in batches (resumable, safe to repeat).
    Rotate {
        /// Rows per batch.
        #[arg(long, default_value_t = DEFAULT_ROTATION_BATCH)]
        batch: u32,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Check that a key is neither active nor in use, and with --write remove it from the key
    /// file.
    Retire {
        /// The key's id.
        id: String,
        /// Remove the key from the key file after the check.
        #[arg(long)]
        write: bool,
    },
}

#[derive(Debug, Serialize)]
struct KeyStatusJson {
    id: String,
    active: bool,
    in_keyring: bool,
    rows: u64,
}

impl From<&KeyStatus> for KeyStatusJson {
    fn from(k: &KeyStatus) -> Self {
        Self {
            id: k.id.as_str().to_owned(),
            active: k.active,
            in_keyring: k.in_keyring,
            rows: k.rows,
        }
    }
}

#[derive(Debug, Serialize)]
struct RotationJson {
    active: String,
    rewrapped: u64,
    skipped: u64,
    failed: Vec<String>,
}

pub(crate) async fn run(command: KeysCommand, settings: &Settings) -> CliResult {
    match command {
        KeysCommand::Generate { id, write, out } => {
            if write {
                // Only a keyring that opens the store may be changed, and a new key file is
                // made only for an empty store: one for a store with data would open none of
                // it (S28).
                let store = crate::startup::open_store(settings).await?;
                crate::startup::check_keys(settings, store.as_ref()).await?;
            }
            generate(settings, id, write, out.output)
        }
        KeysCommand::Status { out } => {
            let (hub, op) = super::open(settings, false).await?;
            let keys = hub.key_status(&op).await?;
            match out.output {
                Output::Json => {
                    super::print_json(&keys.iter().map(KeyStatusJson::from).collect::<Vec<_>>())
                }
                Output::Table => {
                    let mut t = super::table(["id", "active", "in keyring", "rows"]);
                    for k in &keys {
                        t.add_row([
                            k.id.as_str().to_owned(),
                            yes_no(k.active),
                            yes_no(k.in_keyring),
                            k.rows.to_string(),
                        ]);
                    }
                    super::print_table(&t)
                }
            }
        }
        KeysCommand::Rotate { batch, out } => rotate(settings, batch, out.output).await,
        KeysCommand::Retire { id, write } => {
            let id = KekId::new(&id).map_err(|e| CliError::usage(format!("id: {e}")))?;
            let (hub, op) = super::open(settings, false).await?;
            hub.retire_key(&op, &id).await?;
            if write {
                remove_from_key_file(settings, &id)?;
                eprintln!(
                    "key {id} is retired and removed from {}: restart the servers to load the \
                     new keyring",
                    settings.master_key_file.display()
                );
            } else {
                eprintln!(
                    "key {id} wraps nothing and may be removed from the keyring (or run again \
                     with --write)"
                );
            }
            Ok(())
        }
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

async fn rotate(settings: &Settings, batch: u32, output: Output) -> CliResult {
    let (hub, op) = super::open(settings, false).await?;
    let before = hub.key_status(&op).await?;
    let active = before
        .iter()
        .find(|k| k.active)
        .map(|k| k.id.as_str().to_owned())
        .unwrap_or_default();
    let total: u64 = before.iter().filter(|k| !k.active).map(|k| k.rows).sum();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("re-wrapping {bar:30} {pos}/{len} data keys") {
        bar.set_style(style);
    }
    // The rotation runs in batches inside the core; the bar follows the store's counts.
    let watch = {
        let (hub, op, bar) = (hub.clone(), op.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(keys) = hub.key_status(&op).await {
                    let left: u64 = keys.iter().filter(|k| !k.active).map(|k| k.rows).sum();
                    bar.set_position(total.saturating_sub(left));
                }
            }
        })
    };
    let result = hub.rotate_keys(&op, batch).await;
    watch.abort();
    bar.finish_and_clear();
    let report = result?;
    let json = RotationJson {
        active,
        rewrapped: report.rewrapped,
        skipped: report.skipped,
        failed: report.failed.iter().map(ToString::to_string).collect(),
    };
    match output {
        Output::Json => super::print_json(&json)?,
        Output::Table => {
            let mut t = super::table(["active key", "rewrapped", "skipped", "failed"]);
            t.add_row([
                json.active.clone(),
                json.rewrapped.to_string(),
                json.skipped.to_string(),
                json.failed.len().to_string(),
            ]);
            super::print_table(&t)?;
            for id in &json.failed {
                eprintln!("could not re-wrap the data key of connection {id}");
            }
        }
    }
    if json.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{} data keys could not be re-wrapped",
            json.failed.len()
        )))
    }
}

fn generate(settings: &Settings, id: Option<String>, write: bool, output: Output) -> CliResult {
    let id = match id {
        Some(id) => KekId::new(&id).map_err(|e| CliError::usage(format!("id: {e}")))?,
        None => default_id()?,
    };
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut_slice())
        .map_err(|_| CliError::failed("the operating system's random generator failed"))?;
    let mut entry = Zeroizing::new(String::with_capacity(128));
    entry.push_str(id.as_str());
    entry.push(':');
    BASE64.encode_string(key.as_slice(), &mut entry);
    if !write {
        match output {
            Output::Json => super::print_json(&serde_json::json!({
                "id": id.as_str(),
                "entry": entry.as_str(),
            }))?,
            Output::Table => {
                println!("{}", entry.as_str());
                eprintln!(
                    "Put this line first in the key file (or first in {MASTER_KEY_ENV}) to make \
                     it the active key, restart, then run `keys rotate`."
                );
            }
        }
        return Ok(());
    }
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        return Err(CliError::usage(format!(
            "--write: the keyring comes from {MASTER_KEY_ENV}; print the entry and add it there"
        )));
    }
    let path = &settings.master_key_file;
    let text = if path.exists() {
        let keyring = Keyring::load_key_file(path)?;
        if keyring.contains(&id) {
            return Err(CliError::usage(format!(
                "id: the key file already holds a key {id}"
            )));
        }
        let old = read_key_file(path)?;
        insert_first(&old, &entry)
    } else {
        Zeroizing::new(format!(
            "# DataHub Connections master key. Keep this file private (mode 0600) and backed up:\n\
             # losing it loses every stored credential. Format: ID:BASE64 entries, active first.\n\
             {}\n",
            entry.as_str()
        ))
    };
    // The result must still load before it replaces the file.
    Keyring::parse(&entries_only(&text))?;
    replace_key_file(path, &text)?;
    match output {
        Output::Json => super::print_json(&serde_json::json!({
            "id": id.as_str(),
            "written": path.display().to_string(),
        }))?,
        Output::Table => eprintln!(
            "key {id} is now the active key in {}: back the file up, restart the servers, then \
             run `keys rotate`",
            path.display()
        ),
    }
    Ok(())
}

/// A fresh unique id ([`KekId::generate`]: `k-<UTC date>-<8 random hex digits>`).
fn default_id() -> CliResult<KekId> {
    Ok(KekId::generate()?)
}

/// The key file text with `entry` as a new line before the first entry (after the leading
/// comments), so it becomes the active key.
fn insert_first(text: &str, entry: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(text.len() + entry.len() + 2));
    let mut inserted = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if !inserted && !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push_str(entry);
            out.push('\n');
            inserted = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !inserted {
        out.push_str(entry);
        out.push('\n');
    }
    out
}

/// The key file text without comments, as [`Keyring::parse`] reads it.
fn entries_only(text: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    for line in text.lines() {
        if !line.trim_start().starts_with('#') && !line.trim().is_empty() {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(line.trim());
        }
    }
    out
}

/// The key file text without the entry of `id`.
fn without_entry(text: &str, id: &KekId) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let kept: Vec<&str> = line
            .split(',')
            .filter(|e| {
                e.split_once(':')
                    .is_none_or(|(entry_id, _)| entry_id.trim() != id.as_str())
            })
            .collect();
        if kept.iter().any(|e| !e.trim().is_empty()) {
            out.push_str(&kept.join(","));
            out.push('\n');
        }
    }
    out
}

fn remove_from_key_file(settings: &Settings, id: &KekId) -> CliResult {
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        return Err(CliError::usage(format!(
            "--write: the keyring comes from {MASTER_KEY_ENV}; remove the entry there"
        )));
    }
    let path = &settings.master_key_file;
    // Loading checks the file's mode as every start does.
    Keyring::load_key_file(path)?;
    let old = read_key_file(path)?;
    let text = without_entry(&old, id);
    Keyring::parse(&entries_only(&text))?;
    replace_key_file(path, &text)
}

/// Replaces the key file atomically: a new file of mode 0600 beside it, flushed, renamed over.
fn replace_key_file(path: &Path, text: &str) -> CliResult {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failed(format!("could not create {}: {e}", dir.display())))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "master.key".to_owned());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| {
        CliError::failed(format!(
            "could not write the key file {}: {e}",
            path.display()
        ))
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_edits_keep_comments_and_order() {
        let text = "# header\n# more\nold:AAAA\nother:BBBB,third:CCCC\n";
        assert_eq!(
            insert_first(text, "new:DDDD").as_str(),
            "# header\n# more\nnew:DDDD\nold:AAAA\nother:BBBB,third:CCCC\n"
        );
        assert_eq!(
            entries_only(text).as_str(),
            "old:AAAA,other:BBBB,third:CCCC"
        );
        let other = KekId::new("other").unwrap();
        assert_eq!(
            without_entry(text, &other).as_str(),
            "# header\n# more\nold:AAAA\nthird:CCCC\n"
        );
        let old = KekId::new("old").unwrap();
        assert_eq!(
            without_entry(text, &old).as_str(),
            "# header\n# more\nother:BBBB,third:CCCC\n"
        );
        assert_eq!(insert_first("# only\n", "k:E").as_str(), "# only\nk:E\n");
    }
}
