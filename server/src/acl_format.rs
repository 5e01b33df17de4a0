//! How `consul-rs acl …` prints ACL objects: Consul 1.16's `-format=pretty` layouts (aligned
//! `Label:` lines, `   ID - Name` links) and `-format=json` (Go's `json.MarshalIndent` with four
//! spaces over the `api` structs, which the SDK's wire types mirror field for field).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use base64::Engine as _;
use consul_sdk::acl::{
    go_duration_string, AclAuthMethod, AclAuthMethodListEntry, AclBindingRule, AclLink, AclNodeIdentity, AclPolicy,
    AclPolicyListEntry, AclRole, AclServiceIdentity, AclTemplatedPolicy, AclTemplatedPolicyResponse, AclToken,
    AclTokenExpanded, AclTokenListEntry,
};
use serde::Serialize;

/// `-format`: `pretty` (default) or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Consul's aligned text.
    Pretty,
    /// Indented JSON.
    Json,
}

impl Format {
    /// Reads `-format`, with Consul's error text for anything else.
    pub(crate) fn parse(s: &str) -> Result<Format> {
        match s {
            "pretty" => Ok(Format::Pretty),
            "json" => Ok(Format::Json),
            other => bail!("Unknown format: {other}"),
        }
    }
}

/// Go's `json.MarshalIndent(v, "", "    ")`: four-space indent and, as Go's encoder does,
/// `<`, `>`, `&`, U+2028 and U+2029 escaped (they can only occur inside strings, so replacing
/// them in the text is exact).
pub(crate) fn go_json<T: Serialize>(v: &T) -> Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser)?;
    let text = String::from_utf8(out)?;
    Ok(text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

/// An RFC 3339 time as Go's `time.Time.String()` prints it after Consul's client parsed it:
/// `2026-12-05 16:00:00.123456789 +0000 UTC` (fraction without trailing zeros; a non-UTC
/// offset as `+0100 +0100`, the zone Go fabricates). Text it cannot read is returned as is.
pub(crate) fn go_time(s: &str) -> String {
    let Some((date, rest)) = s.split_once('T') else { return s.to_string() };
    let (clock, zone) = if let Some(c) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z')) {
        (c, None)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        (&rest[..i], Some(&rest[i..]))
    } else {
        return s.to_string();
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, f.trim_end_matches('0')),
        None => (clock, ""),
    };
    let frac = if frac.is_empty() { String::new() } else { format!(".{frac}") };
    let zone = match zone {
        None => "+0000 UTC".to_string(),
        Some(z) => {
            let z = z.replace(':', "");
            if z == "+0000" || z == "-0000" {
                "+0000 UTC".to_string()
            } else {
                format!("{z} {z}")
            }
        }
    };
    format!("{date} {hms}{frac} {zone}")
}

/// A base64 hash as Go's `%x` prints the bytes.
fn hex_hash(h: &Option<String>) -> String {
    let bytes = h.as_deref().and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok()).unwrap_or_default();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn links(out: &mut String, title: &str, indent: &str, l: &[AclLink]) {
    if !l.is_empty() {
        out.push_str(&format!("{indent}{title}:\n"));
        for p in l {
            out.push_str(&format!("{indent}   {} - {}\n", p.id, p.name));
        }
    }
}

fn identities(out: &mut String, indent: &str, s: &[AclServiceIdentity], n: &[AclNodeIdentity]) {
    if !s.is_empty() {
        out.push_str(&format!("{indent}Service Identities:\n"));
        for i in s {
            let dcs = if i.datacenters.is_empty() { "all".to_string() } else { i.datacenters.join(", ") };
            out.push_str(&format!("{indent}   {} (Datacenters: {dcs})\n", i.service_name));
        }
    }
    if !n.is_empty() {
        out.push_str(&format!("{indent}Node Identities:\n"));
        for i in n {
            out.push_str(&format!("{indent}   {} (Datacenter: {})\n", i.node_name, i.datacenter));
        }
    }
}

fn templated(out: &mut String, indent: &str, t: &[AclTemplatedPolicy]) {
    if !t.is_empty() {
        out.push_str(&format!("{indent}Templated Policies:\n"));
        for p in t {
            out.push_str(&format!("{indent}   {}\n", p.template_name));
            if let Some(name) = p.template_variables.as_ref().map(|v| &v.name).filter(|n| !n.is_empty()) {
                out.push_str(&format!("{indent}      Name: {name}\n"));
            }
            let dcs = if p.datacenters.is_empty() { "all".to_string() } else { p.datacenters.join(", ") };
            out.push_str(&format!("{indent}      Datacenters: {dcs}\n"));
        }
    }
}

/// The fields every token view shares, in Consul's order.
struct TokenView<'a> {
    accessor_id: &'a str,
    secret_id: &'a str,
    partition: &'a str,
    namespace: &'a str,
    description: &'a str,
    local: bool,
    auth_method: &'a str,
    auth_method_namespace: &'a str,
    create_time: &'a str,
    expiration_time: Option<&'a str>,
    hash: &'a Option<String>,
    create_index: u64,
    modify_index: u64,
    policies: &'a [AclLink],
    roles: &'a [AclLink],
    service_identities: &'a [AclServiceIdentity],
    node_identities: &'a [AclNodeIdentity],
    templated_policies: &'a [AclTemplatedPolicy],
}

fn token_view(t: &TokenView<'_>, meta: bool) -> String {
    let mut o = String::new();
    o.push_str(&format!("AccessorID:       {}\n", t.accessor_id));
    o.push_str(&format!("SecretID:         {}\n", t.secret_id));
    if !t.partition.is_empty() {
        o.push_str(&format!("Partition:        {}\n", t.partition));
    }
    if !t.namespace.is_empty() {
        o.push_str(&format!("Namespace:        {}\n", t.namespace));
    }
    o.push_str(&format!("Description:      {}\n", t.description));
    o.push_str(&format!("Local:            {}\n", t.local));
    if !t.auth_method.is_empty() {
        o.push_str(&format!("Auth Method:      {} (Namespace: {})\n", t.auth_method, t.auth_method_namespace));
    }
    o.push_str(&format!("Create Time:      {}\n", go_time(t.create_time)));
    if let Some(e) = t.expiration_time.filter(|e| !e.is_empty() && *e != consul_sdk::acl::GO_ZERO_TIME) {
        o.push_str(&format!("Expiration Time:  {}\n", go_time(e)));
    }
    if meta {
        o.push_str(&format!("Hash:             {}\n", hex_hash(t.hash)));
        o.push_str(&format!("Create Index:     {}\n", t.create_index));
        o.push_str(&format!("Modify Index:     {}\n", t.modify_index));
    }
    links(&mut o, "Policies", "", t.policies);
    links(&mut o, "Roles", "", t.roles);
    identities(&mut o, "", t.service_identities, t.node_identities);
    templated(&mut o, "", t.templated_policies);
    o
}

/// A token, as `token create|read|update|clone` and `bootstrap` print it.
pub(crate) fn token(t: &AclToken, f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(t);
    }
    Ok(token_view(
        &TokenView {
            accessor_id: &t.accessor_id,
            secret_id: &t.secret_id,
            partition: &t.partition,
            namespace: &t.namespace,
            description: &t.description,
            local: t.local,
            auth_method: &t.auth_method,
            auth_method_namespace: &t.auth_method_namespace,
            create_time: &t.create_time,
            expiration_time: t.expiration_time.as_deref(),
            hash: &t.hash,
            create_index: t.create_index,
            modify_index: t.modify_index,
            policies: &t.policies,
            roles: &t.roles,
            service_identities: &t.service_identities,
            node_identities: &t.node_identities,
            templated_policies: &t.templated_policies,
        },
        meta,
    ))
}

/// `token read -expanded`: the token's own lines, then every policy, identity and role it
/// resolves to with their rules (Consul's "authorizer layers"), then the resolving agent's
/// defaults. Nested levels are indented with tabs, as Consul does.
pub(crate) fn token_expanded(t: &AclTokenExpanded, f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(t);
    }
    let tok = &t.token;
    let mut o = String::new();
    o.push_str(&format!("AccessorID:       {}\n", tok.accessor_id));
    o.push_str(&format!("SecretID:         {}\n", tok.secret_id));
    o.push_str(&format!("Description:      {}\n", tok.description));
    o.push_str(&format!("Local:            {}\n", tok.local));
    if !tok.auth_method.is_empty() {
        o.push_str(&format!("Auth Method:      {} (Namespace: {})\n", tok.auth_method, tok.auth_method_namespace));
    }
    o.push_str(&format!("Create Time:      {}\n", go_time(&tok.create_time)));
    if let Some(e) = tok.expiration_time.as_deref().filter(|e| !e.is_empty() && *e != consul_sdk::acl::GO_ZERO_TIME) {
        o.push_str(&format!("Expiration Time:  {}\n", go_time(e)));
    }
    if meta {
        o.push_str(&format!("Hash:             {}\n", hex_hash(&tok.hash)));
        o.push_str(&format!("Create Index:     {}\n", tok.create_index));
        o.push_str(&format!("Modify Index:     {}\n", tok.modify_index));
    }
    let policies: BTreeMap<&str, &AclPolicy> = t.expanded_policies.iter().map(|p| (p.id.as_str(), p)).collect();
    let roles: BTreeMap<&str, &AclRole> = t.expanded_roles.iter().map(|r| (r.id.as_str(), r)).collect();
    let none = AclPolicy::default();
    let policy = |o: &mut String, id: &str, indent: &str| {
        let p = policies.get(id).copied().unwrap_or(&none);
        o.push_str(&format!("{indent}Policy Name: {}\n", p.name));
        o.push_str(&format!("{indent}\tID: {}\n", p.id));
        o.push_str(&format!("{indent}\tDescription: {}\n", p.description));
        o.push_str(&format!("{indent}\tRules:\n{indent}\t\t"));
        o.push_str(&p.rules.replace('\n', &format!("\n{indent}\t\t")));
        o.push_str("\n\n");
    };
    // A synthetic policy's rules start with a newline, so they follow "Rules:" directly.
    let synthetic = |o: &mut String, heading: String, description: String, rules: String, indent: &str| {
        o.push_str(&format!("{indent}{heading}\n"));
        o.push_str(&format!("{indent}\tDescription: {description}\n"));
        o.push_str(&format!("{indent}\tRules:"));
        o.push_str(&rules.replace('\n', &format!("\n{indent}\t\t")));
        o.push_str("\n\n");
    };
    let service = |o: &mut String, s: &AclServiceIdentity, indent: &str| {
        let dcs = if s.datacenters.is_empty() { "all".to_string() } else { s.datacenters.join(", ") };
        synthetic(
            o,
            format!("Name: {} (Datacenters: {dcs})", s.service_name),
            format!("synthetic policy for service identity {:?}", s.service_name),
            consul_core::acl::builtin::service_identity_rules_text(&s.service_name),
            indent,
        );
    };
    let node = |o: &mut String, n: &AclNodeIdentity, indent: &str| {
        synthetic(
            o,
            format!("Name: {} (Datacenter: {})", n.node_name, n.datacenter),
            format!("synthetic policy for node identity {:?}", n.node_name),
            consul_core::acl::builtin::node_identity_rules_text(&n.node_name),
            indent,
        );
    };
    if !tok.policies.is_empty() {
        o.push_str("Policies:\n");
        for l in &tok.policies {
            policy(&mut o, &l.id, "\t");
        }
    }
    if !tok.service_identities.is_empty() {
        o.push_str("Service Identities:\n");
        for s in &tok.service_identities {
            service(&mut o, s, "\t");
        }
    }
    if !tok.node_identities.is_empty() {
        o.push_str("Node Identities:\n");
        for n in &tok.node_identities {
            node(&mut o, n, "\t");
        }
    }
    if !tok.roles.is_empty() {
        o.push_str("Roles:\n");
        let empty = AclRole::default();
        for l in &tok.roles {
            let r = roles.get(l.id.as_str()).copied().unwrap_or(&empty);
            o.push_str(&format!("\tRole Name: {}\n", r.name));
            o.push_str(&format!("\t\tID: {}\n", r.id));
            o.push_str(&format!("\t\tDescription: {}\n", r.description));
            if !r.policies.is_empty() {
                o.push_str("\t\tPolicies:\n");
                for p in &r.policies {
                    policy(&mut o, &p.id, "\t\t\t");
                }
            }
            if !r.service_identities.is_empty() {
                o.push_str("\t\tService Identities:\n");
                for s in &r.service_identities {
                    service(&mut o, s, "\t\t\t");
                }
            }
            if !r.node_identities.is_empty() {
                o.push_str("\t\tNode Identities:\n");
                for n in &r.node_identities {
                    node(&mut o, n, "\t\t\t");
                }
            }
        }
    }
    o.push_str("=== End of Authorizer Layer 0: Token ===\n");
    o.push_str("=== Start of Authorizer Layer 2: Agent Configuration Defaults (Inherited) ===\n");
    o.push_str(
        "Description: Defined at request-time by the agent that resolves the ACL token; other agents may have \
         different configuration defaults\n",
    );
    o.push_str(&format!("Resolved By Agent: {:?}\n\n", t.resolved_by_agent));
    o.push_str(&format!("Default Policy: {}\n", t.agent_acl_default_policy));
    o.push_str(
        "\tDescription: Backstop rule used if no preceding layer has a matching rule (refer to default_policy \
         option in agent configuration)\n\n",
    );
    o.push_str(&format!("Down Policy: {}\n", t.agent_acl_down_policy));
    o.push_str(
        "\tDescription: Defines what to do if this Token's information cannot be read from the primary_datacenter \
         (refer to down_policy option in agent configuration)\n\n",
    );
    Ok(o)
}

/// `token list`: entries separated by a blank line.
pub(crate) fn token_list(l: &[AclTokenListEntry], f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(&l);
    }
    let parts: Vec<String> = l
        .iter()
        .map(|t| {
            token_view(
                &TokenView {
                    accessor_id: &t.accessor_id,
                    secret_id: &t.secret_id,
                    partition: &t.partition,
                    namespace: &t.namespace,
                    description: &t.description,
                    local: t.local,
                    auth_method: &t.auth_method,
                    auth_method_namespace: &t.auth_method_namespace,
                    create_time: &t.create_time,
                    expiration_time: t.expiration_time.as_deref(),
                    hash: &t.hash,
                    create_index: t.create_index,
                    modify_index: t.modify_index,
                    policies: &t.policies,
                    roles: &t.roles,
                    service_identities: &t.service_identities,
                    node_identities: &t.node_identities,
                    templated_policies: &t.templated_policies,
                },
                meta,
            )
        })
        .collect();
    Ok(parts.join("\n"))
}

/// A policy: its fields, then `Rules:` and the rule text as stored.
pub(crate) fn policy(p: &AclPolicy, f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(p);
    }
    let mut o = String::new();
    o.push_str(&format!("ID:           {}\n", p.id));
    o.push_str(&format!("Name:         {}\n", p.name));
    if !p.partition.is_empty() {
        o.push_str(&format!("Partition:    {}\n", p.partition));
    }
    if !p.namespace.is_empty() {
        o.push_str(&format!("Namespace:    {}\n", p.namespace));
    }
    o.push_str(&format!("Description:  {}\n", p.description));
    o.push_str(&format!("Datacenters:  {}\n", p.datacenters.as_deref().unwrap_or_default().join(", ")));
    if meta {
        o.push_str(&format!("Hash:         {}\n", hex_hash(&p.hash)));
        o.push_str(&format!("Create Index: {}\n", p.create_index));
        o.push_str(&format!("Modify Index: {}\n", p.modify_index));
    }
    o.push_str("Rules:\n");
    o.push_str(&p.rules);
    Ok(o)
}

/// `policy list`: `Name:` then indented fields.
pub(crate) fn policy_list(l: &[AclPolicyListEntry], f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(&l);
    }
    let mut o = String::new();
    for p in l {
        o.push_str(&format!("{}:\n", p.name));
        o.push_str(&format!("   ID:           {}\n", p.id));
        if !p.partition.is_empty() {
            o.push_str(&format!("   Partition:    {}\n", p.partition));
        }
        if !p.namespace.is_empty() {
            o.push_str(&format!("   Namespace:    {}\n", p.namespace));
        }
        o.push_str(&format!("   Description:  {}\n", p.description));
        o.push_str(&format!("   Datacenters:  {}\n", p.datacenters.as_deref().unwrap_or_default().join(", ")));
        if meta {
            o.push_str(&format!("   Hash:         {}\n", hex_hash(&p.hash)));
            o.push_str(&format!("   Create Index: {}\n", p.create_index));
            o.push_str(&format!("   Modify Index: {}\n", p.modify_index));
        }
    }
    Ok(o)
}

fn role_body(o: &mut String, r: &AclRole, indent: &str, meta: bool) {
    let pad = |label: &str| format!("{indent}{label:<14}");
    o.push_str(&format!("{}{}\n", pad("ID:"), r.id));
    if indent.is_empty() {
        o.push_str(&format!("{}{}\n", pad("Name:"), r.name));
    }
    if !r.partition.is_empty() {
        o.push_str(&format!("{}{}\n", pad("Partition:"), r.partition));
    }
    if !r.namespace.is_empty() {
        o.push_str(&format!("{}{}\n", pad("Namespace:"), r.namespace));
    }
    o.push_str(&format!("{}{}\n", pad("Description:"), r.description));
    if meta {
        o.push_str(&format!("{}{}\n", pad("Hash:"), hex_hash(&r.hash)));
        o.push_str(&format!("{}{}\n", pad("Create Index:"), r.create_index));
        o.push_str(&format!("{}{}\n", pad("Modify Index:"), r.modify_index));
    }
    links(o, "Policies", indent, &r.policies);
    identities(o, indent, &r.service_identities, &r.node_identities);
    templated(o, indent, &r.templated_policies);
}

/// A role.
pub(crate) fn role(r: &AclRole, f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(r);
    }
    let mut o = String::new();
    role_body(&mut o, r, "", meta);
    Ok(o)
}

/// `role list`: `Name:` then the role's fields indented by three spaces.
pub(crate) fn role_list(l: &[AclRole], f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(&l);
    }
    let mut o = String::new();
    for r in l {
        o.push_str(&format!("{}:\n", r.name));
        role_body(&mut o, r, "   ", meta);
    }
    Ok(o)
}

/// An auth method; its `Config` as two-space indented JSON, as Consul prints it.
pub(crate) fn auth_method(m: &AclAuthMethod, f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(m);
    }
    let mut o = String::new();
    o.push_str(&format!("Name:          {}\n", m.name));
    o.push_str(&format!("Type:          {}\n", m.r#type));
    if !m.partition.is_empty() {
        o.push_str(&format!("Partition:     {}\n", m.partition));
    }
    if !m.namespace.is_empty() {
        o.push_str(&format!("Namespace:     {}\n", m.namespace));
    }
    if !m.display_name.is_empty() {
        o.push_str(&format!("DisplayName:   {}\n", m.display_name));
    }
    o.push_str(&format!("Description:   {}\n", m.description));
    if m.max_token_ttl > 0 {
        o.push_str(&format!("MaxTokenTTL:   {}\n", go_duration_string(m.max_token_ttl)));
    }
    if !m.token_locality.is_empty() {
        o.push_str(&format!("TokenLocality: {}\n", m.token_locality));
    }
    if !m.namespace_rules.is_empty() {
        o.push_str("NamespaceRules:\n");
        for r in &m.namespace_rules {
            let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            o.push_str(&format!("   Selector:      {}\n", s("Selector")));
            o.push_str(&format!("   BindNamespace: {}\n", s("BindNamespace")));
        }
    }
    if meta {
        o.push_str(&format!("Create Index:  {}\n", m.create_index));
        o.push_str(&format!("Modify Index:  {}\n", m.modify_index));
    }
    o.push_str("Config:\n");
    let mut cfg = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    m.config.serialize(&mut serde_json::Serializer::with_formatter(&mut cfg, fmt))?;
    o.push_str(&String::from_utf8(cfg)?);
    Ok(o)
}

/// `auth-method list`.
pub(crate) fn auth_method_list(l: &[AclAuthMethodListEntry], f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(&l);
    }
    let mut o = String::new();
    for m in l {
        o.push_str(&format!("{}:\n", m.name));
        o.push_str(&format!("   Type:         {}\n", m.r#type));
        if !m.partition.is_empty() {
            o.push_str(&format!("   Partition:    {}\n", m.partition));
        }
        if !m.namespace.is_empty() {
            o.push_str(&format!("   Namespace:    {}\n", m.namespace));
        }
        if !m.display_name.is_empty() {
            o.push_str(&format!("   DisplayName:  {}\n", m.display_name));
        }
        o.push_str(&format!("   Description:  {}\n", m.description));
        if meta {
            o.push_str(&format!("   Create Index: {}\n", m.create_index));
            o.push_str(&format!("   Modify Index: {}\n", m.modify_index));
        }
    }
    Ok(o)
}

fn rule_body(o: &mut String, r: &AclBindingRule, indent: &str, meta: bool) {
    let pad = |label: &str| format!("{indent}{label:<14}");
    if !r.partition.is_empty() {
        o.push_str(&format!("{}{}\n", pad("Partition:"), r.partition));
    }
    if !r.namespace.is_empty() {
        o.push_str(&format!("{}{}\n", pad("Namespace:"), r.namespace));
    }
    o.push_str(&format!("{}{}\n", pad("AuthMethod:"), r.auth_method));
    o.push_str(&format!("{}{}\n", pad("Description:"), r.description));
    o.push_str(&format!("{}{}\n", pad("BindType:"), r.bind_type));
    o.push_str(&format!("{}{}\n", pad("BindName:"), r.bind_name));
    o.push_str(&format!("{}{}\n", pad("Selector:"), r.selector));
    if meta {
        o.push_str(&format!("{}{}\n", pad("Create Index:"), r.create_index));
        o.push_str(&format!("{}{}\n", pad("Modify Index:"), r.modify_index));
    }
}

/// A binding rule.
pub(crate) fn binding_rule(r: &AclBindingRule, f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(r);
    }
    let mut o = format!("ID:           {}\n", r.id);
    rule_body(&mut o, r, "", meta);
    Ok(o)
}

/// `binding-rule list`: the ID, then the fields indented.
pub(crate) fn binding_rule_list(l: &[AclBindingRule], f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(&l);
    }
    let mut o = String::new();
    for r in l {
        o.push_str(&format!("{}:\n", r.id));
        rule_body(&mut o, r, "   ", meta);
    }
    Ok(o)
}

/// A templated policy: its name, its input variables, an example (Consul 1.17's layout).
pub(crate) fn templated_policy(t: &AclTemplatedPolicyResponse, f: Format, meta: bool) -> Result<String> {
    if f == Format::Json {
        return go_json(t);
    }
    let mut o = format!("Name:            {}\n", t.template_name);
    o.push_str("Input variables:");
    match t.template_name.as_str() {
        "builtin/service" => {
            o.push_str("\n\tName: String - Required - The name of the service.\n");
            o.push_str("Example usage:\n\tconsul acl token create -templated-policy builtin/service -var name:api\n");
        }
        "builtin/node" => {
            o.push_str("\n\tName: String - Required - The node name.\n");
            o.push_str("Example usage:\n\tconsul acl token create -templated-policy builtin/node -var name:node-1\n");
        }
        "builtin/dns" => {
            o.push_str(" None\n");
            o.push_str("Example usage:\n\tconsul acl token create -templated-policy builtin/dns\n");
        }
        _ => o.push_str("   None\n"),
    }
    if meta {
        if !t.schema.is_empty() {
            o.push_str(&format!("Schema:\n{}\n\n", t.schema));
        }
        o.push_str(&format!("Raw Template:\n{}\n", t.template));
    }
    Ok(o)
}

/// `templated-policy list`: the names, sorted.
pub(crate) fn templated_policy_list(m: &BTreeMap<String, AclTemplatedPolicyResponse>, f: Format) -> Result<String> {
    if f == Format::Json {
        return go_json(m);
    }
    let mut names: Vec<&str> = m.values().map(|t| t.template_name.as_str()).collect();
    names.sort_unstable();
    Ok(names.iter().map(|n| format!("{n}\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times() {
        assert_eq!(go_time("2026-12-05T16:00:00.123456789Z"), "2026-12-05 16:00:00.123456789 +0000 UTC");
        assert_eq!(go_time("2026-12-05T16:00:00.120Z"), "2026-12-05 16:00:00.12 +0000 UTC");
        assert_eq!(go_time("2026-12-05T16:00:00Z"), "2026-12-05 16:00:00 +0000 UTC");
        assert_eq!(go_time("2026-12-05T17:00:00.5+01:00"), "2026-12-05 17:00:00.5 +0100 +0100");
        assert_eq!(go_time("0001-01-01T00:00:00Z"), "0001-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time("junk"), "junk");
    }

    fn sample_token() -> AclToken {
        AclToken {
            accessor_id: "6a1253d2-1785-24fd-91c2-f8e78c745511".into(),
            secret_id: "45a3bd52-07c7-47a4-52fd-0745e0cfe967".into(),
            description: "web token".into(),
            policies: vec![AclLink { id: "165d4317-e379-f732-ce70-86278c4558f7".into(), name: "p1".into() }],
            service_identities: vec![AclServiceIdentity {
                service_name: "web".into(),
                datacenters: vec!["dc1".into()],
            }],
            node_identities: vec![AclNodeIdentity { node_name: "n".into(), datacenter: "dc1".into() }],
            create_time: "2026-12-05T16:00:00.5Z".into(),
            hash: Some("AAEC/w==".into()),
            create_index: 7,
            modify_index: 8,
            ..AclToken::default()
        }
    }

    #[test]
    fn token_pretty_layout() {
        let text = token(&sample_token(), Format::Pretty, true).expect("fmt");
        assert_eq!(
            text,
            "AccessorID:       6a1253d2-1785-24fd-91c2-f8e78c745511\n\
             SecretID:         45a3bd52-07c7-47a4-52fd-0745e0cfe967\n\
             Description:      web token\n\
             Local:            false\n\
             Create Time:      2026-12-05 16:00:00.5 +0000 UTC\n\
             Hash:             000102ff\n\
             Create Index:     7\n\
             Modify Index:     8\n\
             Policies:\n   165d4317-e379-f732-ce70-86278c4558f7 - p1\n\
             Service Identities:\n   web (Datacenters: dc1)\n\
             Node Identities:\n   n (Datacenter: dc1)\n"
        );
    }

    #[test]
    fn token_json_is_go_marshal_indent() {
        let mut t = sample_token();
        t.description = "<a&b>".into();
        let text = token(&t, Format::Json, false).expect("json");
        assert!(text.starts_with("{\n    \"CreateIndex\": 7,\n    \"ModifyIndex\": 8,\n    \"AccessorID\""), "{text}");
        assert!(text.contains("\"Description\": \"\\u003ca\\u0026b\\u003e\""), "{text}");
        assert!(text.contains("\"Policies\": [\n        {\n            \"ID\""), "{text}");
        assert!(text.ends_with("\"Hash\": \"AAEC/w==\"\n}"), "{text}");
    }

    #[test]
    fn policy_and_role_layouts() {
        let p = AclPolicy {
            id: "i".into(),
            name: "n".into(),
            rules: "key \"\" { policy = \"read\" }".into(),
            datacenters: Some(vec!["dc1".into(), "dc2".into()]),
            ..AclPolicy::default()
        };
        assert_eq!(
            policy(&p, Format::Pretty, false).expect("fmt"),
            "ID:           i\nName:         n\nDescription:  \nDatacenters:  dc1, dc2\nRules:\nkey \"\" { policy = \"read\" }"
        );
        let r = AclRole {
            id: "r".into(),
            name: "rn".into(),
            policies: vec![AclLink { id: "i".into(), name: "n".into() }],
            ..AclRole::default()
        };
        assert_eq!(
            role(&r, Format::Pretty, false).expect("fmt"),
            "ID:           r\nName:         rn\nDescription:  \nPolicies:\n   i - n\n"
        );
        assert_eq!(
            role_list(&[r], Format::Pretty, false).expect("fmt"),
            "rn:\n   ID:           r\n   Description:  \n   Policies:\n      i - n\n"
        );
        let b = AclBindingRule {
            id: "b".into(),
            auth_method: "m".into(),
            bind_type: "service".into(),
            ..Default::default()
        };
        assert_eq!(
            binding_rule(&b, Format::Pretty, false).expect("fmt"),
            "ID:           b\nAuthMethod:   m\nDescription:  \nBindType:     service\nBindName:     \nSelector:     \n"
        );
        assert!(Format::parse("yaml").is_err());
    }
}
