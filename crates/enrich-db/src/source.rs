//! Reading a span's source bytes from the repository, refusing paths that leave it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::error::DbError;
use crate::types::PendingSpan;

impl PendingSpan {
    /// The span's source: bytes `byte_start..byte_end` of `repo_root/file_path`, decoded as
    /// UTF-8 (invalid sequences become U+FFFD).
    ///
    /// Refuses an absolute path, a path with `..`, and a path that resolves (through symlinks)
    /// outside the repo root. A missing file or a range beyond its end is an error naming the
    /// file. Only the span's bytes are read, not the whole file.
    pub fn read_source(&self, repo_root: &Path) -> Result<String, DbError> {
        let root = repo_root
            .canonicalize()
            .map_err(|source| DbError::SourceIo {
                path: repo_root.to_path_buf(),
                source,
            })?;
        self.read_source_at_canonical(&root)
    }

    /// [`read_source`](Self::read_source) with a repo root that is already canonical (as
    /// [`Path::canonicalize`] returns it): a caller reading many spans resolves the root once
    /// instead of once per span. A root that is not canonical makes every span's path look
    /// outside it, so nothing is read by mistake.
    pub fn read_source_at_canonical(&self, canonical_root: &Path) -> Result<String, DbError> {
        let path = resolve_in_repo(canonical_root, &self.file_path)?;
        let source_err = |source| DbError::SourceIo {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(source_err)?;
        let len = file.metadata().map_err(source_err)?.len();
        if self.byte_start > self.byte_end || self.byte_end > len {
            return Err(DbError::SpanOutOfRange {
                path,
                start: self.byte_start,
                end: self.byte_end,
                len,
            });
        }
        // The range fits in a file that exists, so it fits in memory's address space too.
        let size = usize::try_from(self.byte_end - self.byte_start).unwrap_or(usize::MAX);
        let mut bytes = vec![0u8; size];
        file.seek(SeekFrom::Start(self.byte_start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(source_err)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// `root/relative`, canonicalised, after checking it stays inside `root` (canonical).
fn resolve_in_repo(root: &Path, relative: &str) -> Result<PathBuf, DbError> {
    let rel = Path::new(relative);
    if rel.is_absolute() || rel.has_root() {
        return Err(DbError::AbsoluteSpanPath {
            path: relative.to_owned(),
        });
    }
    let escapes = || DbError::SpanPathEscapes {
        path: relative.to_owned(),
        root: root.to_path_buf(),
    };
    if rel
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(escapes());
    }
    let joined = root.join(rel);
    let resolved = joined.canonicalize().map_err(|source| DbError::SourceIo {
        path: joined.clone(),
        source,
    })?;
    if !resolved.starts_with(root) {
        return Err(escapes());
    }
    Ok(resolved)
}
