//! The bench's data directory: it must start empty, so a bench never writes into a
//! user's store.

use std::path::Path;

use anyhow::{Context, bail};

/// Creates `dir`, or checks that it exists and is empty.
pub(crate) fn prepare(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!(
                "{} exists and is not a directory: pass a new or empty directory to --data-dir",
                dir.display()
            );
        }
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}; check its permissions", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: the bench writes a fresh store and never touches existing data; \
                 pass a new or empty directory to --data-dir",
                dir.display()
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {}; check that its parent exists and is writable",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_directory_with_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("existing"), b"data").expect("write");
        let error = prepare(dir.path()).expect_err("non-empty dir refused");
        assert!(error.to_string().contains("is not empty"));
    }

    #[test]
    fn creates_a_missing_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("fresh");
        prepare(&target).expect("created");
        assert!(target.is_dir());
        prepare(&target).expect("an empty directory is accepted");
    }
}
