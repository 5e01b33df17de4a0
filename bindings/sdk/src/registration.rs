//! Self-registration: register a service with the local agent, keep its TTL checks passing from
//! a background task, re-register if the agent forgot it (restart), deregister on close.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::types::{CheckKind, ServiceRegistration};

/// A service registered by this process and kept alive.
#[derive(Debug)]
pub struct Registration {
    client: Client,
    service_id: String,
    check_ids: Vec<String>,
    stop: CancellationToken,
    /// Held by the keep-alive task for each round of TTL updates, and by [`Registration::close`]
    /// before it deregisters: a round already under way when `close` is called could otherwise
    /// see the deregistration as "the agent forgot us" and register the service again.
    round: Arc<tokio::sync::Mutex<()>>,
}

/// The check IDs the agent gives a registration's checks (Consul: `service:<id>` for a single
/// check, `service:<id>:<n>` counting from 1 when there are several).
pub fn check_ids(reg: &ServiceRegistration) -> Vec<String> {
    let id = reg.id.clone().unwrap_or_else(|| reg.name.clone());
    match reg.checks.len() {
        1 => vec![format!("service:{id}")],
        n => (1..=n).map(|i| format!("service:{id}:{i}")).collect(),
    }
}

impl Registration {
    /// Registers `reg` and, for each TTL check, starts a task that reports `pass` three times
    /// per TTL. Must be called on a tokio runtime.
    pub async fn start(client: &Client, reg: ServiceRegistration) -> Result<Registration> {
        let body = crate::client::registration_json(&reg)?;
        let ids = check_ids(&reg);
        let ttls: Vec<(String, Duration)> = reg
            .checks
            .iter()
            .zip(ids.iter())
            .filter_map(|(c, id)| match c.kind {
                CheckKind::Ttl { ttl } => Some((id.clone(), ttl)),
                _ => None,
            })
            .collect();
        let service_id = reg.id.clone().unwrap_or_else(|| reg.name.clone());
        Self::start_body(client, body, service_id, ids, ttls).await
    }

    /// Like [`Registration::start`], from Consul's own registration JSON (the body of
    /// `/v1/agent/service/register`: `Name`, `ID`, `Check`, `Checks`, … in any letter case).
    /// The service ID, check IDs and TTLs are read with the agent's own parser, so custom
    /// `CheckID`s are kept alive too.
    pub async fn start_json(client: &Client, body: Value) -> Result<Registration> {
        let def = consul_core::local::parse_service_registration(&body)
            .map_err(|e| Error::invalid("registration", e.to_string()))?;
        let ids: Vec<String> = def.checks.iter().map(|c| c.id.clone()).collect();
        let ttls = def
            .checks
            .iter()
            .filter_map(|c| match c.kind {
                consul_core::local::CheckKind::Ttl { ttl } => Some((c.id.clone(), ttl)),
                _ => None,
            })
            .collect();
        Self::start_body(client, body, def.service.id, ids, ttls).await
    }

    async fn start_body(
        client: &Client,
        body: Value,
        service_id: String,
        check_ids: Vec<String>,
        ttls: Vec<(String, Duration)>,
    ) -> Result<Registration> {
        client.service_register_json(&body).await?;
        let stop = CancellationToken::new();
        let round = Arc::new(tokio::sync::Mutex::new(()));
        if !ttls.is_empty() {
            // Report at once so the service is passing immediately, not after the first period.
            for (id, _) in &ttls {
                client.check_update_ttl(id, "pass", None).await?;
            }
            tokio::spawn(keep_alive(client.clone(), body, service_id.clone(), ttls, stop.clone(), round.clone()));
        }
        Ok(Registration { client: client.clone(), service_id, check_ids, stop, round })
    }

    /// The registered service ID.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// The IDs of the registration's checks.
    pub fn check_ids(&self) -> &[String] {
        &self.check_ids
    }

    /// Whether [`Registration::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Stops the keep-alive and deregisters the service. Idempotent.
    pub async fn close(&self) -> Result<()> {
        if self.stop.is_cancelled() {
            return Ok(());
        }
        self.stop.cancel();
        // Wait for a round of TTL updates under way (it ends early: `stop` is cancelled).
        let _round = self.round.lock().await;
        match self.client.service_deregister(&self.service_id).await {
            Err(e) if e.code == ErrorCode::NotFound => Ok(()),
            other => other,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Stop reporting: the TTL check then goes critical; bindings call `close` explicitly.
        self.stop.cancel();
    }
}

async fn keep_alive(
    client: Client,
    body: Value,
    service: String,
    ttls: Vec<(String, Duration)>,
    stop: CancellationToken,
    round: Arc<tokio::sync::Mutex<()>>,
) {
    let every =
        ttls.iter().map(|(_, t)| *t / 3).min().unwrap_or(Duration::from_secs(10)).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let _round = round.lock().await;
        for (id, _) in &ttls {
            if stop.is_cancelled() {
                return;
            }
            match client.check_update_ttl(id, "pass", None).await {
                Ok(()) => {}
                Err(e) if e.code == ErrorCode::NotFound => {
                    // The agent lost the registration (restarted without it): register again.
                    tracing::info!(%service, "service unknown to the agent; registering again");
                    if let Err(e) = client.service_register_json(&body).await {
                        tracing::debug!(error = %e, "re-registration failed; retrying");
                    }
                }
                Err(e) => tracing::debug!(error = %e, check = %id, "TTL update failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CheckDefinition;

    #[test]
    fn consul_check_ids() {
        let ttl = CheckDefinition {
            kind: CheckKind::Ttl { ttl: Duration::from_secs(10) },
            interval: None,
            timeout: None,
            deregister_critical_after: None,
        };
        let mut reg = ServiceRegistration { name: "web".into(), checks: vec![ttl.clone()], ..Default::default() };
        assert_eq!(check_ids(&reg), vec!["service:web"]);
        reg.id = Some("web-1".into());
        reg.checks.push(ttl);
        assert_eq!(check_ids(&reg), vec!["service:web-1:1", "service:web-1:2"]);
    }

    #[test]
    fn json_registration_ids_match_the_agent() {
        // start_json reads IDs with the agent's parser; they must agree with check_ids().
        let body = serde_json::json!({"Name": "web", "ID": "web-1", "Checks": [{"TTL": "10s"}, {"ttl": "5s"}]});
        let def = consul_core::local::parse_service_registration(&body).expect("parse");
        let ids: Vec<String> = def.checks.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, vec!["service:web-1:1", "service:web-1:2"]);
        assert_eq!(def.service.id, "web-1");
        assert!(consul_core::local::parse_service_registration(&serde_json::json!({"Port": 1})).is_err());
    }
}
