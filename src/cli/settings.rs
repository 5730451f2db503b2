//! Where the client keeps things, and file locks.
//!
//! All of it lives in one folder: `$ROLEGATE_CONFIG_DIR`, else the user's config folder
//! (`~/.config/rolegate` on Linux, `~/Library/Application Support/rolegate` on macOS,
//! `%APPDATA%\rolegate` on Windows):
//! - `config.toml`: the broker URL (remembered from `rolegate login --broker`), the client
//!   id, how AWS CLI profiles are named, and where tokens are kept (`token_store`);
//! - the broker tokens of the current login: in the OS keychain where there is one (macOS
//!   Keychain, Windows Credential Manager, the Secret Service of a Linux desktop: service
//!   `rolegate`, user `tokens`), else in `tokens.json` (mode 0600);
//! - `cache/ROLE-DURATION.json` (0600): credentials per role, reused until 5 minutes
//!   before they expire.
//!
//! Writes go to a temporary file renamed into place, so a reader never sees half a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CliError;

/// The client's settings (`config.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The broker's URL, e.g. `https://rolegate.example.com`.
    pub broker: Option<String>,
    /// The OAuth client id registered at the broker.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// AWS CLI profile names written by `rolegate configure`: `{account}` (the account's
    /// id at the broker), `{account_number}`, `{role}`.
    #[serde(default = "default_profile_name")]
    pub profile_name: String,
    /// Where the login's tokens are kept: `auto` (the OS keychain when one answers, else
    /// the file), `keychain` (only the keychain: an error without one), `file`.
    #[serde(default)]
    pub token_store: TokenStore,
}

/// Where the login's tokens are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStore {
    #[default]
    Auto,
    Keychain,
    File,
}

fn default_client_id() -> String {
    "rolegate-cli".into()
}

fn default_profile_name() -> String {
    "{account}-{role}".into()
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            broker: None,
            client_id: default_client_id(),
            profile_name: default_profile_name(),
            token_store: TokenStore::Auto,
        }
    }
}

/// The tokens of the current login (`tokens.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredTokens {
    pub broker: String,
    pub client_id: String,
    pub access_token: String,
    /// Unix seconds.
    pub access_expires_at: u64,
    pub refresh_token: String,
}

/// The client's folder.
pub fn dir() -> Result<PathBuf, CliError> {
    if let Some(d) = std::env::var_os("ROLEGATE_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    dirs::config_dir()
        .map(|d| d.join("rolegate"))
        .ok_or_else(|| {
            CliError::Login("cannot find the user's config folder; set ROLEGATE_CONFIG_DIR".into())
        })
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `text` to `path` atomically, readable by the owner only.
pub fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(&tmp)
        .map_err(CliError::io(format!("cannot write {}", tmp.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(CliError::io(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(CliError::io(format!("cannot write {}", path.display())))
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    if dir.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(CliError::io(format!("cannot create {}", dir.display())))
}

/// An exclusive lock on `name` in the client folder, held until dropped: two
/// `credential_process` calls at once (the AWS CLI, Terraform and SDKs do this) fetch
/// only once.
pub struct Lock(#[allow(dead_code)] File);

pub fn lock(name: &str) -> Result<Lock, CliError> {
    let d = dir()?.join("locks");
    create_private_dir(&d)?;
    let path = d.join(format!("{name}.lock"));
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(CliError::io(format!("cannot open {}", path.display())))?;
    f.lock()
        .map_err(CliError::io(format!("cannot lock {}", path.display())))?;
    Ok(Lock(f))
}

pub fn load_config() -> Result<ClientConfig, CliError> {
    let path = dir()?.join("config.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| CliError::Login(format!("{}: {}", path.display(), e.message()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
        Err(e) => Err(CliError::io(format!("cannot read {}", path.display()))(e)),
    }
}

pub fn save_config(c: &ClientConfig) -> Result<(), CliError> {
    let text = toml::to_string(c).map_err(|e| CliError::Login(e.to_string()))?;
    write_private(
        &dir()?.join("config.toml"),
        &format!("# rolegate client settings (written by `rolegate login --broker …`)\n{text}"),
    )
}

/// The keychain entry of the login's tokens. The service name can be changed for tests
/// (`ROLEGATE_KEYCHAIN_SERVICE`), so a test never touches a developer's own login.
fn keychain() -> Result<keyring::Entry, keyring::Error> {
    let service =
        std::env::var("ROLEGATE_KEYCHAIN_SERVICE").unwrap_or_else(|_| "rolegate".to_owned());
    keyring::Entry::new(&service, "tokens")
}

fn keychain_error(e: keyring::Error) -> CliError {
    CliError::Login(format!(
        "the OS keychain cannot be used ({e}); set token_store = \"file\" in config.toml to keep tokens in a 0600 file"
    ))
}

fn read_token_file() -> Result<Option<StoredTokens>, CliError> {
    let path = dir()?.join("tokens.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(serde_json::from_str(&text).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::io(format!("cannot read {}", path.display()))(e)),
    }
}

/// Where the current login's tokens are (keychain first, then the file).
pub fn load_tokens() -> Result<Option<StoredTokens>, CliError> {
    let store = load_config()?.token_store;
    if store != TokenStore::File {
        match keychain().and_then(|e| e.get_password()) {
            Ok(text) => return Ok(serde_json::from_str(&text).ok()),
            Err(keyring::Error::NoEntry) => {}
            Err(e) if store == TokenStore::Keychain => return Err(keychain_error(e)),
            // No keychain here (no Secret Service on a server): the file, as written.
            Err(_) => {}
        }
    }
    read_token_file()
}

/// Keeps the login's tokens: in the keychain (`auto` when one answers, `keychain`), else
/// in `tokens.json` (0600). Only one of the two ever holds them.
pub fn save_tokens(t: &StoredTokens) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(t).map_err(|e| CliError::Login(e.to_string()))?;
    let store = load_config()?.token_store;
    if store != TokenStore::File {
        match keychain().and_then(|e| e.set_password(&text)) {
            Ok(()) => {
                let _ = std::fs::remove_file(dir()?.join("tokens.json"));
                return Ok(());
            }
            Err(e) if store == TokenStore::Keychain => return Err(keychain_error(e)),
            Err(_) => {}
        }
    }
    write_private(&dir()?.join("tokens.json"), &text)
}

/// Which store holds the login now (for `rolegate doctor` and `whoami`).
pub fn tokens_location() -> Result<&'static str, CliError> {
    if load_config()?.token_store != TokenStore::File
        && keychain().and_then(|e| e.get_password()).is_ok()
    {
        return Ok("the OS keychain");
    }
    Ok("tokens.json (0600)")
}

/// Forgets the login and every cached credential.
pub fn forget_login() -> Result<(), CliError> {
    let d = dir()?;
    if load_config()?.token_store != TokenStore::File
        && let Ok(e) = keychain()
    {
        let _ = e.delete_credential();
    }
    let _ = std::fs::remove_file(d.join("tokens.json"));
    let _ = std::fs::remove_dir_all(d.join("cache"));
    Ok(())
}

pub fn cache_path(role: &str, duration: Option<&str>) -> Result<PathBuf, CliError> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let name = match duration {
        Some(d) => format!("{}-{}.json", clean(role), clean(d)),
        None => format!("{}.json", clean(role)),
    };
    Ok(dir()?.join("cache").join(name))
}
