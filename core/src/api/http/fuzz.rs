//! The decoding half of each endpoint family, callable without a server: what the fuzz targets
//! (the top-level `fuzzing` module) feed outside bytes to. Each function runs the same parsers
//! the handlers run on a query string or body, and ignores the outcome (the contract under test
//! is "an error, never a panic").

use std::time::Duration;

use super::query::{token, QueryParams, ReadParams};
use crate::Error;

/// The datacenter and node the decoders are given (any fixed names do).
const DC: &str = "dc1";
const NODE: &str = "node1";

/// Splits fuzz input into a query string and a body at the first newline (no newline: all
/// query). Invalid UTF-8 in the query part is replaced, as an HTTP server would refuse it
/// before any handler runs.
fn split(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => (String::from_utf8_lossy(data).into_owned(), &[]),
    }
}

/// Every query parameter any endpoint family reads: blocking reads (`index`, `wait`,
/// consistency), `dc`, the token, catalog filters (`node-meta`, `tag`, `near`, `segment`),
/// agent maintenance (`enable`, `reason`) and event filters (`node`, `service`, `tag` regexes).
pub(crate) fn query(data: &[u8]) {
    let q = QueryParams::from_query(&String::from_utf8_lossy(data));
    let _ = ReadParams::parse(&q, Duration::from_secs(300), Duration::from_secs(600));
    let _ = q.consistency();
    let _ = q.check_dc(DC);
    let _ = token(&q, &axum::http::HeaderMap::new());
    let _ = q.pretty();
    let _ = super::catalog::node_meta_filter(&q);
    let _ = q.all("tag").count();
    let _ = super::coordinate::segment_filter(&q);
    let _ = super::agent_local::maintenance_query(&q);
    let _ = super::event::fire_filters(&q);
    let _ = q.u64("index", "index");
}

/// KV: `<key>?<query>` — the key's validation and the GET/PUT/DELETE query parameters (the
/// value itself is stored as given).
pub(crate) fn kv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (key, query) = text.split_once('?').unwrap_or((&text, ""));
    let _ = crate::state::kv::validate_key(key);
    let q = QueryParams::from_query(query);
    let _ = ReadParams::parse(&q, Duration::from_secs(300), Duration::from_secs(600));
    let _ = super::kv::put_params(&q);
    let _ = super::kv::delete_params(&q);
    let _ = q.get("separator");
}

/// `PUT /v1/txn` body.
pub(crate) fn txn(data: &[u8]) {
    let _ = super::txn::parse_ops(data, super::Limits::default().kv_max_value_size, "dc1");
}

/// `PUT /v1/catalog/register` and `/deregister` bodies (the first byte picks which).
pub(crate) fn catalog(data: &[u8]) {
    match data.split_first() {
        Some((b'd', body)) => {
            let _ = super::catalog::parse_deregister(body);
        }
        Some((_, body)) => {
            let _ = crate::wire::catalog::parse_register(body, DC);
        }
        None => {}
    }
}

/// `PUT /v1/agent/service/register` body.
pub(crate) fn agent_service(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = crate::local::def::parse_service_registration(&v);
    }
}

/// `PUT /v1/agent/check/register` body.
pub(crate) fn agent_check(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = crate::local::def::parse_check_registration(&v);
    }
}

/// `PUT /v1/session/create` body.
pub(crate) fn session(data: &[u8]) {
    let _ = super::session::parse_create(data, NODE);
}

/// ACL bodies: the first byte picks token (`t`), policy (`p`), role (`r`) or auth method
/// (anything else); the rest is the body.
pub(crate) fn acl(data: &[u8]) {
    let Some((kind, body)) = data.split_first() else { return };
    let what = match kind {
        b't' => "Token",
        b'p' => "Policy",
        b'r' => "Role",
        _ => "AuthMethod",
    };
    let Ok(map) = super::acl::decode_object(body, what) else { return };
    let _: Result<(), Error> = (|| {
        match kind {
            b't' => {
                let o = crate::wire::body::Obj::new(&map, "");
                let (token, ttl, expiration) = super::acl::parse_token_body(&o)?;
                super::acl::validate_token_id(&token.accessor_id, "AccessorID")?;
                super::acl::validate_token_id(&token.secret_id, "SecretID")?;
                super::acl::creation_expiry(ttl, expiration, 1_700_000_000_000)?;
            }
            b'p' => {
                super::acl::parse_policy(&map)?;
            }
            b'r' => {
                super::acl::parse_role(&map)?;
            }
            _ => {
                super::acl::parse_auth_method(&map)?;
            }
        }
        Ok(())
    })();
}

/// `PUT /v1/coordinate/update`, `/v1/operator/keyring` and `PUT /v1/agent/token/:kind` bodies,
/// and `PUT /v1/event/fire/:name` (`<name>?<query>` then the payload): the first byte picks
/// coordinate (`c`), keyring (`k`), agent token (`t`) or event (anything else).
pub(crate) fn other(data: &[u8]) {
    let Some((kind, body)) = data.split_first() else { return };
    match kind {
        b'c' => {
            let _ = super::coordinate::parse_update(body);
        }
        b'k' => {
            if let Ok(key) = super::keyring::parse_key_body(body) {
                let _ = crate::membership::gossip::keyring::decode_key(&key);
            }
        }
        b't' => {
            let _ = super::agent::parse_agent_token(body);
        }
        _ => {
            let (line, _payload) = split(body);
            let (name, query) = line.split_once('?').unwrap_or((&line, ""));
            let _ = super::event::check_name(name);
            let _ = super::event::fire_filters(&QueryParams::from_query(query));
        }
    }
}
