//! Databases of their own on the test Postgres server.

use std::time::Duration;

/// Creates an empty database on the test Postgres server; returns its
/// name and URL.
pub async fn create_postgres_db() -> (String, String) {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = format!("sse_notify_test_{}", uuid::Uuid::new_v4().simple());
    let create = async {
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("Postgres at {admin} (set TEST_POSTGRES_URL): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
    };
    tokio::time::timeout(Duration::from_secs(30), create)
        .await
        .expect("CREATE DATABASE within 30 s");
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    let url = format!("{base}/{name}");
    (name, url)
}

/// Drops a database [`create_postgres_db`] made; best effort, bounded.
pub async fn drop_postgres_db(name: &str) {
    use sqlx::Connection;
    let drop = async {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drop)
        .await
        .is_err()
    {
        eprintln!("warning: could not drop test database {name} within 10 s");
    }
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}
