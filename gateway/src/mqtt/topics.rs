//! The MQTT topic layout. `fleet` is the configured fleet label; `node`
//! is a node id in lowercase hex.

/// Where one node's reports go: `meshota/<fleet>/<node>/report`.
#[must_use]
pub fn report(fleet: &str, node: &str) -> String {
    format!("meshota/{fleet}/{node}/report")
}

/// The retained fleet summary: `meshota/<fleet>/summary`.
#[must_use]
pub fn summary(fleet: &str) -> String {
    format!("meshota/{fleet}/summary")
}

/// Release notifications the gateway subscribes to: `meshota/<fleet>/releases`.
#[must_use]
pub fn releases(fleet: &str) -> String {
    format!("meshota/{fleet}/releases")
}

/// Whether `label` can be a topic level: 1–64 bytes, none of MQTT's
/// separators or wildcards (`/`, `+`, `#`) and no control characters.
#[must_use]
pub fn valid_fleet(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && !label
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_documented_layout_and_wildcards_are_not_a_fleet() {
        assert_eq!(report("north", "ab12"), "meshota/north/ab12/report");
        assert_eq!(summary("north"), "meshota/north/summary");
        assert_eq!(releases("north"), "meshota/north/releases");
        for bad in ["", "a/b", "+", "#", "x\n"] {
            assert!(!valid_fleet(bad), "{bad:?}");
        }
        assert!(valid_fleet("border-north_1"));
    }
}
