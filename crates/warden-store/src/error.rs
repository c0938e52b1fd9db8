//! Errors of the store layer.

/// An error from a [`Store`](crate::Store) repository call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres (or the connection to it) failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A long-lived connection (a change listener) was lost; what it would have delivered
    /// meanwhile may be missing.
    #[error("connection lost: {0}")]
    ConnectionLost(&'static str),
    /// A row held a value the schema's CHECK constraints should have made impossible.
    #[error("unexpected value in {column}: {value:?}")]
    Corrupt {
        /// Table and column, e.g. `devices.protocol`.
        column: &'static str,
        /// The value found.
        value: String,
    },
}

impl StoreError {
    /// Whether Postgres refused the data itself (SQLSTATE class 22, data exception, or 23,
    /// integrity violation): sending the same statement again fails again.
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
            _ => false,
        }
    }
}

/// Why the group-commit writer could not confirm a record as durable.
///
/// An `Err` means "not known to be durable", never "known not to be": after a lost
/// connection the commit may in fact have happened. Either way the caller must not
/// acknowledge the sender (NAK, withhold PUBACK) so that it retries; a dedupe key makes the
/// retry harmless.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The writer has stopped (shutdown, or its task ended) and did not commit the record.
    #[error("writer stopped before the record was committed")]
    Closed,
    /// The transaction holding the record failed or timed out (Postgres down, connection
    /// lost). Transient: the writer keeps running and reconnects for the next batch.
    #[error("commit failed: {0}")]
    Commit(String),
    /// Postgres refused this record itself (constraint or data error, e.g. an unknown
    /// `device_id` or a NUL character in text). Retrying the same record will fail again:
    /// quarantine it instead.
    #[error("postgres rejected the record ({code}): {message}")]
    Rejected {
        /// The SQLSTATE, e.g. `23503`.
        code: String,
        /// The server's message.
        message: String,
    },
}
