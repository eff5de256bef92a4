//! Fuzzes the Calico selector parser (`Selector::parse`) and, on what it
//! accepts, matching; on what it refuses, the error's annotation of the
//! text: none may panic, and the text a parsed selector keeps parses again.

#![no_main]

use std::collections::BTreeMap;

use causeway_policy::selector::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let selector = match Selector::parse(text) {
        Ok(s) => s,
        Err(e) => {
            // The error points into the text: rendering it must not panic.
            let _ = (e.to_string(), e.annotate(text));
            return;
        }
    };
    let labels: BTreeMap<String, String> = [
        ("role", "server"),
        ("app", "web"),
        ("projectcalico.org/namespace", "lab"),
        ("", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let _ = selector.matches(&labels);
    let _ = selector.matches(&BTreeMap::new());
    let _ = (selector.is_all(), selector.is_global());
    assert!(
        Selector::parse(selector.text()).is_ok(),
        "{text:?} parsed, its text {:?} does not",
        selector.text()
    );
});
