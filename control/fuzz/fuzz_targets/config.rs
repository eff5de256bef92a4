//! Fuzzes the appliance's configuration file (`Config::parse`: YAML into
//! the schema, then every validation): an operator's typo, or a hostile
//! file, is an error naming the field, never a panic.

#![no_main]

use causeway_control::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => assert!(config.problems().is_empty()),
        Err(e) => {
            let _ = format!("{e:#}");
        }
    }
});
