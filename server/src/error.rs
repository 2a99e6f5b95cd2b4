//! The crate's API-facing error and its mapping to the stable error codes clients branch on.

use sea_orm::DbErr;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error an API caller can see. Internal causes are kept as sources and logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or breaks a rule; `field` names the input field at fault.
    #[error("{message}")]
    InvalidInput {
        field: Option<String>,
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        what: &'static str,
        id: String,
        field: Option<String>,
    },
    /// The request clashes with existing state (a taken name, a busy object).
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    /// No valid token.
    #[error("a valid bearer token is required")]
    Unauthenticated,
    /// The token's role may not do this.
    #[error("this needs the {needed} role")]
    Forbidden { needed: &'static str },
    /// The database failed.
    #[error("database operation failed")]
    Database(#[from] DbErr),
    /// Something else inside the server failed.
    #[error("internal error: {context}")]
    Internal {
        context: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// A rule broken by the field `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// A clash on the field `field`.
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        Self::Conflict {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// Something the caller named in `field` does not exist.
    pub fn not_found(what: &'static str, id: impl ToString, field: Option<&str>) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
            field: field.map(str::to_owned),
        }
    }

    /// An internal failure with its cause.
    pub fn internal(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The stable code clients branch on (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput { .. } => "BAD_USER_INPUT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Conflict { .. } => "CONFLICT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden { .. } => "FORBIDDEN",
            Self::Database(_) | Self::Internal { .. } => "INTERNAL",
        }
    }

    /// The input field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidInput { field, .. }
            | Self::Conflict { field, .. }
            | Self::NotFound { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// HTTP status for REST responses.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidInput { .. } => 400,
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } => 409,
            Self::Unauthenticated => 401,
            Self::Forbidden { .. } => 403,
            Self::Database(_) | Self::Internal { .. } => 500,
        }
    }

    /// The message shown to callers: internal details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Self::Database(_) | Self::Internal { .. } => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

/// True when a database error is a unique-constraint violation (a lost race for a name).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
