//! `sse_notify admin …`: the operator's commands for roles.
//!
//! Roles are granted to an account that already exists, by someone with
//! access to the server's configuration and database; never by a name
//! list checked at sign-up, where whoever registers a listed name first
//! would get the role.
//!
//! A change takes effect on open event streams too, on every server
//! process: `grant` and `revoke` record it in `role_changes`, and each
//! server's role watcher (`ops::roles`) ends that user's streams tagged
//! with the old role within a second; browsers reconnect with the new
//! tag.

use crate::config::Config;
use crate::store::Db;
use crate::store::users::Role;

/// What `sse_notify admin` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    Grant(String),
    Revoke(String),
    List,
}

/// How to call it, for error messages.
pub const USAGE: &str =
    "usage: sse_notify admin grant <username> | admin revoke <username> | admin list";

impl AdminCommand {
    /// Parses the words after `admin`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        match args {
            [verb, name] if verb == "grant" => Ok(AdminCommand::Grant(name.clone())),
            [verb, name] if verb == "revoke" => Ok(AdminCommand::Revoke(name.clone())),
            [verb] if verb == "list" => Ok(AdminCommand::List),
            _ => Err(USAGE.to_string()),
        }
    }
}

/// Runs `command` against the database `config` names; returns what to
/// print, or an error for the operator.
pub async fn run(config: &Config, command: AdminCommand) -> Result<String, String> {
    let db = Db::connect(config.database_url.as_deref(), &config.data_dir)
        .await
        .map_err(|e| e.to_string())?;
    let result = match command {
        AdminCommand::Grant(name) => set(&db, &name, Role::Admin).await,
        AdminCommand::Revoke(name) => set(&db, &name, Role::User).await,
        AdminCommand::List => db
            .users_with_role(Role::Admin)
            .await
            .map(|names| {
                if names.is_empty() {
                    "no admins".to_string()
                } else {
                    names.join("\n")
                }
            })
            .map_err(|e| e.to_string()),
    };
    db.pool().close().await;
    result
}

async fn set(db: &Db, name: &str, role: Role) -> Result<String, String> {
    match db.set_role(name, role).await {
        Ok(Some(user)) => Ok(format!("{}: {}", user.username, user.role.as_str())),
        Ok(None) => Err(format!(
            "there is no account named {name:?}; it must sign up first"
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            AdminCommand::parse(&words("grant alice")),
            Ok(AdminCommand::Grant("alice".into()))
        );
        assert_eq!(
            AdminCommand::parse(&words("revoke alice")),
            Ok(AdminCommand::Revoke("alice".into()))
        );
        assert_eq!(AdminCommand::parse(&words("list")), Ok(AdminCommand::List));
        for bad in ["", "grant", "grant a b", "promote alice", "list x"] {
            assert!(AdminCommand::parse(&words(bad)).is_err(), "{bad}");
        }
    }
}
