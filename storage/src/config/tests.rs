use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<StorageConfig, ConfigError> {
    StorageConfig::from_orthanc(&v)
}

#[test]
fn official_names_and_defaults() {
    let c = parse(
        json!({"StorageDirectory": "/data", "PacsgateStorage": {"StorageEncryption": {
        "MasterKey": [3, "/k/3"], "PreviousMasterKeys": [[1, "/k/1"], [2, "/k/2"]]}}}),
    )
    .unwrap();
    assert_eq!(c.master_key, (3, KeyLocation::File("/k/3".into())));
    assert_eq!(c.cache, CachePolicy::DEFAULT);
    assert!(c.accept_unbound);
    assert_eq!(c.previous_keys.len(), 2);
    assert_eq!(c.max_input, 1024 * MIB);
    assert_eq!(c.location, Location::Filesystem("/data".into()));
    let c = parse(
        json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "/k"]},
        "Location": {"Type": "object", "Url": "s3://b/p", "Options": {"allow_http": true}}}}),
    )
    .unwrap();
    assert_eq!(
        c.location,
        Location::Object {
            url: "s3://b/p".into(),
            options: vec![("allow_http".into(), "true".into())]
        }
    );
}

#[test]
fn mistakes_fail_closed_with_the_key_named() {
    for (v, needle) in [
        (json!({}), "section missing"),
        (json!({"PacsgateStorage": {}}), "MasterKey is required"),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"Enable": false, "MasterKey": [1, "/k"]}}}),
            "Enable",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [-1, "/k"]}}}),
            "MasterKey",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [4294967296u64, "/k"]}}}),
            "MasterKey",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": "/k"}}}),
            "MasterKey",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "/k"], "Typo": 1}}}),
            "\"Typo\"",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "/k"]}, "Location": {"Type": "tape"}}}),
            "Location.Type",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "aws-kms:alias/x"]}}}),
            "Kms missing",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "aws-kms:k"], "Kms": {"Region": "x", "Endpoint": "ftp://h"}}}}),
            "Kms.Endpoint",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "pkcs11:token=t;object=o?module-path=/m.so&pin-value=1"]}}}),
            "pin-value",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "vault-transit:pacs"]}}}),
            "Vault missing",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "vault-transit:../x"]}}}),
            "vault-transit:<key name>",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "/k"], "DataKeyReuseCount": 0}}}),
            "DataKeyReuseCount",
        ),
        (
            json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "/k"], "DataKeyCacheSize": -1}}}),
            "DataKeyCacheSize",
        ),
    ] {
        let err = parse(v).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn comments_are_stripped_outside_strings() {
    let text = "{ // c\n \"a\": \"x//y/*z*/\", /* b */ \"b\": 1 }";
    let v: Value = serde_json::from_str(&strip_json_comments(text)).unwrap();
    assert_eq!(v, json!({"a": "x//y/*z*/", "b": 1}));
}

#[test]
fn remote_keys_and_cache_settings() {
    let c = parse(json!({"PacsgateStorage": {"StorageEncryption": {
        "MasterKey": [3, "aws-kms:alias/pacs"],
        "PreviousMasterKeys": [[2, "vault-transit:pacs"],
            [1, "pkcs11:token=t;object=o?module-path=/m.so&pin-source=file:/p"]],
        "Kms": {"Region": "eu-west-1"},
        "Vault": {"Address": "https://vault:8200"},
        "DataKeyReuseCount": 1, "DataKeyReuseSeconds": 0, "DataKeyCacheSize": 0,
        "AcceptUnboundFormats": false}}}))
    .unwrap();
    assert_eq!(c.master_key, (3, KeyLocation::AwsKms("alias/pacs".into())));
    assert_eq!(c.previous_keys[0].1.kind(), "vault-transit");
    assert_eq!(c.previous_keys[1].1.kind(), "pkcs11");
    assert_eq!(c.remotes.kms.as_ref().unwrap().endpoint, None);
    assert_eq!(c.remotes.vault.as_ref().unwrap().mount, "transit");
    assert_eq!(c.cache, CachePolicy::NONE);
    assert!(!c.accept_unbound);
}

#[test]
fn cleartext_key_services_only_on_loopback() {
    use crate::keys::location::loopback_http;
    for ok in [
        "http://127.0.0.1:4566",
        "http://localhost/",
        "http://[::1]:8200",
        "http://127.9.9.9",
    ] {
        assert!(loopback_http(ok), "{ok}");
    }
    for bad in [
        "http://kms.example.org",
        "http://127.0.0.1.example.org",
        "http://user@127.0.0.1/",
        "http://10.0.0.1:8200",
        "https://127.0.0.1",
        "http://[::2]:1",
    ] {
        assert!(!loopback_http(bad), "{bad}");
    }
    let err = parse(
        json!({"PacsgateStorage": {"StorageEncryption": {"MasterKey": [1, "aws-kms:k"],
        "Kms": {"Region": "eu-west-1", "Endpoint": "http://kms.example.org"}}}}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("loopback"), "{err}");
}
