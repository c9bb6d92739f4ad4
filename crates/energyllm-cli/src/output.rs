//! What a command leaves for a person: its result files, and its error message.

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

/// The error and its causes, each once: a cause whose text the message already holds (an I/O
/// error that names its own source) is not repeated.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
