//! The IdP's signing keys as `openidconnect` sees them, with RSA signatures checked by
//! aws-lc instead of the pure-Rust `rsa` crate.
//!
//! `openidconnect` verifies RS256 with `rsa`'s big-number arithmetic, about a third of a
//! sign-in's CPU (BENCHMARKS.md); aws-lc, already linked for `jsonwebtoken` and rustls, does
//! the same check in a fraction of the time. [`IdpSigningKey`] wraps the crate's own key
//! type: parsing, the key-set filtering by `kid` and `alg`, and the key-use / key-type /
//! key-algorithm compatibility rule stay the crate's (the rule is re-stated here, as the
//! crate keeps its function private); only the RSA arithmetic moves. Every other key type,
//! and an RSA key whose modulus aws-lc does not accept, is verified by the crate as before.

use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents};
use base64::Engine as _;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey, CoreJsonWebKeyUse,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenResponse,
};
use openidconnect::{
    EmptyAdditionalClaims, EmptyAdditionalProviderMetadata, JsonWebKey, JsonWebKeyAlgorithm,
    JsonWebKeyId, JsonWebKeyUse, JwsSigningAlgorithm, SignatureVerificationError,
    StandardErrorResponse,
};
use serde::{Deserialize, Deserializer, Serialize};

/// One JWK of the IdP: the crate's key, plus its RSA modulus and exponent when it is one.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct IdpSigningKey {
    inner: CoreJsonWebKey,
    #[serde(skip)]
    rsa: Option<RsaComponents>,
}

#[derive(Clone, Debug)]
struct RsaComponents {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl<'de> Deserialize<'de> for IdpSigningKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let rsa = rsa_components(&value);
        let inner = CoreJsonWebKey::deserialize(value).map_err(serde::de::Error::custom)?;
        Ok(Self { inner, rsa })
    }
}

/// `n` and `e` of an RSA JWK (base64url, RFC 7518 §6.3.1), without leading zero bytes.
fn rsa_components(jwk: &serde_json::Value) -> Option<RsaComponents> {
    if jwk.get("kty")?.as_str()? != "RSA" {
        return None;
    }
    let decode = |name: &str| {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk.get(name)?.as_str()?)
            .ok()?;
        let start = bytes.iter().position(|b| *b != 0)?;
        Some(bytes[start..].to_vec())
    };
    Some(RsaComponents {
        n: decode("n")?,
        e: decode("e")?,
    })
}

/// The aws-lc parameters for an RSA JWS algorithm; `None` for every other algorithm.
fn rsa_parameters(alg: &CoreJwsSigningAlgorithm) -> Option<&'static RsaParameters> {
    use CoreJwsSigningAlgorithm as A;
    Some(match alg {
        A::RsaSsaPkcs1V15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        A::RsaSsaPkcs1V15Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        A::RsaSsaPkcs1V15Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        A::RsaSsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        A::RsaSsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
        A::RsaSsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl IdpSigningKey {
    /// The crate's rule for whether this key may check a signature made with `alg`:
    /// its use allows signatures, its type fits `alg`, and its own `alg`, if any, is `alg`.
    fn compatible_with(&self, alg: &CoreJwsSigningAlgorithm) -> Result<(), &'static str> {
        if let Some(key_use) = self.key_use()
            && !key_use.allows_signature()
        {
            return Err("key usage not permitted for digital signatures");
        }
        if alg.key_type().as_ref() != Some(self.key_type()) {
            return Err("key type does not match signature algorithm");
        }
        match self.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => Ok(()),
            JsonWebKeyAlgorithm::Algorithm(a) if a == alg => Ok(()),
            JsonWebKeyAlgorithm::Algorithm(_) => Err("incompatible key algorithm"),
            JsonWebKeyAlgorithm::Unsupported => Err("key algorithm is not a signing algorithm"),
        }
    }
}

impl JsonWebKey for IdpSigningKey {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.inner.key_id()
    }

    fn key_type(&self) -> &<CoreJwsSigningAlgorithm as JwsSigningAlgorithm>::KeyType {
        self.inner.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.inner.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.inner.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        Self {
            inner: CoreJsonWebKey::new_symmetric(key),
            rsa: None,
        }
    }

    fn verify_signature(
        &self,
        alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        let (Some(params), Some(rsa)) = (rsa_parameters(alg), &self.rsa) else {
            return self.inner.verify_signature(alg, message, signature);
        };
        self.compatible_with(alg)
            .map_err(|e| SignatureVerificationError::InvalidKey(e.to_owned()))?;
        RsaPublicKeyComponents {
            n: rsa.n.as_slice(),
            e: rsa.e.as_slice(),
        }
        .verify(params, message, signature)
        .map_err(|_| SignatureVerificationError::CryptoError("bad signature".to_owned()))
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.inner.hash_bytes(bytes, alg)
    }
}

/// The IdP's key set with these keys.
pub type IdpKeySet = openidconnect::JsonWebKeySet<IdpSigningKey>;

/// `CoreProviderMetadata` with these keys.
pub type ProviderMetadata = openidconnect::ProviderMetadata<
    EmptyAdditionalProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    IdpSigningKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// `CoreClient` with these keys.
pub type Client<
    HasAuthUrl = openidconnect::EndpointNotSet,
    HasDeviceAuthUrl = openidconnect::EndpointNotSet,
    HasIntrospectionUrl = openidconnect::EndpointNotSet,
    HasRevocationUrl = openidconnect::EndpointNotSet,
    HasTokenUrl = openidconnect::EndpointNotSet,
    HasUserInfoUrl = openidconnect::EndpointNotSet,
> = openidconnect::Client<
    EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    IdpSigningKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    CoreTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    HasAuthUrl,
    HasDeviceAuthUrl,
    HasIntrospectionUrl,
    HasRevocationUrl,
    HasTokenUrl,
    HasUserInfoUrl,
>;

/// `CoreIdTokenVerifier` with these keys.
pub type IdTokenVerifier = openidconnect::IdTokenVerifier<'static, IdpSigningKey>;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn key_and_jwk(extra: serde_json::Value) -> (RsaKeyPair, IdpSigningKey) {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let c: RsaPublicKeyComponents<Vec<u8>> = public.into();
        let mut jwk =
            serde_json::json!({"kty": "RSA", "kid": "k1", "n": b64(&c.n), "e": b64(&c.e)});
        jwk.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        (pair, serde_json::from_value(jwk).unwrap())
    }

    fn sign(pair: &RsaKeyPair, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .unwrap();
        sig
    }

    #[test]
    fn rs256_is_checked_by_aws_lc_and_agrees_with_the_crate() {
        let (pair, key) = key_and_jwk(serde_json::json!({}));
        assert!(key.rsa.is_some());
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        let sig = sign(&pair, b"header.payload");
        key.verify_signature(&rs256, b"header.payload", &sig)
            .unwrap();
        key.inner
            .verify_signature(&rs256, b"header.payload", &sig)
            .unwrap();
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(
            key.verify_signature(&rs256, b"header.payload", &bad)
                .is_err()
        );
        assert!(
            key.verify_signature(&rs256, b"header.payload2", &sig)
                .is_err()
        );
    }

    #[test]
    fn the_keys_use_type_and_algorithm_still_bind() {
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        let (pair, enc_key) = key_and_jwk(serde_json::json!({"use": "enc"}));
        let sig = sign(&pair, b"m");
        assert!(matches!(
            enc_key.verify_signature(&rs256, b"m", &sig),
            Err(SignatureVerificationError::InvalidKey(_))
        ));
        let (pair, rs512_only) = key_and_jwk(serde_json::json!({"alg": "RS512"}));
        let sig = sign(&pair, b"m");
        assert!(matches!(
            rs512_only.verify_signature(&rs256, b"m", &sig),
            Err(SignatureVerificationError::InvalidKey(_))
        ));
        // An RSA key never checks an EC signature (the crate refuses by key type).
        let (_, key) = key_and_jwk(serde_json::json!({}));
        assert!(
            key.verify_signature(&CoreJwsSigningAlgorithm::EcdsaP256Sha256, b"m", &[0; 64])
                .is_err()
        );
    }

    #[test]
    fn serializes_as_the_jwk_it_was_read_from() {
        let (_, key) = key_and_jwk(serde_json::json!({"alg": "RS256"}));
        let v = serde_json::to_value(&key).unwrap();
        assert_eq!(v["kty"], "RSA");
        assert_eq!(v["alg"], "RS256");
        assert!(v.get("rsa").is_none());
    }
}
