//! The files of an apply: files as given, directories walked for
//! manifests in path order, `-` for stdin. Their text is sent as is (the
//! appliance parses it and names files and lines in its errors).

use std::{
    collections::BTreeSet,
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use causeway_control::proto::ManifestFile;

/// The name stdin's text is sent under.
pub(super) const STDIN_NAME: &str = "<stdin>";

/// Reads every path: a file whatever its extension, a directory's `*.yaml`,
/// `*.yml` and `*.json` files (recursively, skipping names that start with
/// `.`, in sorted path order), and `-` as `stdin`. A file named twice is
/// sent once.
///
/// # Errors
/// A path cannot be read, a file is not UTF-8, a directory holds no
/// manifests, or `-` is given more than once.
pub(super) fn manifest_files(paths: &[PathBuf], stdin: &mut dyn Read) -> Result<Vec<ManifestFile>> {
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stdin_read = false;
    for path in paths {
        if path.as_os_str() == "-" {
            if stdin_read {
                bail!("`-` (stdin) is given more than once: give it once");
            }
            stdin_read = true;
            files.push(read_stdin(stdin)?);
            continue;
        }
        for file in gather(path)? {
            if seen.insert(fs::canonicalize(&file).unwrap_or_else(|_| file.clone())) {
                files.push(read_file(&file)?);
            }
        }
    }
    Ok(files)
}

fn read_stdin(stdin: &mut dyn Read) -> Result<ManifestFile> {
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .context("cannot read stdin as UTF-8 text")?;
    Ok(ManifestFile {
        name: STDIN_NAME.to_owned(),
        text,
    })
}

fn read_file(path: &Path) -> Result<ManifestFile> {
    let bytes = fs::read(path).with_context(|| {
        format!(
            "cannot read {}; check the path and its permissions",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes).with_context(|| {
        format!(
            "{} is not UTF-8 text: manifests must be UTF-8 YAML or JSON",
            path.display()
        )
    })?;
    Ok(ManifestFile {
        name: path.display().to_string(),
        text,
    })
}

/// The files a path names: itself, or a directory's manifests in order.
fn gather(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = fs::metadata(path).with_context(|| {
        format!(
            "cannot read {}; check the path and its permissions",
            path.display()
        )
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let files = causeway_policy::load::manifests_in(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if files.is_empty() {
        bail!(
            "{} holds no *.yaml, *.yml or *.json files: name the manifests' directory or the files",
            path.display()
        );
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("causeway-ctl-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(files: &[ManifestFile]) -> Vec<String> {
        files.iter().map(|f| f.name.clone()).collect()
    }

    #[test]
    fn a_directory_is_walked_in_path_order_for_manifests() {
        let dir = TempDir::new("walk");
        dir.write("b.yaml", "kind: Tier\n");
        dir.write("a/z.json", "{}");
        dir.write("a/y.YML", "---\nkind: Tier\n---\nkind: Tier\n");
        dir.write("notes.txt", "not a manifest");
        dir.write(".hidden.yaml", "skipped");
        dir.write(".git/config.yaml", "skipped");
        let files = manifest_files(std::slice::from_ref(&dir.0), &mut std::io::empty()).unwrap();
        let d = dir.0.display();
        assert_eq!(
            names(&files),
            [
                format!("{d}/a/y.YML"),
                format!("{d}/a/z.json"),
                format!("{d}/b.yaml")
            ]
        );
        // Multi-document YAML goes as it is.
        assert_eq!(files[0].text, "---\nkind: Tier\n---\nkind: Tier\n");
        assert_eq!(files[1].text, "{}");
    }

    #[test]
    fn a_file_named_explicitly_is_read_whatever_its_extension() {
        let dir = TempDir::new("explicit");
        let txt = dir.write("policy.txt", "kind: Tier\n");
        let json = dir.write("set.json", "{\"kind\": \"List\"}");
        let files =
            manifest_files(&[txt.clone(), json.clone(), txt], &mut std::io::empty()).unwrap();
        assert_eq!(
            names(&files),
            [
                dir.0.join("policy.txt").display().to_string(),
                json.display().to_string()
            ]
        );
    }

    #[test]
    fn stdin_is_read_once_under_its_own_name() {
        let mut stdin = "apiVersion: v1\nkind: Namespace\n".as_bytes();
        let files = manifest_files(&[PathBuf::from("-")], &mut stdin).unwrap();
        assert_eq!(names(&files), ["<stdin>"]);
        assert_eq!(files[0].text, "apiVersion: v1\nkind: Namespace\n");
        let twice = manifest_files(
            &[PathBuf::from("-"), PathBuf::from("-")],
            &mut "".as_bytes(),
        );
        assert!(twice.unwrap_err().to_string().contains("more than once"));
    }

    #[test]
    fn an_empty_directory_or_a_missing_path_is_an_error() {
        let dir = TempDir::new("empty");
        dir.write("README.md", "no manifests here");
        let e = manifest_files(std::slice::from_ref(&dir.0), &mut std::io::empty()).unwrap_err();
        assert!(
            e.to_string()
                .contains("holds no *.yaml, *.yml or *.json files"),
            "{e}"
        );
        let missing = dir.0.join("missing.yaml");
        let e = manifest_files(&[missing], &mut std::io::empty()).unwrap_err();
        assert!(e.to_string().starts_with("cannot read"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_utf8_is_named() {
        let dir = TempDir::new("utf8");
        let path = dir.0.join("bad.yaml");
        fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let e = manifest_files(&[path], &mut std::io::empty()).unwrap_err();
        assert!(e.to_string().contains("bad.yaml is not UTF-8 text"), "{e}");
    }
}
