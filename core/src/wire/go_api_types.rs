//! consul/api's Go types (v1.22.0, Consul 1.16.0) as [`Schema`]s: `api.AgentService` and
//! everything it nests, field for field. They let us hash an answer as Consul does
//! (`ContentHash`) and read a registration's `Proxy` block under the field names Go would
//! decode it into. Field order does not matter to either, but every exported field is listed,
//! including those the JSON omits when zero.

use super::go_hash::{FieldSchema as F, HashTag, Schema, StructSchema};

/// `api.AgentWeights`.
static AGENT_WEIGHTS: StructSchema =
    StructSchema { name: "AgentWeights", fields: &[F::new("Passing", Schema::Int), F::new("Warning", Schema::Int)] };

/// `api.ServiceAddress`.
static SERVICE_ADDRESS: StructSchema =
    StructSchema { name: "ServiceAddress", fields: &[F::new("Address", Schema::String), F::new("Port", Schema::Int)] };

/// `api.MeshGatewayConfig`.
static MESH_GATEWAY_CONFIG: StructSchema =
    StructSchema { name: "MeshGatewayConfig", fields: &[F::new("Mode", Schema::String)] };

/// `api.TransparentProxyConfig`.
static TRANSPARENT_PROXY_CONFIG: StructSchema = StructSchema {
    name: "TransparentProxyConfig",
    fields: &[F::new("OutboundListenerPort", Schema::Int), F::new("DialedDirectly", Schema::Bool)],
};

/// `api.ExposePath`.
static EXPOSE_PATH: StructSchema = StructSchema {
    name: "ExposePath",
    fields: &[
        F::new("ListenerPort", Schema::Int),
        F::new("Path", Schema::String),
        F::new("LocalPathPort", Schema::Int),
        F::new("Protocol", Schema::String),
        F::new("ParsedFromCheck", Schema::Bool),
    ],
};

/// `api.ExposeConfig`.
static EXPOSE_CONFIG: StructSchema = StructSchema {
    name: "ExposeConfig",
    fields: &[F::new("Checks", Schema::Bool), F::new("Paths", Schema::Slice(&Schema::Struct(&EXPOSE_PATH)))],
};

/// `api.AccessLogsConfig`.
static ACCESS_LOGS_CONFIG: StructSchema = StructSchema {
    name: "AccessLogsConfig",
    fields: &[
        F::new("Enabled", Schema::Bool),
        F::new("DisableListenerLogs", Schema::Bool),
        F::new("Type", Schema::String),
        F::new("Path", Schema::String),
        F::new("JSONFormat", Schema::String),
        F::new("TextFormat", Schema::String),
    ],
};

/// `api.EnvoyExtension` (Consul's `ToAPI` never copies a proxy's extensions into the answer,
/// so this is always an empty list there; modelled for completeness).
static ENVOY_EXTENSION: StructSchema = StructSchema {
    name: "EnvoyExtension",
    fields: &[
        F::new("Name", Schema::String),
        F::new("Required", Schema::Bool),
        F::new("Arguments", Schema::StringMap(&Schema::Any)),
        F::new("ConsulVersion", Schema::String),
        F::new("EnvoyVersion", Schema::String),
    ],
};

/// `api.Upstream`.
static UPSTREAM: StructSchema = StructSchema {
    name: "Upstream",
    fields: &[
        F::new("DestinationType", Schema::String),
        F::new("DestinationPartition", Schema::String),
        F::new("DestinationNamespace", Schema::String),
        F::new("DestinationPeer", Schema::String),
        F::new("DestinationName", Schema::String),
        F::new("Datacenter", Schema::String),
        F::new("LocalBindAddress", Schema::String),
        F::new("LocalBindPort", Schema::Int),
        F::new("LocalBindSocketPath", Schema::String),
        F::new("LocalBindSocketMode", Schema::String),
        F::new("Config", Schema::StringMap(&Schema::Any)),
        F::new("MeshGateway", Schema::Struct(&MESH_GATEWAY_CONFIG)),
        F::new("CentrallyConfigured", Schema::Bool),
    ],
};

/// `api.AgentServiceConnectProxyConfig`.
pub(crate) static PROXY_CONFIG: StructSchema = StructSchema {
    name: "AgentServiceConnectProxyConfig",
    fields: &[
        F::new("EnvoyExtensions", Schema::Slice(&Schema::Struct(&ENVOY_EXTENSION))),
        F::new("DestinationServiceName", Schema::String),
        F::new("DestinationServiceID", Schema::String),
        F::new("LocalServiceAddress", Schema::String),
        F::new("LocalServicePort", Schema::Int),
        F::new("LocalServiceSocketPath", Schema::String),
        F::new("Mode", Schema::String),
        F::new("TransparentProxy", Schema::Ptr(&Schema::Struct(&TRANSPARENT_PROXY_CONFIG))),
        F::new("Config", Schema::StringMap(&Schema::Any)),
        F::new("Upstreams", Schema::Slice(&Schema::Struct(&UPSTREAM))),
        F::new("MeshGateway", Schema::Struct(&MESH_GATEWAY_CONFIG)),
        F::new("Expose", Schema::Struct(&EXPOSE_CONFIG)),
        F::new("AccessLogs", Schema::Ptr(&Schema::Struct(&ACCESS_LOGS_CONFIG))),
    ],
};

/// `api.AgentServiceConnect`. `SidecarService` (a `*AgentServiceRegistration`) is never set in
/// an answer (Consul fills only `Native`), so it is modelled as the nil pointer it always is.
pub(crate) static AGENT_SERVICE_CONNECT: StructSchema = StructSchema {
    name: "AgentServiceConnect",
    fields: &[F::new("Native", Schema::Bool), F::new("SidecarService", Schema::Ptr(&Schema::Any))],
};

/// `api.Locality` (ignored by the hash, kept so the model is the whole struct).
static LOCALITY: StructSchema =
    StructSchema { name: "Locality", fields: &[F::new("Region", Schema::String), F::new("Zone", Schema::String)] };

/// `api.AgentService`.
pub(crate) static AGENT_SERVICE: StructSchema = StructSchema {
    name: "AgentService",
    fields: &[
        F::new("Kind", Schema::String),
        F::new("ID", Schema::String),
        F::new("Service", Schema::String),
        F::new("Tags", Schema::Slice(&Schema::String)),
        F::new("Meta", Schema::StringMap(&Schema::String)),
        F::new("Port", Schema::Int),
        F::new("Address", Schema::String),
        F::new("SocketPath", Schema::String),
        F::new("TaggedAddresses", Schema::StringMap(&Schema::Struct(&SERVICE_ADDRESS))),
        F::new("Weights", Schema::Struct(&AGENT_WEIGHTS)),
        F::new("EnableTagOverride", Schema::Bool),
        F::new("CreateIndex", Schema::Uint64),
        F::new("ModifyIndex", Schema::Uint64),
        F::new("ContentHash", Schema::String),
        F::new("Proxy", Schema::Ptr(&Schema::Struct(&PROXY_CONFIG))),
        F::new("Connect", Schema::Ptr(&Schema::Struct(&AGENT_SERVICE_CONNECT))),
        F::new("PeerName", Schema::String),
        F::tagged("Namespace", Schema::String, HashTag::Ignore),
        F::tagged("Partition", Schema::String, HashTag::Ignore),
        F::tagged("Datacenter", Schema::String, HashTag::Ignore),
        F::tagged("Locality", Schema::Ptr(&Schema::Struct(&LOCALITY)), HashTag::Ignore),
    ],
};
