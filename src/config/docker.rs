//! Credentials from docker's `config.json` (`auths`, `credsStore`, `credHelpers`) and podman's
//! `auth.json` (`REGISTRY_AUTH_FILE`), used when the auth file has none for a registry — so a
//! host where `docker login` was run just works. The `docker_credential` crate reads the files
//! and runs the credential helpers (blocking, no async). An identity token (`identitytoken`, or
//! a helper's `<token>` username, as after `az acr login`) comes back as username `<token>`.

use docker_credential::{CredentialRetrievalError, DockerCredential};

use crate::reference::DOCKER_HUB;
use crate::registry::{Credentials, Keychain};

/// Docker's username for "the secret is an identity token"; the registry layer reads it so.
const IDENTITY_TOKEN_USERNAME: &str = "<token>";

/// The registry layer's keychain: docker's, then podman's credential files.
pub struct DockerKeychain;

impl Keychain for DockerKeychain {
    fn credentials(&self, registry: &str) -> Option<Credentials> {
        credentials(registry)
    }
}

/// The keys docker may have stored a registry's login under.
fn servers(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        return ["https://index.docker.io/v1/", "index.docker.io", "docker.io", DOCKER_HUB].map(String::from).to_vec();
    }
    vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")]
}

/// Look `registry` up in docker's, then podman's credential files.
fn credentials(registry: &str) -> Option<Credentials> {
    type Lookup = fn(&str) -> Result<DockerCredential, CredentialRetrievalError>;
    let sources: [(&str, Lookup); 2] = [
        ("docker config", docker_credential::get_credential),
        ("podman auth file", docker_credential::get_podman_credential),
    ];
    for (source, lookup) in sources {
        for server in servers(registry) {
            match lookup(&server) {
                Ok(DockerCredential::UsernamePassword(username, password)) => {
                    log::info!("{registry}: using credentials from the {source}");
                    return Some(Credentials { username, password });
                }
                // `identitytoken` in the file, or a helper answering Username `<token>`: an OAuth2
                // refresh token, exchanged at the registry's token server.
                Ok(DockerCredential::IdentityToken(token)) => {
                    log::info!("{registry}: using the identity token from the {source}");
                    return Some(Credentials { username: IDENTITY_TOKEN_USERNAME.to_string(), password: token });
                }
                Err(CredentialRetrievalError::ConfigNotFound)
                | Err(CredentialRetrievalError::ConfigReadError)
                | Err(CredentialRetrievalError::NoCredentialConfigured) => {}
                // A helper answers "not found" with a failure; its output is never shown, as it
                // may hold secrets.
                Err(CredentialRetrievalError::HelperFailure { helper, .. }) => {
                    log::debug!("{registry}: {helper} has no credentials for {server}");
                }
                Err(e) => log::warn!("{registry}: cannot read credentials from the {source} ({server}): {e}"),
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_has_its_legacy_key() {
        assert_eq!(servers(DOCKER_HUB)[0], "https://index.docker.io/v1/");
        assert_eq!(servers("r.io:5000")[0], "r.io:5000");
    }
}
