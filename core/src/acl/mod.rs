//! TEMP stub of the ACL rules layer (the real one lands with branch `acl-rules`): only what
//! `/v1/acl/*` calls — [`rules::Rules::parse`] and [`builtin::templated_policy`].

pub mod builtin;
pub mod rules;
