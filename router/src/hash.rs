//! The pinned directory hash and the slot it selects (docs/design.md §11: `slot(D) = h(D) mod S`).

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The hash of a directory's full path, `h(D)` in docs/design.md §11.
///
/// **Pinned forever:** xxh3-64 with seed 0 over the exact UTF-8 bytes of the directory path
/// as given (for example `/ls/local/users`, no trailing slash, no normalisation). Every
/// deployment's partition map is laid out over these values, so changing the algorithm,
/// the seed or the bytes hashed would move nearly every node to another cell. It is not
/// `std::hash::Hash`, whose output may differ between platforms and compiler versions.
/// The test `known_vectors` fails if the function ever changes.
pub fn dir_hash(dir: &str) -> u64 {
    xxh3_64_with_seed(dir.as_bytes(), 0)
}

/// The slot of directory `dir` in a deployment of `slots` slots: `dir_hash(dir) % slots`.
///
/// A `slots` of 0 cannot be a real deployment (a [`crate::PartitionMap`] rejects it); rather
/// than divide by zero it is treated as 1, so every directory lands in slot 0.
pub fn slot_of_dir(dir: &str, slots: u32) -> u32 {
    let slots = u64::from(slots.max(1));
    // The remainder is below `slots`, which fits in a u32, so the conversion never fails.
    u32::try_from(dir_hash(dir) % slots).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed once with xxhash-rust 0.8 (`xxh3_64_with_seed(bytes, 0)`). The empty-input
    /// value is the published XXH3_64bits reference for "". If this test fails, the routing
    /// hash changed and every deployment's data would be in the wrong cells.
    #[test]
    fn known_vectors() {
        let long = format!("/ls/local/{}", "d".repeat(300));
        let vectors: [(&str, u64); 8] = [
            ("", 0x2d06_8005_38d3_94c2),
            ("/ls/local", 0xb4b8_0a92_5efa_112b),
            ("/ls/local/a", 0x241a_ba0c_5be3_2c77),
            ("/ls/local/a/b", 0xd694_14e5_3d2d_0ba5),
            ("/ls/local/acl", 0x9ced_0e30_ebaa_0ade),
            ("/ls/prod/warren", 0x7c6a_2e5d_10fb_35dd),
            ("/ls/local/users/alice", 0xb5c9_76c4_c824_c084),
            // Longer than 240 bytes: xxh3 takes its long-input code path.
            (long.as_str(), 0x4e4e_1e2c_6060_2b76),
        ];
        for (dir, want) in vectors {
            assert_eq!(dir_hash(dir), want, "dir_hash({dir:?}) changed");
        }
    }

    #[test]
    fn known_slots() {
        assert_eq!(slot_of_dir("/ls/local", 4096), 299);
        assert_eq!(slot_of_dir("/ls/local/a", 4096), 3191);
        assert_eq!(slot_of_dir("/ls/local/users/alice", 4096), 132);
        assert_eq!(
            slot_of_dir("/ls/local/a", 7),
            (0x241a_ba0c_5be3_2c77_u64 % 7) as u32
        );
    }

    #[test]
    fn slot_is_below_slot_count_and_zero_slots_does_not_panic() {
        for slots in [1, 2, 3, 4096, 65536, u32::MAX] {
            for dir in ["/ls/x", "/ls/x/y", "/ls/x/y/z"] {
                assert!(slot_of_dir(dir, slots) < slots);
            }
        }
        assert_eq!(slot_of_dir("/ls/local/a", 0), 0);
        assert_eq!(slot_of_dir("/ls/local/a", 1), 0);
    }

    #[test]
    fn hash_is_of_exact_bytes() {
        // No normalisation: a trailing slash is a different string and a different hash.
        assert_ne!(dir_hash("/ls/local/a"), dir_hash("/ls/local/a/"));
        assert_ne!(dir_hash("/ls/local/a"), dir_hash("/ls/local/A"));
    }
}
