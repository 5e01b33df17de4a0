//! In-process cluster tests: several agents in this process on 127.0.0.1 with free ports.
//! Files are named by area with a numeric prefix (t10 KV … t60 snapshots, t70 catalog, t80 sessions, t81 prepared queries,
//! t90 agent services and checks, t95 DNS, t96 network coordinates, t98 TLS, t99 ACL objects).

mod agent_api;
mod t10_kv;
mod t12_txn_catalog;
mod t20_blocking;
mod t30_cluster;
mod t40_failover;
mod t50_restart;
mod t60_snapshot;
mod t70_catalog;
mod t71_filter;
mod t72_agent_cache;
mod t73_service_ext;
mod t74_content_hash;
mod t74_sidecar;
mod t80_session;
mod t81_prepared_query;
mod t90_agent;
mod t91_checks;
mod t91_service_quality;
mod t92_conn_limits;
mod t92_rpc_bounds;
mod t93_connect_ca;
mod t94_docker_checks;
mod t95_dns;
mod t95_metrics;
mod t96_coordinate;
mod t97_gossip;
mod t98_tls;
mod t98_ui_client;
mod t98_ui_endpoints;
mod t99_acl_enforcement;
mod t99_acl_objects;
mod t99_debug_pprof;
mod t99_jwks_auth;
mod t99_kube_auth;
