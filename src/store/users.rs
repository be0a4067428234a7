//! Accounts: create and look up users.

use sqlx::Row;

use super::{Db, StoreError, now_secs};

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub password_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("the username is taken")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Db {
    /// Creates an account. Usernames are unique regardless of case.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<UserRecord, CreateUserError> {
        let id = uuid::Uuid::new_v4().to_string();
        let result = sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(username)
        .bind(username.to_lowercase())
        .bind(password_hash)
        .bind(now_secs())
        .execute(self.pool())
        .await;
        match result {
            Ok(_) => Ok(UserRecord {
                id,
                username: username.to_string(),
                password_hash: password_hash.to_string(),
            }),
            Err(e) if is_unique_violation(&e) => Err(CreateUserError::Taken),
            Err(e) => Err(CreateUserError::Store(e.into())),
        }
    }

    /// The account with this username (any case).
    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row =
            sqlx::query("SELECT id, username, password_hash FROM users WHERE username_key = $1")
                .bind(username.to_lowercase())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| record(&r)).transpose()?)
    }

    /// The account with this id, or else this username.
    pub async fn user_by_id_or_username(
        &self,
        key: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash FROM users WHERE id = $1 OR username_key = $2",
        )
        .bind(key)
        .bind(key.to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| record(&r)).transpose()?)
    }
}

fn record(row: &sqlx::any::AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e.as_database_error() {
        Some(db) => {
            db.is_unique_violation()
                // The Any driver does not always carry the kind through.
                || db.code().is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
                || db.message().contains("UNIQUE constraint failed")
        }
        None => false,
    }
}
