//! Orthanc's configuration as Orthanc reads it: JSON with `//` and `/* */` comments
//! (Orthanc strips them before parsing, `Toolbox::ReadJsonWithoutComments`), one file or a
//! directory whose `*.json` files are merged key by key (Debian's /etc/orthanc), and the
//! 1.10.1 default of each option doctor looks at when the key is absent.

use std::path::{Path, PathBuf};

use pacsgate_orthanc_json::strip_comments;
use serde_json::{Map, Value};

/// Orthanc's merged configuration (top-level keys).
#[derive(Debug, Default)]
pub struct OrthancConfig {
    pub source: PathBuf,
    pub values: Map<String, Value>,
}

impl OrthancConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("cannot list {}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut values = Map::new();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let parsed: Value = serde_json::from_str(&strip_comments(&text))
                .map_err(|e| format!("{} is not valid JSON: {e}", file.display()))?;
            let Value::Object(map) = parsed else {
                return Err(format!("{} is not a JSON object", file.display()));
            };
            values.extend(map);
        }
        Ok(Self {
            source: path.to_path_buf(),
            values,
        })
    }

    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.values
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    pub fn u64_or(&self, key: &str, default: u64) -> u64 {
        self.values
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(default)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Orthanc >= 1.5: when `AuthenticationEnabled` is absent, it follows
    /// `RemoteAccessAllowed` (OrthancServer/Sources/main.cpp).
    pub fn authentication_enabled(&self) -> bool {
        match self
            .values
            .get("AuthenticationEnabled")
            .and_then(Value::as_bool)
        {
            Some(v) => v,
            None => self.bool_or("RemoteAccessAllowed", false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_go_strings_stay() {
        let text = r#"{
  // a line comment with "quotes"
  "A": "http://x//y", /* block
  comment */ "B": "a\"//b", "C": 1 // end
}"#;
        let v: Value = serde_json::from_str(&strip_comments(text)).unwrap();
        assert_eq!(v["A"], "http://x//y");
        assert_eq!(v["B"], "a\"//b");
        assert_eq!(v["C"], 1);
    }

    #[test]
    fn absent_authentication_follows_remote_access() {
        let mut c = OrthancConfig::default();
        assert!(!c.authentication_enabled());
        c.values
            .insert("RemoteAccessAllowed".into(), Value::Bool(true));
        assert!(c.authentication_enabled());
        c.values
            .insert("AuthenticationEnabled".into(), Value::Bool(false));
        assert!(!c.authentication_enabled());
    }
}
