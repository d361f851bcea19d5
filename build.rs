//! Captures the commit the `warren` binary is built from (`git describe --always --dirty
//! --tags`) as `WARREN_GIT_DESCRIBE`, for `warren ctl version` and the load test's run
//! metadata (`crate::COMMIT`). `WARREN_BUILD_COMMIT` in the environment wins (a build from
//! a source tarball). Outside a git checkout or without git, it sets nothing and the
//! binary reports `unknown`; it never fails the build. Only this leaf crate has it, so a
//! commit rebuilds the binary alone.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WARREN_BUILD_COMMIT");
    if let Ok(c) = std::env::var("WARREN_BUILD_COMMIT") {
        println!("cargo:rustc-env=WARREN_GIT_DESCRIBE={c}");
        return;
    }
    let Some(describe) = git(&["describe", "--always", "--dirty", "--tags"]) else {
        return;
    };
    println!("cargo:rustc-env=WARREN_GIT_DESCRIBE={describe}");
    // Describe again when the checked-out commit moves.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(r) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={r}");
        }
    }
    if let Some(index) = git(&["rev-parse", "--git-path", "index"]) {
        println!("cargo:rerun-if-changed={index}");
    }
}
