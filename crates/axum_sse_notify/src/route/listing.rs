//! `GET /api/sse/clients`: the connections (filtered) and the stats, as
//! far as the caller may see them.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::rejection::Rejection;
use super::{ListingScope, identity_of};
use crate::notifier::Notifier;
use crate::registry::ClientFilter;
use crate::target::{ClientId, Identity, SessionId};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientsQuery {
    user_id: Option<String>,
    session_id: Option<String>,
    /// Comma-separated.
    client_ids: Option<String>,
}

/// `GET /api/sse/clients`: the connections (filtered) and the stats.
pub(super) async fn clients(State(notifier): State<Notifier>, request: Request) -> Response {
    let identity = match identity_of(&request) {
        Ok(identity) => identity,
        Err(error) => return error.into_response(),
    };
    // Without a scope from the app, a caller sees only their own clients.
    let scope = request
        .extensions()
        .get::<Arc<ListingScope>>()
        .map(|s| (**s).clone())
        .unwrap_or_else(|| ListingScope::OwnClients(identity.user.clone()));
    match list_clients(&notifier, &request, &identity, scope) {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

fn list_clients(
    notifier: &Notifier,
    request: &Request,
    identity: &Identity,
    scope: ListingScope,
) -> Result<serde_json::Value, Rejection> {
    let Query(query): Query<ClientsQuery> = Query::try_from_uri(request.uri())
        .map_err(|e| Rejection::bad_request("bad_query", format!("cannot read the query: {e}")))?;
    let clients = match query.client_ids.as_deref() {
        None => None,
        Some(list) => {
            let mut ids = Vec::new();
            let mut seen = HashSet::new();
            for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let id = ClientId::parse(part).ok_or_else(|| {
                    Rejection::bad_request("bad_client_id", format!("{part:?} is not a client id"))
                })?;
                if seen.insert(id) {
                    ids.push(id);
                }
            }
            Some(ids)
        }
    };
    let mut filter = ClientFilter {
        user_or_name: query.user_id.filter(|u| !u.is_empty()),
        session: query
            .session_id
            .filter(|s| !s.is_empty())
            .map(SessionId::new),
        clients,
    };
    let registry = notifier.registry();
    match scope {
        // The clients listed are this process's; the figures, every
        // process's (with the bus's state and each process's share).
        ListingScope::Everything => Ok(serde_json::json!({
            "clients": registry.clients(&filter),
            "stats": notifier.stats(),
            "bus": notifier.bus_status(),
        })),
        ListingScope::OwnClients(user) => {
            // Other users' clients are never listed; per-user counts are
            // left out of the stats, as they would name other users.
            let asked_for_other = filter
                .user_or_name
                .as_deref()
                .is_some_and(|asked| asked != user.as_str() && asked != identity.username);
            filter.user_or_name = Some(user.as_str().to_string());
            let clients = if asked_for_other {
                Vec::new()
            } else {
                registry.clients(&filter)
            };
            Ok(serde_json::json!({
                "clients": clients,
                "stats": notifier.stats().aggregate_only(),
                "bus": notifier.bus_status(),
            }))
        }
    }
}
