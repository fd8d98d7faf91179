//! Reading a span's source bytes from the repository, refusing paths that leave it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, PoisonError};

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
        let (file, path) = open_in_repo(canonical_root, &self.file_path)?;
        self.read_span_of(file, path)
    }

    /// Reads the span's bytes from `file`, opened at `path` (for errors).
    fn read_span_of(&self, mut file: File, path: PathBuf) -> Result<String, DbError> {
        let source_err = |source| DbError::SourceIo {
            path: path.clone(),
            source,
        };
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

/// How many resolved files a [`SourceReader`] remembers.
const RECENT_FILES: usize = 8;

/// Reads the source of many spans under one repository root, with the checks of
/// [`PendingSpan::read_source`], resolving the root once and each file once while its spans
/// come (spans arrive in file order, several tasks at a time).
///
/// A remembered file is opened at its resolved path and checked to still be that file (see
/// `open_unchanged`); a path changed meanwhile (a symlink out of the repository put in place of
/// the file or a directory above it, say) is resolved again, and refused if it now leaves the
/// root.
#[derive(Debug)]
pub struct SourceReader {
    root: PathBuf,
    /// Recently resolved files: `file_path` as the index spells it, and where it resolved.
    recent: Mutex<VecDeque<(Box<str>, PathBuf)>>,
}

impl SourceReader {
    /// A reader for the repository at `repo_root`, which is canonicalised here.
    ///
    /// # Errors
    ///
    /// [`DbError::SourceIo`] naming the root when it cannot be resolved (it does not exist).
    pub fn new(repo_root: &Path) -> Result<Self, DbError> {
        let root = repo_root
            .canonicalize()
            .map_err(|source| DbError::SourceIo {
                path: repo_root.to_path_buf(),
                source,
            })?;
        Ok(Self {
            root,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_FILES)),
        })
    }

    /// The canonical repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The span's source, as [`PendingSpan::read_source`] reads it.
    ///
    /// # Errors
    ///
    /// As [`PendingSpan::read_source`].
    pub fn read(&self, span: &PendingSpan) -> Result<String, DbError> {
        if let Some(path) = self.remembered(&span.file_path)
            && let Some(file) = open_unchanged(&path)
        {
            return span.read_span_of(file, path);
        }
        let (file, path) = open_in_repo(&self.root, &span.file_path)?;
        self.remember(&span.file_path, &path);
        span.read_span_of(file, path)
    }

    fn remembered(&self, file_path: &str) -> Option<PathBuf> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .iter()
            .find(|(known, _)| &**known == file_path)
            .map(|(_, path)| path.clone())
    }

    fn remember(&self, file_path: &str, path: &Path) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.iter().any(|(known, _)| &**known == file_path) {
            return;
        }
        if recent.len() == RECENT_FILES {
            recent.pop_front();
        }
        recent.push_back((file_path.into(), path.to_path_buf()));
    }
}

/// Opens `path`, resolved earlier, when it still is the file it was resolved to: the file the
/// kernel opened has that path (Linux's `/proc/self/fd`), so no symlink swapped in meanwhile,
/// for the file or any directory above it, took the read elsewhere. `None` otherwise, and where
/// that cannot be checked (no `/proc`, other systems): the caller resolves the path again.
fn open_unchanged(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let file = File::open(path).ok()?;
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        (opened == path).then_some(file)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Opens `root/relative` (see [`resolve_in_repo`]), with the path it resolved to.
fn open_in_repo(root: &Path, relative: &str) -> Result<(File, PathBuf), DbError> {
    let path = resolve_in_repo(root, relative)?;
    match File::open(&path) {
        Ok(file) => Ok((file, path)),
        Err(source) => Err(DbError::SourceIo { path, source }),
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
