use super::*;

const ALLOW_WEB: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-web}
spec:
  selector: all()
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
";

const EP: &str = "apiVersion: causeway.dev/v1alpha1
kind: StaticEndpoint
metadata: {name: b, namespace: lab, labels: {island: b}}
spec: {ips: [10.2.0.2]}
";

fn file(name: &str, text: &str) -> InputFile {
    InputFile {
        name: name.into(),
        text: text.into(),
    }
}

fn apply(d: &Desired, text: &str) -> Result<Plan, Refusal> {
    d.plan_apply(&[file("in.yaml", text)], Replace::Nothing, None, None)
}

#[test]
fn an_apply_creates_then_the_same_apply_changes_nothing() {
    let d = Desired::default();
    let p = apply(&d, &format!("{ALLOW_WEB}---\n{EP}")).unwrap();
    assert!(p.changed);
    assert_eq!(p.next.generation, 1);
    assert_eq!(
        p.changes,
        [
            ("GlobalNetworkPolicy/allow-web".to_owned(), Action::Created),
            ("StaticEndpoint/lab/b".to_owned(), Action::Created)
        ]
    );
    let again = apply(&p.next, ALLOW_WEB).unwrap();
    assert!(!again.changed);
    assert_eq!(again.next.generation, 1);
    assert_eq!(again.changes[0].1, Action::Unchanged);
    let changed = apply(&p.next, &ALLOW_WEB.replace("[80]", "[8080]")).unwrap();
    assert_eq!(changed.changes[0].1, Action::Configured);
    assert_eq!(changed.next.generation, 2);
    assert_eq!(
        changed.next.entries["GlobalNetworkPolicy/allow-web"].generation,
        2
    );
    assert_eq!(changed.next.entries["StaticEndpoint/lab/b"].generation, 1);
}

#[test]
fn a_stale_generation_is_a_conflict() {
    let d = apply(&Desired::default(), ALLOW_WEB).unwrap().next;
    let r = d.plan_apply(&[file("x.yaml", EP)], Replace::Nothing, Some(0), None);
    assert_eq!(
        r.unwrap_err(),
        Refusal::Conflict {
            expected: 0,
            current: 1
        }
    );
    assert!(
        d.plan_apply(&[file("x.yaml", EP)], Replace::Nothing, Some(1), None)
            .is_ok()
    );
}

#[test]
fn a_bad_batch_is_refused_whole_with_every_error() {
    let d = apply(&Desired::default(), ALLOW_WEB).unwrap().next;
    let bad = format!(
        "{EP}---\n{}---\n{}",
        ALLOW_WEB.replace("all()", "has(x"),
        ALLOW_WEB
            .replace("allow-web", "other")
            .replace("[80]", "[70000]")
    );
    let Err(Refusal::Invalid(errors)) = apply(&d, &bad) else {
        panic!("accepted");
    };
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0].resource.as_deref(),
        Some("GlobalNetworkPolicy/allow-web")
    );
    assert_eq!(errors[0].field.as_deref(), Some("spec.selector"));
    assert!(errors[1].message.contains("70000"), "{}", errors[1]);
}

#[test]
fn the_same_resource_twice_in_a_batch_is_refused() {
    let Err(Refusal::Invalid(errors)) =
        apply(&Desired::default(), &format!("{ALLOW_WEB}---\n{ALLOW_WEB}"))
    else {
        panic!("accepted");
    };
    assert!(errors[0].message.contains("defined twice"), "{errors:?}");
}

#[test]
fn replace_deletes_what_the_batch_does_not_name() {
    let d = apply(&Desired::default(), &format!("{ALLOW_WEB}---\n{EP}"))
        .unwrap()
        .next;
    let p = d
        .plan_apply(&[file("x.yaml", EP)], Replace::All, None, None)
        .unwrap();
    assert_eq!(
        p.changes,
        [
            ("GlobalNetworkPolicy/allow-web".to_owned(), Action::Deleted),
            ("StaticEndpoint/lab/b".to_owned(), Action::Unchanged)
        ]
    );
    assert_eq!(p.next.entries.len(), 1);
}

#[test]
fn a_tls_service_needs_its_identity() {
    let svc = "apiVersion: causeway.dev/v1alpha1
kind: TLSService
metadata: {name: web}
spec:
  listen: 127.0.0.1:8443
  mode: terminate
  tls: {identity: gateway}
  upstreams: [127.0.0.1:8080]
";
    let t = TerminatorConfig {
        cores: vec![0],
        netns: None,
        driver: Default::default(),
        drain_timeout: std::time::Duration::from_secs(1),
        services: Vec::new(),
    };
    let Err(Refusal::Invalid(errors)) =
        Desired::default().plan_apply(&[file("svc.yaml", svc)], Replace::Nothing, None, Some(&t))
    else {
        panic!("accepted");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].resource.as_deref(), Some("TLSService/web"));
    assert_eq!(errors[0].field.as_deref(), Some("spec.tls.identity"));
    assert!(
        errors[0]
            .message
            .contains("Identity/gateway does not exist"),
        "{}",
        errors[0]
    );
    // An identity whose files are not there is refused too, naming them.
    let id = "apiVersion: causeway.dev/v1alpha1
kind: Identity
metadata: {name: gateway}
spec: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}
";
    let Err(Refusal::Invalid(errors)) = Desired::default().plan_apply(
        &[file("svc.yaml", &format!("{svc}---\n{id}"))],
        Replace::Nothing,
        None,
        Some(&t),
    ) else {
        panic!("accepted");
    };
    assert_eq!(errors[0].resource.as_deref(), Some("Identity/gateway"));
    assert!(
        errors[0].message.contains("/nonexistent/cert.pem"),
        "{}",
        errors[0]
    );
}

#[test]
fn delete_of_a_missing_resource_is_not_found() {
    let d = apply(&Desired::default(), ALLOW_WEB).unwrap().next;
    assert_eq!(
        d.plan_delete(&["GlobalNetworkPolicy/nope".into()], None, None)
            .unwrap_err(),
        Refusal::NotFound(vec!["GlobalNetworkPolicy/nope".into()])
    );
    let p = d
        .plan_delete(
            &[ref_id("GlobalNetworkPolicy", "", "allow-web")],
            None,
            None,
        )
        .unwrap();
    assert!(p.next.entries.is_empty());
    assert_eq!(p.next.generation, 2);
}

#[test]
fn the_state_survives_a_save_and_load_and_a_torn_temporary_file() {
    let dir = std::env::temp_dir().join(format!("cw-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(persist::load(&dir).unwrap(), None);
    let d = apply(
        &Desired::default(),
        &format!(
            "{ALLOW_WEB}---\n{EP}---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: np}}\nspec: {{selector: all()}}\n"
        ),
    )
    .unwrap()
    .next;
    persist::save(&dir, &d).unwrap();
    // A crash while writing the next state leaves a torn temporary file.
    std::fs::write(dir.join("desired.json.tmp"), b"{\"format\": 1, \"gen").unwrap();
    let back = persist::load(&dir).unwrap().unwrap();
    assert_eq!(back.generation, d.generation);
    assert_eq!(
        back.entries.keys().collect::<Vec<_>>(),
        d.entries.keys().collect::<Vec<_>>()
    );
    for (id, e) in &d.entries {
        assert_eq!(back.entries[id].loaded.manifest, e.loaded.manifest, "{id}");
        assert_eq!(back.entries[id].loaded.resource, e.loaded.resource, "{id}");
    }
    assert_eq!(
        back.entries["NetworkPolicy/default/np"].loaded.manifest["metadata"]["namespace"],
        "default"
    );
    // A state file that does not load stops the start, naming the file.
    std::fs::write(
        persist::path(&dir),
        br#"{"format": 1, "generation": 3, "resources": [{"generation": 1, "source": "x.yaml", "manifest": {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": "x"}, "spec": {"selector": "has("}}}]}"#,
    )
    .unwrap();
    let e = format!("{:#}", persist::load(&dir).unwrap_err());
    assert!(
        e.contains("desired.json") && e.contains("spec.selector"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
