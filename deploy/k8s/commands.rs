//! Test support, included by path into the tests of the `energyllm` and `energyllm-hwd`
//! binaries: reads this folder's manifests so each binary can parse the command lines written
//! for it with its real flags, and load the configuration files its ConfigMaps carry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// One container's command line: the file, the container's name and its argv (`command` then
/// `args`).
pub struct CommandLine {
    pub file: String,
    pub container: String,
    pub argv: Vec<String>,
}

/// One ConfigMap entry: the file, the ConfigMap's name, the key and the text.
pub struct ConfigFile {
    pub file: String,
    pub config_map: String,
    pub key: String,
    pub text: String,
}

/// The folder of the manifests, from a crate's manifest directory.
pub fn manifests_dir(crate_dir: &str) -> PathBuf {
    Path::new(crate_dir).join("../../deploy/k8s")
}

fn documents(dir: &Path) -> Vec<(String, Yaml)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.extend(docs.into_iter().map(|d| (name.clone(), d)));
    }
    out
}

fn strings(file: &str, container: &str, field: &str, v: &Yaml) -> Vec<String> {
    match v {
        Yaml::BadValue => Vec::new(),
        Yaml::Array(items) => items
            .iter()
            .map(|i| match i {
                Yaml::String(s) => s.clone(),
                // Kubernetes takes strings only; a bare number or boolean is a manifest error.
                other => {
                    panic!("{file}: container {container}: {field} holds {other:?}, not a string: quote it")
                }
            })
            .collect(),
        other => panic!("{file}: container {container}: {field} is {other:?}, not a list"),
    }
}

fn walk(file: &str, v: &Yaml, out: &mut Vec<CommandLine>) {
    match v {
        Yaml::Hash(map) => {
            for (k, child) in map {
                if matches!(k.as_str(), Some("containers" | "initContainers")) {
                    for c in child.as_vec().into_iter().flatten() {
                        let container = c["name"].as_str().unwrap_or("?").to_owned();
                        let mut argv = strings(file, &container, "command", &c["command"]);
                        argv.extend(strings(file, &container, "args", &c["args"]));
                        out.push(CommandLine { file: file.to_owned(), container, argv });
                    }
                } else {
                    walk(file, child, out);
                }
            }
        }
        Yaml::Array(items) => items.iter().for_each(|i| walk(file, i, out)),
        _ => {}
    }
}

/// Every container's command line in the manifests.
pub fn command_lines(dir: &Path) -> Vec<CommandLine> {
    let mut out = Vec::new();
    for (file, doc) in documents(dir) {
        walk(&file, &doc, &mut out);
    }
    out
}

/// Every ConfigMap entry in the manifests.
pub fn config_files(dir: &Path) -> Vec<ConfigFile> {
    let mut out = Vec::new();
    for (file, doc) in documents(dir) {
        if doc["kind"].as_str() != Some("ConfigMap") {
            continue;
        }
        let config_map = doc["metadata"]["name"].as_str().unwrap_or("?").to_owned();
        for (k, v) in doc["data"].as_hash().into_iter().flatten() {
            let (Some(key), Some(text)) = (k.as_str(), v.as_str()) else { continue };
            out.push(ConfigFile {
                file: file.clone(),
                config_map: config_map.clone(),
                key: key.into(),
                text: text.into(),
            });
        }
    }
    out
}
