//! Files that hold secrets or customer data: the data directory (0700), the
//! generated token secret and the embedded database (0600), created so that
//! no other user of the machine can read them, ever, not even for a moment.

use std::{
    fs,
    io::{ErrorKind, Write},
    path::Path,
};

/// Creates `dir` (and its parents) readable by this user only. An existing
/// directory is not changed (it may be shared, like `/tmp`), but one that
/// other users may list is reported: the files c360 keeps in it are private
/// either way.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        if let Ok(Some(mode)) = open_mode(dir) {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                "the data directory is open to other users (its files are not): run `chmod 700` on it"
            );
        }
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path`, which must not exist, readable by this user only.
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Creates `path` empty with mode 0600 if it does not exist (SQLite then
/// gives its journal files the same mode). An existing file that other
/// users may read (made by an older version, or copied in) is made private,
/// and so are the write-ahead log and shared-memory files beside it.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    match create_private(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            for file in [
                path.to_owned(),
                path.with_file_name(format!("{name}-wal")),
                path.with_file_name(format!("{name}-shm")),
            ] {
                // The log files may not exist (yet): nothing to do then.
                if let Ok(Some(mode)) = open_mode(&file) {
                    #[cfg(unix)]
                    fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                    tracing::warn!(file = %file.display(), was = format!("{mode:o}"), "made private (0600)");
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The permission bits of `path` when other users have any access to it.
fn open_mode(path: &Path) -> std::io::Result<Option<u32>> {
    let metadata = fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        Ok((mode & 0o077 != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Ok(None)
    }
}

/// Writes `contents` to `path` only if nothing is there yet, atomically:
/// into a private temporary file, synced, then linked into place, so a
/// reader sees the whole file or none. `false` when another process got
/// there first (its file stays).
pub fn create_once(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("new"),
        uuid::Uuid::now_v7().simple()
    ));
    let written = (|| {
        let mut file = create_private(&temp)?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// The whole file at `path`; the error names it as `what`.
pub fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    fs::read(path).map_err(|e| anyhow::anyhow!("cannot read the {what} {}: {e}", path.display()))
}

/// A secret kept in a file: refused if other users may read the file or it
/// holds nothing; a trailing newline is not part of the secret.
pub fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    check_private(path)?;
    let raw = read(path, what)?;
    let text = String::from_utf8(raw).map_err(|_| anyhow::anyhow!("the {what} {} is not UTF-8", path.display()))?;
    let value = text.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!value.is_empty(), "the {what} {} is empty", path.display());
    Ok(value.to_owned())
}

/// Refuses a secret file that other users may read.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    if let Some(mode) = open_mode(path)? {
        anyhow::bail!("{} is readable by other users (mode {mode:o}): run `chmod 600` on it", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_created_once_and_whole_even_by_racing_writers() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("secret");
        let winners: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|n| {
                    let path = &path;
                    scope.spawn(move || create_once(path, format!("writer-{n}-{}", "x".repeat(64)).as_bytes()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread").expect("create")).collect()
        });
        assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("writer-") && text.len() > 64, "{text}");
        check_private(&path).expect("0600");
        let leftovers = fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[cfg(unix)]
    #[test]
    fn directories_are_private_and_readable_secrets_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("a/b");
        private_dir(&data).expect("create");
        assert_eq!(fs::metadata(&data).expect("meta").permissions().mode() & 0o777, 0o700);
        let file = data.join("open");
        fs::write(&file, "secret").expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(check_private(&file).is_err());
        let db = data.join("c360.db");
        private_file(&db).expect("create");
        assert_eq!(fs::metadata(&db).expect("meta").permissions().mode() & 0o777, 0o600);
        // Found in review: an existing database (and its log) open to others was left so.
        let wal = data.join("c360.db-wal");
        fs::write(&wal, "").expect("write");
        for file in [&db, &wal] {
            fs::set_permissions(file, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        private_file(&db).expect("existing");
        for file in [&db, &wal] {
            assert_eq!(fs::metadata(file).expect("meta").permissions().mode() & 0o777, 0o600, "{}", file.display());
        }
    }
}
