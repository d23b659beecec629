//! Embeds `migrations/{control,tenant}/NNNN_name.sql` into the binary, in
//! version order, and reruns when a file there changes.
use std::{env, fs, path::Path};

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../migrations");
    let mut out = String::new();
    for set in ["control", "tenant"] {
        let dir = root.join(set);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        out.push_str(&format!(
            "pub(crate) static {}: &[MigrationFile] = &[\n",
            set.to_uppercase()
        ));
        for path in files {
            println!("cargo:rerun-if-changed={}", path.display());
            let stem = path.file_stem().unwrap().to_str().unwrap();
            let (version, name) = stem
                .split_once('_')
                .unwrap_or_else(|| panic!("{stem}: expected NNNN_name.sql"));
            let version: i32 = version
                .parse()
                .unwrap_or_else(|_| panic!("{stem}: version must be a number"));
            let abs = fs::canonicalize(&path).unwrap();
            out.push_str(&format!(
                "    MigrationFile {{ version: {version}, name: {name:?}, sql: include_str!({abs:?}) }},\n"
            ));
        }
        out.push_str("];\n");
    }
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("migration_files.rs"),
        out,
    )
    .unwrap();
}
