//! Files, directories, the display of errors, and robustness.

use super::*;

#[test]
fn directories_are_walked_for_manifests_once_each() {
    let dir = TempDir::new("walk");
    dir.write("b.yml", &namespace("b"));
    dir.write("a/z.YAML", &namespace("z"));
    dir.write(
        "a/c.json",
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}"#,
    );
    dir.write("README.md", "not a manifest");
    // A ConfigMap volume: the files are symlinks into a hidden directory.
    dir.write("..2024_05_02/d.yaml", &namespace("d"));
    std::os::unix::fs::symlink("..2024_05_02", dir.path.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/d.yaml", dir.path.join("d.yaml")).unwrap();
    // A loop.
    std::os::unix::fs::symlink("..", dir.path.join("a/up")).unwrap();
    let b = dir.path.join("b.yml");
    let all = load_paths(&[dir.path.clone(), b]).unwrap_or_else(|e| panic!("errors:{}", list(&e)));
    assert_eq!(
        ids(&all),
        ["Namespace/c", "Namespace/z", "Namespace/b", "Namespace/d"]
    );
}

#[test]
fn unreadable_paths_and_empty_directories_are_errors() {
    let dir = TempDir::new("empty");
    dir.write("notes.txt", "");
    let missing = dir.path.join("missing.yaml");
    let errors = load_paths(&[dir.path.clone(), missing.clone()]).unwrap_err();
    assert_eq!(errors.len(), 2, "{}", list(&errors));
    assert_eq!(errors[0].file, dir.path);
    assert!(
        errors[0]
            .message
            .contains("holds no *.yaml, *.yml or *.json files"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[1].file, missing);
    assert!(
        errors[1].message.starts_with("cannot read: "),
        "{}",
        errors[1]
    );
    assert!(
        errors[1]
            .message
            .ends_with("check the path and its permissions"),
        "{}",
        errors[1]
    );
    let bytes = dir.path.join("latin1.yaml");
    fs::write(&bytes, b"name: caf\xe9\n").unwrap();
    let errors = load_paths(&[bytes]).unwrap_err();
    assert!(
        errors[0].message.contains("is not UTF-8 text"),
        "{}",
        errors[0]
    );
}

#[test]
fn an_error_displays_what_is_known() {
    let mut e = LoadError {
        file: "policies.yaml".into(),
        line: Some(12),
        column: Some(9),
        resource: Some("GlobalNetworkPolicy/deny-ssh".into()),
        field: Some("spec.ingress[0].source.selector".into()),
        message: "at position 7: expected a value".into(),
    };
    assert_eq!(
        e.to_string(),
        "policies.yaml:12:9: GlobalNetworkPolicy/deny-ssh: spec.ingress[0].source.selector: at position 7: expected a value"
    );
    e.column = None;
    e.resource = None;
    assert_eq!(
        e.to_string(),
        "policies.yaml:12: spec.ingress[0].source.selector: at position 7: expected a value"
    );
    e.line = None;
    e.field = None;
    assert_eq!(
        e.to_string(),
        "policies.yaml: at position 7: expected a value"
    );
}

#[test]
fn truncated_and_mangled_manifests_never_panic() {
    let mut files = Vec::new();
    for dir in ["good", "good/k8s", "bad", "duplicate"] {
        for entry in fs::read_dir(fixture(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let name = Path::new(path.file_name().unwrap());
        for cut in (0..text.len())
            .step_by(17)
            .filter(|&i| text.is_char_boundary(i))
        {
            let mut batch = Batch::default();
            load_text(&text[..cut], name, &mut batch);
            // Shifting the text changes every position, but loads just as well.
            let mangled = text[..cut].replace(": ", ":  ").replace('-', "- ");
            load_text(&mangled, name, &mut batch);
            for e in &batch.errors {
                assert!(e.line.is_none_or(|l| l >= 1), "{e}");
            }
        }
    }
}
