//! The inbox's tables, which the layer creates itself: one set of sqlx
//! migrations per engine (`migrations/sqlite`, `migrations/postgres` in
//! this crate), the same tables in each engine's own words.

use futures::future::BoxFuture;
use sqlx::AnyPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, Migrator};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// Creates or updates the inbox's tables in `pool`'s database. Safe to
/// run at every start and beside the host's own sqlx migrations: each set
/// leaves the other's versions alone (they share `_sqlx_migrations`).
pub async fn migrate(pool: &AnyPool) -> Result<(), MigrateError> {
    let backend = {
        let connection = pool.acquire().await?;
        connection.backend_name().to_string()
    };
    let embedded = match backend.as_str() {
        "SQLite" => &SQLITE,
        "PostgreSQL" => &POSTGRES,
        other => {
            return Err(MigrateError::Source(
                format!("the inbox runs on SQLite or PostgreSQL, not {other}").into(),
            ));
        }
    };
    run(embedded, pool).await
}

/// [`migrate`] on a typed Postgres pool.
#[cfg(feature = "postgres")]
pub async fn migrate_postgres(pool: &sqlx::PgPool) -> Result<(), MigrateError> {
    run(&POSTGRES, pool).await
}

/// [`migrate`] on a typed SQLite pool.
#[cfg(feature = "sqlite")]
pub async fn migrate_sqlite(pool: &sqlx::SqlitePool) -> Result<(), MigrateError> {
    run(&SQLITE, pool).await
}

/// Runs `embedded`, leaving versions it does not know (the host's) alone.
async fn run<'a, A>(embedded: &'static Migrator, pool: A) -> Result<(), MigrateError>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let mut migrator = Migrator::new(Embedded(embedded)).await?;
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// The migrations compiled into this crate, as a source a [`Migrator`]
/// can be built from (so that it may ignore the host's versions).
#[derive(Debug)]
struct Embedded(&'static Migrator);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0.iter().cloned().collect()) })
    }
}
