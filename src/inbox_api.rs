//! The signed-in user's inbox: server functions at fixed paths (JSON
//! bodies), used by `/home` and by any HTTP client.
//!
//! - `POST /api/inbox/list` `{before?, limit?}`: one page, newest first.
//! - `POST /api/inbox/unread` `{}`: the unread count.
//! - `POST /api/inbox/read` `{ids}`: marks these read.
//! - `POST /api/inbox/read-all` `{upto?}`: marks everything (up to `upto`)
//!   read.
//!
//! A change of read state is pushed to the user's streams as an `inbox`
//! event. Errors: 400 bad input, 401 signed out, 404 ids the user cannot
//! see (nothing is changed then), 503 database unavailable.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::error::AppError;
use crate::sse::{InboxId, InboxPage, InboxSummary};

/// Largest page.
pub const PAGE_MAX: u32 = 100;
/// The page size when none is asked for.
pub const PAGE_DEFAULT: u32 = 20;
/// Ids per "mark read" request, at most.
pub const MARK_MAX: usize = 500;

#[server(prefix = "/api", endpoint = "inbox/list", input = Json)]
pub async fn list_inbox(
    #[server(default)] before: Option<InboxId>,
    #[server(default)] limit: Option<u32>,
) -> Result<InboxPage, AppError> {
    let (inbox, user) = server::context()?;
    let limit = limit.unwrap_or(PAGE_DEFAULT);
    if limit == 0 || limit > PAGE_MAX {
        return Err(AppError::bad_request(
            "bad_limit",
            format!("limit must be 1 to {PAGE_MAX}; it was {limit}"),
        ));
    }
    if let Some(before) = before {
        server::check_id(before)?;
    }
    inbox
        .page(&user, before, limit as usize)
        .await
        .map_err(server::error)
}

#[server(prefix = "/api", endpoint = "inbox/unread", input = Json)]
pub async fn unread_count() -> Result<InboxSummary, AppError> {
    let (inbox, user) = server::context()?;
    let unread = inbox.unread_count(&user).await.map_err(server::error)?;
    Ok(InboxSummary {
        unread,
        ..InboxSummary::default()
    })
}

#[server(prefix = "/api", endpoint = "inbox/read", input = Json)]
pub async fn mark_read(ids: Vec<InboxId>) -> Result<InboxSummary, AppError> {
    let (inbox, user) = server::context()?;
    if ids.is_empty() || ids.len() > MARK_MAX {
        return Err(AppError::bad_request(
            "bad_ids",
            format!("give 1 to {MARK_MAX} ids; there were {}", ids.len()),
        ));
    }
    let mut ids = ids;
    ids.sort_unstable();
    ids.dedup();
    for id in &ids {
        server::check_id(*id)?;
    }
    inbox.mark_read(&user, &ids).await.map_err(server::error)
}

#[server(prefix = "/api", endpoint = "inbox/read-all", input = Json)]
pub async fn mark_all_read(
    #[server(default)] upto: Option<InboxId>,
) -> Result<InboxSummary, AppError> {
    let (inbox, user) = server::context()?;
    if let Some(upto) = upto {
        server::check_id(upto)?;
    }
    inbox
        .mark_all_read(&user, upto)
        .await
        .map_err(server::error)
}

#[cfg(feature = "ssr")]
pub(crate) use server::error as server_error;

#[cfg(feature = "ssr")]
mod server {
    use leptos::prelude::use_context;

    use crate::error::{AppError, ErrorKind};
    use crate::sse::{Inbox, InboxError, InboxId, Notifier, UserId};

    pub(super) fn context() -> Result<(Inbox, UserId), AppError> {
        let user = crate::auth::api::server::require_user()?;
        let notifier = use_context::<Notifier>()
            .ok_or_else(|| AppError::internal("the notifier is not in the server's context"))?;
        let inbox = notifier.inbox().map_err(error)?.clone();
        Ok((inbox, UserId::new(user.id)))
    }

    pub(super) fn check_id(id: InboxId) -> Result<(), AppError> {
        if id.0 <= 0 {
            return Err(AppError::bad_request(
                "bad_ids",
                format!("{id} is not a notification id"),
            ));
        }
        Ok(())
    }

    pub(crate) fn error(e: InboxError) -> AppError {
        let message = e.to_string();
        match e {
            InboxError::UnknownIds(ids) => AppError::new(
                ErrorKind::NotFound,
                "unknown_notifications",
                format!("no notifications of yours have the ids {ids:?}; nothing was changed"),
            ),
            InboxError::Event(_) => AppError::bad_request("bad_event", message),
            InboxError::Store(_) | InboxError::Stopped => {
                tracing::error!(error = %message, "inbox request failed");
                AppError::new(
                    ErrorKind::Unavailable,
                    "inbox_unavailable",
                    "the inbox cannot be reached now; try again",
                )
                .retry_after(std::time::Duration::from_secs(2))
            }
            InboxError::NoInbox => AppError::internal(message),
        }
    }
}
