//! Revision identity: a stable hash of the pod template.

use crate::types::RevisionHash;

/// Hashes a pod template the way Kubernetes derives `pod-template-hash`:
/// FNV-1a (32 bit) over a canonical serialization, printed in decimal, then
/// each digit mapped into Kubernetes' "safe" alphabet (no vowels, no
/// look-alike characters), e.g. `6b7c5d9f4`.
///
/// The canonical form is `serde_json`'s output of the value with object keys
/// sorted (serde_json's `Map` is a `BTreeMap` without the `preserve_order`
/// feature), so key order in the manifest does not change the hash. The hash
/// is not byte-compatible with a Kubernetes cluster's (that hashes Go's struct
/// dump); it only has to be stable across Serin versions and platforms.
///
/// FNV-1a is ten lines; a crate for it would cost more than it saves.
pub fn pod_template_hash(template: &serde_json::Value) -> RevisionHash {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let canonical = template.to_string();
    let mut h: u32 = 0x811c_9dc5;
    for b in canonical.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let encoded: String = h
        .to_string()
        .bytes()
        .map(|d| char::from(ALPHABET[usize::from(d) % ALPHABET.len()]))
        .collect();
    RevisionHash(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_but_content_does() {
        let a = json!({"spec": {"containers": [{"name": "app", "image": "demo:blue"}]}, "metadata": {"labels": {"app": "x"}}});
        let b = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"image": "demo:blue", "name": "app"}]}});
        let c = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"image": "demo:red", "name": "app"}]}});
        assert_eq!(pod_template_hash(&a), pod_template_hash(&b));
        assert_ne!(pod_template_hash(&a), pod_template_hash(&c));
    }

    #[test]
    fn uses_only_the_safe_alphabet() {
        let h = pod_template_hash(&json!({"x": 1}));
        assert!(!h.0.is_empty());
        assert!(
            h.0.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{h}"
        );
    }
}
