//! Accounts: create and look up users.

use sqlx::Row;

use super::{Db, StoreError, now_secs};

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
}

/// What an account may do. Stored as text (`user`, `admin`); changed only
/// by the operator's `sse_notify admin` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// Unknown text reads as the least privilege.
    pub(crate) fn from_db(text: &str) -> Role {
        if text == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
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
                role: Role::User,
            }),
            Err(e) if is_unique_violation(&e) => Err(CreateUserError::Taken),
            Err(e) => Err(CreateUserError::Store(e.into())),
        }
    }

    /// The account with this username (any case).
    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, role FROM users WHERE username_key = $1",
        )
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
            "SELECT id, username, password_hash, role FROM users WHERE id = $1 OR username_key = $2",
        )
        .bind(key)
        .bind(key.to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| record(&r)).transpose()?)
    }

    /// The role of the account with this id; `None` if it no longer
    /// exists. Read on every signed-in request, so that a revoked role or
    /// a deleted account takes effect at once.
    pub async fn role_of(&self, user_id: &str) -> Result<Option<Role>, StoreError> {
        let row = sqlx::query("SELECT role FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => Ok(Some(Role::from_db(&row.try_get::<String, _>("role")?))),
            None => Ok(None),
        }
    }

    /// Sets the role of the account named `username` (any case) and
    /// records the change in `role_changes`, in one transaction: every
    /// server process then ends that user's streams still tagged with the
    /// old role (see `ops::roles`). Returns the account as it is now, or
    /// `None` when there is no such account.
    pub async fn set_role(
        &self,
        username: &str,
        role: Role,
    ) -> Result<Option<UserRecord>, StoreError> {
        let key = username.to_lowercase();
        let mut tx = self.pool().begin().await?;
        // The write comes first: on SQLite a transaction that read first
        // could not take the write lock if another writer got there.
        let updated = sqlx::query("UPDATE users SET role = $1 WHERE username_key = $2")
            .bind(role.as_str())
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO role_changes (user_id, changed_at) \
             SELECT id, $1 FROM users WHERE username_key = $2",
        )
        .bind(now_secs())
        .bind(&key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.user_by_username(username).await
    }

    /// Usernames holding `role`, in name order.
    pub async fn users_with_role(&self, role: Role) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT username FROM users WHERE role = $1 ORDER BY username_key")
            .bind(role.as_str())
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("username").map_err(StoreError::from))
            .collect()
    }
}

fn record(row: &sqlx::any::AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::from_db(&row.try_get::<String, _>("role")?),
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
