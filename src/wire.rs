//! The JSON both the broker and the rolegate CLI speak: OAuth token responses and errors
//! (RFC 6749 §5), the device authorization response (RFC 8628 §3.2), and the answers of
//! the JSON API. One definition each, used by the server to write and by the client to
//! read, in both builds.

use serde::{Deserialize, Serialize};

/// A token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// An OAuth error answer (RFC 6749 §5.2), with the broker's request id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The answer to a device authorization request (RFC 8628 §3.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// `GET /api/v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub idp: String,
    pub subject: String,
    pub username: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub client_id: String,
    pub device_name: String,
    /// RFC 3339.
    pub session_expires_at: String,
}

/// `GET /api/v1/roles`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleList {
    pub region: String,
    pub accounts: Vec<AccountEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountEntry {
    pub id: String,
    pub name: String,
    pub number: String,
    pub roles: Vec<RoleEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleEntry {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub max_duration_seconds: u64,
    /// Held through an elevation until then (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elevated_until: Option<u64>,
}

/// `POST /api/v1/requests`: asking for an eligible role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ElevationAsk {
    pub role: String,
    /// `"2h"`, `"30m"` or seconds.
    pub duration: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// A request for an eligible role, as the API answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ElevationStatus {
    pub id: String,
    pub role: String,
    /// `pending`, `approved`, `denied`, `ended`, `expired`.
    pub status: String,
    pub seconds: u64,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub approvals: Vec<String>,
    pub approvals_needed: u8,
    /// When the elevation ends (once approved), Unix seconds.
    #[serde(default)]
    pub until: Option<u64>,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}
