//! `pacsgate hash-password`: read one password (terminal without echo, or the first line
//! of stdin when it is not a terminal) and return its argon2id PHC string.

use std::io::{BufRead, IsTerminal};

use super::identity::hash_password;

pub fn run() -> Result<String, String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err("empty password".into());
    }
    let mut salt = [0u8; 16];
    crate::tls::server::provider()
        .secure_random
        .fill(&mut salt)
        .map_err(|_| "no system randomness".to_string())?;
    hash_password(&password, &salt)
}
