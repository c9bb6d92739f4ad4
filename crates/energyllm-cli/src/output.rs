//! Writing a command's result files.

use std::path::Path;

use anyhow::Context as _;

/// Writes each `(name, body)` into `dir` (created if missing) and says where.
pub fn write_files(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("\nwrote {}", dir.display());
    Ok(())
}
