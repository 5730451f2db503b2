//! Re-validation at the IdP (dex's model): the refresh token the IdP issued at sign-in is
//! used to ask it again who the person is now. A refreshed ID token is verified as a
//! login's is (signature, algorithm, issuer, audience, times; no nonce: there was no
//! authorization request), or, without one, userinfo is read with the new access token.

use openidconnect::core::CoreErrorResponseType;
use openidconnect::{OAuth2TokenResponse, RefreshToken, TokenResponse};
use serde_json::Value as Json;

use super::checks::merge_userinfo;
use super::{OidcError, OidcProvider};

/// Why a refresh at the IdP gave no answer about the person.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The IdP says the grant is over (`invalid_grant`: the user was disabled, the grant or
    /// refresh token revoked): the person's access ends.
    #[error("the identity provider ended the grant: {0}")]
    Revoked(String),
    /// The IdP could not be asked, or its answer could not be verified: tolerated for the
    /// configured grace, then access fails closed.
    #[error("the identity provider could not confirm the person: {0}")]
    Unconfirmed(String),
}

impl OidcProvider {
    /// Refreshes at the IdP with `refresh_token`; returns the verified claims and the
    /// refresh token to keep (a rotated one, or none when the IdP did not rotate).
    pub async fn refresh(
        &self,
        refresh_token: &str,
    ) -> Result<(Json, Option<String>), RefreshError> {
        use openidconnect::RequestTokenError as E;
        let unconfirmed = |e: &dyn std::fmt::Display| RefreshError::Unconfirmed(e.to_string());
        let d = self.current().map_err(|e| unconfirmed(&e))?;
        let token = d
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .map_err(|e| unconfirmed(&e))?
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                E::ServerResponse(r) if *r.error() == CoreErrorResponseType::InvalidGrant => {
                    RefreshError::Revoked(r.to_string())
                }
                E::ServerResponse(r) => RefreshError::Unconfirmed(r.to_string()),
                E::Request(r) => RefreshError::Unconfirmed(crate::telemetry::error_chain(&r)),
                E::Parse(p, _) => RefreshError::Unconfirmed(p.to_string()),
                E::Other(o) => RefreshError::Unconfirmed(o),
            })?;
        let client_id = self.settings.client_id.as_str();
        let claims = match token.id_token() {
            Some(id_token) => match self.verify(&d, id_token, client_id, None) {
                Err(OidcError::UnknownSigningKey) if self.refetch_jwks().await => {
                    let d = self.current().map_err(|e| unconfirmed(&e))?;
                    self.verify(&d, id_token, client_id, None)
                }
                other => other,
            }
            .map_err(|e| unconfirmed(&e))?,
            None => self
                .userinfo(&d, token.access_token().secret())
                .await
                .map_err(|e| unconfirmed(&e))?,
        };
        let claims = if self.settings.use_userinfo && token.id_token().is_some() {
            let userinfo = self
                .userinfo(&d, token.access_token().secret())
                .await
                .map_err(|e| unconfirmed(&e))?;
            merge_userinfo(claims, userinfo).map_err(|e| unconfirmed(&e))?
        } else {
            claims
        };
        Ok((claims, token.refresh_token().map(|r| r.secret().clone())))
    }
}
