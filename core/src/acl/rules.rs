//! The ACL rules language: what a policy's `Rules` text says, parsed from HCL or JSON.
//!
//! A rule set grants an [`Access`] level per name-scoped [`Resource`] (an exact name, or every
//! name starting with a prefix) and per global [`Scalar`] permission:
//!
//! ```hcl
//! key_prefix ""     { policy = "read" }
//! key "foo/bar"     { policy = "write" }
//! service "web"     { policy = "write"  intentions = "read" }
//! operator = "read"
//! ```
//!
//! or the same as JSON: `{"key_prefix": {"": {"policy": "read"}}, "operator": "read"}`.
//!
//! Several rules for the same segment (in one policy, or from several policies merged with
//! [`Rules::merge`]) combine the way Consul's policy merger does: deny > write > list > read.
//! The [`Authorizer`](super::Authorizer) decides with the merged result.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A rule's grant: the `policy = "…"` of a block, or the value of a scalar rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Explicitly nothing; wins over every other grant on the same segment when merging.
    Deny,
    /// Read (discover) only.
    Read,
    /// Read and list (keys only: recursive reads and `?keys` need it when
    /// `enable_key_list_policy` is set).
    List,
    /// Everything: write implies list and read.
    Write,
}

impl Access {
    /// The spelling in rules text: `"deny"`, `"read"`, `"list"` or `"write"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }

    /// Rank for merging rules on one segment (Consul's `takesPrecedenceOver`): deny beats
    /// write beats list beats read, so combining policies can only take access away by an
    /// explicit deny, and otherwise grants the most any of them grants.
    fn rank(self) -> u8 {
        match self {
            Access::Read => 0,
            Access::List => 1,
            Access::Write => 2,
            Access::Deny => 3,
        }
    }

    /// Whether `self` replaces `other` when two rules cover the same segment.
    pub fn takes_precedence_over(self, other: Access) -> bool {
        self.rank() > other.rank()
    }

    /// Whether this grant satisfies `need` (Consul's `enforce`): write grants everything,
    /// list grants list and read, read grants read, deny grants nothing.
    pub fn grants(self, need: Need) -> bool {
        match self {
            Access::Write => true,
            Access::List => matches!(need, Need::List | Need::Read),
            Access::Read => need == Need::Read,
            Access::Deny => false,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = RulesError;

    /// Case-insensitive, as Consul's `AccessLevelFromString`.
    fn from_str(s: &str) -> Result<Access, RulesError> {
        match s.to_ascii_lowercase().as_str() {
            "deny" => Ok(Access::Deny),
            "read" => Ok(Access::Read),
            "list" => Ok(Access::List),
            "write" => Ok(Access::Write),
            _ => Err(RulesError(format!("{} is not a valid access level", go_quote(s)))),
        }
    }
}

/// What an operation needs on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// Reading or discovering.
    Read,
    /// Listing keys under a prefix (only distinct from `Read` for keys with
    /// `enable_key_list_policy`).
    List,
    /// Creating, changing or deleting.
    Write,
}

impl Need {
    /// The access level's name as it appears in permission strings (`key:write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::List => "list",
            Need::Write => "write",
        }
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name-scoped resource: rules name one (`key "foo"`) or a prefix (`key_prefix "foo/"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// KV keys.
    Key,
    /// Catalog services (and, through `intentions`, the intentions whose destination they are).
    Service,
    /// Catalog nodes.
    Node,
    /// Sessions, by the node they are tied to.
    Session,
    /// User events, by event name.
    Event,
    /// Prepared queries, by query name.
    Query,
    /// Agent endpoints, by the agent's node name.
    Agent,
}

impl Resource {
    /// Every resource, in the order of the `Rules` tables.
    pub const ALL: [Resource; 7] = [
        Resource::Key,
        Resource::Service,
        Resource::Node,
        Resource::Session,
        Resource::Event,
        Resource::Query,
        Resource::Agent,
    ];

    /// The exact-rule block name (`"key"`), also the resource in permission strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Key => "key",
            Resource::Service => "service",
            Resource::Node => "node",
            Resource::Session => "session",
            Resource::Event => "event",
            Resource::Query => "query",
            Resource::Agent => "agent",
        }
    }

    /// The prefix-rule block name (`"key_prefix"`).
    pub fn prefix_block(self) -> &'static str {
        match self {
            Resource::Key => "key_prefix",
            Resource::Service => "service_prefix",
            Resource::Node => "node_prefix",
            Resource::Session => "session_prefix",
            Resource::Event => "event_prefix",
            Resource::Query => "query_prefix",
            Resource::Agent => "agent_prefix",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// `list` is a key-only policy (Consul's `isPolicyValid(…, allowList)`).
    fn allows_list_policy(self) -> bool {
        self == Resource::Key
    }

    /// The resource named by a block identifier, and whether it is the prefix form.
    fn from_block(block: &str) -> Option<(Resource, bool)> {
        Resource::ALL.into_iter().find_map(|r| {
            if block == r.as_str() {
                Some((r, false))
            } else if block == r.prefix_block() {
                Some((r, true))
            } else {
                None
            }
        })
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A global permission, not scoped by name (`operator = "read"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scalar {
    /// Raft, autopilot and other operator endpoints.
    Operator,
    /// The gossip encryption keyring.
    Keyring,
    /// The ACL system itself; `write` is management of ACLs (and snapshots).
    Acl,
    /// Mesh configuration; unset, it follows `operator`.
    Mesh,
    /// Cluster peering; unset, it follows `operator`.
    Peering,
}

impl Scalar {
    /// Every scalar, in the order of the `Rules` table.
    pub const ALL: [Scalar; 5] = [Scalar::Operator, Scalar::Keyring, Scalar::Acl, Scalar::Mesh, Scalar::Peering];

    /// The rule's name (`"operator"`), also the resource in permission strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Scalar::Operator => "operator",
            Scalar::Keyring => "keyring",
            Scalar::Acl => "acl",
            Scalar::Mesh => "mesh",
            Scalar::Peering => "peering",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_name(name: &str) -> Option<Scalar> {
        Scalar::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule on one segment (an exact name or a prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The `policy` of the block.
    pub access: Access,
    /// Services only: the `intentions` policy for intentions with this service as destination.
    /// `None` means derived from `access` (read or write ⇒ read, deny ⇒ deny).
    pub intentions: Option<Access>,
}

impl Rule {
    /// The access this rule grants on intentions (Consul derives it when unset).
    pub fn intention_access(&self) -> Access {
        match self.intentions {
            Some(a) => a,
            None => match self.access {
                Access::Read | Access::List | Access::Write => Access::Read,
                Access::Deny => Access::Deny,
            },
        }
    }

    /// Fold `other` into `self` with deny > write > list > read, separately for the policy
    /// and the intentions (as Consul's merger does for services; a set `intentions` wins
    /// over an unset one).
    fn merge(&mut self, other: &Rule) {
        if other.access.takes_precedence_over(self.access) {
            self.access = other.access;
        }
        self.intentions = merge_option(self.intentions, other.intentions);
    }
}

fn merge_option(current: Option<Access>, incoming: Option<Access>) -> Option<Access> {
    match (current, incoming) {
        (Some(c), Some(i)) if i.takes_precedence_over(c) => Some(i),
        (None, i) => i,
        (c, _) => c,
    }
}

/// The exact and prefix rules of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments {
    /// Rules from `<resource> "<name>"` blocks, by name.
    pub exact: BTreeMap<String, Rule>,
    /// Rules from `<resource>_prefix "<prefix>"` blocks, by prefix. Sorted, so everything under
    /// a prefix is one range (what `KeyWritePrefix` walks).
    pub prefix: BTreeMap<String, Rule>,
}

/// A parsed (and possibly merged) set of ACL rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Indexed by `Resource as usize`.
    segments: [Segments; 7],
    /// Indexed by `Scalar as usize`; `None` when no rule names the scalar.
    scalars: [Option<Access>; 5],
}

/// Why rules text was refused. `Display` is the whole message, worded like Consul's
/// (`Failed to parse ACL rules: …`, `Invalid key policy: "bogus" for "foo"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

impl RulesError {
    fn syntax(detail: impl fmt::Display) -> RulesError {
        RulesError(format!("Failed to parse ACL rules: {detail}"))
    }
}

impl Rules {
    /// Parse rules text, HCL or JSON. JSON is recognised by a leading `{` (HCL bodies cannot
    /// start with one), as Consul's HCL decoder accepts both. Empty text is an empty rule set.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let trimmed = text.trim_start();
        if trimmed.is_empty() {
            return Ok(Rules::default());
        }
        let entries = if trimmed.starts_with('{') { json_entries(trimmed)? } else { hcl_entries(text)? };
        let mut rules = Rules::default();
        let mut seen_scalars: Vec<&str> = Vec::new();
        for (kind, entry) in &entries {
            if let Some((resource, prefix)) = Resource::from_block(kind) {
                rules.parse_resource(resource, prefix, kind, entry)?;
            } else if let Some(scalar) = Scalar::from_name(kind) {
                // Consul decodes with "error on duplicates": a scalar set twice is refused
                // rather than one silently winning.
                if seen_scalars.contains(&kind.as_str()) {
                    return Err(already_set(kind));
                }
                seen_scalars.push(kind);
                rules.parse_scalar(scalar, entry)?;
            } else if ENTERPRISE_BLOCKS.contains(&kind.as_str()) {
                return Err(RulesError::syntax(format_args!(
                    "{} rules are only supported by Consul Enterprise",
                    go_quote(kind)
                )));
            } else {
                return Err(RulesError::syntax(format_args!("unknown rule type {}", go_quote(kind))));
            }
        }
        Ok(rules)
    }

    fn parse_scalar(&mut self, scalar: Scalar, entry: &Entry) -> Result<(), RulesError> {
        let Entry::Attr(Node::Str(value)) = entry else {
            return Err(RulesError::syntax(format_args!(
                "{scalar} must be a string (\"read\", \"write\" or \"deny\")"
            )));
        };
        // An empty scalar is allowed and means "not set" (Consul: "this one is allowed to be
        // empty").
        if value.is_empty() {
            return Ok(());
        }
        match value.parse::<Access>() {
            Ok(access) if access != Access::List => {
                self.add_scalar(scalar, access);
                Ok(())
            }
            _ => Err(RulesError(format!("Invalid {scalar} policy: {}", go_quote(value)))),
        }
    }

    fn parse_resource(
        &mut self,
        resource: Resource,
        prefix: bool,
        kind: &str,
        entry: &Entry,
    ) -> Result<(), RulesError> {
        match entry {
            Entry::Block(labels, body) => match labels.as_slice() {
                [name] => self.parse_rule_body(resource, prefix, kind, name, body),
                _ => Err(RulesError::syntax(format_args!(
                    "{kind} block needs exactly one label (the name), found {}",
                    labels.len()
                ))),
            },
            Entry::Attr(node) => self.parse_rule_map(resource, prefix, kind, node),
        }
    }

    /// `kind = { "name" = { policy = … } }` (HCL object or JSON), or a list of such objects
    /// (how JSON repeats a block kind).
    fn parse_rule_map(&mut self, resource: Resource, prefix: bool, kind: &str, node: &Node) -> Result<(), RulesError> {
        match node {
            Node::Obj(fields) => {
                for (name, body) in fields {
                    self.parse_rule_body(resource, prefix, kind, name, body)?;
                }
                Ok(())
            }
            Node::List(items) => {
                for item in items {
                    self.parse_rule_map(resource, prefix, kind, item)?;
                }
                Ok(())
            }
            _ => {
                Err(RulesError::syntax(format_args!("{kind} must be a block: {kind} \"<name>\" {{ policy = \"…\" }}")))
            }
        }
    }

    fn parse_rule_body(
        &mut self,
        resource: Resource,
        prefix: bool,
        kind: &str,
        name: &str,
        body: &Node,
    ) -> Result<(), RulesError> {
        let fields = match body {
            Node::Obj(fields) => fields,
            Node::List(items) => {
                for item in items {
                    self.parse_rule_body(resource, prefix, kind, name, item)?;
                }
                return Ok(());
            }
            _ => return Err(RulesError::syntax(format_args!("{kind} {}: expected a block", go_quote(name)))),
        };
        let mut policy: Option<&str> = None;
        let mut intentions: Option<&str> = None;
        for (field, value) in fields {
            let slot = match field.as_str() {
                "policy" => &mut policy,
                "intentions" if resource == Resource::Service => &mut intentions,
                _ => {
                    return Err(RulesError::syntax(format_args!(
                        "{kind} {}: unknown argument {}",
                        go_quote(name),
                        go_quote(field)
                    )))
                }
            };
            if slot.is_some() {
                return Err(already_set(field));
            }
            let Node::Str(text) = value else {
                return Err(RulesError::syntax(format_args!("{kind} {}: {field} must be a string", go_quote(name))));
            };
            *slot = Some(text);
        }
        // A block without `policy` is an invalid (empty) policy, as in Consul.
        let policy_text = policy.unwrap_or("");
        let access = match policy_text.parse::<Access>() {
            Ok(Access::List) if !resource.allows_list_policy() => None,
            Ok(access) => Some(access),
            Err(_) => None,
        };
        let Some(access) = access else {
            return Err(RulesError(format!("Invalid {kind} policy: {} for {}", go_quote(policy_text), go_quote(name))));
        };
        let intentions = match intentions {
            None | Some("") => None,
            Some(text) => match text.parse::<Access>() {
                Ok(a) if a != Access::List => Some(a),
                _ => {
                    return Err(RulesError(format!(
                        "Invalid {kind} intentions policy: {} for {}",
                        go_quote(text),
                        go_quote(name)
                    )))
                }
            },
        };
        self.add_rule(resource, name, prefix, Rule { access, intentions });
        Ok(())
    }

    /// Fold another rule set into this one: for the same segment (same resource, same exact
    /// name or same prefix) and for each scalar, deny > write > list > read. This is how the
    /// several policies, roles and identities of one token combine.
    pub fn merge(&mut self, other: &Rules) {
        for resource in Resource::ALL {
            let theirs = &other.segments[resource.index()];
            for (name, rule) in &theirs.exact {
                self.add_rule(resource, name, false, *rule);
            }
            for (name, rule) in &theirs.prefix {
                self.add_rule(resource, name, true, *rule);
            }
        }
        for scalar in Scalar::ALL {
            if let Some(access) = other.scalars[scalar.index()] {
                self.add_scalar(scalar, access);
            }
        }
    }

    /// Add one rule, merging with an existing rule on the same segment (deny > write > list >
    /// read). Used by the parser and to synthesise identities' rules.
    pub fn add_rule(&mut self, resource: Resource, name: &str, prefix: bool, rule: Rule) {
        let segments = &mut self.segments[resource.index()];
        let map = if prefix { &mut segments.prefix } else { &mut segments.exact };
        match map.get_mut(name) {
            Some(existing) => existing.merge(&rule),
            None => {
                map.insert(name.to_owned(), rule);
            }
        }
    }

    /// Set a scalar, merging with an existing value (deny > write > list > read).
    pub fn add_scalar(&mut self, scalar: Scalar, access: Access) {
        let slot = &mut self.scalars[scalar.index()];
        *slot = merge_option(*slot, Some(access));
    }

    /// The exact and prefix rules of one resource.
    pub fn segments(&self, resource: Resource) -> &Segments {
        &self.segments[resource.index()]
    }

    /// The value of a scalar rule, `None` when unset.
    pub fn scalar(&self, scalar: Scalar) -> Option<Access> {
        self.scalars[scalar.index()]
    }

    /// Whether no rule at all is set (the rules of an empty policy).
    pub fn is_empty(&self) -> bool {
        self.scalars.iter().all(Option::is_none)
            && self.segments.iter().all(|s| s.exact.is_empty() && s.prefix.is_empty())
    }

    /// Canonical HCL for these rules (scalars first, then each resource's exact and prefix
    /// blocks in name order); `Rules::parse` of the result gives back an equal value.
    pub fn to_hcl(&self) -> String {
        let mut out = String::new();
        for scalar in Scalar::ALL {
            if let Some(access) = self.scalar(scalar) {
                out.push_str(&format!("{scalar} = \"{access}\"\n"));
            }
        }
        for resource in Resource::ALL {
            let segments = self.segments(resource);
            for (kind, map) in [(resource.as_str(), &segments.exact), (resource.prefix_block(), &segments.prefix)] {
                for (name, rule) in map {
                    out.push_str(&format!("{kind} {} {{\n  policy = \"{}\"\n", hcl_quote(name), rule.access));
                    if let Some(intentions) = rule.intentions {
                        out.push_str(&format!("  intentions = \"{intentions}\"\n"));
                    }
                    out.push_str("}\n");
                }
            }
        }
        out
    }
}

/// Consul Enterprise's nesting blocks: refused with a message saying why, not as a typo.
const ENTERPRISE_BLOCKS: [&str; 4] = ["namespace", "namespace_prefix", "partition", "partition_prefix"];

fn already_set(name: &str) -> RulesError {
    RulesError::syntax(format_args!(
        "The argument {} was already set. Each argument can only be defined once",
        go_quote(name)
    ))
}

/// A value of the rules document, from HCL or JSON, before interpretation.
enum Node {
    Str(String),
    /// Keys in document order; duplicates kept so they can be refused.
    Obj(Vec<(String, Node)>),
    List(Vec<Node>),
    /// Anything else (numbers, booleans, null, HCL expressions); refused where a string or an
    /// object is expected.
    Other,
}

/// One top-level item: an attribute (`operator = "read"`, every JSON member) or an HCL block.
enum Entry {
    Attr(Node),
    Block(Vec<String>, Node),
}

fn json_entries(text: &str) -> Result<Vec<(String, Entry)>, RulesError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(RulesError::syntax)?;
    let serde_json::Value::Object(map) = value else {
        return Err(RulesError::syntax("the JSON document must be an object"));
    };
    Ok(map.into_iter().map(|(k, v)| (k, Entry::Attr(json_node(v)))).collect())
}

fn json_node(value: serde_json::Value) -> Node {
    match value {
        serde_json::Value::String(s) => Node::Str(s),
        serde_json::Value::Object(map) => Node::Obj(map.into_iter().map(|(k, v)| (k, json_node(v))).collect()),
        serde_json::Value::Array(items) => Node::List(items.into_iter().map(json_node).collect()),
        _ => Node::Other,
    }
}

fn hcl_entries(text: &str) -> Result<Vec<(String, Entry)>, RulesError> {
    // hcl-rs renders parse errors over several lines (source excerpt and caret); one line
    // reads better inside an HTTP error body.
    let body = match hcl::parse(text) {
        Ok(body) => body,
        // Consul parses with HCL 1, which does not need a newline between a block's
        // arguments (`service "web" { policy = "read" intentions = "read" }`) and takes commas
        // between them. hcl-rs is HCL 2; retry with one argument per line before giving up,
        // and report the original error if that fails too.
        Err(first) => relayout_hcl1(text)
            .and_then(|t| hcl::parse(&t).ok())
            .ok_or_else(|| RulesError::syntax(one_line(&first.to_string())))?,
    };
    let mut entries = Vec::new();
    for structure in body.into_inner() {
        match structure {
            hcl::Structure::Attribute(attr) => {
                entries.push((attr.key.to_string(), Entry::Attr(hcl_expr_node(attr.expr)?)));
            }
            hcl::Structure::Block(block) => {
                let labels = block.labels.into_iter().map(|l| l.into_inner()).collect();
                entries.push((block.identifier.to_string(), Entry::Block(labels, hcl_body_node(block.body)?)));
            }
        }
    }
    Ok(entries)
}

/// Re-emit HCL 1 style text with a newline after every `=` value and every brace, and
/// without the commas that HCL 1 allows between arguments (commas inside `[…]` stay). Strings
/// and comments are copied verbatim. `None` for text this simple scanner does not understand
/// (an unterminated string or comment, heredocs): the caller then reports hcl-rs's error.
fn relayout_hcl1(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let mut brackets = 0usize;
    let mut after_equals = false;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        b'\n' => return None,
                        _ => i += 1,
                    }
                }
                i += 1;
                out.push_str(text.get(start..i)?);
                if after_equals && brackets == 0 {
                    out.push('\n');
                }
                after_equals = false;
                continue;
            }
            b'#' => {
                let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
                i = end;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
                i = end;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = i + 2 + text.get(i + 2..)?.find("*/")? + 2;
                out.push(' ');
                continue;
            }
            b'<' if bytes.get(i + 1) == Some(&b'<') => return None,
            b'{' | b'}' => {
                out.push(b as char);
                out.push('\n');
                after_equals = false;
            }
            b'[' => {
                brackets += 1;
                out.push('[');
            }
            b']' => {
                brackets = brackets.checked_sub(1)?;
                out.push(']');
                if after_equals && brackets == 0 {
                    out.push('\n');
                    after_equals = false;
                }
            }
            b',' if brackets == 0 => out.push('\n'),
            b'=' => {
                out.push('=');
                after_equals = true;
            }
            _ => {
                // Copy other characters (identifiers, numbers, whitespace) through; `text` is
                // valid UTF-8 and every byte matched above is ASCII, so `i` is on a boundary.
                let c = text.get(i..)?.chars().next()?;
                out.push(c);
                i += c.len_utf8();
                continue;
            }
        }
        i += 1;
    }
    Some(out)
}

fn hcl_body_node(body: hcl::Body) -> Result<Node, RulesError> {
    let mut fields = Vec::new();
    for structure in body.into_inner() {
        match structure {
            hcl::Structure::Attribute(attr) => fields.push((attr.key.to_string(), hcl_expr_node(attr.expr)?)),
            // A nested block inside a rule is never valid; keep it so the caller names it.
            hcl::Structure::Block(block) => fields.push((block.identifier.to_string(), Node::Other)),
        }
    }
    Ok(Node::Obj(fields))
}

fn hcl_expr_node(expr: hcl::Expression) -> Result<Node, RulesError> {
    Ok(match expr {
        hcl::Expression::String(s) => Node::Str(s),
        hcl::Expression::Array(items) => Node::List(items.into_iter().map(hcl_expr_node).collect::<Result<_, _>>()?),
        hcl::Expression::Object(object) => {
            let mut fields = Vec::new();
            for (key, value) in object {
                let key = match key {
                    hcl::ObjectKey::Identifier(id) => id.to_string(),
                    hcl::ObjectKey::Expression(hcl::Expression::String(s)) => s,
                    _ => return Err(RulesError::syntax("object keys must be names or plain strings")),
                };
                fields.push((key, hcl_expr_node(value)?));
            }
            Node::Obj(fields)
        }
        hcl::Expression::Parenthesis(inner) => hcl_expr_node(*inner)?,
        _ => Node::Other,
    })
}

fn one_line(message: &str) -> String {
    message.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Quote like Go's `%q`, which Consul's messages use: printable characters as they are,
/// quotes and backslashes escaped, control characters as escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quote a block label for HCL output: HCL strings also treat `${` and `%{` as template
/// openers, so those are escaped by doubling. Control characters are written `\uNNNN`, the
/// only numeric escape HCL reads (Go's `\x7f`, as [`go_quote`] writes it, is a parse error
/// in HCL: found by fuzzing, `fuzz/regressions/acl_rules/`).
fn hcl_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            // Every control character is in the Basic Multilingual Plane: four digits do.
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(access: Access) -> Rule {
        Rule { access, intentions: None }
    }

    fn get(rules: &Rules, r: Resource, name: &str, prefix: bool) -> Option<Rule> {
        let s = rules.segments(r);
        if prefix {
            s.prefix.get(name).copied()
        } else {
            s.exact.get(name).copied()
        }
    }

    #[test]
    fn empty_and_whitespace_rules_are_empty() {
        for text in ["", "   \n\t", "{}", " { } ", "# just a comment\n"] {
            let rules = Rules::parse(text).unwrap();
            assert!(rules.is_empty(), "{text:?}");
            assert_eq!(rules, Rules::default());
        }
    }

    /// Every resource, exact and prefix, in both HCL and JSON, with every valid access.
    #[test]
    fn every_resource_and_access_parses_in_hcl_and_json() {
        for resource in Resource::ALL {
            for prefix in [false, true] {
                let kind = if prefix { resource.prefix_block() } else { resource.as_str() };
                let mut accesses = vec![Access::Deny, Access::Read, Access::Write];
                if resource == Resource::Key {
                    accesses.push(Access::List);
                }
                for access in accesses {
                    let hcl = format!("{kind} \"foo/\" {{ policy = \"{access}\" }}");
                    let json = format!("{{\"{kind}\": {{\"foo/\": {{\"policy\": \"{access}\"}}}}}}");
                    for text in [&hcl, &json] {
                        let rules = Rules::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
                        assert_eq!(get(&rules, resource, "foo/", prefix), Some(rule(access)), "{text}");
                        assert_eq!(get(&rules, resource, "foo/", !prefix), None, "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_scalar_and_access_parses_in_hcl_and_json() {
        for scalar in Scalar::ALL {
            for access in [Access::Deny, Access::Read, Access::Write] {
                for text in [format!("{scalar} = \"{access}\""), format!("{{\"{scalar}\": \"{access}\"}}")] {
                    let rules = Rules::parse(&text).unwrap();
                    assert_eq!(rules.scalar(scalar), Some(access), "{text}");
                    for other in Scalar::ALL.into_iter().filter(|s| *s != scalar) {
                        assert_eq!(rules.scalar(other), None);
                    }
                }
            }
            // Empty means unset, in both syntaxes.
            assert!(Rules::parse(&format!("{scalar} = \"\"")).unwrap().is_empty());
            assert!(Rules::parse(&format!("{{\"{scalar}\": \"\"}}")).unwrap().is_empty());
        }
    }

    #[test]
    fn the_brief_examples_parse() {
        let rules = Rules::parse(r#"key "foo" { policy = "read" }"#).unwrap();
        assert_eq!(get(&rules, Resource::Key, "foo", false), Some(rule(Access::Read)));
        let rules = Rules::parse(r#"key_prefix "" { policy = "write" }"#).unwrap();
        assert_eq!(get(&rules, Resource::Key, "", true), Some(rule(Access::Write)));
        let rules = Rules::parse(r#"{"key": {"foo": {"policy": "read"}}, "operator": "read"}"#).unwrap();
        assert_eq!(get(&rules, Resource::Key, "foo", false), Some(rule(Access::Read)));
        assert_eq!(rules.scalar(Scalar::Operator), Some(Access::Read));
    }

    #[test]
    fn a_full_policy_in_hcl_equals_the_same_in_json() {
        let hcl = r#"
            # comments are fine
            key_prefix ""        { policy = "read" }
            key "foo/bar"        { policy = "write" }
            key "foo/baz"        { policy = "list" }
            service_prefix ""    { policy = "read" }
            service "web"        {
              policy = "write"
              intentions = "deny"
            }
            node_prefix ""       { policy = "read" }
            session_prefix ""    { policy = "write" }
            event_prefix "deploy"{ policy = "write" }
            agent "n1"           { policy = "read" }
            query_prefix ""      { policy = "read" }
            operator = "read"
            keyring  = "write"
            acl      = "write"
            mesh     = "read"
            peering  = "deny"
        "#;
        let json = r#"{
            "key_prefix": {"": {"policy": "read"}},
            "key": [{"foo/bar": {"policy": "write"}}, {"foo/baz": {"policy": "list"}}],
            "service_prefix": {"": {"policy": "read"}},
            "service": {"web": {"policy": "write", "intentions": "deny"}},
            "node_prefix": {"": {"policy": "read"}},
            "session_prefix": {"": {"policy": "write"}},
            "event_prefix": {"deploy": {"policy": "write"}},
            "agent": {"n1": {"policy": "read"}},
            "query_prefix": {"": {"policy": "read"}},
            "operator": "read", "keyring": "write", "acl": "write", "mesh": "read", "peering": "deny"
        }"#;
        let a = Rules::parse(hcl).unwrap();
        let b = Rules::parse(json).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            get(&a, Resource::Service, "web", false),
            Some(Rule { access: Access::Write, intentions: Some(Access::Deny) })
        );
        assert_eq!(get(&a, Resource::Key, "foo/baz", false), Some(rule(Access::List)));
        assert_eq!(a.scalar(Scalar::Peering), Some(Access::Deny));
        // Canonical HCL round-trips.
        assert_eq!(Rules::parse(&a.to_hcl()).unwrap(), a);
    }

    #[test]
    fn hcl_object_attribute_form_and_case_insensitive_levels() {
        let rules = Rules::parse(r#"key = { "a" = { policy = "READ" }, b = { policy = "Write" } }"#).unwrap();
        assert_eq!(get(&rules, Resource::Key, "a", false), Some(rule(Access::Read)));
        assert_eq!(get(&rules, Resource::Key, "b", false), Some(rule(Access::Write)));
    }

    #[test]
    fn several_blocks_of_one_kind_and_duplicates_merge_deny_wins() {
        let rules = Rules::parse(
            r#"
            key "a" { policy = "read" }
            key "b" { policy = "write" }
            key "a" { policy = "write" }
            key "c" { policy = "write" }
            key "c" { policy = "deny" }
            key "c" { policy = "read" }
            key_prefix "a" { policy = "list" }
            "#,
        )
        .unwrap();
        assert_eq!(get(&rules, Resource::Key, "a", false), Some(rule(Access::Write)));
        assert_eq!(get(&rules, Resource::Key, "b", false), Some(rule(Access::Write)));
        assert_eq!(get(&rules, Resource::Key, "c", false), Some(rule(Access::Deny)));
        assert_eq!(get(&rules, Resource::Key, "a", true), Some(rule(Access::List)));
    }

    /// Consul's `takesPrecedenceOver`: deny > write > list > read, on each segment, for
    /// scalars, and for intentions separately from the service policy.
    #[test]
    fn merge_precedence_table() {
        use Access::*;
        let cases = [
            (Read, Read, Read),
            (Read, List, List),
            (List, Read, List),
            (Read, Write, Write),
            (Write, List, Write),
            (Write, Deny, Deny),
            (Deny, Write, Deny),
            (Deny, Read, Deny),
            (List, Deny, Deny),
        ];
        for (a, b, want) in cases {
            let mut left =
                Rules::parse(&format!("key \"k\" {{ policy = \"{a}\" }}\nkey_prefix \"p\" {{ policy = \"{a}\" }}"))
                    .unwrap();
            let right =
                Rules::parse(&format!("key \"k\" {{ policy = \"{b}\" }}\nkey_prefix \"p\" {{ policy = \"{b}\" }}"))
                    .unwrap();
            left.merge(&right);
            assert_eq!(get(&left, Resource::Key, "k", false), Some(rule(want)), "{a} + {b}");
            assert_eq!(get(&left, Resource::Key, "p", true), Some(rule(want)), "{a} + {b}");
            if a != List && b != List {
                let mut left = Rules::parse(&format!("operator = \"{a}\"")).unwrap();
                left.merge(&Rules::parse(&format!("operator = \"{b}\"")).unwrap());
                assert_eq!(left.scalar(Scalar::Operator), Some(want), "operator {a} + {b}");
            }
        }
        // Exact and prefix rules on the same name are different segments: no merging.
        let mut left = Rules::parse(r#"key "k" { policy = "deny" }"#).unwrap();
        left.merge(&Rules::parse(r#"key_prefix "k" { policy = "write" }"#).unwrap());
        assert_eq!(get(&left, Resource::Key, "k", false), Some(rule(Deny)));
        assert_eq!(get(&left, Resource::Key, "k", true), Some(rule(Write)));
        // Merging with an empty set changes nothing; unset scalars stay unset.
        let before = left.clone();
        left.merge(&Rules::default());
        assert_eq!(left, before);
        assert_eq!(left.scalar(Scalar::Acl), None);
    }

    #[test]
    fn service_intentions_merge_separately() {
        let mut a = Rules::parse(r#"service "web" { policy = "write" }"#).unwrap();
        a.merge(&Rules::parse(r#"service "web" { policy = "read" intentions = "write" }"#).unwrap());
        let web = get(&a, Resource::Service, "web", false).unwrap();
        assert_eq!(web, Rule { access: Access::Write, intentions: Some(Access::Write) });
        assert_eq!(web.intention_access(), Access::Write);

        a.merge(&Rules::parse(r#"service "web" { policy = "read" intentions = "deny" }"#).unwrap());
        let web = get(&a, Resource::Service, "web", false).unwrap();
        assert_eq!(web, Rule { access: Access::Write, intentions: Some(Access::Deny) });

        // Derived intentions: read/write ⇒ read, deny ⇒ deny.
        assert_eq!(rule(Access::Write).intention_access(), Access::Read);
        assert_eq!(rule(Access::Read).intention_access(), Access::Read);
        assert_eq!(rule(Access::Deny).intention_access(), Access::Deny);
    }

    #[test]
    fn invalid_policies_are_named_like_consul() {
        let cases = [
            (r#"key "foo" { policy = "bogus" }"#, r#"Invalid key policy: "bogus" for "foo""#),
            (r#"{"key": {"foo": {"policy": "bogus"}}}"#, r#"Invalid key policy: "bogus" for "foo""#),
            (r#"key_prefix "" { policy = "nope" }"#, r#"Invalid key_prefix policy: "nope" for """#),
            (r#"key "foo" { }"#, r#"Invalid key policy: "" for "foo""#),
            (r#"service "web" { policy = "list" }"#, r#"Invalid service policy: "list" for "web""#),
            (r#"node_prefix "" { policy = "list" }"#, r#"Invalid node_prefix policy: "list" for """#),
            (r#"session "n" { policy = "x" }"#, r#"Invalid session policy: "x" for "n""#),
            (r#"event_prefix "" { policy = "x" }"#, r#"Invalid event_prefix policy: "x" for """#),
            (r#"query "q" { policy = "x" }"#, r#"Invalid query policy: "x" for "q""#),
            (r#"agent_prefix "" { policy = "x" }"#, r#"Invalid agent_prefix policy: "x" for """#),
            (
                r#"service "web" { policy = "read" intentions = "list" }"#,
                r#"Invalid service intentions policy: "list" for "web""#,
            ),
            (
                r#"service_prefix "" { policy = "read" intentions = "nope" }"#,
                r#"Invalid service_prefix intentions policy: "nope" for """#,
            ),
            (r#"operator = "nope""#, r#"Invalid operator policy: "nope""#),
            (r#"keyring = "list""#, r#"Invalid keyring policy: "list""#),
            (r#"{"acl": "nope"}"#, r#"Invalid acl policy: "nope""#),
            (r#"mesh = "nope""#, r#"Invalid mesh policy: "nope""#),
            (r#"peering = "nope""#, r#"Invalid peering policy: "nope""#),
        ];
        for (text, want) in cases {
            assert_eq!(Rules::parse(text).unwrap_err().to_string(), want, "{text}");
        }
    }

    #[test]
    fn syntax_and_structure_errors() {
        let cases = [
            // Not HCL at all.
            ("key \"foo\" {", "Failed to parse ACL rules: "),
            ("{\"key\": ", "Failed to parse ACL rules: "),
            ("[1, 2]", "Failed to parse ACL rules: "),
            // Enterprise-only nesting.
            (
                r#"namespace "ns" { key "a" { policy = "read" } }"#,
                r#"Failed to parse ACL rules: "namespace" rules are only supported by Consul Enterprise"#,
            ),
            (
                r#"partition_prefix "" { }"#,
                r#"Failed to parse ACL rules: "partition_prefix" rules are only supported by Consul Enterprise"#,
            ),
            (
                r#"{"partition": {"p": {}}}"#,
                r#"Failed to parse ACL rules: "partition" rules are only supported by Consul Enterprise"#,
            ),
            // Unknown kinds.
            (r#"keys "a" { policy = "read" }"#, r#"Failed to parse ACL rules: unknown rule type "keys""#),
            (r#"{"bogus": "read"}"#, r#"Failed to parse ACL rules: unknown rule type "bogus""#),
            // Unknown or repeated arguments, wrong shapes.
            (r#"key "a" { polcy = "read" }"#, r#"Failed to parse ACL rules: key "a": unknown argument "polcy""#),
            (
                r#"key "a" { policy = "read" intentions = "read" }"#,
                r#"Failed to parse ACL rules: key "a": unknown argument "intentions""#,
            ),
            ("key \"a\" {\n policy = \"read\"\n policy = \"write\"\n}", "Failed to parse ACL rules: "),
            (r#"key "a" { policy = "read", policy = "write" }"#, "Failed to parse ACL rules: "),
            (
                "key \"a\" {\n policy = \"read\"\n}\nkey = { b = { policy = \"read\"\n policy = \"write\" } }",
                "Failed to parse ACL rules: ",
            ),
            // Repeated arguments (hcl-rs refuses them, as Consul's decoder does).
            ("operator = \"read\"\noperator = \"write\"", "Failed to parse ACL rules: "),
            (r#"key "a" { policy = 1 }"#, r#"Failed to parse ACL rules: key "a": policy must be a string"#),
            (
                r#"key { policy = "read" }"#,
                "Failed to parse ACL rules: key block needs exactly one label (the name), found 0",
            ),
            (
                r#"key "a" "b" { policy = "read" }"#,
                "Failed to parse ACL rules: key block needs exactly one label (the name), found 2",
            ),
            (r#"key = "read""#, r#"Failed to parse ACL rules: key must be a block: key "<name>" { policy = "…" }"#),
            (
                r#"operator "x" { policy = "read" }"#,
                r#"Failed to parse ACL rules: operator must be a string ("read", "write" or "deny")"#,
            ),
            (
                r#"{"operator": 1}"#,
                r#"Failed to parse ACL rules: operator must be a string ("read", "write" or "deny")"#,
            ),
            (
                r#"key "a" { policy = "read" sentinel { code = "x" } }"#,
                r#"Failed to parse ACL rules: key "a": unknown argument "sentinel""#,
            ),
        ];
        for (text, want) in cases {
            let got = Rules::parse(text).unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}: got {got:?}, want prefix {want:?}");
            assert!(!got.contains('\n'), "{got:?} spans lines");
        }
    }

    #[test]
    fn access_and_need_tables() {
        use Access::*;
        let table = [
            (Write, [true, true, true]),
            (List, [true, true, false]),
            (Read, [true, false, false]),
            (Deny, [false, false, false]),
        ];
        for (access, [read, list, write]) in table {
            assert_eq!(access.grants(Need::Read), read, "{access} read");
            assert_eq!(access.grants(Need::List), list, "{access} list");
            assert_eq!(access.grants(Need::Write), write, "{access} write");
        }
        assert_eq!("WRITE".parse::<Access>(), Ok(Write));
        assert_eq!("x".parse::<Access>().unwrap_err().to_string(), r#""x" is not a valid access level"#);
        let names: Vec<String> = Resource::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["key", "service", "node", "session", "event", "query", "agent"]);
        let names: Vec<String> = Scalar::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["operator", "keyring", "acl", "mesh", "peering"]);
    }

    #[test]
    fn odd_names_round_trip_through_hcl() {
        let mut rules = Rules::default();
        // Control characters too (DEL, NUL, C1): Go's `\x7f` escape is not HCL (found by fuzzing).
        for name in [
            "",
            "a b",
            "quo\"te",
            "back\\slash",
            "${not_a_template}",
            "%{nor}",
            "ünïcode/",
            "f\x7fo",
            "\0",
            "\u{85}",
            "$${x",
        ] {
            rules.add_rule(Resource::Key, name, true, rule(Access::Read));
        }
        assert_eq!(Rules::parse(&rules.to_hcl()).unwrap(), rules, "{}", rules.to_hcl());
    }

    #[test]
    fn json_lists_of_bodies_merge_and_hcl1_layouts_parse() {
        let rules = Rules::parse(r#"{"key": {"a": [{"policy": "read"}, {"policy": "deny"}]}}"#).unwrap();
        assert_eq!(get(&rules, Resource::Key, "a", false), Some(rule(Access::Deny)));
        // HCL 1 layouts Consul accepts: several arguments on one line, commas between them,
        // nested blocks on one line, comments of every kind.
        let rules = Rules::parse(
            "service \"web\" { policy = \"read\" intentions = \"write\" } # trailing\n\
             service \"db\" { policy = \"write\", intentions = \"deny\" } // c\n\
             /* block */ key \"k\" { policy = \"list\" } operator = \"read\" keyring = \"write\"",
        )
        .unwrap();
        assert_eq!(
            get(&rules, Resource::Service, "web", false),
            Some(Rule { access: Access::Read, intentions: Some(Access::Write) })
        );
        assert_eq!(
            get(&rules, Resource::Service, "db", false),
            Some(Rule { access: Access::Write, intentions: Some(Access::Deny) })
        );
        assert_eq!(get(&rules, Resource::Key, "k", false), Some(rule(Access::List)));
        assert_eq!(rules.scalar(Scalar::Operator), Some(Access::Read));
        assert_eq!(rules.scalar(Scalar::Keyring), Some(Access::Write));
        // Strings with braces, commas, escapes and `=` are copied verbatim by the relayout.
        let rules = Rules::parse(r#"key "a{b},c=\"d" { policy = "read" intentions = "x" }"#).unwrap_err();
        assert_eq!(rules.to_string(), r#"Failed to parse ACL rules: key "a{b},c=\"d": unknown argument "intentions""#);
    }

    #[test]
    fn go_quote_matches_go() {
        assert_eq!(go_quote("foo"), "\"foo\"");
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
        assert_eq!(go_quote("ü"), "\"ü\"");
    }
}
