//! The service tables' SQL (`sse_service_tokens`, `sse_signing_key`): one
//! set of statements in `statements.rs`, compiled once per pool type as
//! the inbox's are, so an app's typed pool is used as it is.

use crate::inbox::InboxPool;

/// A token's row, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRow {
    pub name: String,
    pub scopes: String,
    pub rate_per_minute: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

macro_rules! engine {
    ($engine:ident, $pool:ty, $row:ty) => {
        pub(crate) mod $engine {
            use sqlx::Row;

            use super::TokenRow;

            type Pool = $pool;
            type DbRow = $row;

            fn token(row: &DbRow) -> Result<TokenRow, sqlx::Error> {
                Ok(TokenRow {
                    name: row.try_get("name")?,
                    scopes: row.try_get("scopes")?,
                    rate_per_minute: row.try_get("rate_per_minute")?,
                    created_at: row.try_get("created_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            }

            include!("statements.rs");
        }
    };
}

engine!(any, sqlx::AnyPool, sqlx::any::AnyRow);
#[cfg(feature = "postgres")]
engine!(postgres, sqlx::PgPool, sqlx::postgres::PgRow);
#[cfg(feature = "sqlite")]
engine!(sqlite, sqlx::SqlitePool, sqlx::sqlite::SqliteRow);

/// Runs one statement function on whichever engine `pool` is.
macro_rules! on_pool {
    ($pool:expr, $function:ident ( $($arg:expr),* )) => {
        match $pool {
            InboxPool::Any(pool) => any::$function(pool, $($arg),*).await,
            #[cfg(feature = "postgres")]
            InboxPool::Postgres(pool) => postgres::$function(pool, $($arg),*).await,
            #[cfg(feature = "sqlite")]
            InboxPool::Sqlite(pool) => sqlite::$function(pool, $($arg),*).await,
        }
    };
}

/// The service tables of one database.
#[derive(Clone, Debug)]
pub(crate) struct ServiceStore {
    pool: InboxPool,
}

impl ServiceStore {
    pub(crate) fn new(pool: InboxPool) -> Self {
        ServiceStore { pool }
    }

    /// Adds a token; `Ok(false)` if an unrevoked one has that name (a
    /// revoked one is replaced).
    pub(crate) async fn insert(
        &self,
        name: &str,
        secret_hash: &str,
        scopes: &str,
        rate_per_minute: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        on_pool!(
            &self.pool,
            insert(name, secret_hash, scopes, rate_per_minute, now)
        )
    }

    pub(crate) async fn list(&self) -> Result<Vec<TokenRow>, sqlx::Error> {
        on_pool!(&self.pool, list())
    }

    /// Whether an unrevoked token of that name existed (it is revoked now).
    pub(crate) async fn revoke(&self, name: &str, now: i64) -> Result<bool, sqlx::Error> {
        on_pool!(&self.pool, revoke(name, now))
    }

    /// The unrevoked token whose secret hashes to `secret_hash`.
    pub(crate) async fn find(&self, secret_hash: &str) -> Result<Option<TokenRow>, sqlx::Error> {
        on_pool!(&self.pool, find(secret_hash))
    }

    /// The stored signing key, made (from `fresh`) if there is none yet;
    /// every process on this database reads the same one.
    pub(crate) async fn signing_key(&self, fresh: &str, now: i64) -> Result<String, sqlx::Error> {
        on_pool!(&self.pool, signing_key(fresh, now))
    }
}
