//! htpasswd files as `basic_auth.users_file` names them: `user:hash` lines, `#` comments and
//! blank lines ignored, bcrypt hashes only (`$2y$`, `$2b$`, `$2a$`: what `htpasswd -B` writes).
//! nginx also takes crypt, MD5 and SHA-1 hashes; they are weak, and lb refuses them with a line
//! that says how to make a bcrypt one.

/// The users of an htpasswd `text`: `(user, bcrypt hash)`, or the first problem with its line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {n}: not user:hash"));
        };
        if user.is_empty() || user.contains(char::is_whitespace) {
            return Err(format!("line {n}: {user:?} is not a user name"));
        }
        let bcrypt = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60;
        if !bcrypt {
            return Err(format!(
                "line {n}: user {user:?} has no bcrypt hash (lb takes only bcrypt: make one with htpasswd -B)"
            ));
        }
        if users.iter().any(|(u, _): &(String, String)| u == user) {
            return Err(format!("line {n}: user {user:?} is listed twice"));
        }
        users.push((user.to_string(), hash.to_string()));
    }
    if users.is_empty() {
        return Err("lists no user".to_string());
    }
    Ok(users)
}

/// The users of htpasswd file `path`, or what is wrong, naming the file.
pub fn read(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse(&text).map_err(|why| format!("{path}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$05$ibz1cLH4ZGTfd4aAGyYh1uYjqEcqQaNQ9C6SCcEgjm7pGpGdYKb9G";

    #[test]
    fn bcrypt_users_are_read_and_anything_else_is_refused_with_its_line() {
        let text = format!("# ops\n\nalice:{HASH}\nbob:{HASH}\n");
        let users = parse(&text).unwrap();
        assert_eq!(
            users.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert_eq!(
            parse("carol:{SHA}abc=").unwrap_err(),
            "line 1: user \"carol\" has no bcrypt hash (lb takes only bcrypt: make one with htpasswd -B)"
        );
        assert_eq!(parse("nocolon").unwrap_err(), "line 1: not user:hash");
        assert!(parse(&format!("a:{HASH}\na:{HASH}"))
            .unwrap_err()
            .contains("listed twice"));
        assert_eq!(parse("# nobody\n").unwrap_err(), "lists no user");
    }
}
