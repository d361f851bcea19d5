//! Writes every target's seed inputs ([`warren_fuzz::seeds`]) under the directory given
//! (`fuzz/corpus`), one subdirectory per target, as `seed-<name>`.

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "fuzz/corpus".into());
    for (target, name, bytes) in warren_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let file = dir.join(format!("seed-{name}"));
        std::fs::write(&file, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        println!("{}", file.display());
    }
}
