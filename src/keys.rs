//! The broker's own signing keys for `web_identity` mode: loading PEM files, publishing
//! them as a JWKS, and generating new ones (`rolegate keys generate`).
//!
//! Keys are PKCS#8 PEM: EC P-256 (ES256, the default) or RSA (RS256). The key id is the
//! RFC 7638 JWK thumbprint, so it is stable and needs no bookkeeping.
//!
//! Its own module below `config` (which checks key files when loading) and `sts` (which
//! signs with them), so neither has to import the other.

use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;
use serde_json::{Value as Json, json};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM file: {0}")]
    NotPem(String),
    #[error("the PEM holds a {0:?}; expected a PKCS#8 \"PRIVATE KEY\" (EC P-256 or RSA)")]
    WrongLabel(String),
    #[error("the key is neither an EC P-256 nor an RSA (2048 bits or more) private key")]
    Unsupported,
    #[error("key generation failed")]
    Generation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Es256,
    Rs256,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A private signing key with its public JWK.
pub struct SigningKey {
    pub algorithm: KeyAlgorithm,
    pub kid: String,
    /// The public key as a JWK (with `kid`, `alg`, `use`).
    pub jwk: Json,
    encoding: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn from_pem(pem_text: &str) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::NotPem(e.to_string()))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(KeyError::WrongLabel(block.tag().to_owned()));
        }
        let der = block.contents();
        if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
            let point = kp.public_key().as_ref();
            let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
            let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            let kid = b64(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                thumbprint_input.as_bytes(),
            )
            .as_ref());
            let encoding = jsonwebtoken::EncodingKey::from_ec_pem(pem_text.as_bytes())
                .map_err(|_| KeyError::Unsupported)?;
            return Ok(Self {
                algorithm: KeyAlgorithm::Es256,
                jwk: json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig" }),
                kid,
                encoding,
            });
        }
        if let Ok(kp) = RsaKeyPair::from_pkcs8(der) {
            if kp.public_modulus_len() < 256 {
                return Err(KeyError::Unsupported);
            }
            let c = PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
            let (n, e) = (b64(&c.n), b64(&c.e));
            let thumbprint_input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
            let kid = b64(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                thumbprint_input.as_bytes(),
            )
            .as_ref());
            // jsonwebtoken's DER constructor wants PKCS#1; its PEM one reads PKCS#8.
            let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem_text.as_bytes())
                .map_err(|_| KeyError::Unsupported)?;
            return Ok(Self {
                algorithm: KeyAlgorithm::Rs256,
                jwk: json!({ "kty": "RSA", "n": n, "e": e, "kid": kid, "alg": "RS256", "use": "sig" }),
                kid,
                encoding,
            });
        }
        Err(KeyError::Unsupported)
    }

    pub fn encoding_key(&self) -> &jsonwebtoken::EncodingKey {
        &self.encoding
    }

    pub fn jwt_algorithm(&self) -> jsonwebtoken::Algorithm {
        match self.algorithm {
            KeyAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            KeyAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

/// Generates a new private key and returns it as PKCS#8 PEM.
pub fn generate_pem(algorithm: KeyAlgorithm) -> Result<String, KeyError> {
    let der: Vec<u8> = match algorithm {
        KeyAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|_| KeyError::Generation)?
            .as_ref()
            .to_vec(),
        KeyAlgorithm::Rs256 => {
            use aws_lc_rs::encoding::AsDer;
            let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generation)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                kp.as_der().map_err(|_| KeyError::Generation)?;
            der.as_ref().to_vec()
        }
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_with_a_thumbprint_kid() {
        for alg in [KeyAlgorithm::Es256, KeyAlgorithm::Rs256] {
            let pem = generate_pem(alg).unwrap();
            let k = SigningKey::from_pem(&pem).unwrap();
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(k.jwt_algorithm()),
                &serde_json::json!({"a": 1}),
                k.encoding_key(),
            );
            assert!(token.is_ok(), "{alg:?} key signs: {token:?}");
            assert_eq!(k.algorithm, alg);
            assert_eq!(k.kid.len(), 43, "base64url SHA-256");
            assert_eq!(k.jwk["kid"], k.kid.as_str());
            let again = SigningKey::from_pem(&pem).unwrap();
            assert_eq!(k.kid, again.kid, "kid is stable");
        }
    }

    #[test]
    fn non_keys_are_refused() {
        assert!(matches!(
            SigningKey::from_pem("hello"),
            Err(KeyError::NotPem(_))
        ));
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(matches!(
            SigningKey::from_pem(&cert),
            Err(KeyError::WrongLabel(_))
        ));
        let junk = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(matches!(
            SigningKey::from_pem(&junk),
            Err(KeyError::Unsupported)
        ));
    }
}
