//! The app's database: one connection pool, SQLite (the default, a file
//! under `data_dir`) or Postgres (`DATABASE_URL=postgres://…`), chosen at
//! start. Queries are written once, in SQL both engines accept; the
//! migrations come in one set per engine (`migrations/sqlite`,
//! `migrations/postgres`), identical except where the engines' DDL differs.
//! The inbox's tables are the SSE layer's own (it migrates them).

pub mod roles;
pub mod rooms;
pub mod sessions;
pub mod users;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

/// Which engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The pool, cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

impl Db {
    /// Connects to `database_url`, or to `data_dir/app.db` when it is
    /// `None`, and brings the schema up to date.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Db, StoreError> {
        install_default_drivers();
        let url = match database_url {
            Some(url) => url.to_string(),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                format!("sqlite://{}?mode=rwc", data_dir.join("app.db").display())
            }
        };
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact(&url)));
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(match engine {
                Engine::Sqlite => 4,
                Engine::Postgres => 10,
            })
            .acquire_timeout(Duration::from_secs(10));
        if engine == Engine::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // Readers do not block the writer; a busy writer is
                    // waited for rather than failed at once.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await.map_err(StoreError::Connect)?;
        // One set of migrations per engine: the same tables, in each
        // engine's own words where they differ (auto-increment ids). The
        // inbox's tables are the SSE layer's, migrated by it; each set
        // ignores the other's versions.
        let mut migrator = match engine {
            Engine::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Engine::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.map_err(StoreError::Migrate)?;
        crate::sse::inbox::schema::migrate(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        tracing::info!(engine = ?engine, "database ready");
        Ok(Db { pool, engine })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("mysql://me:secret@host/db"),
            "mysql://me:***@host/db"
        );
        assert_eq!(super::redact("mysql://host/db"), "mysql://host/db");
    }
}
