//! What a username and a password must look like. Shared by the server
//! (which enforces it) and the browser (which may say so early).

/// Usernames: 3 to 32 characters.
pub const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
/// Passwords: 8 to 128 characters.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// `Ok` or a sentence saying what is wrong.
pub fn check_username(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !USERNAME_LEN.contains(&len) {
        return Err(format!(
            "Username must be {} to {} characters long.",
            USERNAME_LEN.start(),
            USERNAME_LEN.end()
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("Username may only contain letters a–z, digits, '_', '-' and '.'.".to_string());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("Username must start with a letter or a digit.".to_string());
    }
    Ok(())
}

/// `Ok` or a sentence saying what is wrong.
pub fn check_password(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    if !PASSWORD_LEN.contains(&len) {
        return Err(format!(
            "Password must be {} to {} characters long.",
            PASSWORD_LEN.start(),
            PASSWORD_LEN.end()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["bob", "alice_1", "a.b-c", "X9z"] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            &"x".repeat(33),
            "has space",
            "émile",
            "_lead",
            "semi;colon",
        ] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("correct horse").is_ok());
        assert!(check_password("short").is_err());
        assert!(check_password(&"p".repeat(129)).is_err());
    }
}
