//! How sqlx failures become [`StoreError`]s. Only the database's own message (and the
//! violated constraint's name) is kept: never row contents, so medical text cannot leak
//! into errors or logs.

use consult_actors::StoreError;
use sqlx::error::ErrorKind;

/// Classifies a sqlx error: integrity violations are `Constraint`, undecodable rows are
/// `Corrupt`, everything else (connection, pool, I/O, transaction) is `Unavailable`.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let message = match db.constraint() {
                Some(constraint) => format!("{} ({constraint})", db.message()),
                None => db.message().to_owned(),
            };
            match db.kind() {
                ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation => StoreError::Constraint(message),
                _ => StoreError::Unavailable(message),
            }
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// A failed schema migration: the store cannot be used.
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Unavailable(format!("schema migration failed: {e}"))
}

/// A connection URL or option that sqlx refused.
pub(crate) fn config_error(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("invalid store configuration: {e}"))
}
