//! The manifests source: a directory of YAML or JSON manifests (the GitOps
//! case: a checkout that a pipeline updates), read as `ctl apply -f` reads
//! it and watched by rescanning it every second.
//!
//! Each resource of a file is one key (`<file>#<id>`); a file that does not
//! load is one problem under the file's name, and the resources it held
//! stay as the appliance last had them (a half-written file does not
//! delete what it held).

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

use super::{
    config::ManifestsConfig,
    inventory::{Inventory, Item, check},
};
use causeway_policy::load;

/// How often the directory is read again.
const RESCAN: Duration = Duration::from_secs(1);

/// Reads every manifest file under `dir`, for source `source`.
fn scan(source: &str, dir: &Path) -> Result<BTreeMap<String, Item>, String> {
    let paths = load::manifests_in(dir).map_err(|e| e.to_string())?;
    let mut items = BTreeMap::new();
    for path in paths {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                items.insert(file, Item::Problem(format!("cannot read it: {e}")));
                continue;
            }
        };
        match load::load_str(&text, &path) {
            Ok(loaded) => {
                for l in loaded {
                    let key = format!("{file}#{}", l.resource.id());
                    let item = check(l.manifest, &format!("{source}:{file}"))
                        .map_or_else(Item::Problem, Item::Object);
                    items.insert(key, item);
                }
            }
            Err(errors) => {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                items.insert(file, Item::Problem(lines.join("; ")));
            }
        }
    }
    Ok(items)
}

/// Runs source `index` (named `name`) on `config` until the process ends.
pub async fn run(
    index: usize,
    name: String,
    config: ManifestsConfig,
    inventory: Arc<Mutex<Inventory>>,
    changed: watch::Sender<u64>,
) {
    let mut scans = 0u64;
    loop {
        let (source, dir) = (name.clone(), config.dir.clone());
        let scanned = tokio::task::spawn_blocking(move || scan(&source, &dir))
            .await
            .unwrap_or_else(|e| Err(format!("the scan failed: {e}")));
        let mut inv = inventory.lock().await;
        match scanned {
            Ok(items) => {
                scans += 1;
                let n = inv.replace(index, items, scans.to_string());
                let status = inv.status_mut(index);
                status.connected = true;
                status.error = None;
                if n > 0 {
                    info!(dir = %config.dir.display(), changed = n, "manifests: read");
                    changed.send_replace(inv.version());
                }
            }
            Err(e) => {
                warn!(dir = %config.dir.display(), error = %e, "manifests");
                let status = inv.status_mut(index);
                status.connected = false;
                status.error = Some(e);
            }
        }
        drop(inv);
        tokio::time::sleep(RESCAN).await;
    }
}
