// Included by `store.rs`'s `engine!` once per pool type (`Pool`, `DbRow`).
// Same SQL for SQLite and Postgres.

pub(crate) async fn insert(
    pool: &Pool,
    name: &str,
    secret_hash: &str,
    scopes: &str,
    rate_per_minute: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM sse_service_tokens WHERE name = $1 AND revoked_at IS NOT NULL")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO sse_service_tokens (name, secret_hash, scopes, rate_per_minute, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(secret_hash)
    .bind(scopes)
    .bind(rate_per_minute)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(inserted == 1)
}

pub(crate) async fn list(pool: &Pool) -> Result<Vec<TokenRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, scopes, rate_per_minute, created_at, revoked_at \
         FROM sse_service_tokens ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(token).collect()
}

pub(crate) async fn revoke(pool: &Pool, name: &str, now: i64) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "UPDATE sse_service_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

pub(crate) async fn find(pool: &Pool, secret_hash: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT name, scopes, rate_per_minute, created_at, revoked_at \
         FROM sse_service_tokens WHERE secret_hash = $1 AND revoked_at IS NULL",
    )
    .bind(secret_hash)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(token).transpose()
}

pub(crate) async fn signing_key(pool: &Pool, fresh: &str, now: i64) -> Result<String, sqlx::Error> {
    sqlx::query(
        "INSERT INTO sse_signing_key (id, key_hex, created_at) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(fresh)
    .bind(now)
    .execute(pool)
    .await?;
    sqlx::query("SELECT key_hex FROM sse_signing_key WHERE id = 1")
        .fetch_one(pool)
        .await?
        .try_get("key_hex")
}
