//! Embeds every descriptor in the repository's `coins/` directory: adding a coin is adding
//! one file there (and, on an image, one file in /usr/share/minebox/coins without a rebuild).

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("../../../coins").canonicalize().expect("the repository's coins/ directory");
    // A directory here makes cargo rerun this script when a file is added or removed.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read coins/")
        .map(|e| e.expect("read coins/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out =
        String::from("/// The descriptors shipped with this build: every coins/*.toml, by name (build.rs).\n");
    out.push_str("const EMBEDDED: &[(&str, &str)] = &[\n");
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name");
        out.push_str(&format!("    ({name:?}, include_str!({:?})),\n", f.display().to_string()));
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_coins.rs");
    std::fs::write(target, out).expect("write the embedded coin list");
}
