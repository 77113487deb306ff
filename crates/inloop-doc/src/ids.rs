//! Fresh identifiers for cells and executions.

use std::collections::HashSet;

/// A random UUID v4 in its usual text form, as JupyterLab gives new cells. `fastrand` is seeded
/// from the OS (or the browser's crypto) and works on wasm32 as well as native.
pub(crate) fn new_id() -> String {
    let bits = fastrand::u128(..);
    // Version 4, variant 10xx.
    let bits = (bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A new id that is not in `taken`.
pub(crate) fn unique_cell_id(taken: &HashSet<String>) -> String {
    loop {
        let id = new_id();
        if !taken.contains(&id) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_uuid_v4_shaped_and_distinct() {
        let a = super::new_id();
        let b = super::new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
