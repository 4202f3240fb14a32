//! The error codes of the registry API (distribution spec, "Error Codes"), typed, with the
//! message the registry sent beside each: the copy decides by code (an unknown repository is
//! not retried; an upload refused as such switches upload style), never by the text.
//! Modelled on go-containerregistry's `pkg/v1/remote/transport/error.go`.

use std::fmt;

/// One code a registry may answer with in `{"errors": [{"code": …, "message": …}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// A code the spec does not list (registries add their own), as sent.
    Other(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "BLOB_UNKNOWN" => ErrorCode::BlobUnknown,
            "BLOB_UPLOAD_INVALID" => ErrorCode::BlobUploadInvalid,
            "BLOB_UPLOAD_UNKNOWN" => ErrorCode::BlobUploadUnknown,
            "DIGEST_INVALID" => ErrorCode::DigestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => ErrorCode::ManifestBlobUnknown,
            "MANIFEST_INVALID" => ErrorCode::ManifestInvalid,
            "MANIFEST_UNKNOWN" => ErrorCode::ManifestUnknown,
            "NAME_INVALID" => ErrorCode::NameInvalid,
            "NAME_UNKNOWN" => ErrorCode::NameUnknown,
            "SIZE_INVALID" => ErrorCode::SizeInvalid,
            "UNAUTHORIZED" => ErrorCode::Unauthorized,
            "DENIED" => ErrorCode::Denied,
            "UNSUPPORTED" => ErrorCode::Unsupported,
            "TOOMANYREQUESTS" => ErrorCode::TooManyRequests,
            other => ErrorCode::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Other(c) => c,
        }
    }

    /// What the code means for the user, for the codes whose fix is theirs.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ErrorCode::NameUnknown => Some(
                "the repository does not exist there; registries such as Harbor and ECR do not create \
                 projects or repositories on push: create it first, or check the name",
            ),
            ErrorCode::Denied => Some("the credentials lack the permission this needs (a push needs write access)"),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a registry's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    /// `CODE message; CODE message`, as the user reads them.
    pub fn describe(errors: &[ApiError]) -> String {
        errors.iter().map(|e| format!("{} {}", e.code, e.message)).collect::<Vec<_>>().join("; ")
    }

    /// The `errors` of an error answer's body; none when it has no such array.
    pub fn list(body: &[u8]) -> Vec<ApiError> {
        #[derive(serde::Deserialize)]
        struct Errs {
            errors: Vec<E>,
        }
        #[derive(serde::Deserialize)]
        struct E {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        serde_json::from_slice::<Errs>(body)
            .map(|e| {
                e.errors.into_iter().map(|e| ApiError { code: ErrorCode::parse(&e.code), message: e.message }).collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept() {
        for c in ["BLOB_UNKNOWN", "NAME_UNKNOWN", "DENIED", "TOOMANYREQUESTS", "UNSUPPORTED"] {
            assert_eq!(ErrorCode::parse(c).as_str(), c);
        }
        assert_eq!(ErrorCode::parse("QUOTA_EXCEEDED"), ErrorCode::Other("QUOTA_EXCEEDED".into()));
        let list = ApiError::list(br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}"#);
        assert_eq!(list, [ApiError { code: ErrorCode::NameUnknown, message: "repository name not known".into() }]);
        assert!(ApiError::list(b"<html>").is_empty());
        assert!(ErrorCode::NameUnknown.hint().is_some_and(|h| h.contains("create it first")));
    }
}
