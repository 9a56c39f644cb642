//! Tar streams for the archive API: files into a created container, one file out.

use crate::ProvisionError;
use std::io::Read as _;

/// A tar archive, rooted at `/`, holding `files` (`path`, `mode`, content) and the
/// directories above them.
pub(crate) fn archive(files: &[(String, u32, Vec<u8>)]) -> Result<Vec<u8>, ProvisionError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    let err = |e: std::io::Error| ProvisionError::Archive(format!("failed to build the archive of node files: {e}"));
    for (path, _, _) in files {
        let rel = path.trim_start_matches('/');
        let mut parent = std::path::Path::new(rel).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for dir in chain.into_iter().rev() {
            if dirs.insert(dir.clone()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_mtime(0);
                builder.append_data(&mut header, &dir, std::io::empty()).map_err(err)?;
            }
        }
    }
    for (path, mode, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder.append_data(&mut header, path.trim_start_matches('/'), content.as_slice()).map_err(err)?;
    }
    builder.into_inner().map_err(err)
}

/// The content of the one regular file named like the last component of `path` in a
/// tar archive (the archive API wraps a downloaded file in one).
pub(crate) fn file_from_tar(tarball: &[u8], path: &str) -> Result<Vec<u8>, ProvisionError> {
    let wanted = path.rsplit('/').next().unwrap_or(path);
    let bad = |e: std::io::Error| ProvisionError::Archive(format!("the archive of {path} is not a tar stream: {e}"));
    let mut archive = tar::Archive::new(tarball);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let is_it = entry.header().entry_type().is_file() && entry.path().is_ok_and(|p| p.file_name().is_some_and(|n| n == wanted));
        if is_it {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(bad)?;
            return Ok(content);
        }
    }
    Err(ProvisionError::Archive(format!("the archive of {path} holds no file named {wanted}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_hold_files_with_modes_and_their_directories() {
        let tarball = archive(&[("/etc/rancher/k3s/token".into(), 0o600, b"secret".to_vec()), ("/bin/x.sh".into(), 0o755, b"#!".to_vec())])
            .expect("archive");
        let mut archive = tar::Archive::new(tarball.as_slice());
        let entries: Vec<(String, u32, bool)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (e.path().expect("path").display().to_string(), e.header().mode().expect("mode"), e.header().entry_type().is_dir())
            })
            .collect();
        assert!(entries.contains(&("etc/rancher/k3s/token".into(), 0o600, false)), "{entries:?}");
        assert!(entries.contains(&("bin/x.sh".into(), 0o755, false)), "{entries:?}");
        assert!(entries.contains(&("etc/rancher".into(), 0o755, true)), "{entries:?}");
        assert_eq!(file_from_tar(&tarball, "/etc/rancher/k3s/token").expect("file"), b"secret");
        assert!(file_from_tar(&tarball, "/nope").is_err());
        assert!(file_from_tar(b"not a tar at all, and long enough to fail the header check", "/x").is_err());
    }
}
