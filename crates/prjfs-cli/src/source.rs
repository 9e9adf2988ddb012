//! What `prjfs mount` projects: a directory, an archive file,
//! `git:REPO[@REV]` (a revision of a local repository) or
//! `s3://BUCKET[/PREFIX]`, and the git-specific parts of the daemon: the
//! revision a root projects (kept in `ROOT/.prjfs/git-revision` across
//! mounts) and `prjfs switch`.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use prjfs::{InstanceHandle, RootMarker, VirtualizationInstance};
use prjfs_providers::git::GitProvider;

/// The file below the root's hidden directory naming the commit a git root
/// projects (written at the first mount and by every switch).
pub const REVISION_FILE: &str = "git-revision";

/// A parsed SOURCE argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A directory (canonical).
    Dir(PathBuf),
    /// An archive file (canonical): tar, tar.gz, tar.zst or zip, recognised
    /// by content when it is opened.
    Archive(PathBuf),
    /// A revision of a local repository.
    Git {
        /// The path given, canonical.
        repo: PathBuf,
        /// The revision given after `@`, if any.
        rev: Option<String>,
    },
    /// A bucket of an S3-compatible object store, or a prefix of it.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix, without slashes at either end (may be empty).
        prefix: String,
    },
}

impl Source {
    /// Parse SOURCE: `git:REPO[@REV]`, a directory, or a regular file (an archive).
    pub fn parse(arg: &Path) -> Result<Source, String> {
        let text = arg.to_string_lossy();
        if let Some(spec) = text.strip_prefix("s3://") {
            let (bucket, prefix) = spec.split_once('/').unwrap_or((spec, ""));
            if bucket.is_empty() {
                return Err(format!("source {text}: no bucket after s3://"));
            }
            return Ok(Source::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let Some(spec) = text.strip_prefix("git:") else {
            let dir = arg
                .canonicalize()
                .map_err(|e| format!("source {}: {e}", arg.display()))?;
            if dir.is_file() {
                return Ok(Source::Archive(dir));
            }
            if !dir.is_dir() {
                return Err(format!(
                    "source {}: not a directory, nor an archive file",
                    arg.display()
                ));
            }
            return Ok(Source::Dir(dir));
        };
        // REPO may hold '@' itself: the first '@' whose left side is a
        // directory splits it from REV.
        let (repo, rev) = if Path::new(spec).is_dir() || !spec.contains('@') {
            (spec.to_string(), None)
        } else {
            spec.match_indices('@')
                .map(|(i, _)| (&spec[..i], &spec[i + 1..]))
                .find(|(p, _)| Path::new(p).is_dir())
                .map(|(p, r)| (p.to_string(), Some(r.to_string())))
                .unwrap_or((spec.to_string(), None))
        };
        if rev.as_deref() == Some("") {
            return Err(format!("source {text}: empty revision after '@'"));
        }
        let repo = Path::new(if repo.is_empty() { "." } else { &repo })
            .canonicalize()
            .map_err(|e| format!("source {text}: {repo}: {e}"))?;
        Ok(Source::Git { repo, rev })
    }

    /// The path the source lives at (for the containment check); `None` for
    /// a source off the local file system.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::Dir(p) | Source::Archive(p) => Some(p),
            Source::Git { repo, .. } => Some(repo),
            Source::S3 { .. } => None,
        }
    }

    /// The SOURCE argument that names this source again (for the daemon).
    pub fn arg(&self) -> OsString {
        match self {
            Source::Dir(p) | Source::Archive(p) => p.clone().into_os_string(),
            Source::Git { repo, rev } => {
                let mut s = OsString::from("git:");
                s.push(repo);
                if let Some(r) = rev {
                    s.push("@");
                    s.push(r);
                }
                s
            }
            Source::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}").into(),
            Source::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}").into(),
        }
    }

    /// How it is shown (`status`, messages).
    pub fn display(&self) -> String {
        self.arg().to_string_lossy().into_owned()
    }
}

/// The commit a root projects, if it was mounted from git before.
pub fn stored_revision(root: &Path) -> Result<Option<String>, String> {
    let path = root.join(prjfs::layer::HIDDEN_DIR).join(REVISION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The git provider for a mount of `repo` at `root`, and the root marker:
/// the revision the root was switched to, or `rev` (default `HEAD`) at its
/// first mount. A `rev` naming another commit than the root's is refused.
pub fn open_git(
    repo: &Path,
    rev: Option<&str>,
    root: &Path,
) -> Result<(GitProvider, RootMarker), String> {
    let stored = stored_revision(root)?;
    let provider = GitProvider::open(repo, stored.as_deref().or(rev).unwrap_or("HEAD"))
        .map_err(|e| e.to_string())?;
    if let (Some(stored), Some(rev)) = (&stored, rev) {
        let wanted = provider.resolve(rev).map_err(|e| e.to_string())?;
        let wanted_hex = wanted.commit.to_string();
        if wanted_hex != *stored {
            return Err(format!(
                "root {} projects revision {stored}, not {rev} ({}); mount it as git:{} and use `prjfs switch {} {rev}`",
                root.display(),
                wanted.commit,
                repo.display(),
                root.display()
            ));
        }
    }
    let marker = RootMarker {
        source: format!("git:{}", provider.git_dir().display()),
        provider: "git".into(),
    };
    Ok((provider, marker))
}

/// Record the commit `provider` projects in the root's hidden directory
/// (write a temp file, rename it over the old one).
pub fn store_revision(
    instance: &VirtualizationInstance,
    provider: &GitProvider,
) -> Result<(), String> {
    let hidden = instance
        .virtualizer()
        .layer()
        .hidden_dir()
        .map_err(|e| format!("the root's hidden directory: {e}"))?;
    let tmp = format!("{REVISION_FILE}.tmp");
    let flags = rustix::fs::OFlags::WRONLY
        | rustix::fs::OFlags::CREATE
        | rustix::fs::OFlags::TRUNC
        | rustix::fs::OFlags::CLOEXEC;
    let fd = rustix::fs::openat(
        hidden.as_fd(),
        tmp.as_str(),
        flags,
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .map_err(|e| format!("{tmp}: {e}"))?;
    let mut f = std::fs::File::from(fd);
    writeln!(f, "{}", provider.view().commit).map_err(|e| format!("{tmp}: {e}"))?;
    rustix::fs::renameat(hidden.as_fd(), tmp.as_str(), hidden.as_fd(), REVISION_FILE)
        .map_err(|e| format!("{REVISION_FILE}: {e}"))
}

/// `prjfs switch`: move the projection to `rev`, record it, and answer what
/// happened (conflicts one path each).
pub fn switch(
    instance: &VirtualizationInstance,
    handle: &InstanceHandle,
    provider: &GitProvider,
    rev: &str,
) -> serde_json::Value {
    let from = provider.view().commit;
    match provider.switch(handle, rev) {
        Ok((to, report)) => {
            let stored = store_revision(instance, provider);
            let conflicts: Vec<String> = report
                .conflicts
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            tracing::info!(
                "switched from {from} to {} ({rev}): {} paths changed, {} conflicts",
                to.commit,
                report.changed,
                conflicts.len()
            );
            let mut v = serde_json::json!({
                "from": from.to_string(),
                "to": to.commit.to_string(),
                "changed": report.changed,
                "applied": report.applied,
                "conflicts": conflicts,
            });
            if let Err(e) = stored {
                v["error"] = format!("switched, but the revision was not recorded: {e}").into();
            }
            v
        }
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}
