//! Reading a span's source bytes from the repository, refusing paths that leave it.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

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
        let len = file
            .metadata()
            .map_err(|source| DbError::SourceIo {
                path: path.clone(),
                source,
            })?
            .len();
        self.read_span_at(&file, &path, len)
    }

    /// Reads the span's bytes from `file` (opened at `path`, for errors), `len` bytes long.
    fn read_span_at(&self, file: &File, path: &Path, len: u64) -> Result<String, DbError> {
        self.read_prefix_at(file, path, len, u64::MAX)
            .map(|source| source.text)
    }

    /// Reads at most `max_bytes` of the span's bytes from `file` (opened at `path`, for
    /// errors), `len` bytes long.
    fn read_prefix_at(
        &self,
        file: &File,
        path: &Path,
        len: u64,
        max_bytes: u64,
    ) -> Result<SpanSource, DbError> {
        if self.byte_start > self.byte_end || self.byte_end > len {
            return Err(DbError::SpanOutOfRange {
                path: path.to_path_buf(),
                start: self.byte_start,
                end: self.byte_end,
                len,
            });
        }
        let span_bytes = self.byte_end - self.byte_start;
        let read_bytes = span_bytes.min(max_bytes);
        // The range fits in a file that exists, so it fits in memory's address space too.
        let size = usize::try_from(read_bytes).unwrap_or(usize::MAX);
        let mut bytes = vec![0u8; size];
        read_exact_at(file, &mut bytes, self.byte_start).map_err(|source| DbError::SourceIo {
            path: path.to_path_buf(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            // A prefix may end inside a character: that one is replaced too.
            Err(invalid) => String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
        };
        Ok(SpanSource {
            text,
            span_bytes,
            read_bytes,
        })
    }
}

/// The first bytes of a span's source, as [`SourceReader::read_prefix`] read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSource {
    /// The bytes read, decoded as UTF-8 (invalid sequences, and a character the end of the
    /// read cuts, become U+FFFD).
    pub text: String,
    /// The length of the whole span in bytes (`byte_end - byte_start`).
    pub span_bytes: u64,
    /// The bytes read from the file: the whole span, or the limit when the span is longer.
    pub read_bytes: u64,
}

impl SpanSource {
    /// Whether the whole span was read.
    pub fn is_whole(&self) -> bool {
        self.read_bytes == self.span_bytes
    }
}

/// Fills `buf` from `file` at `offset`, without moving a shared cursor (many tasks read one
/// open file at once).
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Fills `buf` from `file` at `offset`, without moving a shared cursor (many tasks read one
/// open file at once).
#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` from `file` at `offset`, on a handle of its own so no shared cursor moves.
#[cfg(not(any(unix, windows)))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut own = file.try_clone()?;
    own.seek(SeekFrom::Start(offset))?;
    own.read_exact(buf)
}

/// How many resolved files a [`SourceReader`] keeps open.
const RECENT_FILES: usize = 8;

/// Reads the source of many spans under one repository root, with the checks of
/// [`PendingSpan::read_source`], resolving the root once and each file once while its spans
/// come (spans arrive in file order, several tasks at a time).
///
/// The last few files resolved stay open, and a span of one of them costs a `stat` of its
/// resolved path and one positional read instead of a resolution, an open and a close. The
/// `stat` must show the very file that is open (same device and inode): a path changed
/// meanwhile (the file replaced, or a symlink out of the repository put in place of the file
/// or of a directory above it) is resolved again, and refused if it now leaves the root. A file
/// rewritten in place is the same file, and its new bytes are read.
#[derive(Debug)]
pub struct SourceReader {
    root: PathBuf,
    /// Recently opened files, the most recent last.
    recent: Mutex<VecDeque<Arc<OpenSource>>>,
}

/// A file a [`SourceReader`] resolved and keeps open.
#[derive(Debug)]
struct OpenSource {
    /// `file_path` as the index spells it.
    file_path: Box<str>,
    /// Where it resolved to.
    path: PathBuf,
    /// The file, opened there.
    file: File,
    /// Which file that was, to tell whether `path` still leads to it.
    identity: FileIdentity,
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
        self.read_prefix(span, u64::MAX).map(|source| source.text)
    }

    /// At most the first `max_bytes` bytes of the span's source, with the checks of
    /// [`read`](Self::read): a span longer than what its caller can use (a prompt's
    /// `max_snippet_bytes`) is never read whole, however large it is.
    ///
    /// # Errors
    ///
    /// As [`PendingSpan::read_source`].
    pub fn read_prefix(&self, span: &PendingSpan, max_bytes: u64) -> Result<SpanSource, DbError> {
        if let Some(open) = self.remembered(&span.file_path)
            && let Ok(now) = std::fs::metadata(&open.path)
            && FileIdentity::of(&now).same_as(open.identity)
        {
            return span.read_prefix_at(&open.file, &open.path, now.len(), max_bytes);
        }
        let (file, path) = open_in_repo(&self.root, &span.file_path)?;
        let metadata = file.metadata().map_err(|source| DbError::SourceIo {
            path: path.clone(),
            source,
        })?;
        let open = Arc::new(OpenSource {
            file_path: span.file_path.as_str().into(),
            path,
            file,
            identity: FileIdentity::of(&metadata),
        });
        self.remember(Arc::clone(&open));
        span.read_prefix_at(&open.file, &open.path, metadata.len(), max_bytes)
    }

    /// Closes the files kept open (a task still reading one keeps it until it is done); the
    /// next span of each is resolved again. For a caller done with a run's spans, so no file
    /// stays open between runs (a deleted file's space is freed only once it is closed).
    pub fn close_files(&self) {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn remembered(&self, file_path: &str) -> Option<Arc<OpenSource>> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .find(|open| &*open.file_path == file_path)
            .cloned()
    }

    /// Keeps `open`, in place of an older entry for the same path (which a task still reading
    /// it keeps open until it is done) or of the least recent one.
    fn remember(&self, open: Arc<OpenSource>) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.retain(|known| known.file_path != open.file_path);
        if recent.len() == RECENT_FILES {
            recent.pop_front();
        }
        recent.push_back(open);
    }
}

/// What makes a file the same file, whatever path leads to it: device and inode where there are
/// such (elsewhere nothing matches, and every span resolves its path again).
#[derive(Debug, Clone, Copy)]
struct FileIdentity(Option<(u64, u64)>);

impl FileIdentity {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self(Some((metadata.dev(), metadata.ino())))
        }
        #[cfg(not(unix))]
        {
            let _ = metadata;
            Self(None)
        }
    }

    /// Whether both are known and equal.
    fn same_as(self, other: Self) -> bool {
        self.0.is_some() && self.0 == other.0
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
