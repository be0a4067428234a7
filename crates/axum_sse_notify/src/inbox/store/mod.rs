//! The inbox's SQL: one set of statements for SQLite and Postgres, run on
//! sqlx's `Any` driver or on an app's typed pool (`engine!` below). Nothing here knows about streams; the writer and
//! the outbox publish what these functions stored.
//!
//! Rows: one `notifications` row per notification (however many users
//! receive it), one `inbox` row per (user, notification) for sends to
//! users, none per user for broadcasts until that user reads one; "mark
//! all read" keeps one watermark per user (`inbox_marks`).
//!
//! One file per job: `insert.rs` (what the writer and transactional sends
//! store, and the per-user cap, which evicts by sender), `read.rs` (unread
//! rows, pages, counts), `read_state.rs` (marking read), `claim.rs` (rows
//! to publish), `retention.rs` (the sweep).

mod insert;

use super::Audience;
use super::types::{InboxId, InboxItem, InboxPage};
use crate::event_id::{InboxSeq, InboxStamp};
use crate::target::UserId;

pub(crate) use insert::any::insert;
#[cfg(feature = "postgres")]
pub(crate) use insert::postgres::insert as insert_postgres;
#[cfg(feature = "sqlite")]
pub(crate) use insert::sqlite::insert as insert_sqlite;

/// Rows per multi-row statement, largest first: a batch is cut into these
/// sizes so that only a handful of distinct statements (each prepared and
/// cached once per connection) exist, and no statement nears the engines'
/// bind-parameter limits.
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

const AUDIENCE_USERS: i64 = 0;
const AUDIENCE_ALL: i64 = 1;

/// A notification to store.
pub(crate) struct NewRow<'a> {
    pub audience: &'a Audience,
    /// The user who sent it (`None`: the backend). The per-user cap
    /// evicts by sender.
    pub sender: Option<&'a str>,
    pub event: &'a str,
    pub payload: &'a str,
    pub created_at: i64,
}

/// A stored notification that still has to reach live streams.
pub(crate) struct Unpublished {
    pub id: InboxId,
    /// Its number in the publish order (set when claimed).
    pub seq: InboxSeq,
    pub event: String,
    pub payload: String,
    pub audience: Audience,
}

/// Cuts `items` into slices of the sizes in [`CHUNKS`].
fn chunked<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNKS.into_iter().find(|size| *size <= items.len())?;
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

/// `($1,$2),($3,$4),…`: `rows` groups of `width` numbered placeholders,
/// starting after `first - 1`.
fn placeholders(rows: usize, width: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for row in 0..rows {
        if row > 0 {
            out.push(',');
        }
        out.push('(');
        for col in 0..width {
            if col > 0 {
                out.push(',');
            }
            out.push('$');
            out.push_str(&(first + row * width + col).to_string());
        }
        out.push(')');
    }
    out
}

/// `$1,$2,…` for an `IN (…)` list.
fn list(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The statements of one engine, on that engine's own pool: the files
/// `claim.rs`, `read.rs`, `read_state.rs` and `retention.rs` (each an
/// `impl Store`) compiled once per pool type, so that an app's typed
/// `PgPool` or `SqlitePool` is used as it is. Same SQL for every engine.
macro_rules! engine {
    ($engine:ident, $pool:ty, $row:ty) => {
        pub(crate) mod $engine {
            use std::collections::HashSet;

            use sqlx::Row;

            use super::insert::$engine::{number, prune_user, take_seq};
            use super::{AUDIENCE_ALL, Unpublished, chunked, list};
            use crate::event_id::InboxSeq;
            use crate::inbox::{Audience, InboxId, InboxItem, InboxPage};
            use crate::target::UserId;

            type DbRow = $row;

            #[derive(Clone)]
            pub(crate) struct Store {
                pub(crate) pool: $pool,
            }

            fn item(row: &DbRow) -> Result<InboxItem, sqlx::Error> {
                Ok(InboxItem {
                    id: InboxId(row.try_get("id")?),
                    event: row.try_get("event")?,
                    payload: row.try_get("payload")?,
                    created_at: row.try_get("created_at")?,
                    read_at: row.try_get("read_at")?,
                    broadcast: row.try_get::<i64, _>("audience")? == AUDIENCE_ALL,
                })
            }

            include!("claim.rs");
            include!("read.rs");
            include!("read_state.rs");
            include!("retention.rs");
        }
    };
}

engine!(any, sqlx::AnyPool, sqlx::any::AnyRow);
#[cfg(feature = "postgres")]
engine!(postgres, sqlx::PgPool, sqlx::postgres::PgRow);
#[cfg(feature = "sqlite")]
engine!(sqlite, sqlx::SqlitePool, sqlx::sqlite::SqliteRow);

/// The inbox's database: an `AnyPool`, or an app's typed pool.
#[derive(Clone, Debug)]
pub enum InboxPool {
    Any(sqlx::AnyPool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

impl From<sqlx::AnyPool> for InboxPool {
    fn from(pool: sqlx::AnyPool) -> Self {
        InboxPool::Any(pool)
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::PgPool> for InboxPool {
    fn from(pool: sqlx::PgPool) -> Self {
        InboxPool::Postgres(pool)
    }
}

#[cfg(feature = "sqlite")]
impl From<sqlx::SqlitePool> for InboxPool {
    fn from(pool: sqlx::SqlitePool) -> Self {
        InboxPool::Sqlite(pool)
    }
}

impl InboxPool {
    /// The pool's size: the inbox keeps one connection for its writer.
    pub fn max_connections(&self) -> u32 {
        match self {
            InboxPool::Any(pool) => pool.options().get_max_connections(),
            #[cfg(feature = "postgres")]
            InboxPool::Postgres(pool) => pool.options().get_max_connections(),
            #[cfg(feature = "sqlite")]
            InboxPool::Sqlite(pool) => pool.options().get_max_connections(),
        }
    }

    /// Stores `rows` in one transaction of its own (the writer's group
    /// commit), published at `published_at`, numbered in the publish
    /// order as they come. Returns their ids and their numbers.
    pub(crate) async fn insert_committed(
        &self,
        rows: &[NewRow<'_>],
        published_at: i64,
        max_per_user: i64,
    ) -> Result<Vec<InboxStamp>, sqlx::Error> {
        macro_rules! committed {
            ($pool:expr, $engine:ident) => {{
                let mut tx = $pool.begin().await?;
                let first = insert::$engine::take_seq(&mut tx, rows.len()).await?;
                let ids = insert::$engine::insert(
                    &mut tx,
                    rows,
                    Some((published_at, first)),
                    max_per_user,
                )
                .await?;
                tx.commit().await?;
                Ok(stamps(ids, first))
            }};
        }
        match self {
            InboxPool::Any(pool) => committed!(pool, any),
            #[cfg(feature = "postgres")]
            InboxPool::Postgres(pool) => committed!(pool, postgres),
            #[cfg(feature = "sqlite")]
            InboxPool::Sqlite(pool) => committed!(pool, sqlite),
        }
    }
}

/// Ids numbered `first` up.
fn stamps(ids: Vec<InboxId>, first: i64) -> Vec<InboxStamp> {
    ids.into_iter()
        .enumerate()
        .map(|(n, id)| InboxStamp {
            id,
            seq: InboxSeq((first + n as i64).max(0) as u64),
        })
        .collect()
}

/// The pool's side: reads and read-state changes, on whichever engine.
#[derive(Clone)]
pub(crate) enum Store {
    Any(any::Store),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Store),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::Store),
}

/// Runs one method on whichever engine's store.
macro_rules! on_engine {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Any(store) => store.$method($($arg),*).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.$method($($arg),*).await,
            #[cfg(feature = "sqlite")]
            Store::Sqlite(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    pub(crate) fn new(pool: InboxPool) -> Self {
        match pool {
            InboxPool::Any(pool) => Store::Any(any::Store { pool }),
            #[cfg(feature = "postgres")]
            InboxPool::Postgres(pool) => Store::Postgres(postgres::Store { pool }),
            #[cfg(feature = "sqlite")]
            InboxPool::Sqlite(pool) => Store::Sqlite(sqlite::Store { pool }),
        }
    }

    pub(crate) async fn claim_unpublished(
        &self,
        only: Option<&[InboxId]>,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Unpublished>, sqlx::Error> {
        on_engine!(self.claim_unpublished(only, limit, now))
    }

    pub(crate) async fn unread(
        &self,
        user: &UserId,
        upto: Option<InboxSeq>,
        limit: usize,
    ) -> Result<(Vec<InboxItem>, u64), sqlx::Error> {
        on_engine!(self.unread(user, upto, limit))
    }

    pub(crate) async fn last_seq(&self) -> Result<InboxSeq, sqlx::Error> {
        on_engine!(self.last_seq())
    }

    pub(crate) async fn published_between(
        &self,
        user: &UserId,
        after: InboxSeq,
        upto: InboxSeq,
        limit: usize,
    ) -> Result<(Vec<(InboxItem, InboxSeq)>, u64), sqlx::Error> {
        on_engine!(self.published_between(user, after, upto, limit))
    }

    pub(crate) async fn unread_count(&self, user: &UserId) -> Result<u64, sqlx::Error> {
        on_engine!(self.unread_count(user))
    }

    pub(crate) async fn page(
        &self,
        user: &UserId,
        before: Option<InboxId>,
        limit: usize,
    ) -> Result<InboxPage, sqlx::Error> {
        on_engine!(self.page(user, before, limit))
    }

    pub(crate) async fn not_visible(
        &self,
        user: &UserId,
        ids: &[InboxId],
    ) -> Result<Vec<InboxId>, sqlx::Error> {
        on_engine!(self.not_visible(user, ids))
    }

    pub(crate) async fn mark_read(
        &self,
        user: &UserId,
        ids: &[InboxId],
        now: i64,
    ) -> Result<(), sqlx::Error> {
        on_engine!(self.mark_read(user, ids, now))
    }

    pub(crate) async fn mark_all_read(
        &self,
        user: &UserId,
        upto: Option<InboxId>,
        now: i64,
    ) -> Result<Option<InboxId>, sqlx::Error> {
        on_engine!(self.mark_all_read(user, upto, now))
    }

    pub(crate) async fn open_account(&self, user: &UserId, now: i64) -> Result<(), sqlx::Error> {
        on_engine!(self.open_account(user, now))
    }

    pub(crate) async fn sweep(
        &self,
        older_than: i64,
        max_per_user: i64,
    ) -> Result<u64, sqlx::Error> {
        on_engine!(self.sweep(older_than, max_per_user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_a_few_fixed_sizes() {
        let items: Vec<u32> = (0..347).collect();
        let sizes: Vec<usize> = chunked(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![256, 64, 16, 4, 4, 1, 1, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), 347);
        assert_eq!(chunked::<u32>(&[]).count(), 0);
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(placeholders(2, 3, 1), "($1,$2,$3),($4,$5,$6)");
        assert_eq!(list(3, 2), "$2,$3,$4");
    }
}
