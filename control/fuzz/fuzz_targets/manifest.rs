//! Fuzzes the manifest loader (`load::load_str`, YAML or JSON: every kind,
//! its fields, selectors, nets and ports) and, on what loads, normalising
//! the set and compiling it: what an Apply or a manifest directory feeds.
//! The first byte picks YAML or JSON.

#![no_main]

use std::path::Path;

use causeway_policy::{
    compile::{Cache, compile},
    load,
    normalize::PolicySet,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&format, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let file = if format & 1 == 0 {
        Path::new("fuzz.yaml")
    } else {
        Path::new("fuzz.json")
    };
    let loaded = match load::load_str(text, file) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                let _ = e.to_string();
            }
            return;
        }
    };
    let _ = load::validate(&loaded);
    if let Ok(set) = PolicySet::build(loaded.iter().map(|l| &l.resource)) {
        let _ = compile(&set, 1, &mut Cache::default());
    }
});
