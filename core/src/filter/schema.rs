//! What a filter may select on each endpoint: the fields of the JSON the endpoint answers with,
//! named exactly as in that JSON. `docs/filter-selectors.md` is generated from [`ENDPOINTS`].

/// The type of one JSON field, which decides the operators a selector ending there accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A string: `==`, `!=`, `in`/`contains` (substring), `matches`, `is empty`.
    String,
    /// An integer: `==`, `!=` (the value is read as a number).
    Int,
    /// A boolean: `==`, `!=` (the value is read as `true`/`false`).
    Bool,
    /// A list of strings: `contains`/`in` (membership), `is empty`.
    StringList,
    /// A string-keyed map whose values have the given type: `contains`/`in` (key membership),
    /// `is empty`; `Map.key` or `Map["key"]` selects a value.
    Map(&'static Field),
    /// An object with fixed fields; only its fields can be compared.
    Object(&'static [(&'static str, Field)]),
    /// A list of objects: `is empty`; a selector through it (`Checks.Status`) matches when
    /// any element matches.
    ObjectList(&'static [(&'static str, Field)]),
}

impl Field {
    /// The type with its article, for error messages ("an integer", "a list of strings").
    pub fn with_article(&self) -> String {
        let d = self.describe();
        let article = if d.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("{article} {d}")
    }

    /// How the type reads in the generated docs.
    pub fn describe(&self) -> &'static str {
        match self {
            Field::String => "string",
            Field::Int => "integer",
            Field::Bool => "boolean",
            Field::StringList => "list of strings",
            Field::Map(Field::String) => "map of strings",
            Field::Map(_) => "map of objects",
            Field::Object(_) => "object",
            Field::ObjectList(_) => "list of objects",
        }
    }
}

/// The fields of one endpoint's items.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The item type, as Consul names it (`Node`, `HealthCheck`, …).
    pub name: &'static str,
    /// The item's fields.
    pub fields: &'static [(&'static str, Field)],
}

impl Schema {
    /// Every selector a filter may use, with its type, depth first (`Node`, `Node.ID`, …).
    /// Map keys appear as `<key>`.
    pub fn selectors(&self) -> Vec<(String, Field)> {
        fn walk(prefix: &str, fields: &[(&str, Field)], out: &mut Vec<(String, Field)>) {
            for (name, f) in fields {
                let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
                out.push((path.clone(), *f));
                walk_field(&path, f, out);
            }
        }
        fn walk_field(path: &str, f: &Field, out: &mut Vec<(String, Field)>) {
            match f {
                Field::Object(sub) | Field::ObjectList(sub) => walk(path, sub, out),
                Field::Map(inner @ (Field::Object(_) | Field::Map(_))) => {
                    let p = format!("{path}.<key>");
                    out.push((p.clone(), **inner));
                    walk_field(&p, inner, out);
                }
                Field::Map(inner) => out.push((format!("{path}.<key>"), **inner)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk("", self.fields, &mut out);
        out
    }
}

const STRING_MAP: Field = Field::Map(&Field::String);
const WEIGHTS: Field = Field::Object(&[("Passing", Field::Int), ("Warning", Field::Int)]);
const SERVICE_ADDRESS: Field = Field::Object(&[("Address", Field::String), ("Port", Field::Int)]);
const LOCALITY: Field = Field::Object(&[("Region", Field::String), ("Zone", Field::String)]);
/// The selectable part of a proxy configuration (`ConnectProxyConfig`).
const PROXY: Field = Field::Object(&[
    ("DestinationServiceName", Field::String),
    ("DestinationServiceID", Field::String),
    ("LocalServiceAddress", Field::String),
    ("LocalServicePort", Field::Int),
    ("LocalServiceSocketPath", Field::String),
    ("Mode", Field::String),
]);
const CONNECT: Field = Field::Object(&[("Native", Field::Bool)]);

/// `Node` (`/v1/catalog/nodes`, and `Node` in other shapes).
pub const NODE: Schema = Schema {
    name: "Node",
    fields: &[
        ("ID", Field::String),
        ("Node", Field::String),
        ("Address", Field::String),
        ("Datacenter", Field::String),
        ("TaggedAddresses", STRING_MAP),
        ("Meta", STRING_MAP),
        ("Locality", LOCALITY),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `AgentService` (`/v1/agent/services`, `/v1/catalog/node/:node`'s services).
pub const AGENT_SERVICE: Schema = Schema {
    name: "AgentService",
    fields: &[
        ("Kind", Field::String),
        ("ID", Field::String),
        ("Service", Field::String),
        ("Tags", Field::StringList),
        ("Meta", STRING_MAP),
        ("Port", Field::Int),
        ("Address", Field::String),
        ("TaggedAddresses", Field::Map(&SERVICE_ADDRESS)),
        ("Weights", WEIGHTS),
        ("EnableTagOverride", Field::Bool),
        ("Datacenter", Field::String),
        ("SocketPath", Field::String),
        ("Proxy", PROXY),
        ("Connect", CONNECT),
        ("Locality", LOCALITY),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `HealthCheck` (`/v1/health/node|checks|state`, `/v1/agent/checks`).
pub const HEALTH_CHECK: Schema = Schema {
    name: "HealthCheck",
    fields: &[
        ("Node", Field::String),
        ("CheckID", Field::String),
        ("Name", Field::String),
        ("Status", Field::String),
        ("Notes", Field::String),
        ("Output", Field::String),
        ("ServiceID", Field::String),
        ("ServiceName", Field::String),
        ("ServiceTags", Field::StringList),
        ("Type", Field::String),
        ("Interval", Field::String),
        ("Timeout", Field::String),
        ("ExposedPort", Field::Int),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `CatalogService` / `ServiceNode` (`/v1/catalog/service/:service`, and each instance behind
/// `/v1/catalog/services`).
pub const CATALOG_SERVICE: Schema = Schema {
    name: "CatalogService",
    fields: &[
        ("ID", Field::String),
        ("Node", Field::String),
        ("Address", Field::String),
        ("Datacenter", Field::String),
        ("TaggedAddresses", STRING_MAP),
        ("NodeMeta", STRING_MAP),
        ("ServiceKind", Field::String),
        ("ServiceID", Field::String),
        ("ServiceName", Field::String),
        ("ServiceTags", Field::StringList),
        ("ServiceAddress", Field::String),
        ("ServiceTaggedAddresses", Field::Map(&SERVICE_ADDRESS)),
        ("ServiceMeta", STRING_MAP),
        ("ServicePort", Field::Int),
        ("ServiceWeights", WEIGHTS),
        ("ServiceEnableTagOverride", Field::Bool),
        ("ServiceSocketPath", Field::String),
        ("ServiceProxy", PROXY),
        ("ServiceConnect", CONNECT),
        ("ServiceLocality", LOCALITY),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `ServiceEntry` / `CheckServiceNode` (`/v1/health/service/:service`).
pub const SERVICE_ENTRY: Schema = Schema {
    name: "ServiceEntry",
    fields: &[
        ("Node", Field::Object(NODE.fields)),
        ("Service", Field::Object(AGENT_SERVICE.fields)),
        ("Checks", Field::ObjectList(HEALTH_CHECK.fields)),
    ],
};

/// `NodeInfo` (`/v1/internal/ui/nodes`): a node with its services and checks.
pub const NODE_INFO: Schema = Schema {
    name: "NodeInfo",
    fields: &[
        ("ID", Field::String),
        ("Node", Field::String),
        ("Address", Field::String),
        ("Datacenter", Field::String),
        ("TaggedAddresses", STRING_MAP),
        ("Meta", STRING_MAP),
        ("Services", Field::ObjectList(AGENT_SERVICE.fields)),
        ("Checks", Field::ObjectList(HEALTH_CHECK.fields)),
    ],
};

/// `AgentMember` (`/v1/agent/members`).
pub const MEMBER: Schema = Schema {
    name: "AgentMember",
    fields: &[
        ("Name", Field::String),
        ("Addr", Field::String),
        ("Port", Field::Int),
        ("Tags", STRING_MAP),
        ("Status", Field::Int),
        ("ProtocolMin", Field::Int),
        ("ProtocolMax", Field::Int),
        ("ProtocolCur", Field::Int),
        ("DelegateMin", Field::Int),
        ("DelegateMax", Field::Int),
        ("DelegateCur", Field::Int),
    ],
};

/// `SessionEntry` (`/v1/session/list|node|info`).
pub const SESSION: Schema = Schema {
    name: "SessionEntry",
    fields: &[
        ("ID", Field::String),
        ("Name", Field::String),
        ("Node", Field::String),
        ("LockDelay", Field::Int),
        ("Behavior", Field::String),
        ("TTL", Field::String),
        ("NodeChecks", Field::StringList),
        ("ServiceChecks", Field::ObjectList(&[("ID", Field::String), ("Namespace", Field::String)])),
        ("Checks", Field::StringList),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `KVPair` (`/v1/kv/:key?recurse`, a consul-rs extension: Consul's KV endpoint has no filter).
pub const KV_PAIR: Schema = Schema {
    name: "KVPair",
    fields: &[
        ("Key", Field::String),
        ("Flags", Field::Int),
        ("Session", Field::String),
        ("LockIndex", Field::Int),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

const ACL_LINKS: Field = Field::ObjectList(&[("ID", Field::String), ("Name", Field::String)]);
const SERVICE_IDENTITIES: Field =
    Field::ObjectList(&[("ServiceName", Field::String), ("Datacenters", Field::StringList)]);
const NODE_IDENTITIES: Field = Field::ObjectList(&[("NodeName", Field::String), ("Datacenter", Field::String)]);
const TEMPLATED_POLICIES: Field = Field::ObjectList(&[
    ("TemplateName", Field::String),
    ("TemplateVariables", Field::Object(&[("Name", Field::String)])),
    ("Datacenters", Field::StringList),
]);

/// `ACLTokenListStub` (`/v1/acl/tokens`).
pub const ACL_TOKEN: Schema = Schema {
    name: "ACLTokenListStub",
    fields: &[
        ("AccessorID", Field::String),
        ("SecretID", Field::String),
        ("Description", Field::String),
        ("Policies", ACL_LINKS),
        ("Roles", ACL_LINKS),
        ("ServiceIdentities", SERVICE_IDENTITIES),
        ("NodeIdentities", NODE_IDENTITIES),
        ("TemplatedPolicies", TEMPLATED_POLICIES),
        ("Local", Field::Bool),
        ("AuthMethod", Field::String),
        ("ExpirationTime", Field::String),
        ("CreateTime", Field::String),
        ("Hash", Field::String),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `ACLPolicyListStub` (`/v1/acl/policies`).
pub const ACL_POLICY: Schema = Schema {
    name: "ACLPolicyListStub",
    fields: &[
        ("ID", Field::String),
        ("Name", Field::String),
        ("Description", Field::String),
        ("Datacenters", Field::StringList),
        ("Hash", Field::String),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `ACLRole` (`/v1/acl/roles`).
pub const ACL_ROLE: Schema = Schema {
    name: "ACLRole",
    fields: &[
        ("ID", Field::String),
        ("Name", Field::String),
        ("Description", Field::String),
        ("Policies", ACL_LINKS),
        ("ServiceIdentities", SERVICE_IDENTITIES),
        ("NodeIdentities", NODE_IDENTITIES),
        ("TemplatedPolicies", TEMPLATED_POLICIES),
        ("Hash", Field::String),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `ACLAuthMethodListStub` (`/v1/acl/auth-methods`).
pub const ACL_AUTH_METHOD: Schema = Schema {
    name: "ACLAuthMethodListStub",
    fields: &[
        ("Name", Field::String),
        ("Type", Field::String),
        ("DisplayName", Field::String),
        ("Description", Field::String),
        ("MaxTokenTTL", Field::String),
        ("TokenLocality", Field::String),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `ACLBindingRule` (`/v1/acl/binding-rules`).
pub const ACL_BINDING_RULE: Schema = Schema {
    name: "ACLBindingRule",
    fields: &[
        ("ID", Field::String),
        ("Description", Field::String),
        ("AuthMethod", Field::String),
        ("Selector", Field::String),
        ("BindType", Field::String),
        ("BindName", Field::String),
        ("BindVars", Field::Object(&[("Name", Field::String)])),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// `PreparedQuery` (`/v1/query`).
pub const PREPARED_QUERY: Schema = Schema {
    name: "PreparedQuery",
    fields: &[
        ("ID", Field::String),
        ("Name", Field::String),
        ("Session", Field::String),
        ("Token", Field::String),
        (
            "Template",
            Field::Object(&[("Type", Field::String), ("Regexp", Field::String), ("RemoveEmptyTags", Field::Bool)]),
        ),
        (
            "Service",
            Field::Object(&[
                ("Service", Field::String),
                ("SamenessGroup", Field::String),
                (
                    "Failover",
                    Field::Object(&[
                        ("NearestN", Field::Int),
                        ("Datacenters", Field::StringList),
                        ("Targets", Field::ObjectList(&[("Peer", Field::String), ("Datacenter", Field::String)])),
                    ]),
                ),
                ("OnlyPassing", Field::Bool),
                ("IgnoreCheckIDs", Field::StringList),
                ("Near", Field::String),
                ("Tags", Field::StringList),
                ("NodeMeta", STRING_MAP),
                ("ServiceMeta", STRING_MAP),
                ("Peer", Field::String),
                ("Connect", Field::Bool),
            ]),
        ),
        ("DNS", Field::Object(&[("TTL", Field::String)])),
        ("CreateIndex", Field::Int),
        ("ModifyIndex", Field::Int),
    ],
};

/// Every endpoint that takes `?filter=`, with the schema of the items it filters.
pub const ENDPOINTS: &[(&str, &Schema)] = &[
    ("GET /v1/catalog/nodes", &NODE),
    ("GET /v1/catalog/services", &CATALOG_SERVICE),
    ("GET /v1/catalog/service/:service", &CATALOG_SERVICE),
    ("GET /v1/catalog/node/:node", &AGENT_SERVICE),
    ("GET /v1/catalog/node-services/:node", &AGENT_SERVICE),
    ("GET /v1/health/node/:node", &HEALTH_CHECK),
    ("GET /v1/health/checks/:service", &HEALTH_CHECK),
    ("GET /v1/health/service/:service", &SERVICE_ENTRY),
    ("GET /v1/health/state/:state", &HEALTH_CHECK),
    ("GET /v1/agent/services", &AGENT_SERVICE),
    ("GET /v1/agent/checks", &HEALTH_CHECK),
    ("GET /v1/agent/members", &MEMBER),
    ("GET /v1/kv/:key?recurse", &KV_PAIR),
    ("GET /v1/session/list", &SESSION),
    ("GET /v1/session/node/:node", &SESSION),
    ("GET /v1/session/info/:id", &SESSION),
    ("GET /v1/acl/tokens", &ACL_TOKEN),
    ("GET /v1/acl/policies", &ACL_POLICY),
    ("GET /v1/acl/roles", &ACL_ROLE),
    ("GET /v1/acl/auth-methods", &ACL_AUTH_METHOD),
    ("GET /v1/acl/binding-rules", &ACL_BINDING_RULE),
    ("GET /v1/query", &PREPARED_QUERY),
    ("GET /v1/internal/ui/services", &SERVICE_ENTRY),
    ("GET /v1/internal/ui/nodes", &NODE_INFO),
];
