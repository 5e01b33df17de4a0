//! TEMP stub: accepts any rules text that parses as HCL or JSON.

/// Parsed ACL rules (stub: nothing is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules;

/// Why rules text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

impl Rules {
    /// Parses rules written in HCL or JSON.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        if text.trim_start().starts_with('{') && serde_json::from_str::<serde_json::Value>(text).is_ok() {
            return Ok(Rules);
        }
        hcl::from_str::<hcl::Body>(text).map(|_| Rules).map_err(|e| RulesError(e.to_string()))
    }
}
