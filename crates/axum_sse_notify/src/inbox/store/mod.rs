//! The inbox's SQL: one set of statements for SQLite and Postgres (through
//! sqlx's `Any` driver). Nothing here knows about streams; the writer and
//! the outbox publish what these functions stored.
//!
//! Rows: one `notifications` row per notification (however many users
//! receive it), one `inbox` row per (user, notification) for sends to
//! users, none per user for broadcasts until that user reads one; "mark
//! all read" keeps one watermark per user (`inbox_marks`).
//!
//! One file per job: [`insert`] (what the writer and transactional sends
//! store, and the per-user cap, which evicts by sender), [`read`] (unread
//! rows, pages, counts), [`read_state`] (marking read), [`claim`] (rows to
//! publish), [`retention`] (the sweep).

mod claim;
mod insert;
mod read;
mod read_state;
mod retention;

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Audience;
use super::types::{InboxId, InboxItem};

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

fn item(row: &AnyRow) -> Result<InboxItem, sqlx::Error> {
    Ok(InboxItem {
        id: InboxId(row.try_get("id")?),
        event: row.try_get("event")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
        read_at: row.try_get("read_at")?,
        broadcast: row.try_get::<i64, _>("audience")? == AUDIENCE_ALL,
    })
}

/// The pool's side: reads and read-state changes.
#[derive(Clone)]
pub(crate) struct Store {
    pool: AnyPool,
}

impl Store {
    pub(crate) fn new(pool: AnyPool) -> Self {
        Store { pool }
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
