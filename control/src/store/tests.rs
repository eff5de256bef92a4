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
    d.plan_apply(&[file("in.yaml", text)], &[], Writer::new(OWNER_CTL), None)
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
    let r = d.plan_apply(
        &[file("x.yaml", EP)],
        &[],
        Writer {
            expected: Some(0),
            ..Writer::new(OWNER_CTL)
        },
        None,
    );
    assert_eq!(
        r.unwrap_err(),
        Refusal::Conflict {
            expected: 0,
            current: 1
        }
    );
    assert!(
        d.plan_apply(
            &[file("x.yaml", EP)],
            &[],
            Writer {
                expected: Some(1),
                ..Writer::new(OWNER_CTL)
            },
            None
        )
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
        .plan_apply(
            &[file("x.yaml", EP)],
            &[],
            Writer {
                replace: Replace::Owned,
                allow_no_policy: true,
                ..Writer::new(OWNER_CTL)
            },
            None,
        )
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
fn a_change_that_leaves_no_policy_is_refused_unless_asked_for() {
    let two = ALLOW_WEB.replace("allow-web", "allow-ssh");
    let d = apply(
        &Desired::default(),
        &format!("{ALLOW_WEB}---\n{two}---\n{EP}"),
    )
    .unwrap()
    .next;
    // A replace with no policy in it (an emptied directory, a sync whose
    // cluster lost its policies): refused, naming what it would delete.
    let replace = Writer {
        replace: Replace::Owned,
        ..Writer::new(OWNER_CTL)
    };
    let r = d
        .plan_apply(&[file("x.yaml", EP)], &[], replace, None)
        .unwrap_err();
    let Refusal::NoPolicyLeft { deleted } = &r else {
        panic!("{r}")
    };
    assert_eq!(
        deleted,
        &[
            "GlobalNetworkPolicy/allow-ssh",
            "GlobalNetworkPolicy/allow-web"
        ]
    );
    assert!(r.to_string().contains("--allow-no-policy"), "{r}");
    // Deleting one of two is a change like any; the last one is refused.
    let one = d
        .plan_delete(
            &["GlobalNetworkPolicy/allow-ssh".to_owned()],
            Writer::new(OWNER_CTL),
            None,
        )
        .unwrap()
        .next;
    let last = ["GlobalNetworkPolicy/allow-web".to_owned()];
    assert!(matches!(
        one.plan_delete(&last, Writer::new(OWNER_CTL), None),
        Err(Refusal::NoPolicyLeft { .. })
    ));
    // Said explicitly, it is done.
    let allowed = Writer {
        allow_no_policy: true,
        ..Writer::new(OWNER_CTL)
    };
    let none = one.plan_delete(&last, allowed, None).unwrap().next;
    assert!(!none.has_policy());
    // A state that had no policy may go on without one (an appliance
    // being set up: endpoints first).
    assert!(apply(&none, &EP.replace("10.2.0.2", "10.2.0.3")).is_ok());
}

/// A terminator section with no services of its own, for checks of
/// TLSService resources.
fn terminator() -> TerminatorConfig {
    TerminatorConfig {
        cores: vec![0],
        netns: None,
        driver: Default::default(),
        drain_timeout: std::time::Duration::from_secs(1),
        services: Vec::new(),
        access_log: None,
    }
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
    let t = terminator();
    let Err(Refusal::Invalid(errors)) = Desired::default().plan_apply(
        &[file("svc.yaml", svc)],
        &[],
        Writer::new(OWNER_CTL),
        Some(&t),
    ) else {
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
        &[],
        Writer::new(OWNER_CTL),
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
fn tls_services_share_an_address_only_with_distinct_server_names() {
    let dir = state_dir("sni");
    let pki = causeway_tls::identity::ca::lab_pki(&dir, "causeway.test", &[]).unwrap();
    let id = format!(
        "apiVersion: causeway.dev/v1alpha1
kind: Identity
metadata: {{name: gateway}}
spec: {{cert: {}, key: {}}}
",
        pki.server.cert.display(),
        pki.server.key.display()
    );
    let svc = |name: &str, names: &str| {
        format!(
            "---
apiVersion: causeway.dev/v1alpha1
kind: TLSService
metadata: {{name: {name}}}
spec:
  listen: 127.0.0.1:8443{names}
  mode: terminate
  protocol: postgres
  tls: {{identity: gateway}}
  upstreams: [127.0.0.1:5432]
"
        )
    };
    let t = terminator();
    let plan = |text: String| {
        Desired::default().plan_apply(
            &[file("svc.yaml", &text)],
            &[],
            Writer::new(OWNER_CTL),
            Some(&t),
        )
    };
    let named = plan(format!(
        "{id}{}{}",
        svc("a", "\n  server_names: [a.test]"),
        svc("b", "\n  server_names: [b.test]")
    ))
    .unwrap();
    let configs = named.next.appliance_set().service_configs();
    assert_eq!(configs[0].server_names, ["a.test"]);
    assert_eq!(
        configs[0].protocol,
        causeway_tls::config::ProtocolName::Postgres
    );
    let Err(Refusal::Invalid(errors)) = plan(format!("{id}{}{}", svc("a", ""), svc("b", "")))
    else {
        panic!("two defaults on one address were accepted");
    };
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].resource.as_deref(), Some("TLSService/b"));
    assert_eq!(errors[0].field.as_deref(), Some("spec.server_names"));
    assert!(
        errors[0]
            .message
            .contains("service `a` is already the default (no server_names) on 127.0.0.1:8443"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_tls_service_carries_alpn_and_the_proxy_protocol_and_bad_values_name_their_field() {
    let dir = state_dir("alpn-proxy");
    let pki = causeway_tls::identity::ca::lab_pki(&dir, "causeway.test", &[]).unwrap();
    let svc = |sources: &str| {
        format!(
            "apiVersion: causeway.dev/v1alpha1
kind: Identity
metadata: {{name: gateway}}
spec: {{cert: {}, key: {}}}
---
apiVersion: causeway.dev/v1alpha1
kind: TLSService
metadata: {{name: grpc}}
spec:
  listen: 127.0.0.1:8443
  mode: terminate
  tls: {{identity: gateway, alpn: [h2, http/1.1]}}
  upstreams: [127.0.0.1:50051]
  proxy_protocol: {{send: true, trusted_sources: [{sources}]}}
",
            pki.server.cert.display(),
            pki.server.key.display()
        )
    };
    let t = terminator();
    let plan = |text: String| {
        Desired::default().plan_apply(
            &[file("svc.yaml", &text)],
            &[],
            Writer::new(OWNER_CTL),
            Some(&t),
        )
    };
    let ok = plan(svc("10.9.0.0/16")).unwrap();
    let configs = ok.next.appliance_set().service_configs();
    assert_eq!(configs[0].tls.as_ref().unwrap().alpn, ["h2", "http/1.1"]);
    let p = configs[0].proxy_protocol.as_ref().unwrap();
    assert!(p.send);
    assert_eq!(p.trusted_sources, ["10.9.0.0/16"]);
    let Err(Refusal::Invalid(errors)) = plan(svc("10.9.0.1/16")) else {
        panic!("a source with host bits was accepted");
    };
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].resource.as_deref(), Some("TLSService/grpc"));
    assert_eq!(
        errors[0].field.as_deref(),
        Some("spec.proxy_protocol.trusted_sources[0]")
    );
    assert!(errors[0].message.contains("host bits set"), "{}", errors[0]);
}

#[test]
fn delete_of_a_missing_resource_is_not_found() {
    let d = apply(&Desired::default(), ALLOW_WEB).unwrap().next;
    assert_eq!(
        d.plan_delete(
            &["GlobalNetworkPolicy/nope".into()],
            Writer::new(OWNER_CTL),
            None
        )
        .unwrap_err(),
        Refusal::NotFound(vec!["GlobalNetworkPolicy/nope".into()])
    );
    let p = d
        .plan_delete(
            &[ref_id("GlobalNetworkPolicy", "", "allow-web")],
            Writer {
                allow_no_policy: true,
                ..Writer::new(OWNER_CTL)
            },
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

/// A fresh state directory for one test.
fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cw-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `a` and `b` hold the same resources, at the same generations.
fn assert_same(a: &Desired, b: &Desired) {
    assert_eq!(a.generation, b.generation);
    assert_eq!(
        a.entries.keys().collect::<Vec<_>>(),
        b.entries.keys().collect::<Vec<_>>()
    );
    for (id, e) in &a.entries {
        assert_eq!(b.entries[id].loaded.manifest, e.loaded.manifest, "{id}");
        assert_eq!(b.entries[id].generation, e.generation, "{id}");
    }
}

/// Four states: the base, a changed port, the endpoint deleted, a policy
/// added.
fn four_states() -> [Desired; 4] {
    let d1 = apply(&Desired::default(), &format!("{ALLOW_WEB}---\n{EP}"))
        .unwrap()
        .next;
    let d2 = apply(&d1, &ALLOW_WEB.replace("[80]", "[8080]"))
        .unwrap()
        .next;
    let d3 = d2
        .plan_delete(
            &["StaticEndpoint/lab/b".to_owned()],
            Writer::new(OWNER_CTL),
            None,
        )
        .unwrap()
        .next;
    let d4 = apply(&d3, &ALLOW_WEB.replace("allow-web", "allow-more"))
        .unwrap()
        .next;
    [d1, d2, d3, d4]
}

/// The JSON of the snapshot in `dir` (after its header line), leaked for
/// the test's convenience.
fn snapshot_json(dir: &Path) -> &'static [u8] {
    let bytes = std::fs::read(persist::path(dir)).unwrap().leak();
    assert!(bytes.starts_with(b"causeway-state 2 "), "no header");
    let end = bytes.iter().position(|&b| b == b'\n').unwrap();
    &bytes[end + 1..]
}

fn journal_lines(dir: &Path) -> usize {
    std::fs::read(persist::journal_path(dir))
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[test]
fn changes_are_journalled_and_replayed_over_the_snapshot() {
    let dir = state_dir("journal");
    let [d1, d2, d3, d4] = four_states();
    persist::save(&dir, &d1).unwrap();
    let snapshot = std::fs::read(persist::path(&dir)).unwrap();
    persist::commit(&dir, &d1, &d2).unwrap();
    persist::commit(&dir, &d2, &d3).unwrap();
    persist::commit(&dir, &d3, &d4).unwrap();
    // One record per change; the snapshot is not rewritten.
    assert_eq!(journal_lines(&dir), 3);
    assert_eq!(std::fs::read(persist::path(&dir)).unwrap(), snapshot);
    let back = persist::load(&dir).unwrap().unwrap();
    assert_same(&back, &d4);
    assert!(!back.entries.contains_key("StaticEndpoint/lab/b"));
    // A snapshot takes the journal in.
    persist::save(&dir, &d4).unwrap();
    assert!(!persist::journal_path(&dir).exists());
    assert_same(&persist::load(&dir).unwrap().unwrap(), &d4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_torn_last_record_is_dropped_and_cut_off() {
    let dir = state_dir("torn");
    let [d1, d2, d3, _] = four_states();
    persist::save(&dir, &d1).unwrap();
    persist::commit(&dir, &d1, &d2).unwrap();
    let whole = std::fs::read(persist::journal_path(&dir)).unwrap();
    for torn in [
        // A crash in the middle of the append.
        &b"c1 512 0badc0de {\"generation\": 3, \"put\": [{\"gen"[..],
        // A whole line, shorter than it says (a torn write that a later
        // block's newline happens to end).
        &b"c1 512 00000000 {}\n"[..],
        // Zeros where the data did not reach the disk.
        &[0u8; 64][..],
    ] {
        let mut bytes = whole.clone();
        bytes.extend_from_slice(torn);
        std::fs::write(persist::journal_path(&dir), &bytes).unwrap();
        assert_same(&persist::load(&dir).unwrap().unwrap(), &d2);
        // Cut off, so the next record follows a whole one.
        assert_eq!(std::fs::read(persist::journal_path(&dir)).unwrap(), whole);
    }
    persist::commit(&dir, &d2, &d3).unwrap();
    assert_same(&persist::load(&dir).unwrap().unwrap(), &d3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_record_before_the_last_stops_the_start() {
    let dir = state_dir("damaged");
    let [d1, d2, d3, _] = four_states();
    persist::save(&dir, &d1).unwrap();
    persist::commit(&dir, &d1, &d2).unwrap();
    persist::commit(&dir, &d2, &d3).unwrap();
    let mut bytes = std::fs::read(persist::journal_path(&dir)).unwrap();
    let at = bytes.windows(4).position(|w| w == b"8080").unwrap();
    bytes[at] = b'9';
    std::fs::write(persist::journal_path(&dir), &bytes).unwrap();
    let e = format!("{:#}", persist::load(&dir).unwrap_err());
    assert!(
        e.contains("desired.journal") && e.contains("record 1") && e.contains("CRC32"),
        "{e}"
    );
    // Nothing was cut: the damage is there for whoever looks.
    assert_eq!(std::fs::read(persist::journal_path(&dir)).unwrap(), bytes);
    // A journal whose snapshot is gone stops the start too.
    std::fs::remove_file(persist::path(&dir)).unwrap();
    let e = format!("{:#}", persist::load(&dir).unwrap_err());
    assert!(e.contains("without its snapshot"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_whole_last_record_with_a_bad_checksum_is_damage_not_a_torn_tail() {
    let dir = state_dir("crcdamage");
    let [d1, d2, d3, _] = four_states();
    persist::save(&dir, &d1).unwrap();
    persist::commit(&dir, &d1, &d2).unwrap();
    persist::commit(&dir, &d2, &d3).unwrap();
    let mut bytes = std::fs::read(persist::journal_path(&dir)).unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    // One byte of the last record's JSON changed, its length unchanged:
    // a crash never writes that.
    let at = second
        + bytes[second..]
            .windows(10)
            .position(|w| w == b"generation")
            .unwrap();
    bytes[at] = b'G';
    std::fs::write(persist::journal_path(&dir), &bytes).unwrap();
    let e = format!("{:#}", persist::load(&dir).unwrap_err());
    assert!(
        e.contains("desired.journal")
            && e.contains("record 2")
            && e.contains(&format!("byte {second}"))
            && e.contains("CRC32")
            && e.contains("not one torn by a crash"),
        "{e}"
    );
    // Nothing was cut: the damage is there for whoever looks.
    assert_eq!(std::fs::read(persist::journal_path(&dir)).unwrap(), bytes);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_snapshot_carries_a_checksum_and_a_damaged_one_stops_the_start() {
    let dir = state_dir("snapcrc");
    let [d1, ..] = four_states();
    persist::save(&dir, &d1).unwrap();
    let good = std::fs::read(persist::path(&dir)).unwrap();
    let json = snapshot_json(&dir);
    let header = std::str::from_utf8(&good[..good.len() - json.len()]).unwrap();
    assert_eq!(
        header,
        format!(
            "causeway-state 2 {} {:08x}\n",
            json.len() - 1,
            crc32fast::hash(&json[..json.len() - 1])
        )
    );
    // A byte changed inside a string: still JSON, still the same length.
    let at = good.windows(9).position(|w| w == b"allow-web").unwrap();
    let mut flipped = good.clone();
    flipped[at] = b'A';
    // Cut short, and grown by a byte.
    let short = good[..good.len() - 10].to_vec();
    let mut long = good.clone();
    long.insert(good.len() - 1, b' ');
    for (bytes, why) in [
        (flipped, "its CRC32 is"),
        (short, "does not end with its line"),
        (long, "its length is not its header's"),
    ] {
        std::fs::write(persist::path(&dir), &bytes).unwrap();
        let e = format!("{:#}", persist::load(&dir).unwrap_err());
        assert!(
            e.contains("desired.json") && e.contains("the snapshot is damaged") && e.contains(why),
            "{why}: {e}"
        );
    }
    // A snapshot of format 1 (no header, no checksum) still loads.
    let old = String::from_utf8(json.to_vec())
        .unwrap()
        .replace("\"format\":2", "\"format\":1");
    std::fs::write(persist::path(&dir), &old).unwrap();
    assert_same(&persist::load(&dir).unwrap().unwrap(), &d1);
    // ... but format 2 without its header does not.
    std::fs::write(persist::path(&dir), json).unwrap();
    let e = format!("{:#}", persist::load(&dir).unwrap_err());
    assert!(e.contains("format 2 is not one"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_snapshot_that_cannot_be_written_leaves_no_temporary_file_nor_stops_the_start() {
    let dir = state_dir("nospace");
    let states = five_states();
    set_aside(&dir, &states);
    // The fold cannot put its snapshot in place (as on a full disk, the
    // write fails; here the rename does, over a directory in the way).
    let snapshot = std::fs::read(persist::path(&dir)).unwrap();
    std::fs::remove_file(persist::path(&dir)).unwrap();
    std::fs::create_dir_all(persist::path(&dir).join("in-the-way")).unwrap();
    assert!(persist::fold(&dir, &states[3]).is_err());
    assert!(
        !dir.join("desired.json.tmp").exists(),
        "a failed snapshot keeps the space a change needs"
    );
    std::fs::remove_dir_all(persist::path(&dir)).unwrap();
    std::fs::write(persist::path(&dir), &snapshot).unwrap();
    // The start owes a snapshot and cannot write it (the temporary file's
    // name is taken by a directory): it runs on the journals.
    std::fs::create_dir_all(dir.join("desired.json.tmp").join("in-the-way")).unwrap();
    assert_same(&persist::load(&dir).unwrap().unwrap(), &states[4]);
    assert!(persist::old_journal_path(&dir).exists());
    // ... and takes it once it can.
    std::fs::remove_dir_all(dir.join("desired.json.tmp")).unwrap();
    assert_same(&persist::load(&dir).unwrap().unwrap(), &states[4]);
    assert!(!persist::old_journal_path(&dir).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn records_the_snapshot_already_holds_are_skipped() {
    let dir = state_dir("skip");
    let [d1, d2, d3, _] = four_states();
    persist::save(&dir, &d1).unwrap();
    persist::commit(&dir, &d1, &d2).unwrap();
    let journal = std::fs::read(persist::journal_path(&dir)).unwrap();
    // A crash after the snapshot of d2 was renamed into place, before the
    // journal was removed.
    persist::save(&dir, &d2).unwrap();
    std::fs::write(persist::journal_path(&dir), &journal).unwrap();
    assert_same(&persist::load(&dir).unwrap().unwrap(), &d2);
    persist::commit(&dir, &d2, &d3).unwrap();
    assert_same(&persist::load(&dir).unwrap().unwrap(), &d3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The four states and a fifth on top: another policy added.
fn five_states() -> [Desired; 5] {
    let [d1, d2, d3, d4] = four_states();
    let d5 = apply(&d4, &ALLOW_WEB.replace("allow-web", "allow-most"))
        .unwrap()
        .next;
    [d1, d2, d3, d4, d5]
}

/// Commits d1 → d4 into a fresh `dir` until the journal is set aside
/// (at d4), then d5 into a new journal.
fn set_aside(dir: &Path, states: &[Desired; 5]) {
    let [d1, d2, d3, d4, d5] = states;
    persist::save(dir, d1).unwrap();
    let snapshot_len = std::fs::metadata(persist::path(dir)).unwrap().len();
    assert!(!persist::commit_folding_at(dir, d1, d2, u64::MAX).unwrap());
    assert!(!persist::commit_folding_at(dir, d2, d3, u64::MAX).unwrap());
    assert!(
        std::fs::metadata(persist::journal_path(dir)).unwrap().len() > snapshot_len / 2,
        "the journal is too small for this test"
    );
    // Past half the snapshot (two records of a state this small): the
    // journal is set aside, and a snapshot is due.
    assert!(persist::commit_folding_at(dir, d3, d4, 1).unwrap());
    assert!(persist::old_journal_path(dir).exists());
    assert!(!persist::journal_path(dir).exists());
    // The next change starts a new journal; no second snapshot is due
    // while the first has not taken the old journal in.
    assert!(!persist::commit_folding_at(dir, d4, d5, 1).unwrap());
    assert_eq!(journal_lines(dir), 1);
}

#[test]
fn a_grown_journal_is_set_aside_and_folded_beside_new_changes() {
    let dir = state_dir("fold");
    let states = five_states();
    set_aside(&dir, &states);
    persist::fold(&dir, &states[3]).unwrap();
    assert!(!persist::old_journal_path(&dir).exists());
    assert_eq!(journal_lines(&dir), 1);
    assert_same(&persist::load(&dir).unwrap().unwrap(), &states[4]);
    // The new journal is left as it is: no snapshot was owed.
    assert_eq!(journal_lines(&dir), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stop_before_the_snapshot_is_written_is_folded_at_the_next_start() {
    let dir = state_dir("unfolded");
    let states = five_states();
    set_aside(&dir, &states);
    // A crash in the middle of the snapshot leaves a torn temporary file.
    std::fs::write(dir.join("desired.json.tmp"), b"{\"format\": 1, \"gen").unwrap();
    assert_same(&persist::load(&dir).unwrap().unwrap(), &states[4]);
    // Taken in at the start: one snapshot, no journals.
    assert!(!persist::old_journal_path(&dir).exists());
    assert!(!persist::journal_path(&dir).exists());
    let snapshot: serde_json::Value = serde_json::from_slice(snapshot_json(&dir)).unwrap();
    assert_eq!(snapshot["generation"], states[4].generation);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_set_aside_journal_was_whole_so_any_bad_record_in_it_stops_the_start() {
    let dir = state_dir("oldtorn");
    let states = five_states();
    set_aside(&dir, &states);
    let old = persist::old_journal_path(&dir);
    let mut bytes = std::fs::read(&old).unwrap();
    bytes.extend_from_slice(b"c1 512 0badc0de {\"generation\"");
    std::fs::write(&old, &bytes).unwrap();
    let e = format!("{:#}", persist::load(&dir).unwrap_err());
    assert!(
        e.contains("desired.journal.old")
            && e.contains("record 4")
            && e.contains("set aside whole"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn write_as<'a>(owner: &'a str) -> Writer<'a> {
    Writer::new(owner)
}

#[test]
fn a_write_records_its_owner_and_a_takeover_needs_force() {
    let sync = "sync/cluster-a";
    let d = Desired::default()
        .plan_apply(&[file("a.yaml", ALLOW_WEB)], &[], write_as(sync), None)
        .unwrap()
        .next;
    assert_eq!(&*d.entries["GlobalNetworkPolicy/allow-web"].owner, sync);
    // An operator's write to it is refused, naming it and its owner.
    let changed = ALLOW_WEB.replace("[80]", "[8080]");
    let Err(r) = d.plan_apply(&[file("b.yaml", &changed)], &[], write_as(OWNER_CTL), None) else {
        panic!("accepted");
    };
    assert_eq!(
        r,
        Refusal::Held {
            writer: "ctl".into(),
            held: vec![Held {
                id: "GlobalNetworkPolicy/allow-web".into(),
                owner: sync.into()
            }]
        }
    );
    assert!(
        r.to_string()
            .contains("GlobalNetworkPolicy/allow-web (held by sync/cluster-a)"),
        "{r}"
    );
    // So is a delete.
    assert!(matches!(
        d.plan_delete(
            &["GlobalNetworkPolicy/allow-web".into()],
            write_as(OWNER_CTL),
            None
        ),
        Err(Refusal::Held { .. })
    ));
    // With force the operator takes it over: the same manifest is still a
    // change, since the owner is part of what is stored.
    let forced = Writer {
        force: true,
        ..write_as(OWNER_CTL)
    };
    let p = d
        .plan_apply(&[file("b.yaml", ALLOW_WEB)], &[], forced, None)
        .unwrap();
    assert_eq!(p.changes[0].1, Action::Configured);
    assert_eq!(
        &*p.next.entries["GlobalNetworkPolicy/allow-web"].owner,
        "ctl"
    );
    // Its owner writing it again is no change.
    let again = d
        .plan_apply(&[file("a.yaml", ALLOW_WEB)], &[], write_as(sync), None)
        .unwrap();
    assert!(!again.changed);
}

#[test]
fn replace_removes_only_what_the_writer_holds() {
    let sync = "sync/cluster-a";
    let d = Desired::default()
        .plan_apply(&[file("a.yaml", ALLOW_WEB)], &[], write_as(sync), None)
        .unwrap()
        .next;
    let d = d
        .plan_apply(&[file("b.yaml", EP)], &[], write_as(OWNER_CTL), None)
        .unwrap()
        .next;
    // The sync's replace with an empty batch removes its policy, not the
    // operator's endpoint.
    let replace = Writer {
        replace: Replace::Owned,
        allow_no_policy: true,
        ..write_as(sync)
    };
    let p = d.plan_apply(&[], &[], replace, None).unwrap();
    assert_eq!(
        p.changes,
        [("GlobalNetworkPolicy/allow-web".to_owned(), Action::Deleted)]
    );
    assert!(p.next.entries.contains_key("StaticEndpoint/lab/b"));
    // The operator's replace leaves the sync's policy alone.
    let replace = Writer {
        replace: Replace::Owned,
        ..write_as(OWNER_CTL)
    };
    let p = d.plan_apply(&[], &[], replace, None).unwrap();
    assert_eq!(
        p.changes,
        [("StaticEndpoint/lab/b".to_owned(), Action::Deleted)]
    );
    assert!(p.next.entries.contains_key("GlobalNetworkPolicy/allow-web"));
}

#[test]
fn an_apply_deletes_and_adds_in_one_change() {
    let d = apply(&Desired::default(), ALLOW_WEB).unwrap().next;
    let renamed = ALLOW_WEB.replace("allow-web", "allow-http");
    let p = d
        .plan_apply(
            &[file("x.yaml", &renamed)],
            &[
                "GlobalNetworkPolicy/allow-web".into(),
                "GlobalNetworkPolicy/never-was".into(),
            ],
            write_as(OWNER_CTL),
            None,
        )
        .unwrap();
    // One generation: there is no state with neither policy.
    assert_eq!(p.next.generation, 2);
    assert_eq!(
        p.changes,
        [
            ("GlobalNetworkPolicy/allow-web".to_owned(), Action::Deleted),
            ("GlobalNetworkPolicy/allow-http".to_owned(), Action::Created)
        ]
    );
}

#[test]
fn owners_survive_a_save_and_load_and_a_state_without_owners_loads() {
    let dir = std::env::temp_dir().join(format!("cw-store-owner-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = Desired::default()
        .plan_apply(&[file("a.yaml", ALLOW_WEB)], &[], write_as("sync/x"), None)
        .unwrap()
        .next;
    persist::save(&dir, &d).unwrap();
    let next = d
        .plan_apply(&[file("b.yaml", EP)], &[], write_as(OWNER_CTL), None)
        .unwrap()
        .next;
    persist::commit(&dir, &d, &next).unwrap();
    let back = persist::load(&dir).unwrap().unwrap();
    assert_eq!(
        &*back.entries["GlobalNetworkPolicy/allow-web"].owner,
        "sync/x"
    );
    assert_eq!(&*back.entries["StaticEndpoint/lab/b"].owner, "ctl");
    // A snapshot written before owners existed (and before snapshots had
    // a checksum: format 1): no "owner" fields.
    let text = String::from_utf8(snapshot_json(&dir).to_vec()).unwrap();
    assert!(text.contains("\"owner\":\"sync/x\""), "{text}");
    std::fs::write(
        persist::path(&dir),
        text.replace(",\"owner\":\"sync/x\"", "")
            .replace("\"format\":2", "\"format\":1"),
    )
    .unwrap();
    std::fs::remove_file(persist::journal_path(&dir)).unwrap();
    let old = persist::load(&dir).unwrap().unwrap();
    let e = &old.entries["GlobalNetworkPolicy/allow-web"];
    assert!(e.owner.is_empty());
    // Nobody holds it, so any writer may take it over without force.
    assert!(
        old.plan_apply(
            &[file("a.yaml", &ALLOW_WEB.replace("[80]", "[81]"))],
            &[],
            write_as(OWNER_CTL),
            None
        )
        .is_ok()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_policy_applied_alone_may_use_a_tier_already_stored() {
    let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n";
    let d = apply(&Desired::default(), tier).unwrap().next;
    let policy = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.web}
spec: {tier: security, selector: all(), ingress: [{action: Allow}]}
";
    let p = apply(&d, policy).unwrap();
    assert_eq!(p.changes[0].1, Action::Created);
    // Without the tier stored, it is refused, naming the tier.
    let Err(Refusal::Invalid(errors)) = apply(&Desired::default(), policy) else {
        panic!("accepted without its tier");
    };
    assert!(
        errors[0].message.contains("tier `security` is not defined"),
        "{errors:?}"
    );
}

/// A static endpoint `name` in `lab` with `ips` and a label `v`.
fn endpoint(name: &str, ips: &str, v: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: StaticEndpoint\nmetadata: {{name: {name}, namespace: lab, labels: {{v: '{v}'}}}}\nspec: {{ips: [{ips}]}}\n"
    )
}

fn refused_fields(r: Result<Plan, Refusal>) -> Vec<(String, String)> {
    match r {
        Err(Refusal::Invalid(errors)) => errors
            .into_iter()
            .map(|e| (e.resource.unwrap_or_default(), e.message))
            .collect(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_changed_endpoint_may_not_take_another_ones_address_and_is_the_one_named() {
    // `z` sorts after `a`: a check of the whole state would name `z`; the
    // change is `a`'s, and the error names `a`, the resource the writer
    // sent.
    let d = apply(
        &Desired::default(),
        &format!("{ALLOW_WEB}---\n{}", endpoint("z", "10.2.0.9", "1")),
    )
    .unwrap()
    .next;
    let errors = refused_fields(apply(&d, &endpoint("a", "10.2.0.9, 10.2.0.1", "1")));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "StaticEndpoint/lab/a");
    assert!(
        errors[0]
            .1
            .starts_with("address 10.2.0.9 is also StaticEndpoint/lab/z's"),
        "{errors:?}"
    );
    // Two changed endpoints of one batch sharing an address.
    let both = format!(
        "{}---\n{}",
        endpoint("b", "10.2.0.7", "1"),
        endpoint("c", "10.2.0.7", "1")
    );
    let errors = refused_fields(apply(&d, &both));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "StaticEndpoint/lab/c");
}

#[test]
fn an_endpoint_keeps_its_address_across_changes_and_addresses_move_in_one_batch() {
    let d = apply(
        &Desired::default(),
        &format!(
            "{ALLOW_WEB}---\n{}---\n{}",
            endpoint("a", "10.2.0.1", "1"),
            endpoint("b", "10.2.0.2", "1")
        ),
    )
    .unwrap()
    .next;
    // Relabelled: its own address is no conflict.
    let d = apply(&d, &endpoint("a", "10.2.0.1", "2")).unwrap().next;
    // a and b swap addresses in one change.
    let swapped = format!(
        "{}---\n{}",
        endpoint("a", "10.2.0.2", "2"),
        endpoint("b", "10.2.0.1", "1")
    );
    let p = apply(&d, &swapped).unwrap();
    assert!(p.changed);
    // Deleting b in the same change as a takes its address.
    let p = d
        .plan_apply(
            &[file("a.yaml", &endpoint("a", "10.2.0.2", "3"))],
            &["StaticEndpoint/lab/b".to_owned()],
            Writer::new(OWNER_CTL),
            None,
        )
        .unwrap();
    assert_eq!(p.next.entries.len(), 2);
    // Taking b's address while b stays is refused.
    assert_eq!(
        refused_fields(apply(&d, &endpoint("a", "10.2.0.2", "3")))[0].0,
        "StaticEndpoint/lab/a"
    );
}

#[test]
fn a_whole_state_check_finds_a_shared_address() {
    // A state that never passed the checks (a seed, say): the whole state
    // is checked.
    let loaded = load::load_str(
        &format!(
            "{}---\n{}",
            endpoint("a", "10.2.0.1", "1"),
            endpoint("b", "10.2.0.1", "1")
        ),
        Path::new("seed.yaml"),
    )
    .unwrap();
    let errors = Desired::seed(loaded).check(None);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].resource.as_deref(), Some("StaticEndpoint/lab/b"));
}

#[test]
fn the_address_index_follows_every_change_as_a_whole_state_check_would() {
    // Random changes of six endpoints over eight addresses, each a batch
    // of one or two writes or a delete, checked against a model of who
    // holds what: a change is accepted exactly when, after it, no address
    // has two holders. The plans carry the address index from state to
    // state; a state loaded from disk (no index) starts the walk, and
    // every 50 steps the state is saved and loaded again to restart it.
    let dir = state_dir("address-index");
    let mut d = apply(&Desired::default(), ALLOW_WEB).unwrap().next;
    let mut model: std::collections::BTreeMap<String, Vec<u8>> = std::collections::BTreeMap::new();
    let mut seed = 0x2545_f491_u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..400 {
        let mut after = model.clone();
        let mut files = Vec::new();
        let mut delete = Vec::new();
        for _ in 0..=next(2) {
            let name = format!("e{}", next(6));
            // One mention of an endpoint per batch.
            if files.iter().any(|(n, _)| *n == name) || delete.contains(&name) {
                continue;
            }
            if next(4) == 0 {
                if after.remove(&name).is_some() {
                    delete.push(name);
                }
                continue;
            }
            let mut ips: Vec<u8> = (0..=next(2)).map(|_| next(8) as u8).collect();
            ips.sort_unstable();
            ips.dedup();
            let list: Vec<String> = ips.iter().map(|i| format!("10.2.0.{i}")).collect();
            files.push((name.clone(), endpoint(&name, &list.join(", "), "1")));
            after.insert(name, ips);
        }
        let mut holders: HashMap<u8, usize> = HashMap::new();
        for ip in after.values().flatten() {
            *holders.entry(*ip).or_default() += 1;
        }
        let valid = holders.values().all(|n| *n == 1);
        let inputs: Vec<InputFile> = files.iter().map(|(n, t)| file(n, t)).collect();
        let ids: Vec<String> = delete
            .iter()
            .map(|n| format!("StaticEndpoint/lab/{n}"))
            .collect();
        match d.plan_apply(&inputs, &ids, Writer::new(OWNER_CTL), None) {
            Ok(p) => {
                assert!(
                    valid,
                    "step {step}: accepted {files:?} -{delete:?} over {model:?}"
                );
                d = p.next;
                model = after;
                accepted += 1;
            }
            Err(Refusal::Invalid(errors)) => {
                assert!(
                    !valid,
                    "step {step}: refused {files:?} -{delete:?} over {model:?}: {errors:?}"
                );
                assert!(
                    errors.iter().all(|e| e.message.starts_with("address ")),
                    "{errors:?}"
                );
                refused += 1;
            }
            Err(other) => panic!("step {step}: {other}"),
        }
        if step % 50 == 49 {
            persist::save(&dir, &d).unwrap();
            d = persist::load(&dir).unwrap().unwrap();
        }
    }
    assert!(
        accepted > 100 && refused > 50,
        "{accepted} accepted, {refused} refused"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn deleting_a_tier_a_stored_policy_uses_is_refused() {
    let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n";
    let policy = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.web}
spec: {tier: security, selector: all(), ingress: [{action: Allow}]}
";
    let d = apply(&Desired::default(), &format!("{tier}---\n{policy}"))
        .unwrap()
        .next;
    // A change to something else is checked against the stored tiers.
    let d = apply(&d, ALLOW_WEB).unwrap().next;
    let errors =
        refused_fields(d.plan_delete(&["Tier/security".to_owned()], Writer::new(OWNER_CTL), None));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "GlobalNetworkPolicy/security.web");
    assert!(
        errors[0].1.contains("tier `security` is not defined"),
        "{errors:?}"
    );
}

/// A doNotTrack policy denying `n` source /32s: `n` XDP prefilter entries.
fn untracked_deny(n: usize) -> String {
    let nets: Vec<String> = (0..n)
        .map(|i| format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: blocklist}}\n\
         spec:\n  selector: all()\n  doNotTrack: true\n  applyOnForward: true\n  types: [Ingress]\n  \
         ingress:\n    - action: Deny\n      source:\n        nets: [{}]\n",
        nets.join(", ")
    )
}

#[test]
fn more_untracked_nets_than_the_xdp_map_holds_are_refused_naming_the_rule() {
    let cap = causeway_policy::compile::PREFILTER_CAPACITY;
    let fits = apply(&Desired::default(), &untracked_deny(cap)).expect("a full map is enforceable");
    let Err(Refusal::Invalid(errors)) = apply(&fits.next, &untracked_deny(cap + 1)) else {
        panic!("one net more than the map holds was accepted");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.resource.as_deref(), Some("GlobalNetworkPolicy/blocklist"));
    assert_eq!(e.field.as_deref(), Some("spec.ingress[0].source.nets"));
    assert!(e.message.contains(&format!("{}", cap + 1)), "{e}");
    assert!(e.message.contains("XDP prefilter"), "{e}");
}

#[test]
fn the_journal_record_names_exactly_what_changed() {
    // Entries sorting before, between and after the ones kept, each
    // created, replaced or deleted: the record's walk in key order must
    // agree with a lookup of every entry.
    let np = |name: &str, port: u16| {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  selector: all()\n  ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [{port}]}}}}]\n"
        )
    };
    let mut d = Desired::default();
    let mut r: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..60 {
        let mut text = String::new();
        for k in 0..12 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            // Kept, moved to another port, or left out (deleted).
            match r % 3 {
                0 => text += &np(&format!("p{k:02}"), 80),
                1 => text += &np(&format!("p{k:02}"), 81 + (step % 5) as u16),
                _ => {}
            }
        }
        if text.is_empty() {
            continue;
        }
        let next = d
            .plan_apply(
                &[file("in.yaml", &text)],
                &[],
                Writer {
                    replace: Replace::Owned,
                    allow_no_policy: true,
                    ..Writer::new(OWNER_CTL)
                },
                None,
            )
            .unwrap()
            .next;
        let (put, delete) = persist::changed(&d.entries, &next.entries);
        let want_put: Vec<&Arc<Entry>> = next
            .entries
            .iter()
            .filter(|(id, e)| d.entries.get(*id).is_none_or(|p| !Arc::ptr_eq(p, e)))
            .map(|(_, e)| e)
            .collect();
        let want_delete: Vec<&str> = d
            .entries
            .keys()
            .filter(|id| !next.entries.contains_key(*id))
            .map(String::as_str)
            .collect();
        assert_eq!(put.len(), want_put.len(), "step {step}");
        assert!(
            put.iter().zip(&want_put).all(|(a, b)| Arc::ptr_eq(a, b)),
            "step {step}"
        );
        assert_eq!(delete, want_delete, "step {step}");
        d = next;
    }
}

#[test]
fn only_a_change_to_an_appliance_resource_or_a_service_touches_the_appliance_set() {
    let route = |via: &str| {
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Route\nmetadata: {{name: to-c}}\n\
             spec: {{prefix: 10.3.0.0/16, via: {via}}}\n"
        )
    };
    let d = apply(
        &Desired::default(),
        &format!("{ALLOW_WEB}---\n{EP}---\n{}", route("10.2.0.9")),
    )
    .unwrap()
    .next;
    // A pod relabelled, a policy changed: not the appliance's.
    let p = apply(&d, &EP.replace("island: b", "island: c")).unwrap();
    assert!(p.changed);
    assert!(!p.next.touches_appliance(&d, &p.changes));
    let p = apply(&d, &ALLOW_WEB.replace("[80]", "[81]")).unwrap();
    assert!(!p.next.touches_appliance(&d, &p.changes));
    // Unchanged, though named: not either.
    let p = apply(&d, &route("10.2.0.9")).unwrap();
    assert!(!p.next.touches_appliance(&d, &p.changes));
    // The route changed or deleted, and its set with it.
    let p = apply(&d, &route("10.2.0.8")).unwrap();
    assert!(p.next.touches_appliance(&d, &p.changes));
    assert_ne!(p.next.appliance_set().routes, d.appliance_set().routes);
    let p = d
        .plan_delete(&["Route/to-c".to_owned()], Writer::new(OWNER_CTL), None)
        .unwrap();
    assert!(p.next.touches_appliance(&d, &p.changes));
    // A Service is the terminator's business (a TLSService may name it).
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: lab}\n\
               spec: {ports: [{name: http, port: 80, protocol: TCP}]}\n";
    let p = apply(&d, svc).unwrap();
    assert!(p.next.touches_appliance(&d, &p.changes));
}

#[test]
fn every_plan_carries_the_policy_set_a_whole_build_of_its_state_makes() {
    // Random changes of four endpoints and four policies: relabels, moves
    // to other addresses, policies' ports, orders and names moved, some of
    // each deleted and made again, a namespace relabelled. Most are patches
    // of the last plan's set (an endpoint or a policy replaced where it
    // stands); the rest build it whole. Either way the plan's set must be
    // the one `policy_set` assembles from every resource of the state.
    let policy = |k: u64, order: u64, port: u64| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p{k}}}\nspec:\n  order: {order}\n  selector: v == '{}'\n  ingress:\n  - {{action: Allow, protocol: TCP, destination: {{ports: [{port}]}}}}\n",
            k % 2
        )
    };
    let mut d = apply(&Desired::default(), ALLOW_WEB).unwrap().next;
    let mut seed = 0x9e37_79b9_u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let mut accepted = 0;
    for step in 0..300 {
        let (mut inputs, mut delete) = (Vec::new(), Vec::new());
        match next(10) {
            0..4 => {
                let e = next(4);
                let ip = if next(5) == 0 { 10 + e + 4 * next(2) } else { 10 + e };
                inputs.push(file("e", &endpoint(&format!("e{e}"), &format!("10.2.0.{ip}"), &next(2).to_string())));
            }
            4..7 => inputs.push(file("p", &policy(next(4), next(3), 80 + next(3)))),
            7 => delete.push(format!("GlobalNetworkPolicy/p{}", next(4))),
            8 => delete.push(format!("StaticEndpoint/lab/e{}", next(4))),
            _ => inputs.push(file(
                "ns",
                &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: lab, labels: {{team: t{}}}}}\n", next(2)),
            )),
        }
        delete.retain(|id| d.entries.contains_key(id));
        let Ok(plan) = d.plan_apply(&inputs, &delete, Writer::new(OWNER_CTL), None) else {
            continue;
        };
        if let Some(set) = &plan.policy {
            let whole = plan.next.policy_set().expect("a planned state builds");
            assert_eq!(**set, whole, "step {step}: {inputs:?} -{delete:?}");
            accepted += 1;
        }
        d = plan.next;
    }
    assert!(accepted > 150, "{accepted} changes accepted");
}
