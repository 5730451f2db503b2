//! Why a SAML response was refused: one variant per check, each with a stable reason
//! label for metrics, logs and audit records, and the mapping from samael's errors.

use super::prefilter;
use super::{MAX_RESPONSE_B64, VERIFY_TIMEOUT};
use crate::idp::ClaimsError;

#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("the SAML response is larger than {MAX_RESPONSE_B64} bytes")]
    TooLarge,
    #[error("the SAML response is not valid base64")]
    NotBase64,
    #[error("the SAML response is not UTF-8")]
    NotUtf8,
    #[error("refused before verification: {0}")]
    Prefilter(#[from] prefilter::Rejection),
    #[error("the RelayState is not one rolegate issued")]
    BadRelayState,
    #[error("no sign-in is pending for this response (unknown, expired or already used)")]
    UnknownRequest,
    #[error("unsolicited responses are not accepted from this IdP")]
    Unsolicited,
    #[error("the IdP's metadata is not loaded yet")]
    Unavailable,
    #[error("the signature does not verify with the pinned certificates")]
    SignatureInvalid,
    #[error("verification took longer than {}s", VERIFY_TIMEOUT.as_secs())]
    VerifyTimeout,
    #[error("verification failed unexpectedly")]
    VerifierFailed,
    #[error("the response was sent to another address (Destination/Recipient)")]
    WrongDestination,
    #[error("the assertion is expired")]
    Expired,
    #[error("the assertion is not valid yet")]
    NotYetValid,
    #[error("IssueInstant is in the future")]
    FutureIssueInstant,
    #[error("the assertion has no AudienceRestriction naming this service provider")]
    AudienceMissing,
    #[error("the assertion is for another audience")]
    WrongAudience,
    #[error("the response's status is not Success")]
    StatusNotSuccess,
    #[error("the issuer is not this IdP")]
    WrongIssuer,
    #[error("InResponseTo does not match this sign-in's request")]
    InResponseTo,
    #[error("the assertion has no bearer subject confirmation")]
    NoBearerConfirmation,
    #[error("the assertion was already used")]
    Replay,
    #[error("the state store is unavailable")]
    StoreUnavailable,
    #[error("the assertion has no NameID")]
    NoNameId,
    #[error("the encrypted assertion could not be decrypted: {0}")]
    Decryption(String),
    #[error("the response could not be read: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Claims(#[from] ClaimsError),
}

impl SamlError {
    /// A stable label for metrics (`saml_rejections{reason}`) and logs.
    pub fn reason(&self) -> &'static str {
        use prefilter::Rejection as R;
        match self {
            Self::TooLarge => "too_large",
            Self::NotBase64 => "not_base64",
            Self::NotUtf8 => "not_utf8",
            Self::Prefilter(r) => match r {
                R::Malformed(_) => "malformed_xml",
                R::Doctype => "doctype",
                R::ProcessingInstruction => "processing_instruction",
                R::NotAResponse => "not_a_response",
                R::TooDeep => "too_deep",
                R::TooManyAttributes => "too_many_attributes",
                R::DuplicateId(_) => "duplicate_id",
                R::AssertionCount(_) => "assertion_count",
                R::Unsigned => "unsigned",
                R::MisplacedSignature => "misplaced_signature",
                R::ReferenceCount(_) => "reference_count",
                R::ReferenceUri(_) => "reference_uri",
                R::Transform(_) => "transform",
                R::Canonicalization(_) => "canonicalization",
                R::SignatureAlgorithm(_) => "signature_algorithm",
                R::DigestAlgorithm(_) => "digest_algorithm",
                R::ForbiddenElement(_) => "forbidden_element",
                R::EncryptionAlgorithm(_) => "encryption_algorithm",
                R::EncryptionNotConfigured => "encryption_not_configured",
                R::EncryptedButResponseUnsigned => "encrypted_response_unsigned",
            },
            Self::BadRelayState => "bad_relay_state",
            Self::UnknownRequest => "unknown_request",
            Self::Unsolicited => "unsolicited",
            Self::Unavailable => "idp_unavailable",
            Self::SignatureInvalid => "signature_invalid",
            Self::VerifyTimeout => "verify_timeout",
            Self::VerifierFailed => "verifier_failed",
            Self::WrongDestination => "wrong_destination",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::FutureIssueInstant => "future_issue_instant",
            Self::AudienceMissing => "audience_missing",
            Self::WrongAudience => "wrong_audience",
            Self::StatusNotSuccess => "status_not_success",
            Self::WrongIssuer => "wrong_issuer",
            Self::InResponseTo => "in_response_to",
            Self::NoBearerConfirmation => "no_bearer_confirmation",
            Self::Replay => "replay",
            Self::StoreUnavailable => "store_unavailable",
            Self::NoNameId => "no_name_id",
            Self::Decryption(_) => "decryption",
            Self::Unreadable(_) => "unreadable",
            Self::Claims(_) => "claims",
        }
    }
}

pub(super) fn from_samael(e: samael::service_provider::Error) -> SamlError {
    use samael::service_provider::Error as E;
    match e {
        E::FailedToValidateSignature | E::CryptoXmlError(_) | E::CryptoProviderError(_) => {
            SamlError::SignatureInvalid
        }
        E::DestinationValidationError { .. } | E::AssertionRecipientMismatch { .. } => {
            SamlError::WrongDestination
        }
        E::AssertionExpired { .. }
        | E::AssertionSubjectConfirmationExpired { .. }
        | E::AssertionConditionExpired { .. }
        | E::ResponseExpired { .. } => SamlError::Expired,
        E::AssertionSubjectConfirmationExpiredBefore { .. }
        | E::AssertionConditionExpiredBefore { .. } => SamlError::NotYetValid,
        E::AssertionConditionAudienceRestrictionFailed { .. } => SamlError::WrongAudience,
        E::AssertionIssuerMismatch { .. } | E::ResponseIssuerMismatch { .. } => {
            SamlError::WrongIssuer
        }
        E::AssertionInResponseToInvalid { .. } | E::ResponseInResponseToInvalid { .. } => {
            SamlError::InResponseTo
        }
        E::ResponseBadStatusCode { .. } => SamlError::StatusNotSuccess,
        E::AssertionBearerSubjectConfirmationMissing | E::AssertionSubjectConfirmationMissing => {
            SamlError::NoBearerConfirmation
        }
        e @ (E::MissingPrivateKeySP
        | E::MissingEncryptedKeyInfo
        | E::MissingEncryptedValueInfo
        | E::EncryptedAssertionKeyMethodUnsupported { .. }
        | E::EncryptedAssertionValueMethodUnsupported { .. }
        | E::EncryptedAssertionInvalid
        | E::FailedToDecryptAssertion
        | E::EncryptedAssertionsNotYetSupported
        | E::UnsupportedKey) => SamlError::Decryption(e.to_string()),
        other => SamlError::Unreadable(other.to_string()),
    }
}
