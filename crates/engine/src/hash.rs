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
    let h = fnv1a32(template.to_string().as_bytes());
    let encoded: String = h
        .to_string()
        .bytes()
        .map(|d| char::from(ALPHABET[usize::from(d) % ALPHABET.len()]))
        .collect();
    RevisionHash(encoded)
}

/// FNV-1a, 32 bit.
fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// FNV-1a (64 bit) as a [`std::hash::Hasher`]: stable across runs and
/// versions (unlike std's `DefaultHasher`), for fingerprints the engine
/// persists in its status.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
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
