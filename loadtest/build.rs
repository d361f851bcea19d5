//! Build script: the commit this build comes from, for the report's run metadata
//! (`WARREN_LOADTEST_COMMIT`, read with `option_env!` by `warren_loadtest::version`).
//! `WARREN_BUILD_COMMIT` in the environment wins (builds from a tarball); otherwise
//! `git describe --always --tags`. Outside git, or without git, nothing is set and the
//! version is the crate's alone: this script never fails the build.

use std::path::PathBuf;
use std::process::Command;

/// `git ARGS` in the crate's directory, its trimmed stdout when it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=WARREN_BUILD_COMMIT");
    if let Ok(c) = std::env::var("WARREN_BUILD_COMMIT") {
        println!("cargo:rustc-env=WARREN_LOADTEST_COMMIT={c}");
        return;
    }
    let Some(commit) = git(&["describe", "--always", "--tags"]) else {
        return;
    };
    println!("cargo:rustc-env=WARREN_LOADTEST_COMMIT={commit}");
    // Run again when HEAD moves: HEAD itself (a checkout), and the branch it points at (a
    // commit), loose or packed. Paths from `git rev-parse --git-path` are relative to this directory.
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = here.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
