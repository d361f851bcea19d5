//! Target `config`: the TOML configuration files of `warren cell` and `warren proxy`
//! (docs/operations.md). The first byte picks the process (even: cell, odd: proxy); the
//! rest is the file's text, loaded through the same [`Sources`] layers `main` uses (with
//! no environment and no flags) and validated.

use warren_config::{CellConfig, ProxyConfig, Sources};

/// Runs one input: a config file for the process its first byte picks.
pub fn run(data: &[u8]) {
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    // A file that is not UTF-8 is refused when it is read, before any parsing.
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let sources = Sources::new().with_file("warren.toml", text);
    if which % 2 == 0 {
        if let Ok(c) = CellConfig::load(&sources) {
            let _ = c.validate();
        }
    } else if let Ok(c) = ProxyConfig::load(&sources) {
        let _ = c.validate();
        let _ = c.min_proxy_lease();
    }
}
