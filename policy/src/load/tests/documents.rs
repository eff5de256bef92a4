//! Syntax, documents, Lists and positions.

use super::*;

#[test]
fn syntax_errors_have_file_lines_and_the_documents_after_them_still_load() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n labels: {}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n";
    let batch = load_both(text);
    assert_eq!(ids(&batch.loaded), ["Namespace/a", "Namespace/c"]);
    assert_eq!(batch.errors.len(), 1, "{}", list(&batch.errors));
    let e = &batch.errors[0];
    assert_eq!((e.line, e.column), (Some(9), Some(2)));
    assert_eq!(
        e.message,
        "syntax error: did not find expected key, while parsing a block mapping"
    );
    // A second position in libyaml's message is moved to the file's lines.
    let t = locate::translate(
        &serde_yaml::from_str::<serde_yaml::Value>("x: 1\ny:\n  z: [1,\n   2\n  w: 3\n")
            .unwrap_err(),
        10,
    );
    assert_eq!((t.line, t.column), (Some(15), Some(4)));
    assert_eq!(
        t.message,
        "did not find expected ',' or ']', while parsing a flow sequence at line 13 column 6"
    );
}

#[test]
fn keys_given_twice_and_tabs_are_explained() {
    let errors = errors_of("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n");
    expect(
        &errors,
        "test.yaml",
        4,
        None,
        Some("metadata"),
        "key \"name\" is given twice in this mapping: remove one of them",
    );
    let errors = errors_of("apiVersion: v1\nkind: Namespace\nmetadata:\n\tname: a\n");
    let e = expect(
        &errors,
        "test.yaml",
        4,
        None,
        None,
        "syntax error: found character that cannot start any token",
    );
    assert!(
        e.message
            .ends_with("(a tab: YAML indents with spaces only)"),
        "{e}"
    );
}

#[test]
fn a_missing_api_version_names_the_documents_line_and_the_right_value() {
    let errors = errors_of("# a pod\n\nkind: Pod\nmetadata: {name: a}\n");
    expect(
        &errors,
        "test.yaml",
        3,
        None,
        None,
        "missing `apiVersion` for kind Pod: add it (apiVersion: v1)",
    );
    let errors = errors_of("metadata: {name: a}\n");
    expect(
        &errors,
        "test.yaml",
        1,
        None,
        None,
        "missing `apiVersion` and `kind`",
    );
    let errors = errors_of(
        "apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\n",
    );
    expect(
        &errors,
        "test.yaml",
        2,
        None,
        Some("kind"),
        "write the GlobalNetworkPolicy with apiVersion projectcalico.org/v3",
    );
    let errors = errors_of("- just\n- a list\n");
    expect(
        &errors,
        "test.yaml",
        1,
        None,
        None,
        "a manifest must be a mapping with apiVersion, kind, metadata and spec, not a list",
    );
    let errors = errors_of("apiVersion: v1\nkind: 3\n");
    expect(
        &errors,
        "test.yaml",
        1,
        None,
        None,
        "`kind` must be a string, not a number",
    );
}

#[test]
fn a_list_reports_each_bad_item_and_keeps_the_good_ones() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a}
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkSet
  metadata: {name: set}
  spec:
    nest: [10.0.0.0/8]
- apiVersion: v1
  kind: Namespace
  metadata: {name: b}
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkPolicy
  metadata: {name: p}
  spec:
    ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [1, 99999]}
- apiVersion: projectcalico.org/v3
  kind: NetworkSet
  metadata: {name: s2}
  spec: {nets: [10.0.0.0/40]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cfg}
- 42
- apiVersion: v1
  kind: List
  items: []
";
    let batch = load_both(text);
    assert_eq!(
        ids(&batch.loaded),
        ["Namespace/a", "Namespace/b", "NetworkSet/default/s2"]
    );
    let lines: Vec<usize> = batch.loaded.iter().map(|l| l.source.line).collect();
    assert_eq!(lines, [4, 12, 23]);
    let errors = &batch.errors;
    assert_eq!(errors.len(), 6, "{}", list(errors));
    // Field paths are the item's own; lines are the file's.
    expect(
        errors,
        "test.yaml",
        11,
        Some("GlobalNetworkSet/set"),
        Some("spec.nest"),
        "unknown field `nest`",
    );
    let e = expect(
        errors,
        "test.yaml",
        22,
        Some("GlobalNetworkPolicy/p"),
        Some("spec.ingress[0].destination.ports[1]"),
        "port 99999 is out of range",
    );
    assert_eq!(e.column, Some(32));
    expect(
        errors,
        "test.yaml",
        26,
        Some("NetworkSet/default/s2"),
        Some("spec.nets[0]"),
        "prefix length 40 is longer",
    );
    expect(
        errors,
        "test.yaml",
        27,
        None,
        Some("items[5]"),
        "v1 ConfigMap is not a kind causeway reads",
    );
    expect(
        errors,
        "test.yaml",
        30,
        None,
        Some("items[6]"),
        "a List's items must be resources (mappings), not a number",
    );
    expect(
        errors,
        "test.yaml",
        31,
        None,
        Some("items[7]"),
        "a List inside a List is not supported",
    );
}

#[test]
fn a_list_needs_items() {
    let errors = errors_of("apiVersion: v1\nkind: List\nmetadata: {}\n");
    expect(
        &errors,
        "test.yaml",
        1,
        None,
        Some("items"),
        "a List needs `items`",
    );
    let errors = errors_of("apiVersion: v1\nkind: List\nitems: {a: 1}\n");
    expect(
        &errors,
        "test.yaml",
        3,
        None,
        Some("items"),
        "`items` must be a list of resources, not a mapping",
    );
    assert!(ok("apiVersion: v1\nkind: List\nitems: []\n").is_empty());
}

#[test]
fn flow_style_list_items_are_found_by_searching() {
    let text = "{apiVersion: v1, kind: List, items: [\n  {apiVersion: v1, kind: Namespace, metadata: {name: a}},\n\n  {apiVersion: v1, kind: Namespace, metadata: {name: b}}]}\n";
    let all = ok(text);
    let lines: Vec<usize> = all.iter().map(|l| l.source.line).collect();
    assert_eq!(lines, [2, 4]);
}

#[test]
fn item_lines_are_found_in_block_and_json_lists() {
    let block =
        "apiVersion: v1\nitems:\n# first\n- kind: A\n  x:\n  - 1\n-\n  kind: B\nkind: List\n";
    assert_eq!(document::item_lines(block, 2), Some(vec![4, 7]));
    assert_eq!(
        document::item_lines(block, 3),
        None,
        "a count that does not match is not trusted"
    );
    let indented = "items:\n  - a: 1\n  - b: 2\nkind: List\n";
    assert_eq!(document::item_lines(indented, 2), Some(vec![2, 3]));
    let json = "{\"kind\": \"List\", \"x\": {\"items\": [{}]},\n \"items\": [\n  {\"a\": \"}{\\\"\"},\n  {\"b\": [{}]}\n ]}";
    assert_eq!(document::item_lines(json, 2), Some(vec![3, 4]));
}
