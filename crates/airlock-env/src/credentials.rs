//! Credentials in channel URLs are used, never written (issue 22, item 6).
//!
//! A channel given as `https://user:password@host/channel` or `https://host/t/TOKEN/channel`
//! would otherwise carry its secret into every record's URL, and from there into the lock
//! file, each `conda-meta/*.json`, the repodata cache, `env export` and error messages. The
//! secret is taken out of the URL where the channel is resolved ([`strip`]) and kept in this
//! process's memory for the HTTP client ([`client`]), which asks rattler's authentication
//! storage: first what the command line's URLs carried, then `RATTLER_AUTH_FILE` (the file
//! rattler and pixi use). Everything downstream sees only the clean URL.

use std::sync::{Arc, LazyLock};

use rattler_networking::authentication_storage::StorageBackend as _;
use rattler_networking::authentication_storage::backends::memory::MemoryStorage;
use rattler_networking::{Authentication, AuthenticationMiddleware, AuthenticationStorage};

/// The credentials taken out of channel URLs in this process, by host.
static FROM_URLS: LazyLock<Arc<MemoryStorage>> =
    LazyLock::new(|| Arc::new(MemoryStorage::with_name("channel URLs")));

/// `text` (a channel as written) without its credentials, which are remembered for this
/// process's HTTP client. Anything that is not an `http(s)` URL is returned as it is.
pub fn strip(text: &str) -> String {
    let Some((clean, host, auth)) = split(text) else {
        return text.to_owned();
    };
    if let Some(auth) = auth
        && let Err(e) = FROM_URLS.store(&host, &auth)
    {
        tracing::warn!("could not keep the credentials for {host}: {e}");
    }
    clean
}

/// `text` with the credentials of any URL in it replaced, for messages and records that
/// quote what the user typed (the `# cmd:` line of `conda-meta/history`).
pub fn redact(text: &str) -> String {
    text.split(' ')
        .map(|word| match split(word) {
            Some((clean, _, Some(_))) => clean,
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` (an error message) without secrets: every password or token taken out of a URL in
/// this process, and any `/t/TOKEN/` segment (rattler's middleware puts a conda token from
/// the authentication file back into request URLs, and HTTP errors quote the URL).
pub fn scrub(text: &str) -> String {
    let mut out = text.to_owned();
    for (_, auth) in FROM_URLS.list().unwrap_or_default() {
        let secret = match auth {
            Authentication::BasicHTTP { password, .. } => password,
            Authentication::CondaToken(token) | Authentication::BearerToken(token) => token,
            _ => continue,
        };
        if !secret.is_empty() {
            out = out.replace(&secret, "********");
        }
    }
    let mut scrubbed = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("/t/") {
        let (before, after) = rest.split_at(at + 3);
        scrubbed.push_str(before);
        let (segment, tail) = after.split_at(after.find('/').unwrap_or(after.len()));
        if segment.is_empty() || segment.contains(char::is_whitespace) {
            scrubbed.push_str(segment);
        } else {
            scrubbed.push_str("********");
        }
        rest = tail;
    }
    scrubbed.push_str(rest);
    scrubbed
}

/// The clean URL, its host, and the credentials it carried.
fn split(text: &str) -> Option<(String, String, Option<Authentication>)> {
    let mut url = url::Url::parse(text).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?.to_owned();
    let mut auth = None;
    if !url.username().is_empty() || url.password().is_some() {
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map_or_else(|| s.to_owned(), |(_, v)| v.into_owned())
        };
        auth = Some(Authentication::BasicHTTP {
            username: decode(url.username()),
            password: decode(url.password().unwrap_or_default()),
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    if let Some(rest) = url.path().strip_prefix("/t/")
        && let Some((token, tail)) = rest.split_once('/')
        && !token.is_empty()
    {
        auth = Some(Authentication::CondaToken(token.to_owned()));
        let tail = format!("/{tail}");
        url.set_path(&tail);
    }
    let mut clean = url.to_string();
    // `Url` adds a `/` to a bare host; keep what was written otherwise.
    if !text.ends_with('/') && clean.ends_with('/') && url.path() == "/" {
        clean.pop();
    }
    Some((clean, host, auth))
}

/// The HTTP client for repodata and packages: authenticated from the credentials taken out of
/// channel URLs, then from `RATTLER_AUTH_FILE`.
pub fn client() -> reqwest_middleware::ClientWithMiddleware {
    let mut storage = AuthenticationStorage::empty();
    storage.add_backend(Arc::clone(&*FROM_URLS) as _);
    match AuthenticationStorage::from_env_and_defaults() {
        Ok(defaults) => {
            for backend in defaults.backends {
                storage.add_backend(backend);
            }
        }
        Err(e) => tracing::warn!("could not read the authentication file (RATTLER_AUTH_FILE): {e}"),
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    reqwest_middleware::ClientBuilder::new(client)
        .with(AuthenticationMiddleware::from_auth_storage(storage))
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn user_password_and_token_are_taken_out() {
        assert_eq!(
            strip("https://u:s3cret@example.org/chan"),
            "https://example.org/chan"
        );
        assert_eq!(
            strip("https://example.org/t/tok-123/chan/"),
            "https://example.org/chan/"
        );
        assert_eq!(strip("conda-forge"), "conda-forge");
        assert_eq!(strip("file:///srv/chan"), "file:///srv/chan");
        assert!(matches!(
            FROM_URLS.get("example.org").unwrap(),
            Some(Authentication::CondaToken(t)) if t == "tok-123"
        ));
        let line = redact("airlock env create -c https://u:s3cret@example.org/chan hello");
        assert_eq!(line, "airlock env create -c https://example.org/chan hello");
        assert_eq!(
            scrub("404 for url (https://example.org/t/tok-123/chan/x.conda)"),
            "404 for url (https://example.org/t/********/chan/x.conda)"
        );
        assert_eq!(scrub("wrong: tok-123"), "wrong: ********");
    }
}
